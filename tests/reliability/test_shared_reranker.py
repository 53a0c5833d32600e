"""One RemoteReranker shared by many threads or tasks: a call's failure, or close(), reaches only
the calls it belongs to.

Each call is split into 4 sub-requests (``max_documents_per_request=1``) so that a failing
call has siblings in flight to cancel; the failing calls get a 400 (never retried,
``max_retries=0``). Before round 2, a failing call's abort shut down sockets that healthy
calls had taken from the shared pool (70 of 292 healthy calls failed in one run)."""

from __future__ import annotations

import asyncio
import collections
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from helpers.bounded import bounded
from helpers.hostile_server import Act, HostileServer, Seen

from rerank_integrations.backends.remote import RemoteReranker
from rerank_integrations.errors import RemoteStatusError, RerankerClosedError

Build = Callable[..., RemoteReranker]
DOCS = ["alpha", "beta", "gamma", "delta"]
RUN_FOR = 3.0


def bad_queries_get_400(seen: Seen) -> Act | None:
    return Act.error(400) if (seen.body or {}).get("query") == "bad" else None


def test_sync_failures_never_hurt_healthy_calls(hostile: HostileServer, build: Build) -> None:
    hostile.route = bad_queries_get_400
    reranker = build(max_retries=0, max_documents_per_request=1)
    outcomes: collections.Counter[tuple[str, str]] = collections.Counter()
    lock = threading.Lock()
    stop = time.monotonic() + RUN_FOR

    def worker(query: str) -> None:
        while time.monotonic() < stop:
            try:
                assert len(reranker.rerank(query, DOCS)) == 4
                kind = "ok"
            except Exception as exc:  # every outcome is counted and asserted below
                kind = type(exc).__name__
            with lock:
                outcomes[(query, kind)] += 1

    def scenario() -> None:
        threads = [threading.Thread(target=worker, args=(q,)) for q in ["good", "bad"] * 8]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert bounded(scenario, RUN_FOR + 30).error is None
    healthy = {kind: n for (query, kind), n in outcomes.items() if query == "good"}
    failing = {kind: n for (query, kind), n in outcomes.items() if query == "bad"}
    assert set(healthy) == {"ok"} and healthy["ok"] >= 20, outcomes
    assert set(failing) == {"RemoteStatusError"}, outcomes


def test_async_failures_never_hurt_healthy_calls(hostile: HostileServer, build: Build) -> None:
    hostile.route = bad_queries_get_400
    reranker = build(max_retries=0, max_documents_per_request=1)

    async def scenario() -> collections.Counter[tuple[str, str]]:
        outcomes: collections.Counter[tuple[str, str]] = collections.Counter()
        stop = time.monotonic() + RUN_FOR

        async def worker(query: str) -> None:
            while time.monotonic() < stop:
                try:
                    assert len(await reranker.arerank(query, DOCS)) == 4
                    outcomes[(query, "ok")] += 1
                except RemoteStatusError:
                    outcomes[(query, "RemoteStatusError")] += 1

        await asyncio.gather(*(worker(q) for q in ["good", "bad"] * 8))
        return outcomes

    outcome = bounded(lambda: asyncio.run(scenario()), RUN_FOR + 30)
    assert outcome.error is None, outcome.error
    outcomes = outcome.value
    assert outcomes[("good", "ok")] >= 20 and outcomes[("bad", "RemoteStatusError")] >= 20
    assert set(outcomes) == {("good", "ok"), ("bad", "RemoteStatusError")}


def test_close_storm_ends_calls_with_closed_error_only(
    hostile: HostileServer, build: Build
) -> None:
    """32 threads on one reranker, closed at a random moment; 8 rounds. Every call either
    succeeded (before the close) or raised RerankerClosedError: never a connection error."""
    hostile.default = Act.ok(delay=0.01)
    outcomes: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    pick = random.Random(7)

    def round_(reranker: RemoteReranker) -> None:
        def worker() -> None:
            for _ in range(50):
                try:
                    reranker.rerank("q", DOCS)
                    kind = "ok"
                except Exception as exc:  # counted and asserted below
                    kind = type(exc).__name__
                with lock:
                    outcomes[kind] += 1
                if kind != "ok":
                    return

        threads = [threading.Thread(target=worker) for _ in range(32)]
        for thread in threads:
            thread.start()
        time.sleep(pick.uniform(0.05, 0.25))
        reranker.close()
        for thread in threads:
            thread.join()

    def scenario() -> None:
        for _ in range(8):
            round_(build(max_documents_per_request=2, timeout=10))

    assert bounded(scenario, 60).error is None
    assert set(outcomes) == {"ok", "RerankerClosedError"}, outcomes
    assert outcomes["RerankerClosedError"] == 8 * 32


def test_a_closed_reranker_sends_nothing(hostile: HostileServer, build: Build) -> None:
    reranker = build()
    reranker.close()
    for call in (
        lambda: reranker.rerank("q", DOCS),
        lambda: asyncio.run(reranker.arerank("q", DOCS)),
        lambda: reranker.rerank("q", []),
    ):
        outcome: Any = bounded(call, 10)
        outcome.raised(RerankerClosedError)
    assert hostile.requests == [] and hostile.connections == 0
