"""Item 1: ``timeout`` bounds each attempt (the whole exchange, not one read) and
``deadline`` the whole call, retries, waits and splits included, sync and async.

The hostile server trickles one byte every 0.3 s after the headers (or in the headers), or
never answers; each scenario asserts the error AND when it came (at the bound, not before
it, not much after: ``SLACK``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from helpers.bounded import bounded
from helpers.hostile_server import Act, HostileServer

from rerank_integrations.backends.remote import RemoteReranker, is_passthrough
from rerank_integrations.errors import RemoteStatusError, RemoteTimeoutError

Build = Callable[..., RemoteReranker]

DOCS = ["alpha", "beta", "gamma", "delta"]
SLACK = 0.75
MODES = ["sync", "async"]


def call(reranker: Any, mode: str, docs: list[str] = DOCS) -> Any:
    if mode == "sync":
        return lambda: reranker.rerank("q", docs)
    return lambda: asyncio.run(reranker.arerank("q", docs))


@pytest.mark.parametrize("mode", MODES)
def test_trickling_server_is_cut_at_the_timeout(
    hostile: HostileServer, build: Build, mode: str
) -> None:
    """The reported case: headers, then one byte every 0.5 s; timeout=1, max_retries=0
    used to hold the call for as long as the server trickled (20 s observed)."""
    hostile.default = Act.trickle(0.5)
    reranker = build(timeout=1, max_retries=0)
    outcome = bounded(call(reranker, mode), 10)
    error = outcome.raised(RemoteTimeoutError)
    assert 0.95 <= outcome.seconds <= 1.0 + SLACK, outcome.seconds
    assert "timed out" in str(error) or "deadline" in str(error)
    assert len(hostile.requests) == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("act", ["trickle_headers", "stall"])
def test_timeout_bounds_every_phase(
    hostile: HostileServer, build: Build, mode: str, act: str
) -> None:
    hostile.default = Act.trickle_headers(0.2) if act == "trickle_headers" else Act.stall()
    reranker = build(timeout=0.5, max_retries=0)
    outcome = bounded(call(reranker, mode), 10, f"{act} ({mode})")
    outcome.raised(RemoteTimeoutError)
    assert 0.45 <= outcome.seconds <= 0.5 + SLACK, outcome.seconds
    assert len(hostile.requests) == 1


@pytest.mark.parametrize("mode", MODES)
def test_deadline_bounds_retries_and_waits(hostile: HostileServer, build: Build, mode: str) -> None:
    # attempt 0.2 s, wait 0.5 s, attempt cut at the deadline (0.8 s); the next wait cannot fit
    hostile.default = Act.trickle(0.1)
    reranker = build(timeout=0.2, max_retries=5, deadline=0.8, _random=lambda: 0.0)
    outcome = bounded(call(reranker, mode), 10)
    outcome.raised(RemoteTimeoutError)
    assert 0.75 <= outcome.seconds <= 0.8 + SLACK, outcome.seconds
    assert len(hostile.requests) == 2


@pytest.mark.parametrize("mode", MODES)
def test_a_retry_wait_past_the_deadline_is_not_taken(
    hostile: HostileServer, build: Build, mode: str
) -> None:
    hostile.default = Act.error(503, headers={"Retry-After": "30"})
    reranker = build(timeout=1, max_retries=3, deadline=5)
    outcome = bounded(call(reranker, mode), 10)
    error = outcome.raised(RemoteStatusError)
    assert error.status == 503  # the last error, at once: no 30 s wait
    assert outcome.seconds < 0.5 + SLACK
    assert len(hostile.requests) == 1


@pytest.mark.parametrize("mode", MODES)
def test_deadline_bounds_a_split_call(hostile: HostileServer, build: Build, mode: str) -> None:
    hostile.default = Act.stall()
    reranker = build(timeout=30, deadline=0.5, max_documents_per_request=1, max_concurrency=2)
    outcome = bounded(call(reranker, mode, [f"d{i}" for i in range(6)]), 10)
    error = outcome.raised(RemoteTimeoutError)
    assert "deadline of 0.5 s" in str(error)
    assert 0.45 <= outcome.seconds <= 0.5 + SLACK, outcome.seconds
    assert len(hostile.requests) == 2  # the queued four never started


@pytest.mark.parametrize("mode", MODES)
def test_slow_but_steady_answers_within_the_deadline_succeed(
    hostile: HostileServer, build: Build, mode: str
) -> None:
    hostile.default = Act.ok(delay=0.2)
    reranker = build(timeout=2, deadline=3, max_documents_per_request=1, max_concurrency=4)
    outcome = bounded(call(reranker, mode), 10)
    assert outcome.error is None and len(outcome.value) == 4
    assert outcome.seconds < 0.2 + SLACK + 0.5


@pytest.mark.parametrize("mode", MODES)
def test_passthrough_answers_by_the_deadline(
    hostile: HostileServer, build: Build, mode: str
) -> None:
    hostile.default = Act.trickle(0.2)
    reranker = build(timeout=0.5, max_retries=0, on_error="passthrough")
    outcome = bounded(call(reranker, mode), 10)
    assert outcome.error is None
    assert [r.index for r in outcome.value] == [0, 1, 2, 3]
    assert all(is_passthrough(r) for r in outcome.value)
    assert outcome.seconds <= 0.5 + SLACK


def test_own_sync_client_caller_is_released_at_the_deadline(
    hostile: HostileServer, build: Build
) -> None:
    """A caller's own client is not guarded per read, but the CALLER returns at the deadline
    (the request runs on a worker, which stops between body chunks)."""
    hostile.default = Act.trickle(0.1)
    with httpx.Client() as client:
        reranker = build(timeout=0.5, max_retries=0, http_client=client)
        outcome = bounded(call(reranker, "sync"), 10)
        outcome.raised(RemoteTimeoutError)
        assert outcome.seconds <= 0.5 + SLACK


def test_own_async_client_is_bounded(hostile: HostileServer, build: Build) -> None:
    hostile.default = Act.trickle(0.1)

    async def scenario() -> Any:
        async with httpx.AsyncClient() as client:
            reranker = build(timeout=0.5, max_retries=0, async_http_client=client)
            return await reranker.arerank("q", DOCS)

    outcome = bounded(lambda: asyncio.run(scenario()), 10)
    outcome.raised(RemoteTimeoutError)
    assert outcome.seconds <= 0.5 + SLACK


def test_deadline_property_and_default(build: Build) -> None:
    assert build(timeout=5, max_retries=2).deadline == 3 * 5 + 2 * 60
    assert build(timeout=1, max_retries=0).deadline == 1
    assert build(deadline=2.5).deadline == 2.5
    assert build().to_config()["deadline"] is None
