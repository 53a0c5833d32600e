"""Day-one mistakes get an error that says what to do (issue: ecosystem currency, point 3).

A local path that does not exist says "no such directory" (not the hub's "Repo id must be in
the form ..."); a name another framework uses (``top_k`` / ``top_n``) or a typo is an error
naming the field and suggesting the closest valid name, in every adapter, at construction and
per call; a typo in ``reranker_kwargs`` fails when the adapter is made, not at the first query.
Real frameworks throughout; nothing is built or sent."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from haystack import Document as HaystackDocument
from langchain_core.documents import Document as LangchainDocument
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from rerank_integrations import LocalReranker, ModelLoadError, RerankTypeError
from rerank_integrations._testing import FakeReranker
from rerank_integrations.haystack import RerankRanker
from rerank_integrations.langchain import RerankCompressor
from rerank_integrations.llama_index import RerankPostprocessor

REMOTE = {"backend": "remote", "base_url": "http://127.0.0.1:9/v1", "api_format": "vllm"}


@pytest.mark.parametrize("model", ["./ctxl-1b", "/no/such/model", "~/no-such-model", "a/b/c"])
def test_a_missing_local_directory_says_so(model: str) -> None:
    with pytest.raises(ModelLoadError) as info:
        LocalReranker(model)
    assert "no such directory" in str(info.value) and "Repo id" not in str(info.value)


def test_a_file_is_not_a_model_directory(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="is a file, not a model directory"):
        LocalReranker(str(path))


def suggestion(error: BaseException) -> str:
    assert isinstance(error, RerankTypeError), repr(error)
    return str(error)


@pytest.mark.parametrize(
    ("make", "field", "hint"),
    [
        (lambda: RerankCompressor(top_k=3), "top_k", "top_n"),
        (lambda: RerankPostprocessor(top_k=3), "top_k", "top_n"),
        (lambda: RerankRanker(top_n=3), "top_n", "top_k"),
        (lambda: RerankCompressor(scor_threshold=0.5), "scor_threshold", "score_threshold"),
        (lambda: RerankRanker(instructon="x"), "instructon", "instruction"),
    ],
)
def test_unknown_constructor_names_suggest_the_closest(make: Any, field: str, hint: str) -> None:
    with pytest.raises(RerankTypeError) as info:
        make()
    assert info.value.field == field
    assert str(info.value).count(field) == 1  # named once, not "top_k: top_k: unknown field"
    assert f"did you mean {hint!r}" in str(info.value)


def test_unknown_names_on_assignment_and_per_call() -> None:
    compressor = RerankCompressor(reranker=FakeReranker())
    with pytest.raises(RerankTypeError, match="did you mean 'top_n'"):
        compressor.top_k = 2  # type: ignore[attr-defined]
    docs = [LangchainDocument(page_content="a")]
    with pytest.raises(RerankTypeError, match="did you mean 'top_n'"):
        compressor.compress_documents(docs, "q", top_k=1)  # type: ignore[call-arg]
    with pytest.raises(RerankTypeError, match="did you mean 'top_n'"):
        asyncio.run(compressor.acompress_documents(docs, "q", top_k=1))  # type: ignore[call-arg]
    ranker = RerankRanker(reranker=FakeReranker())
    hdocs = [HaystackDocument(content="a")]
    with pytest.raises(RerankTypeError, match="did you mean 'top_k'"):
        ranker.run(query="q", documents=hdocs, top_n=1)  # type: ignore[call-arg]
    with pytest.raises(RerankTypeError, match="did you mean 'top_k'"):
        asyncio.run(ranker.run_async(query="q", documents=hdocs, top_n=1))  # type: ignore[call-arg]
    # the right names still work, and the component's signature is what Haystack sees
    assert len(ranker.run(query="q", documents=hdocs, top_k=1)["documents"]) == 1
    assert "top_k" in ranker.__haystack_input__._sockets_dict  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "make",
    [
        lambda kw: RerankCompressor(**REMOTE, reranker_kwargs=kw),
        lambda kw: RerankPostprocessor(**REMOTE, reranker_kwargs=kw),
        lambda kw: RerankRanker(**REMOTE, reranker_kwargs=kw),
    ],
    ids=["langchain", "llama_index", "haystack"],
)
def test_a_reranker_kwargs_typo_fails_at_construction(make: Any) -> None:
    with pytest.raises(RerankTypeError) as info:
        make({"max_retrys": 1})
    assert info.value.field == "reranker_kwargs['max_retrys']"
    assert "RemoteReranker" in str(info.value) and "did you mean 'max_retries'" in str(info.value)
    make({"max_retries": 1})  # the right name builds nothing and raises nothing


def test_a_setting_the_backend_does_not_take_is_named() -> None:
    with pytest.raises(RerankTypeError) as info:
        RerankCompressor(**REMOTE, model_format="cross-encoder")
    assert info.value.field == "model_format" and "RemoteReranker" in str(info.value)
    postprocessor = RerankPostprocessor(reranker=FakeReranker(), top_n=1)
    nodes = [NodeWithScore(node=TextNode(text="a"), score=1.0)]
    assert len(postprocessor.postprocess_nodes(nodes, QueryBundle("q"))) == 1
