"""Wire formats of remote rerank APIs, as small declarative descriptions.

Each :class:`WireFormat` says where to send a request (default base URL and path), how to
authenticate (bearer key and the environment variables it may come from), what the API can
express (instruction, per-document metadata, ``top_n``), its published limits, and two PURE
functions: a request builder (:class:`WireRequest` -> JSON body) and a response parser
(decoded JSON -> ``[(local index, score), ...]``) that validates the answer and raises
:class:`~rerank_integrations.errors.RemoteResponseError` when it is malformed.

Formats (field names from each API's own reference: the Contextual AI API reference for
``POST /rerank``, Jina's and Cohere's v2 rerank API references, vLLM's OpenAI-compatible
server docs (``/v1/rerank``) and the Text Embeddings Inference (TEI) ``/rerank`` OpenAPI):

=============  ==================================  ===========  ==================  ============
name           body                                top field    results             score
=============  ==================================  ===========  ==================  ============
``contextual`` query, documents, model, top_n,     ``top_n``    ``results``         relevance_score
               instruction, metadata
``jina``       model, query, documents, top_n,     ``top_n``    ``results``         relevance_score
               return_documents=false
``vllm``       the ``jina`` body plus ``instruction`` (vLLM's field, handed to its score
               template); no default host and no API key by default
``infinity``   the ``jina`` body at the server ROOT (``base_url="http://host:7997"``, no
               ``/v1``); no default host; 2,048 documents and 122,880 characters per document
``cohere``     model, query, documents, top_n      ``top_n``    ``results``         relevance_score
``tei``        query, texts, truncate, raw_scores  (none)       bare list           score
=============  ==================================  ===========  ==================  ============

Scores: every format's returned score is kept as ``raw_score``; ``relevance_score`` is that
number clipped to ``[0, 1]`` (:func:`to_relevance`), with the scores that clip to the same bound
kept apart in raw order (:func:`~rerank_integrations.backends.remote.scores.relevance_scores`),
so relevance stays monotone in raw. Contextual normalises to 0-1 itself; Jina, Cohere and vLLM
(for its usual single-label classifiers, with its default sigmoid activation) return 0-1
probabilities; TEI is asked for ``raw_scores: false``, i.e. its sigmoid-activated 0-1 scores.
A server that returns numbers outside 0-1 (e.g. a vLLM model served with
``"method": "no_post_processing"``) still gets a correct ``raw_score`` and order; the backend
logs a warning when that happens.

No message of a parser quotes text the server sent (only types, numbers and positions), and
:func:`decode_json` / :func:`error_message` redact what they quote before cutting it
(:mod:`~rerank_integrations.backends.remote.redaction`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rerank_integrations.backends.remote.redaction import Redactor
from rerank_integrations.errors import RemoteResponseError
from rerank_integrations.validation import choice_value

__all__ = [
    "API_FORMATS",
    "FORMATS",
    "WireFormat",
    "WireRequest",
    "decode_json",
    "error_message",
    "get_format",
    "parse_results",
    "to_relevance",
]


@dataclass(frozen=True, slots=True)
class WireRequest:
    """One HTTP request's worth of a rerank call (after folding, truncation and splitting).

    ``indices[i]`` is the caller's (global) index of ``documents[i]``. ``top_n`` is the hint
    sent to the server (already clamped to ``len(documents)``), or ``None`` to ask for all.
    """

    query: str
    documents: tuple[str, ...]
    indices: tuple[int, ...]
    instruction: str | None = None
    metadata: tuple[str, ...] | None = None
    top_n: int | None = None

    @property
    def expected_results(self) -> int:
        """How many results a conforming server returns for this request."""
        n = len(self.documents)
        return n if self.top_n is None else min(self.top_n, n)


BodyBuilder = Callable[[str, WireRequest, bool], Any]
"""``(model, request, truncate) -> JSON body``. ``truncate`` asks the server to truncate
over-long inputs itself (only formats with such a field use it)."""

ResponseParser = Callable[[Any, WireRequest], list[tuple[int, float]]]
"""``(decoded JSON, request) -> [(local index, score), ...]``; raises RemoteResponseError."""


# --------------------------------------------------------------------------- builders


def _top_n_field(body: dict[str, Any], request: WireRequest) -> None:
    # Omit when None: vLLM reads ``top_n: 0`` as "all", others reject 0; omission means all.
    if request.top_n is not None:
        body["top_n"] = request.top_n


def build_contextual(model: str, request: WireRequest, truncate: bool) -> Any:
    body: dict[str, Any] = {
        "query": request.query,
        "documents": list(request.documents),
        "model": model,
    }
    _top_n_field(body, request)
    if request.instruction is not None:
        body["instruction"] = request.instruction
    if request.metadata is not None:
        body["metadata"] = list(request.metadata)
    return body


def build_cohere(model: str, request: WireRequest, truncate: bool) -> Any:
    body: dict[str, Any] = {
        "model": model,
        "query": request.query,
        "documents": list(request.documents),
    }
    _top_n_field(body, request)
    return body


def build_jina(model: str, request: WireRequest, truncate: bool) -> Any:
    """The Cohere body plus ``return_documents: false`` (Jina, Infinity, routers)."""
    return {**build_cohere(model, request, truncate), "return_documents": False}


def build_vllm(model: str, request: WireRequest, truncate: bool) -> Any:
    """The Jina body plus vLLM's ``instruction`` (handed to the server's score template as a
    template variable, e.g. Qwen3-Reranker's ``<Instruct>``) when one is given."""
    body = build_jina(model, request, truncate)
    if request.instruction is not None:
        body["instruction"] = request.instruction
    return body


def build_tei(model: str, request: WireRequest, truncate: bool) -> Any:
    return {
        "query": request.query,
        "texts": list(request.documents),
        "truncate": truncate,
        "raw_scores": False,
        "return_text": False,
    }


# --------------------------------------------------------------------------- parsers


_NO_SECRETS = Redactor(())


def _cut(text: str, limit: int, redact: Redactor | None) -> str:
    """``text`` redacted (before the cut: see :meth:`Redactor.cut`), then cut to ``limit``."""
    return (redact or _NO_SECRETS).cut(text, limit)


def _int_or_float(text: str) -> int | float:
    """A JSON integer: an int when it is index-sized, else a float (``inf`` for an absurd one),
    so a 5,000-digit number never hits int()'s digit limit nor float()'s overflow later."""
    return int(text) if len(text) <= 18 else float(text)


def loads(text: str) -> Any:
    """``json.loads`` for untrusted answers: numbers never raise (huge ones become ``inf`` and
    are then refused as non-finite scores), and too deep nesting, like any other malformed
    text, is a ValueError, never a RecursionError."""
    try:
        return json.loads(text, parse_int=_int_or_float, parse_constant=float)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None


def decode_json(text: str, redact: Redactor | None = None) -> Any:
    """Decode a response body; non-JSON (truncated, too deeply nested) -> RemoteResponseError,
    quoting the start of the body redacted by ``redact``."""
    try:
        return loads(text)
    except ValueError as exc:
        snippet = _cut(" ".join(text[:200].split()), 80, redact)
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise RemoteResponseError(
            f"the server's answer is not valid JSON ({reason}); it starts with {snippet!r}"
        ) from None


def _describe(value: object) -> str:
    """A value from an answer, for a message: numbers and None as they are, anything else by
    its type only (a server may have put a secret it was sent there)."""
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    return f"a {type(value).__name__}"


def parse_results(
    items: object, request: WireRequest, *, score_key: str
) -> list[tuple[int, float]]:
    """Validate a list of ``{"index": int, score_key: number}`` items.

    Every index must be an int in ``range(len(request.documents))`` and appear once; every
    score a finite number; and there must be at least ``request.expected_results`` items.
    """
    n = len(request.documents)
    if not isinstance(items, list):
        raise RemoteResponseError(f"expected a list of results, got {type(items).__name__}")
    seen: set[int] = set()
    out: list[tuple[int, float]] = []
    for pos, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise RemoteResponseError(f"result {pos} is not an object")
        index = item.get("index")
        if isinstance(index, bool) or not isinstance(index, int):
            raise RemoteResponseError(
                f"result {pos} has no integer 'index' (got {_describe(index)})"
            )
        if not 0 <= index < n:
            raise RemoteResponseError(
                f"result {pos} has index {index}, out of range for {n} documents"
            )
        if index in seen:
            raise RemoteResponseError(f"index {index} appears more than once in the results")
        seen.add(index)
        score = item.get(score_key)
        if isinstance(score, bool) or not isinstance(score, int | float):
            raise RemoteResponseError(
                f"result {pos} (index {index}) has no numeric {score_key!r} "
                f"(got {_describe(score)})"
            )
        if not math.isfinite(score):
            raise RemoteResponseError(f"result {pos} (index {index}) has a non-finite score")
        out.append((index, float(score)))
    if len(out) < request.expected_results:
        raise RemoteResponseError(
            f"the server returned {len(out)} results for {n} documents "
            f"(expected {request.expected_results})"
        )
    return out


def _results_key(payload: Any, key: str) -> object:
    if not isinstance(payload, Mapping):
        raise RemoteResponseError(f"expected a JSON object, got {type(payload).__name__}")
    if key not in payload:
        raise RemoteResponseError(f"the answer has no {key!r} field")
    return payload[key]


def parse_relevance_results(payload: Any, request: WireRequest) -> list[tuple[int, float]]:
    """Contextual / Jina / Cohere / vLLM: ``{"results": [{"index", "relevance_score"}]}``."""
    return parse_results(_results_key(payload, "results"), request, score_key="relevance_score")


def parse_tei(payload: Any, request: WireRequest) -> list[tuple[int, float]]:
    """TEI: a bare list ``[{"index", "score"}]``."""
    return parse_results(payload, request, score_key="score")


def to_relevance(score: float) -> float:
    """The documented 0-1 relevance of a returned score: the score clipped to ``[0, 1]``."""
    return min(1.0, max(0.0, score))


_MESSAGE_LIMIT = 500
"""Characters of a server's error message kept in a RemoteStatusError."""


def _detail_item(item: object) -> str:
    """One pydantic / FastAPI validation error: ``"body.query: Field required"`` (its ``loc``
    joined by dots before its ``msg``), so the message says which field is wrong."""
    if not isinstance(item, Mapping):
        return str(item)
    msg = str(item.get("msg", item))
    loc = item.get("loc")
    if isinstance(loc, list | tuple) and loc:
        return ".".join(str(part) for part in loc) + ": " + msg
    if isinstance(loc, str) and loc:
        return f"{loc}: {msg}"
    return msg


def _message_of(payload: Mapping[str, Any]) -> str | None:
    for key in ("message", "error", "detail"):
        value = payload.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, Mapping) and isinstance(value.get("message"), str):
            return str(value["message"])
        if isinstance(value, list) and value:
            return "; ".join(_detail_item(v) for v in value)
    return None


def error_message(text: str, redact: Redactor | None = None) -> str:
    """The server's own error message from an error response body (any of the formats),
    redacted by ``redact`` BEFORE it is cut to 500 characters.

    Understands ``{"detail": str | [{"msg"}]}`` (Contextual/FastAPI, Jina), ``{"message"}``
    (Cohere), ``{"error": str | {"message"}}`` (TEI, vLLM/OpenAI) and falls back to the text.
    """
    message: str | None = None
    try:
        payload = loads(text)
        message = _message_of(payload) if isinstance(payload, Mapping) else None
    except (ValueError, RecursionError):  # not JSON, or too deep to describe: use the text
        message = None
    if message is None:
        message = " ".join(text.split()) or "(empty body)"
    return _cut(message, _MESSAGE_LIMIT, redact)


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True, slots=True)
class WireFormat:
    """A declarative description of one rerank API's wire format (the defaults are the
    common case: ``POST {base_url}/rerank``, no key variable, ``top_n`` but no instruction
    or metadata field, ``{"results": [{"index", "relevance_score"}]}`` answers)."""

    name: str
    build_body: BodyBuilder
    default_base_url: str | None = None
    path: str = "/rerank"
    api_key_env: tuple[str, ...] = ()
    supports_instruction: bool = False
    supports_metadata: bool = False
    supports_top_n: bool = True
    parse_response: ResponseParser = parse_relevance_results
    max_documents_per_request: int | None = None
    max_tokens_per_request: int | None = None
    max_tokens_per_document: int | None = None
    """Per-pair limit: query + instruction + one document + its metadata."""
    max_chars_per_document: int | None = None
    """Characters of one document (after folding) the API accepts (Infinity: 122,880)."""


_CONTEXTUAL = WireFormat(
    "contextual",
    build_contextual,
    default_base_url="https://api.contextual.ai/v1",
    api_key_env=("CONTEXTUAL_API_KEY",),
    supports_instruction=True,
    supports_metadata=True,
    max_tokens_per_request=400_000,
    max_tokens_per_document=8_000,
)
_JINA = WireFormat(
    "jina", build_jina, default_base_url="https://api.jina.ai/v1", api_key_env=("JINA_API_KEY",)
)
# vLLM: no public host, no key by default; its rerank request has an ``instruction`` field.
_VLLM = WireFormat("vllm", build_vllm, supports_instruction=True)
# Infinity: ``/rerank`` at the server ROOT (no ``/v1``); pydantic caps each string at 122,880
# characters and a request at 2,048 documents (INFINITY_MAX_CLIENT_BATCH_SIZE).
_INFINITY = WireFormat(
    "infinity", build_jina, max_documents_per_request=2048, max_chars_per_document=122_880
)
_COHERE = WireFormat(
    "cohere",
    build_cohere,
    default_base_url="https://api.cohere.com/v2",
    api_key_env=("COHERE_API_KEY", "CO_API_KEY"),
)
_TEI = WireFormat(
    "tei",
    build_tei,
    supports_top_n=False,
    parse_response=parse_tei,
    max_documents_per_request=32,  # TEI's default --max-client-batch-size
)

FORMATS: Mapping[str, WireFormat] = {
    f.name: f for f in (_CONTEXTUAL, _JINA, _VLLM, _INFINITY, _COHERE, _TEI)
}
"""Every supported ``api_format`` by name."""


API_FORMATS: tuple[str, ...] = tuple(sorted(FORMATS))
"""The accepted ``api_format`` names."""

DEFAULT_API_FORMAT = "contextual"
"""``RemoteReranker``'s ``api_format`` when none is given."""


def get_format(name: object) -> WireFormat:
    """The :class:`WireFormat` called ``name``: a non-str is a RerankTypeError, an unknown
    name a RerankInputError, both naming ``api_format``."""
    return FORMATS[choice_value("api_format", name, API_FORMATS)]
