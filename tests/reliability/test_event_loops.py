"""Item 4: per-event-loop state dies with its loop.

``asyncio.run(reranker.arerank(...))`` once per request used to leak one AsyncClient and its
socket per loop: after ~250 calls under a 256-file limit every call failed. The loop's client
is now closed when the loop shuts down (its async generators are finalised by
``asyncio.run``); a loop closed without that is dropped at the next call."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable

import httpx
import pytest
from helpers.bounded import bounded
from helpers.hostile_server import HostileServer

from rerank_integrations.backends.remote import RemoteReranker

Build = Callable[..., RemoteReranker]
DOCS = ["alpha", "beta", "gamma", "delta"]

SCRIPT = textwrap.dedent(
    """
    import asyncio, gc, os, resource, sys
    import httpx
    from rerank_integrations.backends.remote import RemoteReranker

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    reranker = RemoteReranker("m", base_url=sys.argv[1], max_documents_per_request=2)
    fds = lambda: len(os.listdir("/proc/self/fd"))
    asyncio.run(reranker.arerank("q", ["a", "b", "c", "d"]))
    before = fds()
    for _ in range(300):
        results = asyncio.run(reranker.arerank("q", ["a", "b", "c", "d"]))
        assert len(results) == 4
    gc.collect()
    clients = sum(
        1 for o in gc.get_objects() if isinstance(o, httpx.AsyncClient) and not o.is_closed
    )
    print(before, fds(), clients, len(reranker._clients._async_state))
    """
)


def test_one_asyncio_run_per_call_leaks_nothing(hostile: HostileServer) -> None:
    """300 ``asyncio.run`` calls (split into 2 sub-requests each) under RLIMIT_NOFILE=256."""
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, hostile.url()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    before, after, open_clients, states = map(int, proc.stdout.split())
    assert after <= before + 4, (before, after)  # no socket per loop
    assert open_clients == 0  # every loop's client was closed with its loop
    assert states == 0
    assert len(hostile.requests) == 301 * 2


def test_a_loop_reuses_its_client(hostile: HostileServer, build: Build) -> None:
    reranker = build()

    async def scenario() -> bool:
        await reranker.arerank("q", DOCS)
        loop = asyncio.get_running_loop()
        first = reranker._clients._async_state[loop][0]
        await reranker.arerank("q", DOCS)
        return reranker._clients._async_state[loop][0] is first

    assert bounded(lambda: asyncio.run(scenario()), 10).value is True


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_state_of_a_loop_closed_by_hand_is_dropped(hostile: HostileServer, build: Build) -> None:
    """A loop closed without finalising its async generators cannot close its client; its
    state is dropped at the next call, so nothing accumulates."""
    reranker = build(max_documents_per_request=2)

    def many() -> tuple[int, int]:
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(40):
            loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(reranker.arerank("q", DOCS))
            finally:
                loop.close()  # no shutdown_asyncgens()
        return len(os.listdir("/proc/self/fd")) - before, len(reranker._clients._async_state)

    outcome = bounded(many, 30)
    assert outcome.error is None
    grown, states = outcome.value
    assert states <= 1
    assert grown <= 8  # the last loop's sockets at most, not 40 loops' worth


def test_asyncio_run_closes_the_loops_client(hostile: HostileServer, build: Build) -> None:
    reranker = build()
    seen: list[httpx.AsyncClient] = []

    async def scenario() -> None:
        await reranker.arerank("q", DOCS)
        seen.append(reranker._clients._async_state[asyncio.get_running_loop()][0])

    bounded(lambda: asyncio.run(scenario()), 10)
    gc.collect()
    assert seen and seen[0].is_closed
    assert reranker._clients._async_state == {}


def test_a_users_async_client_is_never_closed(hostile: HostileServer, build: Build) -> None:
    async def scenario() -> bool:
        client = httpx.AsyncClient()
        reranker = build(async_http_client=client)
        await reranker.arerank("q", DOCS)
        return client.is_closed

    client_closed_in_loop = bounded(lambda: asyncio.run(scenario()), 10).value
    assert client_closed_in_loop is False
