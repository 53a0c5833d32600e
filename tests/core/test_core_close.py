"""One close() rule for every reranker: ``close()``/``aclose()`` is idempotent and final.

After it, ``closed`` is true and every ``rerank``/``arerank`` call — with documents or with an
empty list — raises :class:`RerankerClosedError`, a ``RerankError`` that is not a
``RemoteError``. Checked on every non-remote reranker class: :class:`FakeReranker` and
:class:`LocalReranker` on a tiny random model (skipped without torch/transformers); the remote
backend has its own tests of the same rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from rerank_integrations import Reranker
from rerank_integrations._testing import FakeReranker
from rerank_integrations.errors import RemoteError, RerankerClosedError, RerankError

QUERY = "What is the capital of France?"
DOCS = ["Paris is the capital of France.", "Berlin is the capital of Germany."]
DOCUMENT_LISTS = pytest.mark.parametrize("documents", [DOCS, []], ids=["documents", "empty"])


@pytest.fixture(params=["FakeReranker", "LocalReranker"])
def make_reranker(request: pytest.FixtureRequest) -> Callable[[], Reranker]:
    if request.param == "FakeReranker":
        return FakeReranker
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from rerank_integrations.backends.local import LocalReranker

    model_dir: Path = request.getfixturevalue("tiny_xlmr_dir")
    return lambda: LocalReranker(str(model_dir), dtype="float32")


def _assert_closed_error(err: BaseException) -> None:
    assert type(err) is RerankerClosedError
    assert isinstance(err, RerankError) and not isinstance(err, RemoteError)
    assert "closed" in str(err)


def test_the_closed_error_is_not_a_remote_error() -> None:
    assert RerankerClosedError.__bases__ == (RerankError,)
    assert not issubclass(RerankerClosedError, RemoteError)


@DOCUMENT_LISTS
def test_rerank_after_close_raises(
    make_reranker: Callable[[], Reranker], documents: Sequence[str]
) -> None:
    reranker = make_reranker()
    assert not reranker.closed
    assert len(reranker.rerank(QUERY, DOCS)) == len(DOCS)  # works while open
    reranker.close()
    assert reranker.closed
    with pytest.raises(RerankerClosedError) as info:
        reranker.rerank(QUERY, documents)
    _assert_closed_error(info.value)


@DOCUMENT_LISTS
async def test_arerank_after_close_raises(
    make_reranker: Callable[[], Reranker], documents: Sequence[str]
) -> None:
    reranker = make_reranker()
    assert len(await reranker.arerank(QUERY, DOCS)) == len(DOCS)
    reranker.close()
    with pytest.raises(RerankerClosedError) as info:
        await reranker.arerank(QUERY, documents)
    _assert_closed_error(info.value)


@DOCUMENT_LISTS
async def test_calls_after_aclose_raise(
    make_reranker: Callable[[], Reranker], documents: Sequence[str]
) -> None:
    reranker = make_reranker()
    await reranker.aclose()
    assert reranker.closed
    with pytest.raises(RerankerClosedError) as info:
        await reranker.arerank(QUERY, documents)
    _assert_closed_error(info.value)
    with pytest.raises(RerankerClosedError) as info:
        reranker.rerank(QUERY, documents)
    _assert_closed_error(info.value)


async def test_close_is_idempotent(make_reranker: Callable[[], Reranker]) -> None:
    reranker = make_reranker()
    reranker.close()
    reranker.close()
    await reranker.aclose()
    await reranker.aclose()
    assert reranker.closed
    with pytest.raises(RerankerClosedError):
        reranker.rerank(QUERY, DOCS)
    with pytest.raises(RerankerClosedError):
        await reranker.arerank(QUERY, [])


def test_leaving_a_with_block_closes(make_reranker: Callable[[], Reranker]) -> None:
    with make_reranker() as reranker:
        assert reranker.rerank(QUERY, []) == []  # open: the empty short-cut
    assert reranker.closed
    with pytest.raises(RerankerClosedError):
        reranker.rerank(QUERY, [])
