"""The HTTP resources one remote reranker's calls SHARE: the sync client and its thread pool,
one async client per event loop, and the registry of calls in flight.

Calls borrow these and never close them. ``close()`` is final: it cancels every call in flight
(RerankerClosedError), closes what was created here (never a user's client), and later calls
are refused. A loop's async client is closed when that loop shuts down; in a forked child
everything is dropped untouched and re-created on use. docs/reliability.md "Who owns what",
"What close() does", "Event loops" and "After os.fork()" state the rules.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import random as random_module
import ssl
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

from rerank_integrations import tracing
from rerank_integrations.backends.remote import netguard
from rerank_integrations.backends.remote.budgets import attempt_timeouts
from rerank_integrations.backends.remote.call import CLOSED, DONE, Call
from rerank_integrations.backends.remote.outcomes import Context
from rerank_integrations.backends.remote.settings import Settings
from rerank_integrations.errors import RerankerClosedError
from rerank_integrations.forking import keep_in_child, reset_after_fork

__all__ = ["Clients", "LoopState"]

logger = logging.getLogger(__name__)


class LoopState(NamedTuple):
    """One event loop's async client (``state[0]``), semaphore, closer and guard."""

    client: Any
    semaphore: asyncio.Semaphore
    closer: _LoopCloser
    guard: AsyncGenerator[None, None]


class _LoopCloser:
    """Closes one event loop's async client once (ours only, never a user's)."""

    __slots__ = ("client", "closed", "owned")

    def __init__(self, client: Any, owned: bool) -> None:
        self.client = client
        self.owned = owned
        self.closed = False

    async def aclose(self) -> None:
        if self.closed or not self.owned:
            return
        try:
            await self.client.aclose()
        except Exception:  # closing is best effort; say so rather than hide it
            logger.warning("rerank: closing an async HTTP client failed", exc_info=True)
        self.closed = True


async def _loop_guard(closer: _LoopCloser, forget: Callable[[], None]) -> AsyncGenerator[None]:
    """Started on a loop and kept with its state: when the loop finalises its async
    generators, the state is forgotten and the client closed, on that loop."""
    try:
        yield
    finally:
        forget()
        await closer.aclose()


def _forget(ref: weakref.ref[Clients], loop: asyncio.AbstractEventLoop, closer: object) -> None:
    clients = ref()
    if clients is not None:
        clients.forget_loop(loop, closer)


def _release_dead_client(client: Any) -> None:
    """Free the sockets of our async client whose loop was closed without shutting down
    (nothing can await its ``aclose()`` any more). Reaches into httpcore's pool; when that is
    not there, one garbage collection does the job."""
    try:
        sockets = [
            c._connection._network_stream.get_extra_info("socket")._sock
            for c in list(client._transport._pool.connections)
            if getattr(c, "_connection", None) is not None
        ]
    except AttributeError:
        gc.collect()
        return
    for sock in sockets:
        sock.close()


class Clients:
    """The shared HTTP resources of one reranker (see the module docstring)."""

    def __init__(self, settings: Settings, httpx_module: Any) -> None:
        hooks = settings.hooks
        self.settings = settings
        self.httpx = httpx_module
        self.clock: Callable[[], float] = time.monotonic
        self.context = Context(
            settings=settings,
            redactor=settings.redactor,
            random=hooks.random or random_module.Random().random,  # private: nothing global
            now=hooks.now or time.time,
            httpx=httpx_module,
        )
        self.headers = settings.headers
        self._sleep = hooks.sleep
        self.async_sleep = hooks.async_sleep or asyncio.sleep
        self._lock = threading.Lock()
        self._closed = False
        self._client: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._async_state: dict[asyncio.AbstractEventLoop, LoopState] = {}
        self._calls: set[Call] = set()
        self._closing: set[asyncio.Future[None]] = set()
        self._pid = os.getpid()
        reset_after_fork(self)

    @property
    def closed(self) -> bool:
        return self._closed

    def timeouts(self, budget: float) -> Any:
        """httpx timeouts for an attempt of ``budget`` seconds (none longer than it)."""
        return self.httpx.Timeout(**attempt_timeouts(budget, self.settings.connect_timeout))

    def _client_options(self) -> dict[str, Any]:
        n = self.settings.max_concurrency
        https = self.settings.endpoint.url[:8].lower() == "https://"
        return {
            "timeout": self.timeouts(self.settings.timeout),
            "limits": self.httpx.Limits(max_connections=n, max_keepalive_connections=n),
            # plain http never negotiates TLS: skip loading the CA bundle (~0.1 s per client);
            # this context trusts no CA, so any TLS it might meet fails closed, never open
            "verify": True if https else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT),
        }

    def _refuse_if_closed(self) -> None:
        """Lock held. ``close()`` is final; a pid change (fork without the hook) resets."""
        if self._closed:
            raise RerankerClosedError(
                f"this RemoteReranker ({self.settings.endpoint.display_url}) is closed"
            )
        if self._pid != os.getpid():
            self._reset_for_child()

    # ------------------------------------------------------------------ calls

    def begin(self) -> Call:
        """A new call with its own deadline, registered so that ``close()`` can reach it."""
        call = Call(self.settings.deadline, self.clock, self.settings.endpoint.display_url)
        with self._lock:
            self._refuse_if_closed()
            self._calls.add(call)
        return call

    def end(self, call: Call) -> None:
        """The call is over: its sub-requests still running stop, it is forgotten, and what it
        did goes on the trace span (sync and async alike)."""
        call.cancel(DONE)
        with self._lock:
            self._calls.discard(call)
        if tracing.ENABLED:
            tracing.add_attributes(call.facts())

    def sleep(self, seconds: float, call: Call) -> bool:
        """A sync retry wait that ``close()`` and the deadline interrupt; False if they did."""
        if self._sleep is None:
            return call.wait(seconds)
        self._sleep(seconds)  # the test hook
        return not call.cancelled

    # ------------------------------------------------------------------ resources

    def sync_client(self) -> Any:
        if self.settings.http_client is not None:
            return self.settings.http_client
        with self._lock:
            self._refuse_if_closed()
            if self._client is None:
                import httpcore  # a dependency of httpx, only needed with it

                client = self.httpx.Client(**self._client_options())
                netguard.install(client, httpcore)
                self._client = client
            return self._client

    def pool(self) -> ThreadPoolExecutor:
        with self._lock:
            self._refuse_if_closed()
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    self.settings.max_concurrency, thread_name_prefix="rerank-remote"
                )
            return self._executor

    async def loop_state(self) -> LoopState:
        """This event loop's client and semaphore (an AsyncClient is bound to one loop). A new
        https client is built in a worker thread (loading the CA bundle must not block the
        loop); states of loops closed without shutting down are dropped here."""
        loop = asyncio.get_running_loop()
        with self._lock:
            self._refuse_if_closed()
            state = self._async_state.get(loop)
        if state is not None:
            return state
        owned = self.settings.async_http_client is None
        if not owned:
            client: Any = self.settings.async_http_client
        elif self.settings.endpoint.url[:8].lower() == "https://":
            client = await asyncio.to_thread(self.httpx.AsyncClient, **self._client_options())
        else:
            client = self.httpx.AsyncClient(**self._client_options())
        closer = _LoopCloser(client, owned)
        forget = functools.partial(_forget, weakref.ref(self), loop, closer)
        state = LoopState(
            client,
            asyncio.Semaphore(self.settings.max_concurrency),
            closer,
            _loop_guard(closer, forget),
        )
        with self._lock:
            existing = None if self._closed else self._async_state.get(loop)
            dead = [s for other, s in self._async_state.items() if other.is_closed()]
            if existing is None and not self._closed:
                for other in [other for other in self._async_state if other.is_closed()]:
                    del self._async_state[other]
                self._async_state[loop] = state
            closed = self._closed
        if existing is not None or closed:  # another call on this loop won, or close() ran
            await closer.aclose()
            if closed:
                raise RerankerClosedError("this RemoteReranker is closed")
            assert existing is not None
            return existing
        for old in dead:
            if old.closer.owned:
                _release_dead_client(old.client)
        await state.guard.__anext__()  # started on this loop: it closes the client at its end
        return state

    # ------------------------------------------------------------------ close and fork

    def close(self) -> None:
        """Final: cancel every call in flight (RerankerClosedError), then close the sync
        client and pool created here and the async client of every event loop."""
        with self._lock:
            self._closed = True
            calls, self._calls = list(self._calls), set()
            client, self._client = self._client, None
            executor, self._executor = self._executor, None
            states, self._async_state = self._async_state, {}
        for call in calls:
            call.cancel(CLOSED)
        if executor is not None:  # running workers were just aborted: do not wait for them
            executor.shutdown(wait=False, cancel_futures=True)
        if client is not None:
            client.close()
        for loop, state in states.items():
            self._close_soon(loop, state)

    async def aclose(self) -> None:
        """:meth:`close`, and wait until this event loop's async client is closed."""
        with self._lock:
            state = self._async_state.pop(asyncio.get_running_loop(), None)
        self.close()
        if state is not None:
            await state.closer.aclose()

    def _close_soon(self, loop: asyncio.AbstractEventLoop, state: LoopState) -> None:
        """Close a loop's client on that loop: as a task when it is this thread's running
        loop, thread-safely when it runs elsewhere; a loop that does not run closes it when
        it shuts down (its guard)."""
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

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()  # the parent's may have been held by another thread
        self._reset_for_child()

    def _reset_for_child(self) -> None:
        """Drop the parent's clients, pool and calls without touching them (the pool's
        threads do not exist here, the connections are the parent's); parent loops' state is
        kept alive, never finalised here. A closed reranker stays closed."""
        keep_in_child(self._async_state)
        self._client = None
        self._executor = None
        self._async_state = {}
        self._calls = set()
        self._closing = set()
        self._pid = os.getpid()
