"""Item 6: a response body is capped (``max_response_bytes``, default 16 MiB).

The body is streamed and reading stops at the cap with ``RemoteResponseTooLargeError``; a
declared ``Content-Length`` over the cap fails before reading. Never retried. The server
counts the bytes it managed to send: far fewer than the 100 MB it tried."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from helpers.bounded import bounded
from helpers.hostile_server import Act, HostileServer

from rerank_integrations.backends.remote import RemoteReranker, is_passthrough
from rerank_integrations.backends.remote.budgets import DEFAULT_MAX_RESPONSE_BYTES
from rerank_integrations.errors import RemoteResponseError, RemoteResponseTooLargeError

Build = Callable[..., RemoteReranker]
DOCS = ["alpha", "beta", "gamma", "delta"]
MODES = ["sync", "async"]
HUNDRED_MB = 100 * 1024 * 1024
MIB = 1024 * 1024


def call(reranker: RemoteReranker, mode: str) -> Callable[[], Any]:
    if mode == "sync":
        return lambda: reranker.rerank("q", DOCS)
    return lambda: asyncio.run(reranker.arerank("q", DOCS))


def test_the_default_cap_is_16_mib(build: Build) -> None:
    assert DEFAULT_MAX_RESPONSE_BYTES == 16 * MIB
    assert build().to_config()["max_response_bytes"] == 16 * MIB


@pytest.mark.parametrize("mode", MODES)
def test_undeclared_huge_body_stops_at_the_cap(
    hostile: HostileServer, build: Build, mode: str
) -> None:
    hostile.default = Act.huge(HUNDRED_MB, declare=False)
    reranker = build(max_response_bytes=MIB, max_retries=2)
    outcome = bounded(call(reranker, mode), 20)
    error = outcome.raised(RemoteResponseTooLargeError)
    assert isinstance(error, RemoteResponseError) and error.limit == MIB
    assert "max_response_bytes=1048576" in str(error)
    assert len(hostile.requests) == 1  # not retried
    assert hostile.bytes_sent < 16 * MIB  # the cap plus socket buffers, not 100 MB
    assert outcome.seconds < 5


@pytest.mark.parametrize("mode", MODES)
def test_declared_huge_body_fails_before_reading(
    hostile: HostileServer, build: Build, mode: str
) -> None:
    hostile.default = Act.huge(HUNDRED_MB, declare=True)
    reranker = build()  # the default 16 MiB cap
    outcome = bounded(call(reranker, mode), 20)
    error = outcome.raised(RemoteResponseTooLargeError)
    assert f"declares {HUNDRED_MB} bytes" in str(error)
    assert hostile.bytes_sent < 32 * MIB
    assert outcome.seconds < 5


@pytest.mark.parametrize("mode", MODES)
def test_an_answer_under_the_cap_is_read(hostile: HostileServer, build: Build, mode: str) -> None:
    small = build(max_response_bytes=10_000)
    assert len(bounded(call(small, mode), 10).value) == 4
    tiny = build(max_response_bytes=20)  # the answer is ~150 bytes
    bounded(call(tiny, mode), 10).raised(RemoteResponseTooLargeError)


def test_passthrough_covers_a_too_large_answer(hostile: HostileServer, build: Build) -> None:
    hostile.default = Act.huge(HUNDRED_MB, declare=False)
    reranker = build(max_response_bytes=MIB, on_error="passthrough")
    outcome = bounded(call(reranker, "sync"), 20)
    assert outcome.error is None and all(is_passthrough(r) for r in outcome.value)


@pytest.mark.parametrize("mode", MODES)
def test_reset_mid_body_is_a_retried_connection_error(
    hostile: HostileServer, build: Build, mode: str
) -> None:
    hostile.script.append(Act.reset_mid_body())
    reranker = build(_sleep=lambda s: None, _async_sleep=_no_wait)
    outcome = bounded(call(reranker, mode), 10)
    assert outcome.error is None and len(outcome.value) == 4
    assert len(hostile.requests) == 2


async def _no_wait(seconds: float) -> None:
    return None
