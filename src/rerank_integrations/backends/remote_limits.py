"""Pure request planning of the remote backend: token estimate, client-side truncation,
splitting a call into sub-requests under the API's limits, and merging the answers back.

Token estimate (no tokenizer is downloaded): :func:`estimate_tokens` counts

- each ASCII digit as one token (Qwen-family tokenizers split numbers digit by digit),
- every other ASCII character as 1/3 token (English runs at about 4 characters per token in
  the Qwen, Mistral and XLM-R vocabularies, code at about 3),
- each non-ASCII character as one token (CJK is about one token per character; accented
  Latin, Cyrillic, Greek, Arabic and Hindi text is cheaper than that),

rounded up. It is meant to over-count typical text, not to be an exact bound: a server that
still answers "too long" (413, or 422 with a size message) gets that sub-request split at
once under the limit the message states (:func:`split_to_limit`), or in half when it states
none, and re-sent.

Limits: the cost of one document is the estimate of ``query + instruction + document +
metadata`` plus :data:`PAIR_OVERHEAD` tokens (the per-document limit of the Contextual API is
on exactly that combination); the cost of a request is the SUM of its documents' costs (the
query is counted once per document: conservative, since servers score query/document pairs).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from rerank_integrations.backends.remote_formats import WireRequest, to_relevance
from rerank_integrations.errors import RemoteResponseError, RerankInputError
from rerank_integrations.results import RerankResult

__all__ = [
    "PAIR_OVERHEAD",
    "Limits",
    "Plan",
    "estimate_tokens",
    "merge_results",
    "plan_requests",
    "split_in_half",
    "split_to_limit",
    "truncate_to_tokens",
]

PAIR_OVERHEAD = 8
"""Tokens added per query/document pair for separators and special tokens."""

_DROP_DIGITS = str.maketrans("", "", "0123456789")


def estimate_tokens(text: str) -> int:
    """A conservative token count of ``text`` (see the module docstring for the rule)."""
    if not text:
        return 0
    ascii_chars = len(text.encode("ascii", "ignore")) if not text.isascii() else len(text)
    digits = len(text) - len(text.translate(_DROP_DIGITS))
    non_ascii = len(text) - ascii_chars
    return non_ascii + digits + math.ceil((ascii_chars - digits) / 3)


def truncate_to_tokens(text: str, budget: int) -> str:
    """The longest prefix of ``text`` whose :func:`estimate_tokens` is at most ``budget``."""
    if budget <= 0:
        return ""
    if estimate_tokens(text) <= budget:
        return text
    lo, hi = 0, len(text)  # invariant: text[:lo] fits, text[:hi] does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if estimate_tokens(text[:mid]) <= budget:
            lo = mid
        else:
            hi = mid
    return text[:lo]


@dataclass(frozen=True, slots=True)
class Limits:
    """Effective limits of one reranker (``None`` = unlimited)."""

    max_documents_per_request: int | None = None
    max_tokens_per_request: int | None = None
    max_tokens_per_document: int | None = None

    @property
    def per_document(self) -> int | None:
        """The per-pair token limit: one document must also fit in a request on its own."""
        limits = [x for x in (self.max_tokens_per_document, self.max_tokens_per_request) if x]
        return min(limits) if limits else None


@dataclass(frozen=True, slots=True)
class Plan:
    """The sub-requests of one call and which documents were truncated client-side."""

    requests: tuple[WireRequest, ...]
    truncated: tuple[int, ...] = ()


def plan_requests(
    query: str,
    documents: Sequence[str],
    *,
    instruction: str | None,
    metadata: Sequence[str] | None,
    top_n: int | None,
    limits: Limits,
    truncate: bool,
) -> Plan:
    """Split one call into contiguous sub-requests that respect ``limits``.

    A document whose pair cost exceeds the per-document limit is truncated (its tail is cut;
    its metadata too when the metadata alone leaves no room) when ``truncate`` is true, or
    rejected with :class:`RerankInputError` naming ``documents[i]`` otherwise. A query plus
    instruction that alone exceed the limit is always rejected (field ``query``).
    ``top_n`` is sent to every sub-request as a hint (clamped to its size): the global top n
    is always inside the union of the sub-requests' top n.
    """
    docs = list(documents)
    metas = list(metadata) if metadata is not None else None
    per_doc = limits.per_document
    if per_doc is None and limits.max_tokens_per_request is None:
        # No token limit: no estimate needed; split by document count only.
        count = limits.max_documents_per_request or max(1, len(docs))
        return Plan(
            tuple(
                _chunk(query, docs, metas, instruction, top_n, lo, min(lo + count, len(docs)))
                for lo in range(0, len(docs), count)
            )
        )
    q_cost = estimate_tokens(query) + estimate_tokens(instruction or "") + PAIR_OVERHEAD
    if per_doc is not None and q_cost >= per_doc:
        raise RerankInputError(
            "query",
            f"the query and instruction alone are about {q_cost} tokens, over the limit of "
            f"{per_doc} tokens for a query with one document",
        )
    costs: list[int] = []
    truncated: list[int] = []
    for i, doc in enumerate(docs):
        meta = metas[i] if metas is not None else ""
        cost = q_cost + estimate_tokens(doc) + estimate_tokens(meta)
        if per_doc is not None and cost > per_doc:
            if not truncate:
                raise RerankInputError(
                    f"documents[{i}]",
                    f"with the query, instruction and metadata it is about {cost} tokens, over "
                    f"the limit of {per_doc}; shorten it or use on_oversize='truncate'",
                )
            room = per_doc - q_cost
            # The metadata is cut only when it leaves the document less than it needs, up to
            # half the room; the document then gets whatever the metadata leaves.
            doc_need = min(estimate_tokens(doc), room // 2)
            if metas is not None and estimate_tokens(meta) > room - doc_need:
                metas[i] = meta = truncate_to_tokens(meta, room - doc_need)
            docs[i] = doc = truncate_to_tokens(doc, room - estimate_tokens(meta))
            cost = q_cost + estimate_tokens(doc) + estimate_tokens(meta)
            truncated.append(i)
        costs.append(cost)

    requests: list[WireRequest] = []
    start = 0
    total = 0
    for i, cost in enumerate(costs):
        full_count = (
            limits.max_documents_per_request is not None
            and i - start >= limits.max_documents_per_request
        )
        full_tokens = (
            limits.max_tokens_per_request is not None
            and total + cost > limits.max_tokens_per_request
        )
        if i > start and (full_count or full_tokens):
            requests.append(_chunk(query, docs, metas, instruction, top_n, start, i))
            start, total = i, 0
        total += cost
    requests.append(_chunk(query, docs, metas, instruction, top_n, start, len(docs)))
    return Plan(tuple(requests), tuple(truncated))


def _chunk(
    query: str,
    docs: Sequence[str],
    metas: Sequence[str] | None,
    instruction: str | None,
    top_n: int | None,
    start: int,
    stop: int,
) -> WireRequest:
    return WireRequest(
        query=query,
        documents=tuple(docs[start:stop]),
        indices=tuple(range(start, stop)),
        instruction=instruction,
        metadata=tuple(metas[start:stop]) if metas is not None else None,
        top_n=None if top_n is None else min(top_n, stop - start),
    )


def split_in_half(request: WireRequest) -> tuple[WireRequest, WireRequest]:
    """Two sub-requests with the first and second half of ``request``'s documents."""
    n = len(request.documents)
    if n < 2:
        raise ValueError("cannot split a request with fewer than 2 documents")
    mid = n // 2
    return _part(request, 0, mid), _part(request, mid, n)


def _part(request: WireRequest, lo: int, hi: int) -> WireRequest:
    return WireRequest(
        query=request.query,
        documents=request.documents[lo:hi],
        indices=request.indices[lo:hi],
        instruction=request.instruction,
        metadata=request.metadata[lo:hi] if request.metadata is not None else None,
        top_n=None if request.top_n is None else min(request.top_n, hi - lo),
    )


def split_to_limit(
    request: WireRequest,
    *,
    max_documents: int | None = None,
    max_tokens: int | None = None,
) -> tuple[WireRequest, ...] | None:
    """``request`` cut into contiguous parts under a limit the server stated, all at once.

    ``max_documents``: ``ceil(n / max_documents)`` parts of near-equal size (they differ by
    at most one document, so no part is a small straggler). ``max_tokens``: greedy parts
    whose estimated cost (see :func:`plan_requests`) stays under it; a document that alone
    exceeds it gets a part of its own. Returns ``None`` when the limit would not split the
    request into at least two parts — the request already looks within it, so the stated
    number is not to be trusted and the caller falls back to :func:`split_in_half`.
    """
    n = len(request.documents)
    if max_documents is not None:
        if max_documents < 1 or n <= max_documents:
            return None
        parts = -(-n // max_documents)
        size, extra = divmod(n, parts)
        bounds = [0]
        for k in range(parts):
            bounds.append(bounds[-1] + size + (1 if k < extra else 0))
        return tuple(_part(request, lo, hi) for lo, hi in pairwise(bounds))
    if max_tokens is None or max_tokens < 1:
        return None
    q_cost = (
        estimate_tokens(request.query) + estimate_tokens(request.instruction or "") + PAIR_OVERHEAD
    )
    metas = request.metadata
    pieces: list[WireRequest] = []
    start, total = 0, 0
    for i, doc in enumerate(request.documents):
        cost = q_cost + estimate_tokens(doc) + (estimate_tokens(metas[i]) if metas else 0)
        if i > start and total + cost > max_tokens:
            pieces.append(_part(request, start, i))
            start, total = i, 0
        total += cost
    pieces.append(_part(request, start, n))
    return tuple(pieces) if len(pieces) >= 2 else None


def merge_results(
    answers: Iterable[tuple[WireRequest, Sequence[tuple[int, float]]]],
) -> list[RerankResult]:
    """Map each sub-request's local indices back to global ones; ``top_n`` is NOT applied here
    (the core applies it once over the merged list). A global index answered twice (never
    possible for a valid plan) is a RemoteResponseError."""
    merged: dict[int, RerankResult] = {}
    for request, scores in answers:
        for local, score in scores:
            index = request.indices[local]
            if index in merged:
                raise RemoteResponseError(f"document {index} was scored twice")
            merged[index] = RerankResult(index, to_relevance(score), score)
    return list(merged.values())
