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

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from rerank_integrations import tracing
from rerank_integrations.backends.remote import async_io, sync_io
from rerank_integrations.backends.remote.budgets import DEFAULT_MAX_RESPONSE_BYTES
from rerank_integrations.backends.remote.clients import Clients
from rerank_integrations.backends.remote.formats import DEFAULT_API_FORMAT, WireRequest
from rerank_integrations.backends.remote.limits import (
    DocumentLimit,
    LearnedLimits,
    Limits,
    StatedLimit,
    parse_document_limit,
    parse_stated_limit,
)
from rerank_integrations.backends.remote.outcomes import not_found_hint
from rerank_integrations.backends.remote.planning import (
    Plan,
    merge_results,
    oversize_error,
    plan_call,
    shrink_rejected,
    split_rejected,
)
from rerank_integrations.backends.remote.retry import passthrough_results
from rerank_integrations.backends.remote.scores import out_of_range
from rerank_integrations.backends.remote.settings import Settings, parse_settings
from rerank_integrations.base import Reranker
from rerank_integrations.errors import RemoteError, RemoteStatusError
from rerank_integrations.extras import import_extra
from rerank_integrations.results import RerankResult
from rerank_integrations.validation import RerankRequest

if TYPE_CHECKING:
    import httpx

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_MODEL",
    "RemoteReranker",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "ctxl-rerank-v2-instruct-multilingual"
DEFAULT_MAX_CONCURRENCY = 32
"""Sub-requests in flight at once per reranker: 2,000 documents at 100 per request (20
sub-requests) finish in one round trip."""


def _unpickle(cls: type[RemoteReranker], kwargs: dict[str, Any], learnt: Limits) -> RemoteReranker:
    """Rebuild a pickled reranker: from its settings (a key from the environment is read
    again here), with the limits it had learnt."""
    reranker = cls(**kwargs)
    reranker._limits.restore(learnt)
    return reranker


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
        timeout: seconds one attempt may take, the whole exchange (connect, send, the last
            byte of the answer), not one read (default 60).
        connect_timeout: seconds to establish a connection (default 5).
        deadline: seconds the whole call may take: every sub-request, attempt, retry wait
            and split. ``None`` (default): ``(max_retries + 1) * timeout + max_retries * 60``,
            the longest one sub-request may take under the retry policy. A retry wait that
            would pass the deadline is not taken (the call fails with the last error); when
            the deadline passes, the call raises RemoteTimeoutError at once.
        max_retries: retries per HTTP request after the first attempt (default 2).
        max_concurrency: sub-requests in flight at once, per reranker (default 32).
        max_documents_per_request / max_tokens_per_request / max_tokens_per_document: split
            and truncate under these limits (estimated tokens, see ``planning``); ``None``
            uses the format's published limits (Contextual: 400,000 tokens per request and
            8,000 per query+instruction+document+metadata; TEI: 32 documents).
        max_response_bytes: the most (decoded) bytes an answer may have (default 16 MiB); a
            bigger one is a RemoteResponseTooLargeError, and reading stops at the cap.
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
            the reranker's ``timeout`` and ``deadline`` still apply.

    Wrong types raise RerankTypeError, bad values RerankInputError, both naming the argument,
    before any request. Test hooks (never serialised): ``_sleep``, ``_async_sleep``,
    ``_random``, ``_now``.

    Pickling rebuilds the reranker from its settings where it is unpickled (a key from the
    environment is read there again); a reranker given an explicit ``api_key``, URL
    credentials or its own clients raises UnpicklableRerankerError instead. ``copy.copy`` /
    ``copy.deepcopy`` give an independent reranker with the same settings, the same key (in
    memory: same process) and the same user clients (shared, not copied). See
    ``docs/reliability.md``.
    """

    backend_name = "remote"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        api_format: str = DEFAULT_API_FORMAT,
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_env: str | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        deadline: float | None = None,
        max_retries: int = 2,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        max_documents_per_request: int | None = None,
        max_tokens_per_request: int | None = None,
        max_tokens_per_document: int | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
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
        settings = parse_settings(
            httpx_module, model=model, api_format=api_format, base_url=base_url,
            api_key=api_key, api_key_env=api_key_env, timeout=timeout,
            connect_timeout=connect_timeout, deadline=deadline, max_retries=max_retries,
            max_concurrency=max_concurrency, max_documents_per_request=max_documents_per_request,
            max_tokens_per_request=max_tokens_per_request,
            max_tokens_per_document=max_tokens_per_document,
            max_response_bytes=max_response_bytes, on_error=on_error, on_oversize=on_oversize,
            fold_unsupported=fold_unsupported, http_client=http_client,
            async_http_client=async_http_client, _sleep=_sleep, _async_sleep=_async_sleep,
            _random=_random, _now=_now,
        )  # fmt: skip
        self._start(httpx_module, settings)

    def _start(self, httpx_module: Any, settings: Settings) -> None:
        """Build the reranker's runtime from its settings (built once, handed whole)."""
        self._httpx = httpx_module
        self._settings = settings
        self._endpoint = settings.endpoint
        self._limits = LearnedLimits(settings.configured_limits)
        self._clients = Clients(settings, httpx_module)

    # ------------------------------------------------------------------ copy and pickle

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as settings (never a key, URL credentials or a client; see the class)."""
        return (_unpickle, (type(self), self._settings.pickle_kwargs(), self.limits))

    def __copy__(self) -> RemoteReranker:
        return self._copy()

    def __deepcopy__(self, memo: dict[int, Any]) -> RemoteReranker:
        return self._copy()

    def _copy(self) -> RemoteReranker:
        """A new reranker from the same settings (same key and user clients, own pools)."""
        copy = type(self).__new__(type(self))
        copy._start(self._httpx, self._settings)
        copy._limits.restore(self.limits)
        return copy

    # ------------------------------------------------------------------ public surface

    @property
    def model_name(self) -> str:
        return self._settings.model

    @property
    def api_format(self) -> str:
        return self._endpoint.format.name

    @property
    def url(self) -> str:
        """The full endpoint URL requests are sent to (``***@`` in place of URL credentials)."""
        return self._endpoint.display_url

    @property
    def deadline(self) -> float:
        """Seconds a call may take in all (the ``deadline`` given, or its default)."""
        return self._settings.deadline

    @property
    def limits(self) -> Limits:
        """The limits the next call plans with: the configured ones (or the format's), lowered
        by any per-request limit a server stated in a "too many / too long" answer."""
        return self._limits.current

    @property
    def has_metadata_slot(self) -> bool:
        """Whether the wire format has a metadata field (the Contextual API)."""
        return self._endpoint.format.supports_metadata

    @property
    def accepts_metadata(self) -> bool:
        """True for a format with a metadata field, or when ``fold_unsupported`` folds it in."""
        return self._endpoint.format.supports_metadata or self._settings.fold

    def __repr__(self) -> str:
        key = "'***'" if self._endpoint.api_key else "None"
        return (
            f"RemoteReranker(model={self.model_name!r}, api_format={self.api_format!r}, "
            f"base_url={self._endpoint.display_base_url!r}, api_key={key})"
        )

    def to_config(self) -> dict[str, Any]:
        """Constructor kwargs as JSON; never the API key (it is re-read from the environment)
        nor credentials in ``base_url`` (left out)."""
        return {"backend": self.backend_name, **self._settings.to_config()}

    @property
    def closed(self) -> bool:
        return self._clients.closed

    def close(self) -> None:
        """Final: stop every call in flight and close the clients and thread pool this
        reranker created (never user clients). Calls in flight, in any thread or event loop,
        raise RerankerClosedError at once (queued sub-requests never start, requests in
        flight are aborted, retry waits end), and so does every later call. Each event
        loop's async client is closed on its loop (await :meth:`aclose` to wait for this
        loop's)."""
        self._clients.close()

    async def aclose(self) -> None:
        """Close everything :meth:`close` closes, and wait for this event loop's client."""
        await self._clients.aclose()

    # ------------------------------------------------------------------ one call

    def _body(self, request: WireRequest) -> bytes:
        s = self._settings
        body = s.endpoint.format.build_body(s.model, request, s.server_truncates)
        return json.dumps(body, ensure_ascii=False).encode("utf-8")

    def _score(self, request: RerankRequest) -> Sequence[RerankResult]:
        plan = self._plan(request)
        try:
            return self._finish(sync_io.run(self._clients, self._body, plan.requests, self._split))
        except RemoteError as exc:
            return self._fail_open(request, exc)

    async def _ascore(self, request: RerankRequest) -> Sequence[RerankResult]:
        plan = self._plan(request)
        try:
            answers = await async_io.run(self._clients, self._body, plan.requests, self._split)
        except RemoteError as exc:
            return self._fail_open(request, exc)
        return self._finish(answers)

    def _plan(self, request: RerankRequest) -> Plan:
        """Fold (or refuse) unsupported fields, truncate and split; warn about truncation."""
        limits = self.limits
        plan = plan_call(
            request,
            self._endpoint.format,
            limits,
            fold=self._settings.fold,
            truncate=self._settings.on_oversize == "truncate",
        )
        if tracing.ENABLED:
            tracing.add_attributes(
                {
                    "rerank_integrations.format": self.api_format,
                    "rerank_integrations.remote.planned_requests": len(plan.requests),
                    "rerank_integrations.truncated_documents": len(plan.truncated),
                }
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
        """The parts to re-send a sub-request the server called too big in. A limit on ONE
        document (vLLM's context length, Infinity's characters) re-sends it with its over-long
        documents cut (or raises RerankInputError with ``on_oversize="error"``); otherwise it
        is split under the per-request limit the message states (halves when it states none
        it can be trusted with). A stated limit is learnt; one document is never split."""
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
            self._learn(shrunk.limit, error, "on one document")
            if self._settings.on_oversize == "error":
                raise oversize_error(shrunk, error)
            return [shrunk.request]
        if len(request.documents) < 2:
            raise error
        stated = parse_stated_limit(error.message)
        parts, trusted = split_rejected(request, stated)
        if trusted and stated is not None:
            self._learn(stated, error, "per request")
        return parts

    def _learn(
        self, limit: StatedLimit | DocumentLimit, error: RemoteStatusError, scope: str
    ) -> None:
        """Remember a limit a server stated (only ever lowering one), and say so once."""
        if self._limits.learn(limit):
            unit = {"tokens": "estimated tokens"}.get(limit.kind, limit.kind)
            logger.info(
                "%s stated a limit of %d %s %s (HTTP %d: %s); later calls plan under it",
                self.url, limit.value, unit, scope, error.status, error.message,
            )  # fmt: skip

    def _finish(self, answers: sync_io.Answers) -> list[RerankResult]:
        results = merge_results(answers)
        outside = sum(1 for r in results if out_of_range(r.raw_score))
        if outside:
            logger.warning(
                "%d score(s) from %s were outside 0-1 and were clipped for relevance_score "
                "(kept in raw order; raw_score keeps them); check the server's score activation",
                outside,
                self._endpoint.display_base_url,
            )
        return results

    def _fail_open(self, request: RerankRequest, exc: RemoteError) -> list[RerankResult]:
        """``on_error="raise"``: re-raise ``exc``; ``"passthrough"``: placeholders, one warning."""
        if isinstance(exc, RemoteStatusError):
            hint = not_found_hint(exc.status, self.url)
            if hint is not None:
                exc = RemoteStatusError(exc.status, f"{exc.message} ({hint})", exc.request_id)
        if self._settings.on_error == "raise":
            raise exc
        if tracing.ENABLED:
            tracing.record_exception(exc, {"rerank_integrations.remote.passthrough": True})
        logger.warning(
            "remote reranker at %s failed (%s: %s); on_error='passthrough' returns all %d "
            "documents in their original order with placeholder scores (relevance 0.0, raw -inf)",
            self._endpoint.display_base_url,
            type(exc).__name__,
            exc,
            len(request.documents),
        )
        return passthrough_results(len(request.documents))
