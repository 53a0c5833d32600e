"""Checks of a rerank call's arguments, done before any model or network work.

:func:`validate_request` is the single gate every backend goes through (via
:meth:`Reranker.rerank`). It copies the caller's sequences into tuples, so nothing the
backend does can mutate the caller's lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rerank_integrations.errors import RerankInputError, RerankTypeError


@dataclass(frozen=True, slots=True)
class RerankRequest:
    """A validated rerank call. ``metadata`` is ``None`` or one string per document."""

    query: str
    documents: tuple[str, ...]
    instruction: str | None = None
    metadata: tuple[str, ...] | None = None
    top_n: int | None = None


def validate_top_n(top_n: object, *, field: str = "top_n") -> int | None:
    """``None`` or an int >= 1 (``bool`` is rejected)."""
    if top_n is None:
        return None
    if isinstance(top_n, bool) or not isinstance(top_n, int):
        raise RerankInputError(field, f"must be a positive int or None, got {type(top_n).__name__}")
    if top_n < 1:
        raise RerankInputError(field, f"must be >= 1, got {top_n}")
    return top_n


def validate_instruction(instruction: object, *, field: str = "instruction") -> str | None:
    """``None`` or a str. An empty/whitespace instruction is the same as none."""
    if instruction is None:
        return None
    if not isinstance(instruction, str):
        raise RerankTypeError(field, f"must be a str or None, got {type(instruction).__name__}")
    return instruction if instruction.strip() else None


def validate_query(query: object) -> str:
    if not isinstance(query, str):
        raise RerankInputError("query", f"must be a str, got {type(query).__name__}")
    if not query.strip():
        raise RerankInputError("query", "must not be empty or whitespace")
    return query


def validate_documents(documents: object) -> tuple[str, ...]:
    if isinstance(documents, str | bytes) or not isinstance(documents, Sequence):
        raise RerankTypeError(
            "documents", f"must be a sequence of str, got {type(documents).__name__}"
        )
    docs = tuple(documents)
    for i, doc in enumerate(docs):
        if not isinstance(doc, str):
            raise RerankTypeError(f"documents[{i}]", f"must be a str, got {type(doc).__name__}")
    return docs


def validate_metadata(metadata: object, n_documents: int) -> tuple[str, ...] | None:
    if metadata is None:
        return None
    if isinstance(metadata, str | bytes) or not isinstance(metadata, Sequence):
        raise RerankInputError(
            "metadata", f"must be a sequence of str or None, got {type(metadata).__name__}"
        )
    meta = tuple(metadata)
    if len(meta) != n_documents:
        raise RerankInputError(
            "metadata", f"has {len(meta)} entries but there are {n_documents} documents"
        )
    for i, entry in enumerate(meta):
        if not isinstance(entry, str):
            raise RerankInputError(f"metadata[{i}]", f"must be a str, got {type(entry).__name__}")
    return meta


def validate_request(
    query: object,
    documents: object,
    *,
    instruction: object = None,
    metadata: object = None,
    top_n: object = None,
) -> RerankRequest:
    """Validate every argument of a rerank call; raise a typed error naming the field."""
    valid_query = validate_query(query)
    docs = validate_documents(documents)
    return RerankRequest(
        query=valid_query,
        documents=docs,
        instruction=validate_instruction(instruction),
        metadata=validate_metadata(metadata, len(docs)),
        top_n=validate_top_n(top_n),
    )
