"""One rerank call: its deadline, its cancel switch and the attempts it owns (sync or async).

A :class:`Call` is made per ``rerank()``/``arerank()`` by the shared
:class:`~rerank_integrations.backends.remote.clients.Clients`. It is cancelled once, with a
reason (:data:`CLOSED`, :data:`DEADLINE`, :data:`DONE`), and cancelling runs the aborts its
attempts registered with :meth:`Call.own`: its OWN attempts only, never a client or a pooled
connection (docs/reliability.md "Who owns what").
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future

from rerank_integrations.errors import (
    RemoteError,
    RemoteTimeoutError,
    RerankerClosedError,
    RerankError,
)

__all__ = ["CLOSED", "DEADLINE", "DONE", "Abandoned", "Call"]

logger = logging.getLogger(__name__)

CLOSED = "closed"
DEADLINE = "deadline"
DONE = "done"


class Abandoned(RemoteError):
    """Internal: a sub-request stopped because its call already ended (never surfaces)."""


class Call:
    """One call's deadline and cancellation (see the module docstring). Thread-safe."""

    __slots__ = (
        "_callbacks",
        "_clock",
        "_event",
        "_keys",
        "_lock",
        "_reason",
        "deadline",
        "display_url",
        "ends_at",
        "future",
        "retries",
        "splits",
        "sub_requests",
    )

    def __init__(self, deadline: float, clock: Callable[[], float], display_url: str) -> None:
        self.deadline = deadline
        self.display_url = display_url
        self._clock = clock
        self.ends_at = clock() + deadline
        self._lock = threading.Lock()
        self._reason: str | None = None
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._keys = itertools.count()
        self._event = threading.Event()
        self.future: Future[None] = Future()
        """Resolved when the call is cancelled (wakes a waiting sync caller)."""
        # what the call did, for its trace span (docs/observability.md)
        self.sub_requests = 0
        """Sub-requests sent (the planned ones, plus the parts of split ones)."""
        self.splits = 0
        """Sub-requests the server called too big, re-sent as parts (or cut)."""
        self.retries = 0
        """Retries taken, over every sub-request (:meth:`count_retry`)."""

    def remaining(self) -> float:
        """Seconds left before the deadline (negative once it has passed)."""
        return self.ends_at - self._clock()

    @property
    def reason(self) -> str | None:
        return self._reason

    @property
    def cancelled(self) -> bool:
        return self._reason is not None

    def count_retry(self) -> None:
        """One more retry of one of this call's sub-requests (from any thread)."""
        with self._lock:
            self.retries += 1

    def facts(self) -> dict[str, int]:
        """The call's counts as ``rerank_integrations.remote.*`` span attributes."""
        return {
            "rerank_integrations.remote.sub_requests": self.sub_requests,
            "rerank_integrations.remote.splits": self.splits,
            "rerank_integrations.remote.retries": self.retries,
        }

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

    def own(self, abort: Callable[[], None]) -> Callable[[], None]:
        """Register an abort of something this call owns (an attempt in flight, a waiting
        task); it runs when the call is cancelled (at once if it already is). Returns the
        unregister function, called when the attempt is over."""
        with self._lock:
            if self._reason is None:
                key = next(self._keys)
                self._callbacks[key] = abort
                return lambda: self._disown(key)
        _run(abort)
        return _nothing

    def _disown(self, key: int) -> None:
        with self._lock:
            self._callbacks.pop(key, None)

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless cancelled first; True when the whole wait elapsed."""
        return not self._event.wait(max(0.0, seconds))

    def expire(self) -> RerankError:
        """The deadline has passed: cancel (first reason wins) and say why the call stops."""
        self.cancel(DEADLINE)
        return self.stop_error()

    def stop_error(self) -> RerankError:
        """The error a cancelled call ends with, by its reason."""
        if self._reason == CLOSED:
            return RerankerClosedError(
                f"the reranker was closed while the call to {self.display_url} was in flight"
            )
        if self._reason == DEADLINE:
            return RemoteTimeoutError(
                f"the call to {self.display_url} did not finish within its deadline of "
                f"{self.deadline:g} s"
            )
        return Abandoned("the call already ended")


def _nothing() -> None:
    return None


def _run(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:  # an abort that fails must not stop the others; it is logged
        logger.warning("rerank: aborting a request in flight failed", exc_info=True)
