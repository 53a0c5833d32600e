"""A hard time bound for each sync attempt, and a way to abort it from another thread.

httpx's timeouts are per network operation: a server that sends a byte every half second
never trips a 1 s read timeout, so a sync request could last as long as the server trickles.
The reranker's own sync clients therefore get a network backend wrapper
(:func:`install`) whose streams give every connect, read and write of an attempt at most the
time left until the attempt's end (:class:`AttemptGuard`, set for the current thread with
:meth:`AttemptGuard.active`), and whose socket :meth:`AttemptGuard.abort` shuts down while
an operation of that attempt runs on it, so a read blocked in another thread returns at once
(``close()`` or the call's deadline) and no other call's connection is ever touched.

A caller's own ``http_client`` is left as it is: its attempts are bounded by httpx's
per-operation timeouts (each at most the attempt's budget) and a check between the body's
chunks, and the CALLER is still released at the deadline (the request runs on a worker).
The wrapper reaches into httpx's transport (``_pool._network_backend``); when that is not
there (another httpx version) :func:`install` says so and the bounds above still hold.
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


class _GuardedStream:
    """An httpcore network stream whose operations respect the current attempt's guard."""

    __slots__ = ("_httpcore", "_inner")

    def __init__(self, inner: Any, httpcore: Any) -> None:
        self._inner = inner
        self._httpcore = httpcore

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        guard = _current()
        if guard is None:
            data: bytes = self._inner.read(max_bytes, timeout)
            return data
        h = self._httpcore
        with guard.operating(self._inner, timeout, h.ReadTimeout, h.ReadError) as left:
            data = self._inner.read(max_bytes, left)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        guard = _current()
        if guard is None:
            self._inner.write(buffer, timeout)
            return
        h = self._httpcore
        with guard.operating(self._inner, timeout, h.WriteTimeout, h.WriteError) as left:
            self._inner.write(buffer, left)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> _GuardedStream:
        guard = _current()
        if guard is None:
            inner = self._inner.start_tls(ssl_context, server_hostname, timeout)
        else:
            h = self._httpcore
            with guard.operating(self._inner, timeout, h.ConnectTimeout, h.ConnectError) as left:
                inner = self._inner.start_tls(ssl_context, server_hostname, left)
        return _GuardedStream(inner, self._httpcore)

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
