"""Every bad input of the core API raises its exact typed error before any work."""

from __future__ import annotations

import pytest

from rerank_integrations import RerankInputError, RerankTypeError
from rerank_integrations._testing import FakeReranker

DOCS = ["alpha", "beta", "gamma"]


@pytest.fixture
def reranker() -> FakeReranker:
    return FakeReranker({"alpha": 0.2, "beta": 0.9, "gamma": 0.5})


BAD_INPUTS: list[tuple[str, dict[str, object], type[Exception], str]] = [
    ("doc not str", {"documents": ["a", 3, "c"]}, RerankTypeError, "documents[1]"),
    ("doc None", {"documents": [None]}, RerankTypeError, "documents[0]"),
    ("documents is a str", {"documents": "abc"}, RerankTypeError, "documents"),
    ("query not str", {"query": b"bytes"}, RerankTypeError, "query"),
    ("query None", {"query": None}, RerankTypeError, "query"),
    ("query empty", {"query": ""}, RerankInputError, "query"),
    ("query whitespace", {"query": " \n\t "}, RerankInputError, "query"),
    ("metadata short", {"metadata": ["a", "b"]}, RerankInputError, "metadata"),
    ("metadata long", {"metadata": ["a", "b", "c", "d"]}, RerankInputError, "metadata"),
    ("metadata entry", {"metadata": ["a", None, "c"]}, RerankTypeError, "metadata[1]"),
    ("metadata entry dict", {"metadata": ["a", "b", {"k": 1}]}, RerankTypeError, "metadata[2]"),
    ("metadata is a str", {"metadata": "abc"}, RerankTypeError, "metadata"),
    ("top_n zero", {"top_n": 0}, RerankInputError, "top_n"),
    ("top_n negative", {"top_n": -2}, RerankInputError, "top_n"),
    ("top_n float", {"top_n": 2.0}, RerankTypeError, "top_n"),
    ("top_n bool", {"top_n": True}, RerankTypeError, "top_n"),
    ("top_n str", {"top_n": "2"}, RerankTypeError, "top_n"),
    ("instruction int", {"instruction": 5}, RerankTypeError, "instruction"),
    ("instruction list", {"instruction": ["x"]}, RerankTypeError, "instruction"),
    ("query lone surrogate", {"query": "q\udcff"}, RerankInputError, "query"),
    ("doc lone surrogate", {"documents": ["a", "b\ud800c"]}, RerankInputError, "documents[1]"),
    ("metadata surrogate", {"metadata": ["a", "b", "\udcff"]}, RerankInputError, "metadata[2]"),
    ("instruction lone surrogate", {"instruction": "x\udcff"}, RerankInputError, "instruction"),
]


@pytest.mark.parametrize(
    ("kwargs", "exc", "field"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_sync(
    reranker: FakeReranker, kwargs: dict[str, object], exc: type[Exception], field: str
) -> None:
    args = {"query": "q", "documents": list(DOCS), **kwargs}
    with pytest.raises(exc) as info:
        reranker.rerank(**args)  # type: ignore[arg-type]
    assert type(info.value) is exc
    assert info.value.field == field  # type: ignore[attr-defined]
    assert field in str(info.value)
    assert reranker.calls == [], "no scoring work may happen on bad input"


@pytest.mark.parametrize(
    ("kwargs", "exc", "field"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
async def test_bad_input_async(
    reranker: FakeReranker, kwargs: dict[str, object], exc: type[Exception], field: str
) -> None:
    args = {"query": "q", "documents": list(DOCS), **kwargs}
    with pytest.raises(exc) as info:
        await reranker.arerank(**args)  # type: ignore[arg-type]
    assert type(info.value) is exc
    assert info.value.field == field  # type: ignore[attr-defined]
    assert reranker.calls == []


def test_input_errors_are_builtin_subclasses() -> None:
    assert issubclass(RerankInputError, ValueError)
    assert issubclass(RerankTypeError, TypeError)


def test_empty_documents_returns_empty_without_work(reranker: FakeReranker) -> None:
    assert reranker.rerank("q", []) == []
    assert reranker.rerank("q", (), top_n=3) == []
    assert reranker.calls == []


async def test_empty_documents_async(reranker: FakeReranker) -> None:
    assert await reranker.arerank("q", []) == []
    assert reranker.calls == []


def test_empty_documents_still_validates_other_args(reranker: FakeReranker) -> None:
    with pytest.raises(RerankInputError):
        reranker.rerank("", [])
    with pytest.raises(RerankInputError):
        reranker.rerank("q", [], top_n=0)


def test_caller_lists_are_not_mutated(reranker: FakeReranker) -> None:
    docs = ["gamma", "alpha", "beta"]
    meta = ["m0", "m1", "m2"]
    docs_before, meta_before = list(docs), list(meta)
    results = reranker.rerank("q", docs, metadata=meta, top_n=2)
    assert docs == docs_before and meta == meta_before
    assert [r.index for r in results] == [2, 0]
    # the backend received immutable copies
    assert reranker.calls[0].documents == tuple(docs)
    assert reranker.calls[0].metadata == tuple(meta)


def test_duplicates_keep_their_own_index(reranker: FakeReranker) -> None:
    results = reranker.rerank("q", ["beta", "alpha", "beta"])
    assert [r.index for r in results] == [0, 2, 1]
    assert results[0].relevance_score == results[1].relevance_score


def test_blank_instruction_is_no_instruction(reranker: FakeReranker) -> None:
    reranker.rerank("q", DOCS, instruction="   ")
    assert reranker.calls[-1].instruction is None
    reranker.rerank("q", DOCS, instruction="prefer recent")
    assert reranker.calls[-1].instruction == "prefer recent"


def test_tuple_and_other_sequences_accepted(reranker: FakeReranker) -> None:
    assert len(reranker.rerank("q", ("alpha", "beta"), metadata=("", "x"))) == 2
