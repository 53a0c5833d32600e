"""``RemoteReranker``: rerank through an HTTP rerank API (Contextual AI, Jina-style routers,
vLLM / Infinity, Cohere v2, Hugging Face TEI).

This module checks the constructor's arguments and runs a call: plan it
(:mod:`~rerank_integrations.backends.remote.planning`), send it
(:mod:`~rerank_integrations.backends.remote.transport`, which speaks
:mod:`~rerank_integrations.backends.remote.formats` and retries by
:mod:`~rerank_integrations.backends.remote.retry`), merge the answers, or fail open.
httpx is imported lazily, on construction (``pip install "rerank-integrations[remote]"``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random as _random_module
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from rerank_integrations.backends.remote.credentials import resolve_endpoint
from rerank_integrations.backends.remote.document_limits import (
    not_found_hint,
    oversize_error,
    parse_document_limit,
    shrink_rejected,
)
from rerank_integrations.backends.remote.formats import WireRequest
from rerank_integrations.backends.remote.planning import (
    LearnedLimits,
    Limits,
    Plan,
    merge_results,
    plan_call,
    split_rejected,
)
from rerank_integrations.backends.remote.retry import (
    RetryPolicy,
    parse_stated_limit,
    passthrough_results,
)
from rerank_integrations.backends.remote.transport import Answers, Transport
from rerank_integrations.base import Reranker
from rerank_integrations.errors import RemoteError, RemoteStatusError, RerankTypeError
from rerank_integrations.extras import import_extra
from rerank_integrations.results import RerankResult
from rerank_integrations.validation import (
    RerankRequest,
    bool_value,
    choice_value,
    int_value,
    number_value,
    optional_callable,
    optional_int,
    text_value,
)

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


def _client(field: str, value: object, kind: type) -> Any:
    """``None`` or an instance of ``kind`` (an httpx client class)."""
    if value is not None and not isinstance(value, kind):
        raise RerankTypeError(
            field, f"must be an httpx.{kind.__name__} or None, got {type(value).__name__}"
        )
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
        base_url: the ``http(s)://`` API root the format's path (``/rerank``) is appended to;
            ``None`` uses the format's public host (``vllm`` and ``tei`` have none).
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
            and truncate under these limits (estimated tokens, see ``planning``); ``None``
            uses the format's published limits (Contextual: 400,000 tokens per request and
            8,000 per query+instruction+document+metadata; TEI: 32 documents).
        on_error: ``"raise"`` (default) or ``"passthrough"``: when the service fails (after
            retries), return every document in its original order with placeholder scores
            (``relevance_score`` 0.0, ``raw_score`` -inf) and log one warning.
        on_oversize: ``"truncate"`` (default: cut a too-long document, one warning per call)
            or ``"error"`` (raise RerankInputError before any request).
        fold_unsupported: for a format without an instruction/metadata field, put the
            instruction before the query (``f"{instruction} {query}"``) and the metadata
            before each document (``f"{metadata}\\n{document}"``) instead of raising
            UnsupportedFeatureError: the rule of :mod:`rerank_integrations.folding`.
        http_client / async_http_client: your own ``httpx.Client`` / ``httpx.AsyncClient``
            (proxies, TLS, mounts). They are used as given and NOT closed by ``close()``;
            the reranker's ``timeout`` is still applied per request.

    Wrong types raise RerankTypeError, bad values RerankInputError, both naming the argument,
    before any request. Test hooks (not serialised): ``_sleep``, ``_async_sleep``,
    ``_random``, ``_now``.
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
        httpx_module: Any = import_extra("httpx", extra="remote", feature="RemoteReranker")
        self._model = text_value("model", model, blank_ok=False)
        endpoint = resolve_endpoint(api_format, base_url, api_key, api_key_env, os.environ)
        self._endpoint = endpoint
        fmt = endpoint.format
        self._base_url_arg = base_url
        self._api_key_env = api_key_env
        self._timeout = number_value("timeout", timeout, positive=True)
        self._connect_timeout = number_value("connect_timeout", connect_timeout, positive=True)
        self._max_retries = int_value("max_retries", max_retries, minimum=0)
        self._max_concurrency = int_value("max_concurrency", max_concurrency, minimum=1)
        self._limit_args = (
            optional_int("max_documents_per_request", max_documents_per_request, minimum=1),
            optional_int("max_tokens_per_request", max_tokens_per_request, minimum=1),
            optional_int("max_tokens_per_document", max_tokens_per_document, minimum=1),
        )
        docs, tokens, per_doc = self._limit_args
        self._limits = LearnedLimits(
            Limits(
                max_documents_per_request=fmt.max_documents_per_request if docs is None else docs,
                max_tokens_per_request=fmt.max_tokens_per_request if tokens is None else tokens,
                max_tokens_per_document=(
                    fmt.max_tokens_per_document if per_doc is None else per_doc
                ),
            )
        )
        self._on_error = choice_value("on_error", on_error, _ON_ERROR)
        self._on_oversize = choice_value("on_oversize", on_oversize, _ON_OVERSIZE)
        self._fold = bool_value("fold_unsupported", fold_unsupported)
        # Test hooks, or the real defaults. Nothing global: a private RNG.
        hooks = {
            "_sleep": optional_callable("_sleep", _sleep),
            "_async_sleep": optional_callable("_async_sleep", _async_sleep),
            "_random": optional_callable("_random", _random),
            "_now": optional_callable("_now", _now),
        }
        self._transport = Transport(
            httpx_module,
            fmt,
            model=self._model,
            url=endpoint.url,
            api_key=endpoint.api_key,
            timeout=self._timeout,
            connect_timeout=self._connect_timeout,
            policy=RetryPolicy(max_retries=self._max_retries),
            max_concurrency=self._max_concurrency,
            server_truncates=self._on_oversize == "truncate",
            http_client=_client("http_client", http_client, httpx_module.Client),
            async_http_client=_client(
                "async_http_client", async_http_client, httpx_module.AsyncClient
            ),
            sleep=hooks["_sleep"] or time.sleep,
            async_sleep=hooks["_async_sleep"] or asyncio.sleep,
            random=hooks["_random"] or _random_module.Random().random,
            now=hooks["_now"] or time.time,
        )

    # ------------------------------------------------------------------ public surface

    @property
    def model_name(self) -> str:
        return self._model

    @property
    def api_format(self) -> str:
        return self._endpoint.format.name

    @property
    def url(self) -> str:
        """The full endpoint URL requests are sent to."""
        return self._endpoint.url

    @property
    def limits(self) -> Limits:
        """The limits the next call plans with: the configured ones (or the format's), lowered
        by any per-request limit a server stated in a "too many / too long" answer."""
        return self._limits.current

    @property
    def accepts_metadata(self) -> bool:
        """True for a format with a metadata field, or when ``fold_unsupported`` folds it in."""
        return self._endpoint.format.supports_metadata or self._fold

    def __repr__(self) -> str:
        key = "'***'" if self._endpoint.api_key else "None"
        return (
            f"RemoteReranker(model={self._model!r}, api_format={self.api_format!r}, "
            f"base_url={self._endpoint.base_url!r}, api_key={key})"
        )

    def to_config(self) -> dict[str, Any]:
        """Constructor kwargs as JSON; never the API key (it is re-read from the environment)."""
        docs, tokens, per_doc = self._limit_args
        return {
            "backend": self.backend_name,
            "model": self._model,
            "api_format": self.api_format,
            "base_url": self._base_url_arg,
            "api_key_env": self._api_key_env,
            "timeout": self._timeout,
            "connect_timeout": self._connect_timeout,
            "max_retries": self._max_retries,
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
        self._transport.close()

    async def aclose(self) -> None:
        """Close everything :meth:`close` closes, plus this event loop's async client."""
        await self._transport.aclose()

    # ------------------------------------------------------------------ one call

    def _score(self, request: RerankRequest) -> Sequence[RerankResult]:
        plan = self._plan(request)
        try:
            return self._finish(self._transport.run_sync(plan.requests, self._split))
        except RemoteError as exc:
            return self._fail_open(request, exc)

    async def _ascore(self, request: RerankRequest) -> Sequence[RerankResult]:
        plan = self._plan(request)
        try:
            return self._finish(await self._transport.run_async(plan.requests, self._split))
        except RemoteError as exc:
            return self._fail_open(request, exc)

    def _plan(self, request: RerankRequest) -> Plan:
        """Fold (or refuse) unsupported fields, truncate and split; warn about truncation."""
        limits = self.limits
        plan = plan_call(
            request,
            self._endpoint.format,
            limits,
            fold=self._fold,
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

    def _split(self, request: WireRequest, error: RemoteStatusError) -> Sequence[WireRequest]:
        """The parts to re-send a sub-request the server called too big in; remembers the
        per-request limit its message states when that limit is trusted. A limit on ONE
        document (vLLM's context length, Infinity's characters) re-sends the sub-request with
        its over-long documents cut (or raises RerankInputError with ``on_oversize="error"``)
        and remembers the limit; a single document is never split."""
        doc_limit = parse_document_limit(error.message)
        if doc_limit is not None:
            current = self.limits
            shrunk = shrink_rejected(
                request,
                doc_limit,
                tokens_budget=current.max_tokens_per_document,
                chars_budget=current.max_chars_per_document,
                error=error,
            )
            learnt = shrunk.limit
            if self._limits.learn_document(learnt):
                logger.info(
                    "%s stated a limit on one document (HTTP %d: %s); documents over %d %s "
                    "are now truncated client-side",
                    self.url,
                    error.status,
                    error.message,
                    learnt.value,
                    "characters" if learnt.kind == "characters" else "estimated tokens",
                )
            if self._on_oversize == "error":
                raise oversize_error(shrunk, error)
            return [shrunk.request]
        if len(request.documents) < 2:
            raise error
        stated = parse_stated_limit(error.message)
        parts, trusted = split_rejected(request, stated)
        if trusted and stated is not None and self._limits.learn(stated):
            unit = "documents" if stated.kind == "documents" else "tokens (estimated)"
            logger.info(
                "%s stated a limit of %d %s per request (HTTP %d: %s); later calls split under it",
                self.url,
                stated.value,
                unit,
                error.status,
                error.message,
            )
        return parts

    def _finish(self, answers: Answers) -> list[RerankResult]:
        results = merge_results(answers)
        out_of_range = sum(1 for r in results if not -1e-6 <= r.raw_score <= 1 + 1e-6)
        if out_of_range:
            logger.warning(
                "%d score(s) from %s were outside 0-1 and were clipped for relevance_score "
                "(raw_score keeps them); check the server's score activation",
                out_of_range,
                self._endpoint.base_url,
            )
        return results

    def _fail_open(self, request: RerankRequest, exc: RemoteError) -> list[RerankResult]:
        """``on_error="raise"``: re-raise ``exc``; ``"passthrough"``: placeholders, one warning."""
        if isinstance(exc, RemoteStatusError):
            hint = not_found_hint(exc.status, self.url)
            if hint is not None:
                exc = RemoteStatusError(exc.status, f"{exc.message} ({hint})", exc.request_id)
        if self._on_error == "raise":
            raise exc
        logger.warning(
            "remote reranker at %s failed (%s: %s); on_error='passthrough' returns all %d "
            "documents in their original order with placeholder scores (relevance 0.0, raw -inf)",
            self._endpoint.base_url,
            type(exc).__name__,
            exc,
            len(request.documents),
        )
        return passthrough_results(len(request.documents))
