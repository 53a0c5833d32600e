"""The I/O of the remote backend: httpx clients, sending sub-requests (sync on a thread pool,
async under a semaphore), and the retry loop around the pure policy of
:mod:`~rerank_integrations.backends.remote.retry`.

What one attempt's outcome means (results, wait and retry, give up, or "too long, split") is
decided by :class:`_Attempts`, which both loops share; the loops only post, sleep and
schedule. httpx is imported by the reranker through
:func:`~rerank_integrations.extras.import_extra` and handed in, never at import time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import threading
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from rerank_integrations import __version__
from rerank_integrations.backends.remote.document_limits import is_document_too_long
from rerank_integrations.backends.remote.formats import (
    WireFormat,
    WireRequest,
    decode_json,
    error_message,
)
from rerank_integrations.backends.remote.retry import (
    RetryPolicy,
    backoff_delay,
    is_too_long,
    parse_retry_after,
    redact,
    request_id,
    should_retry,
)
from rerank_integrations.errors import (
    RemoteConnectionError,
    RemoteError,
    RemoteStatusError,
    RemoteTimeoutError,
)

if TYPE_CHECKING:
    import httpx

__all__ = ["Answers", "Splitter", "TooLong", "Transport"]

logger = logging.getLogger(__name__)

USER_AGENT = f"rerank-integrations/{__version__} (python-httpx)"

Scores = list[tuple[int, float]]
Answers = list[tuple[WireRequest, Scores]]
"""Each sent sub-request with its ``[(local index, score), ...]``."""

Splitter = Callable[[WireRequest, RemoteStatusError], Sequence[WireRequest]]
"""``(sub-request, its "too long" error) -> the parts to send instead``."""

Step = Scores | float | Exception
"""What to do after an attempt: return the scores, sleep that many seconds and retry, or
raise the exception."""


class TooLong(Exception):
    """Internal: the server said a multi-document sub-request is too big; split it."""

    def __init__(self, error: RemoteStatusError) -> None:
        super().__init__(str(error))
        self.error = error


class _Attempts:
    """The attempts of one sub-request: every decision of the retry loop, none of its I/O."""

    __slots__ = ("_transport", "attempt", "request")

    def __init__(self, transport: Transport, request: WireRequest) -> None:
        self._transport = transport
        self.request = request
        self.attempt = 0

    def answered(self, status: int, headers: Mapping[str, str], text: str) -> Step:
        """An HTTP answer. A malformed 2xx answer raises RemoteResponseError (never retried)."""
        t = self._transport
        if 200 <= status < 300:
            return t.format.parse_response(decode_json(text), self.request)
        message = redact(error_message(text), t.secret)
        error = RemoteStatusError(status, message, request_id(headers))
        if is_too_long(status, message) and (
            len(self.request.documents) > 1 or is_document_too_long(status, message)
        ):
            return TooLong(error)
        return self._next(error, status, parse_retry_after(headers, t.now()))

    def failed(self, exc: Exception) -> Step:
        """No answer: a timeout or connection error (retried) or another transport error."""
        t = self._transport
        httpx = t.httpx
        detail = redact(f"{type(exc).__name__}: {exc}", t.secret)
        error: RemoteError
        if isinstance(exc, httpx.TimeoutException):
            error = RemoteTimeoutError(
                f"request to {t.url} timed out ({detail}; timeout {t.timeout:g} s, "
                f"connect {t.connect_timeout:g} s)"
            )
        else:
            error = RemoteConnectionError(f"connection to {t.url} failed ({detail})")
        retryable = httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError
        if not isinstance(exc, retryable):
            return error
        return self._next(error, None, None)

    def _next(self, error: RemoteError, status: int | None, retry_after: float | None) -> Step:
        t = self._transport
        policy = t.policy
        if not should_retry(
            self.attempt, policy.max_retries, status=status, transport_error=status is None
        ):
            return error
        delay = backoff_delay(self.attempt, policy, retry_after=retry_after, random=t.random)
        self.attempt += 1
        logger.info(
            "rerank request to %s failed (%s); retry %d of %d in %.2f s",
            t.url,
            error,
            self.attempt,
            policy.max_retries,
            delay,
        )
        return delay


class Transport:
    """Sends sub-requests to one endpoint with pooled clients, bounded concurrency and retries.

    Owns the sync client and thread pool, and one async client per event loop, all created
    on first use; user clients are used as given and never closed.
    """

    def __init__(
        self,
        httpx_module: Any,
        fmt: WireFormat,
        *,
        model: str,
        url: str,
        api_key: str | None,
        timeout: float,
        connect_timeout: float,
        policy: RetryPolicy,
        max_concurrency: int,
        server_truncates: bool,
        http_client: httpx.Client | None,
        async_http_client: httpx.AsyncClient | None,
        sleep: Callable[[float], None],
        async_sleep: Callable[[float], Awaitable[None]],
        random: Callable[[], float],
        now: Callable[[], float],
    ) -> None:
        self.httpx = httpx_module
        self.format = fmt
        self.url = url
        self.secret = api_key
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.policy = policy
        self.random = random
        self.now = now
        self._model = model
        self._server_truncates = server_truncates
        self._max_concurrency = max_concurrency
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout_config = httpx_module.Timeout(timeout, connect=connect_timeout)
        self._user_client = http_client
        self._user_async_client = async_http_client
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._async_state: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[httpx.AsyncClient, asyncio.Semaphore]
        ] = weakref.WeakKeyDictionary()

    # ------------------------------------------------------------------ shared

    def _body(self, request: WireRequest) -> bytes:
        body = self.format.build_body(self._model, request, self._server_truncates)
        return json.dumps(body, ensure_ascii=False).encode("utf-8")

    def _client_options(self) -> dict[str, Any]:
        n = self._max_concurrency
        return {
            "timeout": self._timeout_config,
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
        if self.url[:8].lower() == "https://":
            return True
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED + check_hostname

    def close(self) -> None:
        """Close the sync client and thread pool created here; forget the async clients."""
        with self._lock:
            client, self._client = self._client, None
            executor, self._executor = self._executor, None
            self._async_state = weakref.WeakKeyDictionary()
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close this event loop's async client (unless it is the user's), then :meth:`close`."""
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._async_state.pop(loop, None)
        if state is not None and state[0] is not self._user_async_client:
            await state[0].aclose()
        self.close()

    # ------------------------------------------------------------------ sync

    def _sync_client(self) -> httpx.Client:
        if self._user_client is not None:
            return self._user_client
        with self._lock:
            if self._client is None:
                self._client = self.httpx.Client(**self._client_options())
            return self._client

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self._max_concurrency, thread_name_prefix="rerank-remote"
                )
            return self._executor

    def send_sync(self, request: WireRequest) -> Scores:
        """One sub-request with retries (blocking); raises :class:`TooLong` to ask for a split."""
        client = self._sync_client()
        content = self._body(request)
        attempts = _Attempts(self, request)
        while True:
            try:
                response = client.post(
                    self.url, content=content, headers=self._headers, timeout=self._timeout_config
                )
            except self.httpx.TransportError as exc:
                step = attempts.failed(exc)
            else:
                step = attempts.answered(response.status_code, response.headers, response.text)
            if isinstance(step, Exception):
                raise step
            if isinstance(step, list):
                return step
            self._sleep(step)

    def run_sync(self, requests: Sequence[WireRequest], split: Splitter) -> Answers:
        """Send every sub-request, at most ``max_concurrency`` at once; split "too long" ones."""
        todo = list(requests)
        if len(todo) == 1:  # the common case: no thread hop
            try:
                return [(todo[0], self.send_sync(todo[0]))]
            except TooLong as exc:
                todo = list(split(todo[0], exc.error))
        pool = self._pool()
        answers: Answers = []
        pending: dict[Future[Scores], WireRequest] = {
            pool.submit(self.send_sync, r): r for r in todo
        }
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    request = pending.pop(future)
                    try:
                        answers.append((request, future.result()))
                    except TooLong as exc:
                        for part in split(request, exc.error):
                            pending[pool.submit(self.send_sync, part)] = part
        finally:
            for future in pending:
                future.cancel()
        return answers

    # ------------------------------------------------------------------ async

    async def _async_resources(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        """This event loop's client and semaphore (an AsyncClient is bound to one loop).

        A new client is built in a worker thread: loading the CA bundle takes ~0.1 s and must
        not block the event loop.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._async_state.get(loop)
        if state is not None:
            return state
        created: httpx.AsyncClient | None = None
        if self._user_async_client is None:
            created = await asyncio.to_thread(
                lambda: self.httpx.AsyncClient(**self._client_options())
            )
        client = created if created is not None else self._user_async_client
        assert client is not None
        with self._lock:
            existing = self._async_state.get(loop)
            if existing is None:
                state = (client, asyncio.Semaphore(self._max_concurrency))
                self._async_state[loop] = state
                return state
        if created is not None:  # another call on this loop won the race
            await created.aclose()
        return existing

    async def send_async(
        self, client: httpx.AsyncClient, semaphore: asyncio.Semaphore, request: WireRequest
    ) -> Scores:
        """One sub-request with retries; the semaphore is held only while a request is in
        flight (not while waiting to retry). Raises :class:`TooLong` to ask for a split."""
        content = self._body(request)
        attempts = _Attempts(self, request)
        while True:
            try:
                async with semaphore:
                    response = await client.post(
                        self.url,
                        content=content,
                        headers=self._headers,
                        timeout=self._timeout_config,
                    )
            except self.httpx.TransportError as exc:
                step = attempts.failed(exc)
            else:
                step = attempts.answered(response.status_code, response.headers, response.text)
            if isinstance(step, Exception):
                raise step
            if isinstance(step, list):
                return step
            await self._async_sleep(step)

    async def run_async(self, requests: Sequence[WireRequest], split: Splitter) -> Answers:
        """Send every sub-request concurrently under the loop's semaphore; split "too long"
        ones; on any failure cancel the rest."""
        client, semaphore = await self._async_resources()

        async def one(request: WireRequest) -> Answers:
            try:
                return [(request, await self.send_async(client, semaphore, request))]
            except TooLong as exc:
                parts = await asyncio.gather(*(one(p) for p in split(request, exc.error)))
                return [answer for part in parts for answer in part]

        tasks = [asyncio.ensure_future(one(r)) for r in requests]
        try:
            parts = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return [answer for part in parts for answer in part]
