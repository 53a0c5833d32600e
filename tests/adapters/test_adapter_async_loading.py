"""A lazy model load from an async entry point runs in a worker thread, never on the event
loop: a ticker task measures the longest stall of the loop while a slow backend loads.

The control (``LazyReranker.get()`` called on the loop) shows the measurement catches a
blocking load; each adapter's async path must keep the loop responsive."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import pytest

from rerank_integrations._adapters.holder import LazyReranker
from rerank_integrations._adapters.policy import ALLOWED_BACKENDS_ENV
from rerank_integrations._testing import FakeReranker

LOAD_SECONDS = 0.6
TICK = 0.005
MAX_STALL = 0.2  # generous: two shared CPU cores; a blocking load stalls >= LOAD_SECONDS


class SlowLoadingReranker(FakeReranker):
    """Sleeps in ``__init__`` like a model load; records the thread it was built on."""

    backend_name = f"{__name__}:SlowLoadingReranker"
    built_on: ClassVar[list[str]] = []

    def __init__(self, **kwargs: Any) -> None:
        time.sleep(LOAD_SECONDS)
        type(self).built_on.append(threading.current_thread().name)
        super().__init__({"b": 0.9, "a": 0.5}, **kwargs)


BACKEND = f"{__name__}:SlowLoadingReranker"


@pytest.fixture(autouse=True)
def _allow_this_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOWED_BACKENDS_ENV, __name__)
    SlowLoadingReranker.built_on.clear()


async def longest_stall(work: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    """Run ``work`` while a ticker measures the event loop's longest gap between ticks."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(TICK)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)
    try:
        result = await work()
    finally:
        done.set()
        await task
    return max(gaps), result


async def test_control_a_load_on_the_loop_is_measured_as_a_stall() -> None:
    holder = LazyReranker(backend=BACKEND)

    async def on_the_loop() -> Any:
        return holder.get()  # the old behaviour: the load blocks every other task

    stall, _ = await longest_stall(on_the_loop)
    assert stall >= LOAD_SECONDS * 0.9


async def test_lazy_holder_aget_loads_in_a_worker_thread() -> None:
    holder = LazyReranker(backend=BACKEND)
    stall, reranker = await longest_stall(holder.aget)
    assert isinstance(reranker, SlowLoadingReranker)
    assert stall < MAX_STALL, f"the event loop stalled {stall:.3f}s during the load"
    assert SlowLoadingReranker.built_on != ["MainThread"]


async def test_langchain_acompress_documents_never_blocks_the_loop() -> None:
    from langchain_core.documents import Document

    from rerank_integrations.langchain import RerankCompressor

    compressor = RerankCompressor(backend=BACKEND)
    docs = [Document(page_content="a"), Document(page_content="b")]
    stall, out = await longest_stall(lambda: compressor.acompress_documents(docs, "q"))
    assert [d.page_content for d in out] == ["b", "a"]
    assert stall < MAX_STALL, f"the event loop stalled {stall:.3f}s during the load"
    assert len(SlowLoadingReranker.built_on) == 1 and SlowLoadingReranker.built_on != ["MainThread"]


async def test_llama_index_apostprocess_nodes_never_blocks_the_loop() -> None:
    from llama_index.core.schema import NodeWithScore, TextNode

    from rerank_integrations.llama_index import RerankPostprocessor

    pp = RerankPostprocessor(backend=BACKEND)
    nodes = [NodeWithScore(node=TextNode(text=t), score=0.0) for t in ("a", "b")]
    stall, out = await longest_stall(lambda: pp.apostprocess_nodes(nodes, query_str="q"))
    assert [n.node.get_content() for n in out] == ["b", "a"]
    assert stall < MAX_STALL, f"the event loop stalled {stall:.3f}s during the load"
    assert SlowLoadingReranker.built_on != ["MainThread"]


async def test_haystack_run_async_never_blocks_the_loop() -> None:
    from haystack import Document

    from rerank_integrations.haystack import RerankRanker

    ranker = RerankRanker(backend=BACKEND)
    docs = [Document(content="a"), Document(content="b")]
    stall, out = await longest_stall(lambda: ranker.run_async(query="q", documents=docs))
    assert [d.content for d in out["documents"]] == ["b", "a"]
    assert stall < MAX_STALL, f"the event loop stalled {stall:.3f}s during the load"
    assert SlowLoadingReranker.built_on != ["MainThread"]
