"""Pure request planning of the remote backend: folding what a format cannot carry, token
estimate, client-side truncation, splitting a call into sub-requests under the API's limits
(configured, published or learnt from the server), and merging the answers back.

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
from dataclasses import dataclass, replace
from itertools import pairwise

from rerank_integrations.backends.remote.formats import WireFormat, WireRequest
from rerank_integrations.backends.remote.limits import DocumentLimit, Limits, StatedLimit
from rerank_integrations.backends.remote.scores import relevance_scores
from rerank_integrations.errors import (
    RemoteResponseError,
    RemoteStatusError,
    RerankInputError,
    UnsupportedFeatureError,
)
from rerank_integrations.folding import fold_instruction, fold_metadata
from rerank_integrations.results import RerankResult
from rerank_integrations.validation import RerankRequest

__all__ = [
    "PAIR_OVERHEAD",
    "Plan",
    "Shrunk",
    "cap_characters",
    "oversize_error",
    "shrink_rejected",
    "estimate_tokens",
    "fold_request",
    "merge_results",
    "plan_call",
    "plan_requests",
    "split_rejected",
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
class Plan:
    """The sub-requests of one call and which documents were truncated client-side."""

    requests: tuple[WireRequest, ...]
    truncated: tuple[int, ...] = ()


# --------------------------------------------------------------------------- folding


def fold_request(request: RerankRequest, fmt: WireFormat, *, fold: bool) -> RerankRequest:
    """The call as ``fmt`` can carry it: all-empty metadata dropped, ``top_n`` dropped for a
    format without it, and an instruction / metadata the format has no field for folded into
    the text with the shared rule of :mod:`rerank_integrations.folding` (instruction before
    the query, metadata lines before each document) when ``fold``, or refused with
    UnsupportedFeatureError otherwise.
    """
    query, documents = request.query, request.documents
    instruction, metadata = request.instruction, request.metadata
    if metadata is not None and not any(metadata):
        metadata = None  # all-empty metadata carries nothing
    if instruction is not None and not fmt.supports_instruction:
        _refuse_unless(fold, fmt, "instruction", "put the instruction before the query text")
        query, instruction = fold_instruction(query, instruction), None
    if metadata is not None and not fmt.supports_metadata:
        _refuse_unless(fold, fmt, "metadata", "prepend each document's metadata to its text")
        documents = tuple(fold_metadata(d, m) for d, m in zip(documents, metadata, strict=True))
        metadata = None
    top_n = request.top_n if fmt.supports_top_n else None
    return RerankRequest(query, documents, instruction, metadata, top_n)


def _refuse_unless(fold: bool, fmt: WireFormat, field: str, folding: str) -> None:
    if not fold:
        raise UnsupportedFeatureError(
            f"api_format={fmt.name!r} has no {field} field; pass fold_unsupported=True to "
            f"{folding}, or use api_format='contextual'"
        )


def plan_call(
    request: RerankRequest, fmt: WireFormat, limits: Limits, *, fold: bool, truncate: bool
) -> Plan:
    """:func:`fold_request`, each document cut to the per-document character limit (the
    format's or a stated one), then :func:`plan_requests`: the sub-requests of one call."""
    call = fold_request(request, fmt, fold=fold)
    char_limits = [x for x in (fmt.max_chars_per_document, limits.max_chars_per_document) if x]
    documents, cut = cap_characters(
        call.documents, min(char_limits) if char_limits else None, truncate=truncate
    )
    plan = plan_requests(
        call.query,
        documents,
        instruction=call.instruction,
        metadata=call.metadata,
        top_n=call.top_n,
        limits=limits,
        truncate=truncate,
    )
    if cut:
        plan = replace(plan, truncated=tuple(sorted({*cut, *plan.truncated})))
    return plan


# --------------------------------------------------------------------------- splitting


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
    costs: list[int] | None = None  # no token limit: no estimate needed
    truncated: list[int] = []
    if per_doc is not None or limits.max_tokens_per_request is not None:
        q_cost = _query_cost(query, instruction)
        if per_doc is not None and q_cost >= per_doc:
            raise RerankInputError(
                "query",
                f"the query and instruction alone are about {q_cost} tokens, over the limit "
                f"of {per_doc} tokens for a query with one document",
            )
        costs = []
        for i, doc in enumerate(docs):
            meta = metas[i] if metas is not None else ""
            cost = q_cost + estimate_tokens(doc) + estimate_tokens(meta)
            if per_doc is not None and cost > per_doc:
                if not truncate:
                    raise RerankInputError(
                        f"documents[{i}]",
                        f"with the query, instruction and metadata it is about {cost} tokens, "
                        f"over the limit of {per_doc}; shorten it or use on_oversize='truncate'",
                    )
                room = per_doc - q_cost
                # The metadata is cut only when it leaves the document less than it needs, up
                # to half the room; the document then gets whatever the metadata leaves.
                doc_need = min(estimate_tokens(doc), room // 2)
                if metas is not None and estimate_tokens(meta) > room - doc_need:
                    metas[i] = meta = truncate_to_tokens(meta, room - doc_need)
                docs[i] = doc = truncate_to_tokens(doc, room - estimate_tokens(meta))
                cost = q_cost + estimate_tokens(doc) + estimate_tokens(meta)
                truncated.append(i)
            costs.append(cost)
    whole = WireRequest(
        query=query,
        documents=tuple(docs),
        indices=tuple(range(len(docs))),
        instruction=instruction,
        metadata=tuple(metas) if metas is not None else None,
        top_n=top_n,
    )
    bounds = _pack(
        len(docs),
        costs,
        max_documents=limits.max_documents_per_request,
        max_tokens=limits.max_tokens_per_request,
    )
    return Plan(tuple(_part(whole, lo, hi) for lo, hi in pairwise(bounds)), tuple(truncated))


def _query_cost(query: str, instruction: str | None) -> int:
    """The part of every pair cost that the query and instruction make."""
    return estimate_tokens(query) + estimate_tokens(instruction or "") + PAIR_OVERHEAD


def _pack(
    n: int, costs: Sequence[int] | None, *, max_documents: int | None, max_tokens: int | None
) -> list[int]:
    """The boundaries ``[0, ..., n]`` of greedy contiguous parts of ``n`` documents: a part
    ends before the document that would take it over ``max_documents`` or, by ``costs``,
    ``max_tokens`` (a document over ``max_tokens`` alone gets a part of its own). The one
    packing rule of planning and of splitting under a stated token limit."""
    bounds = [0]
    total = 0
    for i in range(n):
        cost = costs[i] if costs is not None else 0
        start = bounds[-1]
        full_count = max_documents is not None and i - start >= max_documents
        full_tokens = max_tokens is not None and total + cost > max_tokens
        if i > start and (full_count or full_tokens):
            bounds.append(i)
            total = 0
        total += cost
    if n:
        bounds.append(n)
    return bounds


def _part(request: WireRequest, lo: int, hi: int) -> WireRequest:
    """Documents ``lo:hi`` of ``request`` (with their indices and metadata), ``top_n``
    clamped to the part's size."""
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
    number is not to be trusted and the caller falls back to halves.
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
    elif max_tokens is not None and max_tokens >= 1:
        q_cost = _query_cost(request.query, request.instruction)
        metas = request.metadata or ("",) * n
        costs = [
            q_cost + estimate_tokens(doc) + estimate_tokens(meta)
            for doc, meta in zip(request.documents, metas, strict=True)
        ]
        bounds = _pack(n, costs, max_documents=None, max_tokens=max_tokens)
    else:
        return None
    if len(bounds) < 3:
        return None
    return tuple(_part(request, lo, hi) for lo, hi in pairwise(bounds))


def split_rejected(
    request: WireRequest, stated: StatedLimit | None
) -> tuple[tuple[WireRequest, ...], bool]:
    """The parts to re-send a sub-request the server called too big in, and whether the
    limit it stated was trusted (and so is worth learning): under ``stated``, all at once,
    when it really splits the request; otherwise in halves."""
    parts = None
    if stated is not None:
        if stated.kind == "documents":
            parts = split_to_limit(request, max_documents=stated.value)
        else:
            parts = split_to_limit(request, max_tokens=stated.value)
    if parts is None:  # no trusted limit: halves
        halves = split_to_limit(request, max_documents=-(-len(request.documents) // 2))
        if halves is None:
            raise ValueError("cannot split a request with fewer than 2 documents")
        return halves, False
    return parts, True


# --------------------------------------------------------------------------- one document too long
# vLLM (``maximum context length is 512 tokens``) and Infinity (``String should have at most N
# characters``) fail the WHOLE request for one over-long document. Splitting cannot help, so
# :func:`shrink_rejected` re-plans the rejected sub-request with its over-long documents cut and
# returns the limit to remember (later calls truncate, or refuse with ``on_oversize="error"``,
# before sending). Token limits apply to the client's ESTIMATE; when a server rejects documents
# that already fit it, the budget drops to 3/4 of the largest document's cost (and is
# remembered), so the loop ends after a few round trips at most.


SHRINK = 0.75
"""When a server rejects documents that fit the estimate, the budget becomes this fraction of
the largest document's estimated cost."""


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
        costs = [query_cost + estimate_tokens(d) for d in docs]
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


# --------------------------------------------------------------------------- merging


def merge_results(
    answers: Iterable[tuple[WireRequest, Sequence[tuple[int, float]]]],
) -> list[RerankResult]:
    """Map each sub-request's local indices back to global ones; ``top_n`` is NOT applied here
    (the core applies it once over the merged list). ``relevance_score`` comes from the whole
    call's raw scores (:func:`~rerank_integrations.backends.remote.scores.relevance_scores`:
    clipped to 0-1, monotone in raw). A global index answered twice (never possible for a
    valid plan) is a RemoteResponseError."""
    merged: dict[int, float] = {}
    for request, scores in answers:
        for local, score in scores:
            index = request.indices[local]
            if index in merged:
                raise RemoteResponseError(f"document {index} was scored twice")
            merged[index] = score
    raw = list(merged.values())
    return [
        RerankResult(index, relevance, score)
        for (index, score), relevance in zip(merged.items(), relevance_scores(raw), strict=True)
    ]
