"""The abstract :class:`Reranker` every backend implements, and rebuilding one from its config.

The public methods validate the call (:mod:`rerank_integrations.validation`), short-cut
empty input, delegate the scoring to the backend's ``_score``/``_ascore`` and apply the
ordering/``top_n`` rule (:mod:`rerank_integrations.ranking`). A backend only scores.

A config (``to_config()``) is a JSON-serialisable dict with a ``backend`` key: a short name in
:data:`BACKENDS` (``"local"``, ``"remote"``) or a ``"package.module:ClassName"`` path to a
:class:`Reranker` subclass (custom backends); the rest of the dict is passed to the class's
constructor as keyword arguments. :meth:`Reranker.from_config` / :func:`reranker_from_config`
rebuild it; the backend's module is imported only then, so this module imports no backend. A
config is data: unless the caller passes ``trusted=True``, it is first checked with
:func:`rerank_integrations.trust.check_untrusted_settings` (no ``api_key``, no
``trust_remote_code``/``allow_pickle``, no ``api_key_env`` but the format's own for its public
host).
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from rerank_integrations import tracing
from rerank_integrations.errors import RerankerClosedError, RerankInputError, RerankTypeError
from rerank_integrations.ranking import select_results
from rerank_integrations.results import RerankResult
from rerank_integrations.trust import check_untrusted_settings
from rerank_integrations.validation import RerankRequest, bool_value, str_value, validate_request

__all__ = [
    "BACKENDS",
    "Reranker",
    "backend_path",
    "checked_config",
    "reranker_from_config",
    "resolve_backend",
]

BACKENDS: dict[str, str] = {
    "local": "rerank_integrations.backends.local:LocalReranker",
    "remote": "rerank_integrations.backends.remote:RemoteReranker",
}
"""Short backend names accepted in a config's ``backend`` key."""


class Reranker(abc.ABC):
    """Scores documents against a query; the common interface of every backend.

    Subclasses implement :meth:`_score` (and optionally :meth:`_ascore`, :meth:`close`,
    :meth:`aclose`), :attr:`model_name` and :meth:`to_config`. ``_score`` receives a validated,
    non-empty request and returns one :class:`RerankResult` per document it scored, in any
    order; it may honour ``request.top_n`` as a hint and return fewer.
    """

    #: The ``backend`` name written by :meth:`to_config` (a :data:`BACKENDS` name or a path).
    backend_name: str = ""

    @property
    @abc.abstractmethod
    def model_name(self) -> str:
        """The model this reranker scores with (hub id, local path or API model name)."""

    @property
    def accepts_metadata(self) -> bool:
        """Whether per-document ``metadata`` reaches the model (as a field or in the prompt).

        Adapters send metadata by default only to rerankers that accept it; passing
        ``metadata`` to one that does not raises
        :class:`~rerank_integrations.errors.UnsupportedFeatureError`.
        """
        return True

    @property
    def has_metadata_slot(self) -> bool:
        """Whether metadata reaches the model through a field of its own, not folded into the
        document text. Adapters send metadata by default only to such a reranker.

        The default: a reranker that accepts metadata has a slot (a custom reranker decides
        for itself). The local backend answers with its format's declaration, the remote
        backend with its wire format's.
        """
        return self.accepts_metadata

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called: then every call raises
        :class:`~rerank_integrations.errors.RerankerClosedError` (``close()`` is final)."""
        return False

    def _check_open(self) -> None:
        if self.closed:
            raise RerankerClosedError(
                f"this {type(self).__name__} is closed; build a new one to rerank again"
            )

    @abc.abstractmethod
    def _score(self, request: RerankRequest) -> Sequence[RerankResult]:
        """Score a validated, non-empty request."""

    async def _ascore(self, request: RerankRequest) -> Sequence[RerankResult]:
        """Async scoring; the default runs :meth:`_score` in a worker thread."""
        import asyncio

        return await asyncio.to_thread(self._score, request)

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str | None = None,
        metadata: Sequence[str] | None = None,
        top_n: int | None = None,
    ) -> list[RerankResult]:
        """Score ``documents`` against ``query`` and return them best first.

        Results are sorted by ``relevance_score`` descending, ties by ``index`` ascending;
        ``top_n=None`` returns all. Empty ``documents`` returns ``[]`` without model or
        network work. Bad arguments raise a typed error before any work; after
        :meth:`close`, every call raises :class:`~rerank_integrations.errors.RerankerClosedError`.
        With ``opentelemetry-api`` installed, the call runs under one OpenInference RERANKER
        span (:mod:`rerank_integrations.tracing`, docs/observability.md).
        """
        if tracing.ENABLED:
            with tracing.RerankSpan(self) as span:
                request = self._request(query, documents, instruction, metadata, top_n, span)
                results = (
                    select_results(self._score(request), top_n=request.top_n)
                    if request.documents
                    else []
                )
                span.results(request, results)
                return results
        request = self._request(query, documents, instruction, metadata, top_n, None)
        if not request.documents:
            return []
        return select_results(self._score(request), top_n=request.top_n)

    async def arerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str | None = None,
        metadata: Sequence[str] | None = None,
        top_n: int | None = None,
    ) -> list[RerankResult]:
        """Async :meth:`rerank`; same parameters, same results, never blocks the event loop."""
        if tracing.ENABLED:
            with tracing.RerankSpan(self) as span:
                request = self._request(query, documents, instruction, metadata, top_n, span)
                results = (
                    select_results(await self._ascore(request), top_n=request.top_n)
                    if request.documents
                    else []
                )
                span.results(request, results)
                return results
        request = self._request(query, documents, instruction, metadata, top_n, None)
        if not request.documents:
            return []
        return select_results(await self._ascore(request), top_n=request.top_n)

    def _request(
        self,
        query: str,
        documents: Sequence[str],
        instruction: str | None,
        metadata: Sequence[str] | None,
        top_n: int | None,
        span: tracing.RerankSpan | None,
    ) -> RerankRequest:
        """Validate the call (typed errors before any work), then refuse a closed reranker;
        the span (a traced call) gets the validated request."""
        request = validate_request(
            query, documents, instruction=instruction, metadata=metadata, top_n=top_n
        )
        if span is not None:
            span.request(request)
        self._check_open()
        return request

    @abc.abstractmethod
    def to_config(self) -> dict[str, Any]:
        """A JSON-serialisable dict (with a ``backend`` key) that rebuilds this reranker.

        Never contains a secret.
        """

    @classmethod
    def from_config(cls, config: dict[str, Any], *, trusted: bool = False) -> Reranker:
        """Rebuild a reranker from :meth:`to_config`'s output; the backend comes from the config.

        The config is treated as data (a file, a message): it may not carry an ``api_key``,
        switch on ``trust_remote_code``/``allow_pickle``, or choose the key's variable
        (``api_key_env`` other than the format's own for its public host) — a
        :class:`~rerank_integrations.errors.RerankInputError` naming ``config[...]``, before
        anything is imported. ``trusted=True`` (a config your code wrote) skips that check.
        """
        return reranker_from_config(config, trusted=trusted)

    def close(self) -> None:
        """Release resources (HTTP connections, model memory). Idempotent and final: a
        subclass that holds resources overrides it and :attr:`closed`."""

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def backend_path(backend: str, *, field: str = "backend") -> tuple[str, str] | None:
    """``None`` for a short name (``"local"``, ``"remote"``), else the ``(module, qualname)`` of a
    ``"module:Class"`` path; anything else is a :class:`RerankInputError` naming ``field``. The
    one parser of the ``"module:Class"`` form (configs, adapters, the CLI)."""
    if backend in BACKENDS:
        return None
    module, sep, qualname = backend.partition(":")
    if not sep or not module.strip() or not qualname.strip():
        raise RerankInputError(
            field, f"unknown backend {backend!r}: use one of {sorted(BACKENDS)} or 'module:Class'"
        )
    return module, qualname


def resolve_backend(backend: str) -> type[Reranker]:
    """The :class:`Reranker` class for a backend name or ``module:Class`` path."""
    path = BACKENDS.get(backend, backend)
    module_name, qualname = backend_path(path) or ("", "")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, Reranker)):
        raise RerankInputError("backend", f"{path!r} is not a Reranker subclass")
    return obj


def checked_config(
    config: dict[str, Any], *, trusted: bool = False
) -> tuple[type[Reranker], dict[str, Any]]:
    """The backend class and constructor settings of a ``to_config()`` dict, checked as data
    unless ``trusted`` (:meth:`Reranker.from_config`), without building anything: what a
    driver checks before it sends a config to workers that build it."""
    if not isinstance(config, dict):
        raise RerankTypeError("config", f"must be a dict, got {type(config).__name__}")
    if "backend" not in config:
        raise RerankInputError("config", "has no 'backend' key")
    str_value("config['backend']", config["backend"])
    settings = {k: v for k, v in config.items() if k != "backend"}
    if not bool_value("trusted", trusted):
        check_untrusted_settings(settings, field="config")
    return resolve_backend(config["backend"]), settings


def reranker_from_config(config: dict[str, Any], *, trusted: bool = False) -> Reranker:
    """Build the reranker a ``to_config()`` dict describes (the dict is not modified); unless
    ``trusted``, the config is checked as data first (:meth:`Reranker.from_config`)."""
    backend, settings = checked_config(config, trusted=trusted)
    return backend(**settings)
