"""Items 2 and 3: ``close()`` / ``aclose()`` while calls are in flight.

A call in flight when its reranker is closed (sending, waiting for an answer, waiting to
retry, or with sub-requests still queued) raises ``RerankerClosedError`` at once, also with
``on_error="passthrough"`` (closing is the caller's decision, not an outage); never a raw
``RuntimeError``, never a deadlock. ``close()`` is final: later calls raise too."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from helpers.bounded import bounded
from helpers.hostile_server import Act, HostileServer

from rerank_integrations.backends.remote import RemoteReranker
from rerank_integrations.errors import RemoteError, RerankerClosedError

Build = Callable[..., RemoteReranker]
DOCS = ["alpha", "beta", "gamma", "delta"]
SLACK = 0.75
CLOSE_AFTER = 0.3


def close_later(reranker: RemoteReranker, seconds: float = CLOSE_AFTER) -> list[float]:
    """Close ``reranker`` from another thread after ``seconds``; returns [close() duration]."""
    took: list[float] = []

    def closer() -> None:
        time.sleep(seconds)
        start = time.perf_counter()
        reranker.close()
        took.append(time.perf_counter() - start)

    threading.Thread(target=closer, daemon=True).start()
    return took


def test_close_with_queued_sub_requests_does_not_deadlock(
    hostile: HostileServer, build: Build
) -> None:
    """Item 2: four sub-requests, one at a time; close() while three are still queued."""
    hostile.default = Act.ok(delay=0.5)
    reranker = build(max_documents_per_request=1, max_concurrency=1)
    took = close_later(reranker)
    outcome = bounded(lambda: reranker.rerank("q", DOCS), 10, "rerank() during close()")
    error = outcome.raised(RerankerClosedError)
    assert "closed while the call" in str(error)
    assert outcome.seconds <= CLOSE_AFTER + SLACK
    assert len(hostile.requests) == 1  # the queued ones never started
    time.sleep(0.05)
    assert took and took[0] < 0.5  # close() itself does not wait for the server


@pytest.mark.parametrize("act", ["stall", "retry_wait", "trickle"])
def test_sync_close_during_a_request_or_a_retry_wait(
    hostile: HostileServer, build: Build, act: str
) -> None:
    """Item 3 (sync): in flight, or sleeping before a retry (real sleep, Retry-After 5 s)."""
    hostile.default = {
        "stall": Act.stall(),
        "trickle": Act.trickle(0.1),
        "retry_wait": Act.error(503, headers={"Retry-After": "5"}),
    }[act]
    reranker = build(timeout=30)
    close_later(reranker)
    outcome = bounded(lambda: reranker.rerank("q", DOCS), 10)
    outcome.raised(RerankerClosedError)
    assert not isinstance(outcome.error, RuntimeError)
    assert outcome.seconds <= CLOSE_AFTER + SLACK


def test_sync_close_is_not_hidden_by_passthrough(hostile: HostileServer, build: Build) -> None:
    hostile.default = Act.stall()
    reranker = build(timeout=30, on_error="passthrough")
    close_later(reranker)
    outcome = bounded(lambda: reranker.rerank("q", DOCS), 10)
    error = outcome.raised(RerankerClosedError)
    assert not isinstance(error, RemoteError)
    assert outcome.seconds <= CLOSE_AFTER + SLACK


def test_close_reaches_every_thread(hostile: HostileServer, build: Build) -> None:
    hostile.default = Act.stall()
    reranker = build(timeout=30, max_documents_per_request=2)
    outcomes: list[BaseException | None] = []

    def one() -> None:
        try:
            reranker.rerank("q", DOCS)
        except BaseException as exc:
            outcomes.append(exc)
        else:
            outcomes.append(None)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(4)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    close_later(reranker)
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads)
    assert time.perf_counter() - start <= CLOSE_AFTER + SLACK
    assert len(outcomes) == 4 and all(isinstance(e, RerankerClosedError) for e in outcomes)


@pytest.mark.parametrize("act", ["stall", "retry_wait"])
@pytest.mark.parametrize("passthrough", [False, True])
def test_aclose_on_the_same_loop_during_a_call(
    hostile: HostileServer, build: Build, act: str, passthrough: bool
) -> None:
    hostile.default = (
        Act.stall() if act == "stall" else Act.error(503, headers={"Retry-After": "5"})
    )
    reranker = build(timeout=30, on_error="passthrough" if passthrough else "raise")

    async def scenario() -> Any:
        task = asyncio.ensure_future(reranker.arerank("q", DOCS))
        await asyncio.sleep(CLOSE_AFTER)
        await reranker.aclose()
        return await task

    outcome = bounded(lambda: asyncio.run(scenario()), 10)
    assert outcome.seconds <= CLOSE_AFTER + SLACK
    outcome.raised(RerankerClosedError)  # with passthrough too: a close is not an outage


def test_close_from_another_thread_stops_an_async_call(
    hostile: HostileServer, build: Build
) -> None:
    hostile.default = Act.stall()
    reranker = build(timeout=30, max_documents_per_request=1)
    close_later(reranker)
    outcome = bounded(lambda: asyncio.run(reranker.arerank("q", DOCS)), 10)
    outcome.raised(RerankerClosedError)
    assert outcome.seconds <= CLOSE_AFTER + SLACK


def test_sync_close_inside_async_code_stops_the_loops_calls(
    hostile: HostileServer, build: Build
) -> None:
    hostile.default = Act.stall()
    reranker = build(timeout=30)

    async def scenario() -> Any:
        task = asyncio.ensure_future(reranker.arerank("q", DOCS))
        await asyncio.sleep(CLOSE_AFTER)
        client = reranker._clients._async_state[asyncio.get_running_loop()][0]
        reranker.close()  # sync close() in async code: the loop's client closes on the loop
        try:
            await task
        finally:
            await asyncio.sleep(0.05)
            assert client.is_closed

    outcome = bounded(lambda: asyncio.run(scenario()), 10)
    outcome.raised(RerankerClosedError)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_close_is_final(hostile: HostileServer, build: Build, mode: str) -> None:
    """After close(), a call raises RerankerClosedError before any request (as a closed
    httpx client or LocalReranker does), in every mode, and close() stays idempotent."""
    hostile.script.append(Act.stall())
    reranker = build(timeout=30)
    close_later(reranker)

    def call() -> Any:
        if mode == "sync":
            return reranker.rerank("q", DOCS)
        return asyncio.run(reranker.arerank("q", DOCS))

    outcome = bounded(call, 10)
    outcome.raised(RerankerClosedError)
    sent = len(hostile.requests)
    reranker.close()
    later = bounded(call, 10)
    later.raised(RerankerClosedError)
    assert len(hostile.requests) == sent  # nothing was sent after close()
    assert reranker.closed
