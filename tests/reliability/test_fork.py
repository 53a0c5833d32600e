"""Item 5: a RemoteReranker used before ``os.fork()`` works in the child.

The child inherits no threads, so the parent's thread pool has no workers there (a split call
used to hang), locks another thread held stay held, and the connections are the parent's.
The backend resets all of that in the child (``os.register_at_fork``), and the parent keeps
working. Each child runs under ``signal.alarm`` and the parent waits with a timeout, so a
regression fails instead of hanging."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from helpers.hostile_server import Act, HostileServer

from rerank_integrations.backends.remote import RemoteReranker

Build = Callable[..., RemoteReranker]
DOCS = [f"doc {i}" for i in range(6)]
CHILD_LIMIT = 10

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    # Python 3.12+ warns that forking a multi-threaded process may deadlock: that is the
    # very situation under test.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def in_child(work: Callable[[], Any]) -> Any:
    """Run ``work()`` in a forked child; return what it returned (as JSON) or fail."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        os.close(read_end)
        signal.alarm(CHILD_LIMIT)  # a hang kills the child
        try:
            payload = json.dumps({"ok": work()})
        except BaseException as exc:
            payload = json.dumps({"error": f"{type(exc).__name__}: {exc}"})
        os.write(write_end, payload.encode())
        os.close(write_end)
        os._exit(0)
    os.close(write_end)
    deadline = time.monotonic() + CHILD_LIMIT + 5
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        time.sleep(0.02)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, (status, data)
    result = json.loads(data)
    assert "error" not in result, result["error"]
    return result["ok"]


def indices(results: Any) -> list[int]:
    return sorted(r.index for r in results)


def test_split_call_in_a_forked_child(hostile: HostileServer, build: Build) -> None:
    reranker = build(max_documents_per_request=2, max_concurrency=2)
    assert indices(reranker.rerank("q", DOCS)) == list(range(6))  # pool and client exist now
    start = time.perf_counter()
    child = in_child(lambda: indices(reranker.rerank("q", DOCS)))
    assert child == list(range(6))
    assert time.perf_counter() - start < 5
    assert indices(reranker.rerank("q", DOCS)) == list(range(6))  # the parent still works


def test_async_call_in_a_forked_child(hostile: HostileServer, build: Build) -> None:
    reranker = build(max_documents_per_request=2)

    async def parent_loop() -> list[int]:
        results = await reranker.arerank("q", DOCS)
        # fork from inside a running loop that holds this reranker's client
        child = in_child(lambda: indices(asyncio.run(reranker.arerank("q", DOCS))))
        return indices(results) + child

    assert asyncio.run(parent_loop()) == list(range(6)) * 2


def test_fork_while_another_thread_is_in_a_call(hostile: HostileServer, build: Build) -> None:
    """The parent is mid-call in another thread (pool busy, locks in use) when it forks."""
    hostile.default = Act.ok(delay=0.5)
    reranker = build(max_documents_per_request=1, max_concurrency=2)
    busy = threading.Thread(target=lambda: reranker.rerank("q", DOCS), daemon=True)
    busy.start()
    time.sleep(0.1)
    hostile.default = Act.ok()
    assert in_child(lambda: indices(reranker.rerank("q", DOCS[:3]))) == [0, 1, 2]
    busy.join(10)
    assert not busy.is_alive()


def _mp_work(queue: Any) -> None:
    queue.put(indices(_MP_RERANKER.rerank("q", DOCS)))


_MP_RERANKER: Any = None


def test_multiprocessing_fork_context(hostile: HostileServer, build: Build) -> None:
    global _MP_RERANKER
    _MP_RERANKER = build(max_documents_per_request=2)
    _MP_RERANKER.rerank("q", DOCS)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_mp_work, args=(queue,))
    process.start()
    try:
        assert queue.get(timeout=CHILD_LIMIT) == list(range(6))
    finally:
        process.join(CHILD_LIMIT)
        if process.is_alive():
            process.kill()
            pytest.fail("the multiprocessing child hung")
    _MP_RERANKER = None
