"""``RemoteReranker``: rerank through an HTTP rerank API (Contextual AI, Jina-style routers,
vLLM / Infinity, Cohere v2, Hugging Face TEI).

The decisions live in pure modules shared by the sync and async paths:
:mod:`~rerank_integrations.backends.remote_formats` (wire formats),
:mod:`~rerank_integrations.backends.remote_limits` (token estimate, truncation, splitting,
merging) and :mod:`~rerank_integrations.backends.remote_policy` (retries, backoff,
fail-open). This module is the thin I/O around them: httpx clients, a thread pool (sync) or
a semaphore (async) bounding the requests in flight, and sleeping between retries.

httpx is imported lazily (``pip install "rerank-integrations[remote]"``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random as _random_module
import ssl
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from rerank_integrations.backends.remote_formats import (
    WireFormat,
    WireRequest,
    fold_instruction,
    fold_metadata,
    get_format,
)
from rerank_integrations.backends.remote_formats import decode_json as _decode_json
from rerank_integrations.backends.remote_formats import error_message as _error_message
from rerank_integrations.backends.remote_limits import (
    Limits,
    Plan,
    merge_results,
    plan_requests,
    split_in_half,
    split_to_limit,
)
from rerank_integrations.backends.remote_policy import (
    RetryPolicy,
    backoff_delay,
    is_too_long,
    parse_retry_after,
    parse_stated_limit,
    passthrough_results,
    redact,
    request_id,
    should_retry,
)
from rerank_integrations.base import Reranker
from rerank_integrations.errors import (
    RemoteConnectionError,
    RemoteError,
    RemoteStatusError,
    RemoteTimeoutError,
    RerankInputError,
    RerankTypeError,
    UnsupportedFeatureError,
)
from rerank_integrations.extras import import_extra
from rerank_integrations.results import RerankResult
from rerank_integrations.validation import RerankRequest

if TYPE_CHECKING:
    import httpx

__all__ = ["DEFAULT_MAX_CONCURRENCY", "DEFAULT_MODEL", "RemoteReranker"]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "ctxl-rerank-v2-instruct-multilingual"
DEFAULT_MAX_CONCURRENCY = 32
"""Sub-requests in flight at once per reranker: 2,000 documents at 100 per request (20
sub-requests) finish in one round trip."""

_ON_ERROR = ("raise", "passthrough")
_ON_OVERSIZE = ("truncate", "error")
_USER_AGENT = "rerank-integrations/0.1 (python-httpx)"


class _TooLong(Exception):
    """Internal: the server said a multi-document sub-request is too big; split it."""

    def __init__(self, error: RemoteStatusError) -> None:
        super().__init__(str(error))
        self.error = error


def _positive_number(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RerankTypeError(field, f"must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise RerankInputError(field, f"must be a finite number > 0, got {value}")
    return float(value)


def _int_at_least(field: str, value: object, minimum: int, *, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "an int or None" if optional else "an int"
        raise RerankTypeError(field, f"must be {kind}, got {type(value).__name__}")
    if value < minimum:
        raise RerankInputError(field, f"must be >= {minimum}, got {value}")
    return value


def _lower(configured: int | None, learned: int | None) -> int | None:
    """The smaller of two optional limits (``None`` = unlimited)."""
    if configured is None:
        return learned
    return configured if learned is None else min(configured, learned)


def _choice(field: str, value: object, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise RerankInputError(field, f"must be one of {list(choices)}, got {value!r}")
    return value


class RemoteReranker(Reranker):
    """Rerank with a hosted or self-hosted rerank API.

    >>> reranker = RemoteReranker()  # Contextual AI, key from CONTEXTUAL_API_KEY
    >>> reranker = RemoteReranker("BAAI/bge-reranker-v2-m3", api_format="vllm",
    ...                           base_url="http://localhost:8000/v1")

    Args:
        model: the API's model name (``ctxl-rerank-v2-instruct-multilingual`` by default).
        api_format: ``"contextual"`` (default), ``"jina"`` (Jina API and any Jina-style
            ``/rerank``: OpenAI-compatible routers, Infinity), ``"vllm"`` (the same body, no
            default host, no key), ``"cohere"`` (v2) or ``"tei"``.
        base_url: the API root the format's path (``/rerank``) is appended to; ``None`` uses
            the format's public host (``vllm`` and ``tei`` have none and need one).
        api_key: a bearer key. ``None`` reads the format's environment variable
            (``CONTEXTUAL_API_KEY``, ``JINA_API_KEY``, ``COHERE_API_KEY``/``CO_API_KEY``) when
            ``base_url`` is the public host; a custom ``base_url`` never requires a key and
            never receives one from the environment unless ``api_key_env`` names the variable.
            The key is never logged, shown in ``repr``, put in an exception or ``to_config()``.
        api_key_env: the name of an environment variable to read the key from (serialised by
            ``to_config()``, so a rebuilt reranker finds its key again).
        timeout: seconds for reading/writing one HTTP answer (default 60).
        connect_timeout: seconds to establish a connection (default 5).
        max_retries: retries per HTTP request after the first attempt (default 2).
        max_concurrency: sub-requests in flight at once, per reranker (default 32).
        max_documents_per_request / max_tokens_per_request / max_tokens_per_document: split
            and truncate under these limits (estimated tokens, see ``remote_limits``);
            ``None`` uses the format's published limits (Contextual: 400,000 tokens per
            request and 8,000 per query+instruction+document+metadata; TEI: 32 documents).
        on_error: ``"raise"`` (default) or ``"passthrough"``: when the service fails (after
            retries), return every document in its original order with placeholder scores
            (``relevance_score`` 0.0, ``raw_score`` -inf) and log one warning.
        on_oversize: ``"truncate"`` (default: cut a too-long document, one warning per call)
            or ``"error"`` (raise RerankInputError before any request).
        fold_unsupported: for a format without an instruction/metadata field, append the
            instruction to the query and prepend the metadata to each document instead of
            raising UnsupportedFeatureError.
        http_client / async_http_client: your own ``httpx.Client`` / ``httpx.AsyncClient``
            (proxies, TLS, mounts). They are used as given and NOT closed by ``close()``;
            the reranker's ``timeout`` is still applied per request.

    Test hooks (not serialised): ``_sleep``, ``_async_sleep``, ``_random``, ``_now``.
    """

    backend_name = "remote"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        api_format: str = "contextual",
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_env: str | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        max_retries: int = 2,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        max_documents_per_request: int | None = None,
        max_tokens_per_request: int | None = None,
        max_tokens_per_document: int | None = None,
        on_error: str = "raise",
        on_oversize: str = "truncate",
        fold_unsupported: bool = False,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        _sleep: Callable[[float], None] | None = None,
        _async_sleep: Callable[[float], Awaitable[None]] | None = None,
        _random: Callable[[], float] | None = None,
        _now: Callable[[], float] | None = None,
    ) -> None:
        self._httpx: Any = import_extra("httpx", extra="remote", feature="RemoteReranker")
        if not isinstance(model, str) or not model.strip():
            raise RerankInputError("model", f"must be a non-empty str, got {model!r}")
        self._model = model
        self._format: WireFormat = get_format(api_format)
        if base_url is not None and (not isinstance(base_url, str) or not base_url.strip()):
            raise RerankInputError("base_url", f"must be a non-empty str or None, got {base_url!r}")
        if api_key_env is not None and (not isinstance(api_key_env, str) or not api_key_env):
            raise RerankInputError("api_key_env", "must be a non-empty str or None")
        if api_key is not None and (not isinstance(api_key, str) or not api_key.strip()):
            raise RerankInputError("api_key", "must be a non-empty str or None")
        self._base_url_arg = base_url
        self._api_key_env = api_key_env
        self._timeout = _positive_number("timeout", timeout)
        self._connect_timeout = _positive_number("connect_timeout", connect_timeout)
        self._policy = RetryPolicy(max_retries=_int_at_least("max_retries", max_retries, 0))
        self._max_concurrency: int = _int_at_least("max_concurrency", max_concurrency, 1)
        self._limit_args = (
            _int_at_least("max_documents_per_request", max_documents_per_request, 1, optional=True),
            _int_at_least("max_tokens_per_request", max_tokens_per_request, 1, optional=True),
            _int_at_least("max_tokens_per_document", max_tokens_per_document, 1, optional=True),
        )
        fmt = self._format
        self._limits = Limits(
            max_documents_per_request=(
                fmt.max_documents_per_request
                if max_documents_per_request is None
                else max_documents_per_request
            ),
            max_tokens_per_request=(
                fmt.max_tokens_per_request
                if max_tokens_per_request is None
                else max_tokens_per_request
            ),
            max_tokens_per_document=(
                fmt.max_tokens_per_document
                if max_tokens_per_document is None
                else max_tokens_per_document
            ),
        )
        # Limits the server stated in "too many / too long" answers (only ever lower than the
        # configured ones); guarded by self._lock, per instance.
        self._learned_documents: int | None = None
        self._learned_tokens: int | None = None
        self._on_error = _choice("on_error", on_error, _ON_ERROR)
        self._on_oversize = _choice("on_oversize", on_oversize, _ON_OVERSIZE)
        if not isinstance(fold_unsupported, bool):
            raise RerankTypeError("fold_unsupported", "must be a bool")
        self._fold = fold_unsupported
        if http_client is not None and not isinstance(http_client, self._httpx.Client):
            raise RerankTypeError("http_client", "must be an httpx.Client or None")
        if async_http_client is not None and not isinstance(
            async_http_client, self._httpx.AsyncClient
        ):
            raise RerankTypeError("async_http_client", "must be an httpx.AsyncClient or None")

        # Where to send, and with which key.
        default_url = fmt.default_base_url
        uses_default_host = base_url is None or (
            default_url is not None and base_url.rstrip("/") == default_url
        )
        if base_url is None and default_url is None:
            raise RerankInputError(
                "base_url",
                f"api_format={fmt.name!r} has no public host; pass the server's base_url "
                f"(e.g. 'http://localhost:8000/v1' for vLLM, 'http://localhost:8080' for TEI)",
            )
        root = (base_url if base_url is not None else default_url) or ""
        self._base_url = root.rstrip("/")
        self._url = self._base_url + fmt.path
        env_names: tuple[str, ...]
        if api_key_env is not None:
            env_names = (api_key_env,)
        else:
            env_names = fmt.api_key_env if uses_default_host else ()
        key = api_key
        if key is None:
            key = next((os.environ[n] for n in env_names if os.environ.get(n, "").strip()), None)
        if key is None and uses_default_host and fmt.api_key_env:
            raise RerankInputError(
                "api_key",
                f"no API key for {self._base_url}: set {' or '.join(fmt.api_key_env)} or pass "
                f"api_key=...",
            )
        if key is None and api_key_env is not None:
            raise RerankInputError("api_key", f"the environment variable {api_key_env} is not set")
        self.__key = key.strip() if key is not None else None

        # Injected for tests; real defaults otherwise. Nothing global: a private RNG.
        self._sleep = _sleep if _sleep is not None else time.sleep
        self._async_sleep = _async_sleep if _async_sleep is not None else asyncio.sleep
        self._random = _random if _random is not None else _random_module.Random().random
        self._now = _now if _now is not None else time.time

        # Connection pooling: one sync client and one async client (per event loop), lazily.
        self._user_client: httpx.Client | None = http_client
        self._user_async_client: httpx.AsyncClient | None = async_http_client
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._async_state: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[httpx.AsyncClient, asyncio.Semaphore]
        ] = weakref.WeakKeyDictionary()

    # ------------------------------------------------------------------ public surface

    @property
    def model_name(self) -> str:
        return self._model

    @property
    def api_format(self) -> str:
        return self._format.name

    @property
    def url(self) -> str:
        """The full endpoint URL requests are sent to."""
        return self._url

    def __repr__(self) -> str:
        key = "'***'" if self.__key else "None"
        return (
            f"RemoteReranker(model={self._model!r}, api_format={self._format.name!r}, "
            f"base_url={self._base_url!r}, api_key={key})"
        )

    def to_config(self) -> dict[str, Any]:
        """Constructor kwargs as JSON; never the API key (it is re-read from the environment)."""
        docs, tokens, per_doc = self._limit_args
        return {
            "backend": self.backend_name,
            "model": self._model,
            "api_format": self._format.name,
            "base_url": self._base_url_arg,
            "api_key_env": self._api_key_env,
            "timeout": self._timeout,
            "connect_timeout": self._connect_timeout,
            "max_retries": self._policy.max_retries,
            "max_concurrency": self._max_concurrency,
            "max_documents_per_request": docs,
            "max_tokens_per_request": tokens,
            "max_tokens_per_document": per_doc,
            "on_error": self._on_error,
            "on_oversize": self._on_oversize,
            "fold_unsupported": self._fold,
        }

    def close(self) -> None:
        """Close the sync client and thread pool this reranker created (not user clients).

        An async client created by :meth:`arerank` is dropped; await :meth:`aclose` in async
        code to close it cleanly. The reranker stays usable: clients are re-created on demand.
        """
        with self._lock:
            client, self._client = self._client, None
            executor, self._executor = self._executor, None
            self._async_state = weakref.WeakKeyDictionary()
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close everything :meth:`close` closes, plus this event loop's async client."""
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._async_state.pop(loop, None)
        if state is not None and state[0] is not self._user_async_client:
            await state[0].aclose()
        self.close()

    @property
    def limits(self) -> Limits:
        """The limits the next call plans with: the configured ones (or the format's), lowered
        by any per-request limit a server stated in a "too many / too long" answer."""
        with self._lock:
            documents, tokens = self._learned_documents, self._learned_tokens
        if documents is None and tokens is None:
            return self._limits
        return Limits(
            max_documents_per_request=_lower(self._limits.max_documents_per_request, documents),
            max_tokens_per_request=_lower(self._limits.max_tokens_per_request, tokens),
            max_tokens_per_document=self._limits.max_tokens_per_document,
        )

    @property
    def accepts_metadata(self) -> bool:
        """True for a format with a metadata field, or when ``fold_unsupported`` folds it in."""
        return self._format.supports_metadata or self._fold

    # ------------------------------------------------------------------ planning (pure)

    def _plan(self, request: RerankRequest) -> Plan:
        """Fold unsupported fields (or refuse them), then truncate and split. No I/O."""
        fmt = self._format
        query, documents = request.query, request.documents
        instruction, metadata = request.instruction, request.metadata
        if metadata is not None and not any(metadata):
            metadata = None  # all-empty metadata carries nothing
        if instruction is not None and not fmt.supports_instruction:
            if not self._fold:
                raise UnsupportedFeatureError(
                    f"api_format={fmt.name!r} has no instruction field; pass "
                    f"fold_unsupported=True to append the instruction to the query text, or "
                    f"use api_format='contextual'"
                )
            query, instruction = fold_instruction(query, instruction), None
        if metadata is not None and not fmt.supports_metadata:
            if not self._fold:
                raise UnsupportedFeatureError(
                    f"api_format={fmt.name!r} has no metadata field; pass fold_unsupported=True "
                    f"to prepend each document's metadata to its text, or use "
                    f"api_format='contextual'"
                )
            documents = tuple(fold_metadata(d, m) for d, m in zip(documents, metadata, strict=True))
            metadata = None
        limits = self.limits
        plan = plan_requests(
            query,
            documents,
            instruction=instruction,
            metadata=metadata,
            top_n=request.top_n if fmt.supports_top_n else None,
            limits=limits,
            truncate=self._on_oversize == "truncate",
        )
        if plan.truncated:
            shown = ", ".join(str(i) for i in plan.truncated[:10])
            more = ", ..." if len(plan.truncated) > 10 else ""
            logger.warning(
                "%d document(s) exceeded the limit of %s estimated tokens per query+document "
                "and were truncated client-side (indices %s%s); pass on_oversize='error' to "
                "reject them instead",
                len(plan.truncated),
                limits.per_document,
                shown,
                more,
            )
        return plan

    def _finish(
        self,
        request: RerankRequest,
        answers: Sequence[tuple[WireRequest, Sequence[tuple[int, float]]]],
    ) -> list[RerankResult]:
        results = merge_results(answers)
        out_of_range = sum(1 for r in results if not -1e-6 <= r.raw_score <= 1 + 1e-6)
        if out_of_range:
            logger.warning(
                "%d score(s) from %s were outside 0-1 and were clipped for relevance_score "
                "(raw_score keeps them); check the server's score activation",
                out_of_range,
                self._base_url,
            )
        return results

    def _fail_open(self, request: RerankRequest, exc: RemoteError) -> list[RerankResult]:
        logger.warning(
            "remote reranker at %s failed (%s: %s); on_error='passthrough' returns all %d "
            "documents in their original order with placeholder scores (relevance 0.0, raw -inf)",
            self._base_url,
            type(exc).__name__,
            exc,
            len(request.documents),
        )
        return passthrough_results(len(request.documents))

    # ------------------------------------------------------------------ one answer (pure)

    def _headers(self) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": _USER_AGENT,
        }
        if self.__key:
            headers["Authorization"] = f"Bearer {self.__key}"
        return headers

    def _body(self, request: WireRequest) -> bytes:
        body = self._format.build_body(self._model, request, self._on_oversize == "truncate")
        return json.dumps(body, ensure_ascii=False).encode("utf-8")

    def _interpret(
        self, status: int, headers: Mapping[str, str], text: str, request: WireRequest
    ) -> list[tuple[int, float]] | tuple[RemoteStatusError, float | None]:
        """A parsed 2xx answer, or the status error and the server's Retry-After.

        Raises RemoteResponseError for a malformed 2xx answer and :class:`_TooLong` when the
        server says a multi-document request is too big.
        """
        if 200 <= status < 300:
            return self._format.parse_response(_decode_json(text), request)
        message = redact(_error_message(text), self.__key)
        error = RemoteStatusError(status, message, request_id(headers))
        if len(request.documents) > 1 and is_too_long(status, message):
            raise _TooLong(error)
        return error, parse_retry_after(headers, self._now())

    def _split_too_long(self, request: WireRequest, error: RemoteStatusError) -> list[WireRequest]:
        """The parts to re-send a sub-request the server called too big in (pure decision,
        plus remembering the limit): under the limit its message states, all at once, or in
        halves when it states none we can trust."""
        stated = parse_stated_limit(error.message)
        parts = None
        if stated is not None:
            if stated.kind == "documents":
                parts = split_to_limit(request, max_documents=stated.value)
            else:
                parts = split_to_limit(request, max_tokens=stated.value)
        if parts is None or stated is None:
            return list(split_in_half(request))
        self._learn(stated.kind, stated.value, error)
        return list(parts)

    def _learn(self, kind: str, value: int, error: RemoteStatusError) -> None:
        """Remember a per-request limit the server stated; only ever lowers the limits."""
        with self._lock:
            if kind == "documents":
                current = _lower(self._limits.max_documents_per_request, self._learned_documents)
                if current is not None and value >= current:
                    return
                self._learned_documents = value
            else:
                current = _lower(self._limits.max_tokens_per_request, self._learned_tokens)
                if current is not None and value >= current:
                    return
                self._learned_tokens = value
        unit = "documents" if kind == "documents" else "tokens (estimated)"
        logger.info(
            "%s stated a limit of %d %s per request (HTTP %d: %s); later calls split under it",
            self._url,
            value,
            unit,
            error.status,
            error.message,
        )

    def _transport_error(self, exc: Exception) -> RemoteError:
        httpx = self._httpx
        detail = redact(f"{type(exc).__name__}: {exc}", self.__key)
        if isinstance(exc, httpx.TimeoutException):
            error: RemoteError = RemoteTimeoutError(
                f"request to {self._url} timed out ({detail}; timeout {self._timeout:g} s, "
                f"connect {self._connect_timeout:g} s)"
            )
        else:
            error = RemoteConnectionError(f"connection to {self._url} failed ({detail})")
        error.__cause__ = None
        return error

    def _is_retryable_transport(self, exc: Exception) -> bool:
        httpx = self._httpx
        return isinstance(
            exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError
        )

    def _delay(
        self, attempt: int, error: RemoteError, status: int | None, retry_after: float | None
    ) -> float | None:
        """Seconds to wait before the next attempt, or None to give up (pure decision)."""
        transport = status is None
        if not should_retry(
            attempt, self._policy.max_retries, status=status, transport_error=transport
        ):
            return None
        delay = backoff_delay(attempt, self._policy, retry_after=retry_after, random=self._random)
        logger.info(
            "rerank request to %s failed (%s); retry %d of %d in %.2f s",
            self._url,
            error,
            attempt + 1,
            self._policy.max_retries,
            delay,
        )
        return delay

    def _timeout_config(self) -> Any:
        return self._httpx.Timeout(self._timeout, connect=self._connect_timeout)

    def _limits_config(self) -> Any:
        n = self._max_concurrency
        return self._httpx.Limits(max_connections=n, max_keepalive_connections=n)

    def _verify(self) -> ssl.SSLContext | bool:
        """TLS verification for our own clients.

        https: httpx's default (verify against its CA bundle). Plain http never negotiates
        TLS, so loading the CA bundle (~0.1 s per client) is skipped: the context given
        instead verifies certificates and host names but trusts no CA, so any TLS it might
        meet (e.g. an https proxy from the environment) fails closed, never open.
        """
        if self._url.startswith("https://"):
            return True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED + check_hostname
        return context

    # ------------------------------------------------------------------ sync I/O

    def _sync_client(self) -> httpx.Client:
        if self._user_client is not None:
            return self._user_client
        with self._lock:
            if self._client is None:
                self._client = self._httpx.Client(
                    timeout=self._timeout_config(),
                    limits=self._limits_config(),
                    verify=self._verify(),
                )
            return self._client

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self._max_concurrency, thread_name_prefix="rerank-remote"
                )
            return self._executor

    def _send_sync(self, request: WireRequest) -> list[tuple[int, float]]:
        """One sub-request with retries (blocking)."""
        client = self._sync_client()
        content = self._body(request)
        headers = self._headers()
        timeout = self._timeout_config()
        attempt = 0
        while True:
            status: int | None = None
            retry_after: float | None = None
            try:
                response = client.post(self._url, content=content, headers=headers, timeout=timeout)
            except self._httpx.TransportError as exc:
                error = self._transport_error(exc)
                if not self._is_retryable_transport(exc):
                    raise error from None
            else:
                outcome = self._interpret(
                    response.status_code, response.headers, response.text, request
                )
                if isinstance(outcome, list):
                    return outcome
                error, retry_after = outcome
                status = response.status_code
            delay = self._delay(attempt, error, status, retry_after)
            if delay is None:
                raise error
            self._sleep(delay)
            attempt += 1

    def _run_sync(
        self, requests: Sequence[WireRequest]
    ) -> list[tuple[WireRequest, list[tuple[int, float]]]]:
        """Send every sub-request, at most ``max_concurrency`` at once; split "too long" ones."""
        todo = list(requests)
        if len(todo) == 1:  # the common case: no thread hop
            try:
                return [(todo[0], self._send_sync(todo[0]))]
            except _TooLong as exc:
                todo = self._split_too_long(todo[0], exc.error)
        pool = self._pool()
        answers: list[tuple[WireRequest, list[tuple[int, float]]]] = []
        pending: dict[Future[list[tuple[int, float]]], WireRequest] = {
            pool.submit(self._send_sync, r): r for r in todo
        }
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    request = pending.pop(future)
                    try:
                        answers.append((request, future.result()))
                    except _TooLong as exc:
                        for part in self._split_too_long(request, exc.error):
                            pending[pool.submit(self._send_sync, part)] = part
        finally:
            for future in pending:
                future.cancel()
        return answers

    def _score(self, request: RerankRequest) -> Sequence[RerankResult]:
        plan = self._plan(request)
        try:
            return self._finish(request, self._run_sync(plan.requests))
        except RemoteError as exc:
            if self._on_error == "raise":
                raise
            return self._fail_open(request, exc)

    # ------------------------------------------------------------------ async I/O

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
                self._httpx.AsyncClient,
                timeout=self._timeout_config(),
                limits=self._limits_config(),
                verify=self._verify(),
            )
        client = self._user_async_client if created is None else created
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

    async def _send_async(
        self, client: httpx.AsyncClient, semaphore: asyncio.Semaphore, request: WireRequest
    ) -> list[tuple[int, float]]:
        """One sub-request with retries; the semaphore is held only while a request is in flight."""
        content = self._body(request)
        headers = self._headers()
        timeout = self._timeout_config()
        attempt = 0
        while True:
            status: int | None = None
            retry_after: float | None = None
            try:
                async with semaphore:
                    response = await client.post(
                        self._url, content=content, headers=headers, timeout=timeout
                    )
            except self._httpx.TransportError as exc:
                error = self._transport_error(exc)
                if not self._is_retryable_transport(exc):
                    raise error from None
            else:
                outcome = self._interpret(
                    response.status_code, response.headers, response.text, request
                )
                if isinstance(outcome, list):
                    return outcome
                error, retry_after = outcome
                status = response.status_code
            delay = self._delay(attempt, error, status, retry_after)
            if delay is None:
                raise error
            await self._async_sleep(delay)
            attempt += 1

    async def _run_async(
        self, requests: Sequence[WireRequest]
    ) -> list[tuple[WireRequest, list[tuple[int, float]]]]:
        client, semaphore = await self._async_resources()

        async def one(request: WireRequest) -> list[tuple[WireRequest, list[tuple[int, float]]]]:
            try:
                return [(request, await self._send_async(client, semaphore, request))]
            except _TooLong as exc:
                parts = self._split_too_long(request, exc.error)
                answers = await asyncio.gather(*(one(part) for part in parts))
                return [answer for part in answers for answer in part]

        tasks = [asyncio.ensure_future(one(r)) for r in requests]
        try:
            parts = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return [answer for part in parts for answer in part]

    async def _ascore(self, request: RerankRequest) -> Sequence[RerankResult]:
        plan = self._plan(request)
        try:
            return self._finish(request, await self._run_async(plan.requests))
        except RemoteError as exc:
            if self._on_error == "raise":
                raise
            return self._fail_open(request, exc)
