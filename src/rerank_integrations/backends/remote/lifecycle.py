"""Lifetimes in the remote backend: one call's deadline and cancellation
(:class:`CallToken`), per-event-loop state that dies with its loop (:func:`loop_guard`), and
per-process state that is reset in a forked child (:func:`reset_after_fork`, from the
core's :mod:`rerank_integrations.forking`, shared with the local engine).

- A :class:`CallToken` is shared by a call and all its sub-requests, in any thread or event
  loop. It is cancelled once, with a reason: :data:`CLOSED` (``close()``/``aclose()`` was
  called), :data:`DEADLINE` (the call's deadline passed) or :data:`DONE` (the call ended,
  e.g. a sibling failed: the remaining sub-requests stop). Cancelling wakes the caller
  (:attr:`CallToken.future`), interrupts retry waits (:meth:`CallToken.wait`) and runs the
  callbacks that abort requests in flight.
- An event loop's async client is closed when its loop shuts down: :func:`loop_guard` is an
  async generator started on that loop, and ``asyncio.run()`` (like ``asyncio.Runner`` and
  pytest-asyncio) finalises a loop's async generators before closing it. State of a loop
  closed without that is dropped the next time any loop builds its state.
- After ``os.fork()`` the child has none of the parent's threads, so locks may be held
  forever, the thread pool has no workers and connections are shared with the parent. Every
  object registered with :func:`reset_after_fork` has ``_after_fork_in_child()`` called in the
  child (``os.register_at_fork``), which drops that state without touching it; what must not
  be finalised in the child (parent event loops' clients) is kept by :func:`keep_in_child`.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import Future
from typing import Any

__all__ = [
    "CLOSED",
    "DEADLINE",
    "DONE",
    "CallToken",
    "LoopCloser",
    "loop_guard",
]

logger = logging.getLogger(__name__)

CLOSED = "closed"
DEADLINE = "deadline"
DONE = "done"


class CallToken:
    """One call's deadline and cancellation (see the module docstring). Thread-safe."""

    __slots__ = (
        "_callbacks",
        "_clock",
        "_event",
        "_keys",
        "_lock",
        "_reason",
        "deadline",
        "ends_at",
        "future",
    )

    def __init__(self, deadline: float, clock: Callable[[], float]) -> None:
        self.deadline = deadline
        self._clock = clock
        self.ends_at = clock() + deadline
        self._lock = threading.Lock()
        self._reason: str | None = None
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._keys = itertools.count()
        self._event = threading.Event()
        self.future: Future[None] = Future()
        """Resolved when the token is cancelled (to wake a waiting caller)."""

    def remaining(self) -> float:
        """Seconds left before the deadline (negative once it has passed)."""
        return self.ends_at - self._clock()

    @property
    def reason(self) -> str | None:
        """Why the token was cancelled, or ``None`` while it is not."""
        return self._reason

    @property
    def cancelled(self) -> bool:
        return self._reason is not None

    def cancel(self, reason: str) -> bool:
        """Cancel with ``reason`` (the first reason wins); False when already cancelled."""
        with self._lock:
            if self._reason is not None:
                return False
            self._reason = reason
            callbacks = list(self._callbacks.values())
            self._callbacks.clear()
        self._event.set()
        self.future.set_result(None)
        for callback in callbacks:
            _run(callback)
        return True

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Run ``callback`` when cancelled (at once if already); returns an unsubscriber."""
        with self._lock:
            if self._reason is None:
                key = next(self._keys)
                self._callbacks[key] = callback
                return lambda: self._unsubscribe(key)
        _run(callback)
        return _nothing

    def _unsubscribe(self, key: int) -> None:
        with self._lock:
            self._callbacks.pop(key, None)

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless cancelled first; True when the whole wait elapsed."""
        return not self._event.wait(max(0.0, seconds))


def _nothing() -> None:
    return None


def _run(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:  # an abort that fails must not stop the others; it is logged
        logger.warning("rerank: aborting a request in flight failed", exc_info=True)


# --------------------------------------------------------------------------- event loops


class LoopCloser:
    """Closes one event loop's async client once (the reranker's own only, never a user's)."""

    __slots__ = ("client", "closed", "owned")

    def __init__(self, client: Any, owned: bool) -> None:
        self.client = client
        self.owned = owned
        self.closed = False

    async def aclose(self) -> None:
        """Close the client once (a later call, e.g. from the loop's guard, does nothing)."""
        if self.closed or not self.owned:
            return
        try:
            await self.client.aclose()
        except Exception:  # closing is best effort; say so rather than hide it
            logger.warning("rerank: closing an async HTTP client failed", exc_info=True)
        self.closed = True


async def loop_guard(closer: LoopCloser, forget: Callable[[], None]) -> AsyncGenerator[None, None]:
    """Started on a loop (``await guard.__anext__()``) and kept referenced with the loop's
    state: when the loop finalises its async generators, the state is forgotten and the
    client closed, on that loop, before it closes."""
    try:
        yield
    finally:
        forget()
        await closer.aclose()
