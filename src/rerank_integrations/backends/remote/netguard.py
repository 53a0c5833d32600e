"""A hard time bound for each sync attempt, and an abort that touches only that attempt's socket.

httpx's timeouts are per network operation (a server trickling a byte every 0.5 s never trips
a 1 s read timeout), so the reranker's own sync clients get a network backend wrapper
(:func:`install`) whose every connect, read and write gets at most the time left of the
current attempt (:class:`AttemptGuard`, set for the thread with :meth:`AttemptGuard.active`).
:meth:`AttemptGuard.abort` shuts a socket down only while one of that attempt's own operations
runs on it, and that operation then fails, so the connection is closed instead of pooled: an
abort never reaches a connection another call holds. A caller's own ``http_client`` is left
as it is (per-operation timeouts, a check between chunks; the caller is still released at the
deadline). The wrapper reaches into httpx's transport (``_pool._network_backend``); when that
is not there, :func:`install` says so and the other bounds hold.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["AttemptGuard", "install"]

logger = logging.getLogger(__name__)

_LOCAL = threading.local()


class AttemptGuard:
    """The time bound of one attempt and its abort switch (see the module docstring).

    A guard touches a connection only DURING one of its attempt's own network operations
    (:meth:`operating`): the socket it may shut down is the one a read or write of this
    attempt is blocked on right now. Between operations it holds nothing, so once the answer
    is read and httpx hands the connection back to the shared pool (which it does as soon as
    the body is exhausted, inside the iteration), no abort can reach it: a cancelled call
    never breaks a connection another call has taken."""

    __slots__ = ("_clock", "_lock", "_stream", "aborted", "ends_at")

    def __init__(self, ends_at: float, clock: Callable[[], float]) -> None:
        self.ends_at = ends_at
        self._clock = clock
        self._lock = threading.Lock()
        self._stream: Any = None
        self.aborted = False

    def left(self) -> float:
        """Seconds until the attempt's end (zero or less: spent)."""
        return self.ends_at - self._clock()

    @contextmanager
    def active(self) -> Iterator[AttemptGuard]:
        """Make this the current thread's attempt for the guarded streams."""
        previous = getattr(_LOCAL, "guard", None)
        _LOCAL.guard = self
        try:
            yield self
        finally:
            _LOCAL.guard = previous

    @contextmanager
    def operating(self, stream: Any, timeout: float | None, spent: type[Exception],
                  aborted: type[Exception]) -> Iterator[float | None]:  # fmt: skip
        """One network operation of this attempt on ``stream``: refused when aborted or out of
        time, its timeout cut to the time left, and ``stream`` abortable while it runs."""
        with self._lock:
            if self.aborted:
                raise aborted("the request was aborted (reranker closed or deadline)")
            left = self.left()
            if left <= 0:
                raise spent("the attempt's time budget is spent")
            self._stream = stream
        try:
            yield left if timeout is None else min(timeout, left)
        finally:
            with self._lock:
                self._stream = None
                touched = self.aborted
        if touched:  # aborted DURING the operation: its socket may be shut down although the
            # operation succeeded (data already buffered); fail, so httpcore closes the
            # connection instead of handing a dead one to the next request from the pool
            raise aborted("the request was aborted (reranker closed or deadline)")

    def abort(self) -> None:
        """Stop the attempt now (any thread): the operation in progress returns at once (its
        socket is shut down, under the lock that ends the operation), later ones fail."""
        with self._lock:
            self.aborted = True
            if self._stream is not None:
                _shutdown(self._stream)


def _shutdown(stream: Any) -> None:
    sock = stream.get_extra_info("socket")
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed or never connected: nothing to wake up
        return


def _current() -> AttemptGuard | None:
    guard: AttemptGuard | None = getattr(_LOCAL, "guard", None)
    return guard


@contextmanager
def _operation(stream: Any, timeout: float | None, spent: type[Exception],
               aborted: type[Exception]) -> Iterator[float | None]:  # fmt: skip
    """The current thread's attempt's :meth:`AttemptGuard.operating`, or the plain timeout
    when no attempt is current (a stream used outside the reranker's calls)."""
    guard = _current()
    if guard is None:
        yield timeout
        return
    with guard.operating(stream, timeout, spent, aborted) as left:
        yield left


class _GuardedStream:
    """An httpcore network stream whose operations respect the current attempt's guard."""

    __slots__ = ("_h", "_inner")

    def __init__(self, inner: Any, httpcore: Any) -> None:
        self._inner = inner
        self._h = httpcore

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _operation(self._inner, timeout, self._h.ReadTimeout, self._h.ReadError) as left:
            data: bytes = self._inner.read(max_bytes, left)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        with _operation(self._inner, timeout, self._h.WriteTimeout, self._h.WriteError) as left:
            self._inner.write(buffer, left)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> _GuardedStream:
        h = self._h
        with _operation(self._inner, timeout, h.ConnectTimeout, h.ConnectError) as left:
            inner = self._inner.start_tls(ssl_context, server_hostname, left)
        return _GuardedStream(inner, h)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _GuardedBackend:
    """An httpcore network backend whose connects and streams respect the current guard."""

    __slots__ = ("_httpcore", "_inner")

    def __init__(self, inner: Any, httpcore: Any) -> None:
        self._inner = inner
        self._httpcore = httpcore

    def _connect_timeout(self, timeout: float | None) -> float | None:
        guard = _current()
        if guard is None:
            return timeout
        if guard.aborted:
            raise self._httpcore.ConnectError("the request was aborted")
        left = guard.left()
        if left <= 0:
            raise self._httpcore.ConnectTimeout("the attempt's time budget is spent")
        return left if timeout is None else min(timeout, left)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> _GuardedStream:
        stream = self._inner.connect_tcp(
            host, port, self._connect_timeout(timeout), local_address, socket_options
        )
        return _GuardedStream(stream, self._httpcore)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> _GuardedStream:
        stream = self._inner.connect_unix_socket(
            path, self._connect_timeout(timeout), socket_options
        )
        return _GuardedStream(stream, self._httpcore)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def install(client: Any, httpcore: Any) -> bool:
    """Wrap the network backend of every transport of the reranker's own sync ``client``;
    False (and one DEBUG line) when this httpx keeps it elsewhere."""
    transports = [getattr(client, "_transport", None)]
    transports += list(getattr(client, "_mounts", {}).values())
    installed = True
    for transport in transports:
        if transport is None:
            continue
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if backend is None:
            installed = False
            continue
        if not isinstance(backend, _GuardedBackend):
            pool._network_backend = _GuardedBackend(backend, httpcore)  # type: ignore[union-attr]
    if not installed:
        logger.debug(
            "rerank: this httpx has no network backend to wrap; sync attempts are bounded by "
            "per-operation timeouts and the caller by the call's deadline"
        )
    return installed
