"""OpenTelemetry tracing of rerank calls: one OpenInference ``RERANKER`` span per call.

With ``opentelemetry-api`` installed (``pip install "rerank-integrations[otel]"``), every
:meth:`~rerank_integrations.base.Reranker.rerank` / ``arerank`` call of every backend (custom
ones too: the span is made by the base class) runs under one span named :data:`SPAN_NAME`
(kind INTERNAL), from the tracer ``opentelemetry.trace.get_tracer("rerank_integrations")``
looked up at call time (so whatever provider the application sets is used). Its attributes
follow the OpenInference semantic conventions (docs/observability.md):

- ``openinference.span.kind`` = ``"RERANKER"``, ``reranker.model_name``, ``reranker.query``,
  ``reranker.top_k`` (``top_n``, or the number of documents when ``top_n`` is ``None``);
- ``reranker.input_documents.{i}.document.id`` (the document's position ``i`` as a string:
  documents are plain strings and have no id of their own) and
  ``reranker.output_documents.{k}.document.id`` / ``.document.score`` (the result's ``index``
  and ``relevance_score``, best first);
- document text (``.document.content``), per-document metadata (``.document.metadata``, a JSON
  string) and the instruction (``rerank_integrations.instruction``) only when the environment
  variable :data:`CONTENT_ENV` is ``1``/``true``/``yes``/``on``, read at every call (off by
  default: documents are often private);
- the backend's facts, under ``rerank_integrations.*`` (:func:`add_attributes`).

Documents are flattened only as far as the span's attribute count limit leaves room (128 by
default: the output documents best first, then the inputs; see :class:`RerankSpan`), and only
on a recording span.

An exception raised by the call is recorded on the span (``record_exception``) and sets its
status to ERROR, then propagates unchanged.

Without ``opentelemetry-api`` nothing here runs: :data:`ENABLED` is computed once, at import,
with :func:`importlib.util.find_spec` (OpenTelemetry itself is imported only by the first traced
call), and a call then builds no span and no attribute.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from contextlib import suppress
from contextvars import ContextVar, Token
from importlib.util import find_spec
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol

if TYPE_CHECKING:
    from rerank_integrations.results import RerankResult
    from rerank_integrations.validation import RerankRequest

__all__ = [
    "CONTENT_ENV",
    "ENABLED",
    "SPAN_NAME",
    "TRACER_NAME",
    "RerankSpan",
    "add_attributes",
    "content_enabled",
    "record_exception",
]


def _api_installed() -> bool:
    try:
        return find_spec("opentelemetry.trace") is not None
    except (ImportError, ValueError):  # no "opentelemetry" package (or a broken one)
        return False


ENABLED: Final[bool] = _api_installed()
"""Whether ``opentelemetry-api`` is importable: computed once, when this module is imported."""

CONTENT_ENV: Final = "RERANK_INTEGRATIONS_TRACE_CONTENT"
"""Set to ``1``/``true``/``yes``/``on`` to put document text, metadata and the instruction
on the span (read at every call)."""

SPAN_NAME: Final = "rerank"
TRACER_NAME: Final = "rerank_integrations"

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_DEFAULT_ATTRIBUTE_LIMIT: Final = 128  # OpenTelemetry's default span attribute count limit

# The span of the rerank call running in this context (thread / task), for the backend's
# facts; set only while a traced call runs, never to anything but this package's own span.
_CURRENT: ContextVar[RerankSpan | None] = ContextVar("rerank_integrations_span", default=None)


def content_enabled() -> bool:
    """Whether document text goes on the span (:data:`CONTENT_ENV`), read now."""
    return os.environ.get(CONTENT_ENV, "").strip().lower() in _TRUE


def add_attributes(attributes: Mapping[str, Any]) -> None:
    """Put a backend's facts (``rerank_integrations.*``) on the span of the rerank call running
    in this context; nothing when there is none. Call it only under ``if tracing.ENABLED:`` so
    that an untraced process does not even build the mapping."""
    span = _CURRENT.get()
    if span is not None:
        span.facts.update(attributes)


def record_exception(exc: BaseException, attributes: Mapping[str, Any] | None = None) -> None:
    """Record an error the call handled (it still returns results: ``on_error="passthrough"``)
    as an exception event on the current rerank span, with ``attributes`` on the span; the
    span's status stays unset. Call it only under ``if tracing.ENABLED:``."""
    span = _CURRENT.get()
    if span is not None:
        span.span.record_exception(exc)
        if attributes:
            span.facts.update(attributes)


class _Traced(Protocol):
    """What a span reads of the reranker (a :class:`~rerank_integrations.base.Reranker`)."""

    backend_name: str

    @property
    def model_name(self) -> str: ...


class RerankSpan:
    """The span of one rerank call (a context manager; used by the base class only when
    :data:`ENABLED`). Exceptions escaping the block are recorded, set status ERROR and
    propagate.

    Attributes are gathered during the call and written once, when it ends. The documents are
    flattened only as far as the attribute count limit leaves room
    (``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT``, else ``OTEL_ATTRIBUTE_COUNT_LIMIT``, else
    OpenTelemetry's default of 128) after the call's own attributes: the output documents
    best first, then the input documents in order; ``rerank_integrations.documents`` and
    ``reranker.top_k`` still give the counts. They are written least important first (an SDK
    configured in code with a lower limit drops the oldest). A span that is not recording (no
    SDK, or sampled out) gets no attribute and none is built.
    """

    __slots__ = (
        "_content",
        "_core",
        "_request",
        "_reranker",
        "_results",
        "_scope",
        "_token",
        "facts",
        "span",
    )

    def __init__(self, reranker: _Traced) -> None:
        self._reranker = reranker
        self._content = content_enabled()
        self.span: Any = None
        self.facts: dict[str, Any] = {}
        self._core: dict[str, Any] = {}
        self._request: RerankRequest | None = None
        self._results: Sequence[RerankResult] = ()
        self._scope: Any = None
        self._token: Token[RerankSpan | None] | None = None

    def __enter__(self) -> RerankSpan:
        from opentelemetry import trace

        tracer = trace.get_tracer(TRACER_NAME)
        self.span = tracer.start_span(SPAN_NAME, kind=trace.SpanKind.INTERNAL)
        self._scope = trace.use_span(
            self.span, end_on_exit=True, record_exception=True, set_status_on_exception=True
        )
        self._scope.__enter__()
        if self.span.is_recording():
            self._token = _CURRENT.set(self)
            reranker = self._reranker
            self._core["openinference.span.kind"] = "RERANKER"
            self._core["rerank_integrations.backend"] = (
                reranker.backend_name or type(reranker).__name__
            )
            with suppress(Exception):  # a custom reranker's property failing must not fail it
                self._core["reranker.model_name"] = reranker.model_name
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._token is not None:
                _CURRENT.reset(self._token)
                room = _attribute_limit() - len(self._core) - len(self.facts)
                for attributes in (self._documents(room), self.facts, self._core):
                    if attributes:
                        self.span.set_attributes(attributes)
        finally:
            self._scope.__exit__(exc_type, exc, tb)  # records exc, sets ERROR, ends the span

    def request(self, request: RerankRequest) -> None:
        """The validated call: query, top_k, the number of documents (and the instruction)."""
        if self._token is None:  # not recording
            return
        self._request = request
        n = len(request.documents)
        core = self._core
        core["reranker.query"] = request.query
        core["reranker.top_k"] = n if request.top_n is None else min(request.top_n, n)
        core["rerank_integrations.documents"] = n
        if self._content and request.instruction is not None:
            core["rerank_integrations.instruction"] = request.instruction

    def results(self, request: RerankRequest, results: Sequence[RerankResult]) -> None:
        """The results, best first (flattened when the call ends)."""
        self._results = results

    def _documents(self, room: int) -> dict[str, Any]:
        """The flattened documents that fit in ``room`` attributes, least important first."""
        request = self._request
        if request is None or room <= 0:
            return {}
        content = self._content
        metadata = request.metadata if content else None
        outputs: list[dict[str, Any]] = []
        for k, result in enumerate(self._results):
            doc: dict[str, Any] = {}
            prefix = f"reranker.output_documents.{k}.document."
            if content:
                doc[prefix + "content"] = request.documents[result.index]
            doc[prefix + "score"] = result.relevance_score
            doc[prefix + "id"] = str(result.index)
            if len(doc) > room:
                break
            room -= len(doc)
            outputs.append(doc)
        inputs: list[dict[str, Any]] = []
        for i, text in enumerate(request.documents):
            doc = {}
            prefix = f"reranker.input_documents.{i}.document."
            doc[prefix + "id"] = str(i)
            if content:
                doc[prefix + "content"] = text
                if metadata is not None:
                    doc[prefix + "metadata"] = json.dumps(metadata[i], ensure_ascii=False)
            if len(doc) > room:
                break
            room -= len(doc)
            inputs.append(doc)
        flat: dict[str, Any] = {}
        for doc in (*inputs, *reversed(outputs)):  # the best output last: dropped last
            flat.update(doc)
        return flat


def _attribute_limit() -> int:
    """The attribute count limit the SDK applies by default (its environment variables)."""
    for name in ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "OTEL_ATTRIBUTE_COUNT_LIMIT"):
        value = os.environ.get(name, "").strip()
        if value:
            try:
                return max(0, int(value))
            except ValueError:
                pass
    return _DEFAULT_ATTRIBUTE_LIMIT
