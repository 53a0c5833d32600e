"""The remote backend's HTTP resources and their lifetimes: the sync client and thread pool,
one async client per event loop, the calls in flight, ``close()``, and the reset after fork.

Sending lives in :mod:`~rerank_integrations.backends.remote.sync_io` (sub-requests on the
thread pool) and :mod:`~rerank_integrations.backends.remote.async_io` (tasks under the
loop's semaphore); both decide through
:class:`~rerank_integrations.backends.remote.attempts.Attempts` and bound themselves with
:mod:`~rerank_integrations.backends.remote.budgets`. httpx is imported by the reranker
through :func:`~rerank_integrations.extras.import_extra` and handed in, never at import time.

Lifetimes (see :mod:`~rerank_integrations.backends.remote.lifecycle`):

- every call registers a :class:`~rerank_integrations.backends.remote.lifecycle.CallToken`;
  ``close()`` cancels all of them (their callers raise RerankerClosedError at once, queued
  sub-requests never start, requests in flight are aborted, retry waits end), then closes
  the clients. The transport stays usable: clients are re-created on demand;
- an event loop's async client is closed when that loop shuts down (``asyncio.run()``), so
  one ``asyncio.run()`` per call leaks nothing;
- in a forked child all of it is dropped (never used, never closed) and re-created on use.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import logging
import os
import ssl
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple

from rerank_integrations import __version__
from rerank_integrations.backends.remote import async_io, netguard, sync_io
from rerank_integrations.backends.remote.attempts import Context, Scores
from rerank_integrations.backends.remote.budgets import attempt_timeouts
from rerank_integrations.backends.remote.credentials import Endpoint
from rerank_integrations.backends.remote.formats import WireFormat, WireRequest
from rerank_integrations.backends.remote.lifecycle import (
    CLOSED,
    DONE,
    CallToken,
    LoopCloser,
    loop_guard,
)
from rerank_integrations.backends.remote.redaction import Redactor
from rerank_integrations.backends.remote.retry import RetryPolicy
from rerank_integrations.errors import RemoteStatusError
from rerank_integrations.forking import keep_in_child, reset_after_fork

if TYPE_CHECKING:
    import httpx

__all__ = ["Answers", "LoopState", "Splitter", "Transport"]

logger = logging.getLogger(__name__)

USER_AGENT = f"rerank-integrations/{__version__} (python-httpx)"

Answers = list[tuple[WireRequest, Scores]]
"""Each sent sub-request with its ``[(local index, score), ...]``."""

Splitter = Callable[[WireRequest, RemoteStatusError], Sequence[WireRequest]]
"""``(sub-request, its "too long" error) -> the parts to send instead``."""


class LoopState(NamedTuple):
    """One event loop's async client (``state[0]``), semaphore, closer and guard."""

    client: Any
    semaphore: asyncio.Semaphore
    closer: LoopCloser
    guard: AsyncGenerator[None, None]


def _forget(ref: weakref.ref[Transport], loop: asyncio.AbstractEventLoop, closer: object) -> None:
    transport = ref()
    if transport is not None:
        transport.forget_loop(loop, closer)


def _release_dead_client(client: Any) -> None:
    """Free the sockets of our async client whose event loop was closed without shutting
    down: nothing can run ``aclose()`` on a closed loop, and the sockets would otherwise wait
    in reference cycles for the garbage collector. Closing the socket objects (never raw fd
    numbers) is safe: whatever still holds them later finds them closed. This reaches into
    httpcore's connection pool; when that is not there, one full collection does the job."""
    try:
        connections = list(client._transport._pool.connections)
        sockets = [
            c._connection._network_stream.get_extra_info("socket")._sock
            for c in connections
            if getattr(c, "_connection", None) is not None
        ]
    except AttributeError:
        logger.debug("rerank: cannot reach a dead loop's sockets; collecting garbage instead")
        gc.collect()
        return
    for sock in sockets:
        sock.close()


class Transport:
    """Sends sub-requests to one endpoint with pooled clients, bounded concurrency, retries
    and one deadline per call. User clients are used as given and never closed."""

    def __init__(
        self,
        httpx_module: Any,
        fmt: WireFormat,
        *,
        model: str,
        endpoint: Endpoint,
        timeout: float,
        connect_timeout: float,
        deadline: float,
        policy: RetryPolicy,
        max_concurrency: int,
        max_response_bytes: int,
        server_truncates: bool,
        http_client: httpx.Client | None,
        async_http_client: httpx.AsyncClient | None,
        sleep: Callable[[float], None] | None,
        async_sleep: Callable[[float], Awaitable[None]],
        random: Callable[[], float],
        now: Callable[[], float],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.httpx = httpx_module
        self.format = fmt
        self.url = endpoint.url
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.deadline = deadline
        self.max_response_bytes = max_response_bytes
        self.clock = clock
        self.context = Context(
            format=fmt,
            display_url=endpoint.display_url,
            redactor=Redactor(endpoint.secrets),
            policy=policy,
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_response_bytes=max_response_bytes,
            random=random,
            now=now,
            httpx=httpx_module,
        )
        self._model = model
        self._server_truncates = server_truncates
        self._max_concurrency = max_concurrency
        self._sleep = sleep
        self.async_sleep = async_sleep
        self.headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        if endpoint.api_key:
            self.headers["Authorization"] = f"Bearer {endpoint.api_key}"
        self.send_options: dict[str, Any] = {}
        if endpoint.auth is not None:  # URL credentials: basic auth, as httpx would send them
            self.send_options["auth"] = httpx_module.BasicAuth(*endpoint.auth)
        self._user_client = http_client
        self._user_async_client = async_http_client
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._async_state: dict[asyncio.AbstractEventLoop, LoopState] = {}
        self._active: set[CallToken] = set()
        self._closing: set[asyncio.Future[None]] = set()
        self._pid = os.getpid()
        reset_after_fork(self)

    # ------------------------------------------------------------------ shared

    def body(self, request: WireRequest) -> bytes:
        body = self.format.build_body(self._model, request, self._server_truncates)
        return json.dumps(body, ensure_ascii=False).encode("utf-8")

    def timeouts(self, budget: float) -> httpx.Timeout:
        """httpx timeouts for an attempt of ``budget`` seconds (none longer than it)."""
        timeout: httpx.Timeout = self.httpx.Timeout(
            **attempt_timeouts(budget, self.connect_timeout)
        )
        return timeout

    def _client_options(self) -> dict[str, Any]:
        n = self._max_concurrency
        return {
            "timeout": self.timeouts(self.timeout),
            "limits": self.httpx.Limits(max_connections=n, max_keepalive_connections=n),
            "verify": self._verify(),
        }

    def _verify(self) -> ssl.SSLContext | bool:
        """TLS verification for our own clients.

        https: httpx's default (verify against its CA bundle). Plain http never negotiates
        TLS, so loading the CA bundle (~0.1 s per client) is skipped: the context given
        instead verifies certificates and host names but trusts no CA, so any TLS it might
        meet (e.g. an https proxy from the environment) fails closed, never open.
        """
        if self._https:
            return True
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED + check_hostname

    @property
    def _https(self) -> bool:
        return self.url[:8].lower() == "https://"

    def begin(self) -> CallToken:
        """Register a new call (with its deadline) so that ``close()`` can reach it."""
        token = CallToken(self.deadline, self.clock)
        with self._lock:
            self._check_fork()
            self._active.add(token)
        return token

    def end(self, token: CallToken) -> None:
        """The call is over: sub-requests still running stop, and it is forgotten."""
        token.cancel(DONE)
        with self._lock:
            self._active.discard(token)

    def sleep(self, seconds: float, token: CallToken) -> bool:
        """A sync retry wait that ``close()`` and the deadline interrupt; False if they did."""
        if self._sleep is None:
            return token.wait(seconds)
        self._sleep(seconds)  # the test hook
        return not token.cancelled

    # ------------------------------------------------------------------ close and fork

    def close(self) -> None:
        """Stop every call in flight (RerankerClosedError), then close the sync client and
        thread pool created here and the async clients of every event loop."""
        with self._lock:
            tokens = list(self._active)
            client, self._client = self._client, None
            executor, self._executor = self._executor, None
            states, self._async_state = self._async_state, {}
        for token in tokens:
            token.cancel(CLOSED)
        if executor is not None:  # running workers were just aborted: do not wait for them
            executor.shutdown(wait=False, cancel_futures=True)
        if client is not None:
            client.close()
        for loop, state in states.items():
            self._close_soon(loop, state)

    async def aclose(self) -> None:
        """:meth:`close`, and wait until this event loop's async client is closed."""
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._async_state.pop(loop, None)
        self.close()
        if state is not None:
            await state.closer.aclose()

    def _close_soon(self, loop: asyncio.AbstractEventLoop, state: LoopState) -> None:
        """Close a loop's client on that loop: now (as a task) when it is this thread's
        running loop, thread-safely when it runs elsewhere. A loop that does not run closes it
        when it shuts down (its guard); a closed loop cannot, and its sockets go with it."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is running:
            task = loop.create_task(state.closer.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        elif loop.is_running():
            asyncio.run_coroutine_threadsafe(state.closer.aclose(), loop)

    def forget_loop(self, loop: asyncio.AbstractEventLoop, closer: object) -> None:
        """Drop ``loop``'s state (its guard ran: the loop is shutting down)."""
        with self._lock:
            state = self._async_state.get(loop)
            if state is not None and state.closer is closer:
                del self._async_state[loop]

    def _check_fork(self) -> None:
        """Belt and braces for ``os.register_at_fork``: a pid change resets too. Lock held."""
        if self._pid != os.getpid():
            self._reset_for_child()

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()  # the parent's may have been held by another thread
        self._reset_for_child()

    def _reset_for_child(self) -> None:
        """Drop the parent's clients, pool and calls without touching them: the pool's threads
        do not exist here and the connections are the parent's. Parent event loops' state is
        kept alive (never finalised here); the dropped sync client's sockets are closed by the
        garbage collector in this process only."""
        keep_in_child(self._async_state)
        self._client = None
        self._executor = None
        self._async_state = {}
        self._active = set()
        self._closing = set()
        self._pid = os.getpid()

    # ------------------------------------------------------------------ resources

    def sync_client(self) -> httpx.Client:
        if self._user_client is not None:
            return self._user_client
        with self._lock:
            self._check_fork()
            if self._client is None:
                client = self.httpx.Client(**self._client_options())
                import httpcore  # a dependency of httpx, only needed with it

                netguard.install(client, httpcore)
                self._client = client
            return self._client

    def pool(self) -> ThreadPoolExecutor:
        with self._lock:
            self._check_fork()
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self._max_concurrency, thread_name_prefix="rerank-remote"
                )
            return self._executor

    async def loop_state(self) -> LoopState:
        """This event loop's client and semaphore (an AsyncClient is bound to one loop).

        A new https client is built in a worker thread: loading the CA bundle takes ~0.1 s
        and must not block the event loop. States of loops closed without shutting down
        (``loop.close()`` without ``shutdown_asyncgens()``) are dropped here, and collected.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            self._check_fork()
            state = self._async_state.get(loop)
        if state is not None:
            return state
        owned = self._user_async_client is None
        if not owned:
            client: Any = self._user_async_client
        elif self._https:
            client = await asyncio.to_thread(
                lambda: self.httpx.AsyncClient(**self._client_options())
            )
        else:
            client = self.httpx.AsyncClient(**self._client_options())
        closer = LoopCloser(client, owned)
        forget = functools.partial(_forget, weakref.ref(self), loop, closer)
        semaphore = asyncio.Semaphore(self._max_concurrency)
        new = LoopState(client, semaphore, closer, loop_guard(closer, forget))
        with self._lock:
            existing = self._async_state.get(loop)
            dead = [state for other, state in self._async_state.items() if other.is_closed()]
            if existing is None:
                for other in [other for other in self._async_state if other.is_closed()]:
                    del self._async_state[other]
                self._async_state[loop] = new
        if existing is None:
            for state in dead:
                if state.closer.owned:
                    _release_dead_client(state.client)
        if existing is not None:  # another call on this loop won the race
            await closer.aclose()
            return existing
        await new.guard.__anext__()  # started on this loop: it closes the client at its end
        return new

    # ------------------------------------------------------------------ sending

    def run_sync(self, requests: Sequence[WireRequest], split: Splitter) -> Answers:
        """Send every sub-request (blocking), at most ``max_concurrency`` at once; split
        "too long" ones; bounded by the call's deadline and ``close()``."""
        return sync_io.run(self, requests, split)

    async def run_async(self, requests: Sequence[WireRequest], split: Splitter) -> Answers:
        """:meth:`run_sync` for an event loop."""
        return await async_io.run(self, requests, split)
