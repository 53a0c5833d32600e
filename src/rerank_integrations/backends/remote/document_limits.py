"""Pure decisions about limits on ONE document that a server states, and the hint for a rerank
path that does not exist.

Two real servers state a per-document limit when a single document is too long, and both
fail the WHOLE request for it:

- vLLM: ``HTTP 400: This model's maximum context length is 512 tokens. However, your prompt
  contains at least 513 input tokens, ...`` (the limit is on the rendered prompt: template +
  query + one document, in the model's tokens);
- Infinity (pydantic): ``HTTP 422: body.documents.0: String should have at most 122880
  characters``.

Splitting the request cannot help, so :func:`shrink_rejected` re-plans the rejected
sub-request with its over-long documents truncated client-side, and returns the per-document
limit to remember, so that later calls on the same reranker truncate (or, with
``on_oversize="error"``, refuse: :func:`oversize_error`) before sending anything.

Token limits are applied to the client's token ESTIMATE
(:func:`~rerank_integrations.backends.remote.planning.estimate_tokens`), which over-counts
typical text but knows nothing of the server's template. When a server rejects a request
although every document already fits the estimate, the budget is lowered to 3/4 of the
largest document's estimated cost (and remembered): each rejection cuts the longest documents
by at least a quarter, so the loop ends after a few round trips at most.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from rerank_integrations.backends.remote.formats import WireRequest
from rerank_integrations.backends.remote.planning import (
    PAIR_OVERHEAD,
    estimate_tokens,
    truncate_to_tokens,
)
from rerank_integrations.errors import RemoteStatusError, RerankInputError

__all__ = [
    "DocumentLimit",
    "Shrunk",
    "cap_characters",
    "is_document_too_long",
    "not_found_hint",
    "oversize_error",
    "parse_document_limit",
    "shrink_rejected",
]

SHRINK = 0.75
"""When a server rejects documents that fit the estimate, the budget becomes this fraction of
the largest document's estimated cost."""


@dataclass(frozen=True, slots=True)
class DocumentLimit:
    """A limit on ONE document (with its query) that a server stated."""

    kind: Literal["tokens", "characters"]
    value: int


_NUMBER = r"(\d{1,3}(?:,\d{3})+|\d+)"
_CONTEXT_LENGTH = re.compile(
    r"maximum\s+(?:context|model|sequence)\s+length\s+(?:is|of)\s+" + _NUMBER + r"\s+tokens",
    re.IGNORECASE,
)
_CHARACTERS = re.compile(
    r"\b(?:string|text|document|input|query)s?\s+should\s+have\s+at\s+most\s+"
    + _NUMBER
    + r"\s+characters?",
    re.IGNORECASE,
)


def parse_document_limit(message: str) -> DocumentLimit | None:
    """The per-document limit an error message states, or ``None``.

    ``"This model's maximum context length is 512 tokens. ..."`` (vLLM, OpenAI-style) ->
    ``DocumentLimit("tokens", 512)``; ``"String should have at most 122880 characters"``
    (pydantic, Infinity) -> ``DocumentLimit("characters", 122880)``.
    """
    for pattern, kind in ((_CONTEXT_LENGTH, "tokens"), (_CHARACTERS, "characters")):
        match = pattern.search(message)
        if match is not None:
            value = int(match.group(1).replace(",", ""))
            if value >= 1:
                return DocumentLimit("tokens" if kind == "tokens" else "characters", value)
    return None


def is_document_too_long(status: int, message: str) -> bool:
    """Whether an error answer (400, 413 or 422) says that one document is over a stated
    per-document limit: the sub-request is re-planned, never retried as it is."""
    return status in (400, 413, 422) and parse_document_limit(message) is not None


def _pair_cost(query_cost: int, document: str) -> int:
    return query_cost + estimate_tokens(document)


@dataclass(frozen=True, slots=True)
class Shrunk:
    """A rejected sub-request re-planned under a per-document limit: the request to re-send,
    the limit to remember (estimated tokens or characters) and which documents were cut
    (positions in the sub-request)."""

    request: WireRequest
    limit: DocumentLimit
    cut: tuple[int, ...]


def shrink_rejected(
    request: WireRequest,
    stated: DocumentLimit,
    *,
    tokens_budget: int | None,
    chars_budget: int | None,
    error: RemoteStatusError,
) -> Shrunk:
    """``request`` with its documents cut under the per-document limit the server stated, and
    the limit to remember (in the client's units: estimated tokens, or characters).

    ``tokens_budget`` / ``chars_budget`` are the per-document limits in force. The new budget
    is the lower of those and the stated value; when no document is over it (the estimate
    under-counted, or the server's template is long), it is lowered to :data:`SHRINK` times
    the largest document's cost. Raises ``error`` itself when nothing can be cut (the query
    alone is too long, or no document is over a character limit).
    """
    docs = list(request.documents)
    if stated.kind == "characters":
        # Characters are counted exactly: no document over the limit means the query (or
        # another field) is the one too long, which no cut of the documents can fix.
        budget = min(stated.value, chars_budget or stated.value)
        over = [i for i, d in enumerate(docs) if len(d) > budget]
        cut = [d[:budget] if len(d) > budget else d for d in docs]
    else:
        query_cost = (
            estimate_tokens(request.query)
            + estimate_tokens(request.instruction or "")
            + PAIR_OVERHEAD
        )
        costs = [_pair_cost(query_cost, d) for d in docs]
        budget = min(stated.value, tokens_budget or stated.value)
        if max(costs, default=0) <= budget:
            budget = math.floor(max(costs, default=0) * SHRINK)
        if budget <= query_cost:
            raise error
        over = [i for i, c in enumerate(costs) if c > budget]
        cut = [
            truncate_to_tokens(d, budget - query_cost) if costs[i] > budget else d
            for i, d in enumerate(docs)
        ]
    if not over or budget < 1:
        raise error
    shrunk = WireRequest(
        query=request.query,
        documents=tuple(cut),
        indices=request.indices,
        instruction=request.instruction,
        metadata=request.metadata,
        top_n=request.top_n,
    )
    return Shrunk(shrunk, DocumentLimit(stated.kind, budget), tuple(over))


def oversize_error(shrunk: Shrunk, error: RemoteStatusError) -> RerankInputError:
    """``on_oversize="error"``: the RerankInputError naming the first document the server's
    limit cuts (``documents[i]``, the caller's index)."""
    first = shrunk.request.indices[shrunk.cut[0]]
    unit = "characters" if shrunk.limit.kind == "characters" else "estimated tokens"
    return RerankInputError(
        f"documents[{first}]",
        f"the server rejected it as too long (HTTP {error.status}: {error.message}); the limit "
        f"is about {shrunk.limit.value} {unit} per document; shorten it or use "
        "on_oversize='truncate'",
    )


def cap_characters(
    documents: tuple[str, ...], limit: int | None, *, truncate: bool
) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """``documents`` with each one cut to ``limit`` characters, and the indices that were cut;
    with ``truncate=False`` the first document over the limit is a RerankInputError."""
    if limit is None:
        return documents, ()
    over = tuple(i for i, d in enumerate(documents) if len(d) > limit)
    if over and not truncate:
        raise RerankInputError(
            f"documents[{over[0]}]",
            f"it is {len(documents[over[0]])} characters, over the limit of {limit} characters "
            "per document; shorten it or use on_oversize='truncate'",
        )
    if not over:
        return documents, ()
    return tuple(d[:limit] for d in documents), over


def not_found_hint(status: int, url: str) -> str | None:
    """A hint for a 404 on a rerank URL whose API root ends in ``/v1``: Infinity (and other
    servers) serve ``/rerank`` at the server root, so the bare ``Not Found`` says nothing."""
    if status != 404:
        return None
    path = url.split("?", 1)[0].rstrip("/")
    if not path.endswith("/v1/rerank"):
        return None
    root = path[: -len("/v1/rerank")]
    return (
        f"no rerank endpoint at {path}; Infinity serves /rerank at the server root: use "
        f"base_url={root!r} (api_format='infinity')"
    )
