"""Prompt-text causal formats (ctxl-v2, qwen3): a prompt per document, tokenized as ONE text.

:class:`PromptFormat` builds :class:`PromptParts` per document (:meth:`PromptFormat.prompt_parts`)
and :func:`encode_prompt_parts` tokenizes them as the model cards do, wrapped in the fixed ids
of :meth:`PromptFormat.wrapper_ids`, truncating only the document span.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from rerank_integrations.backends.local.engine import EncodedInput
from rerank_integrations.backends.local.formats.base import (
    CausalFormat,
    EncodedDocument,
    EncodedRequest,
    TextEncoder,
    metadata_at,
    render_document_slot,
)
from rerank_integrations.errors import RerankInputError
from rerank_integrations.validation import RerankRequest

__all__ = ["PromptFormat", "PromptParts", "common_prefix_length", "encode_prompt_parts"]


@dataclass(frozen=True, slots=True)
class PromptParts:
    """One prompt as three texts joined into ONE tokenized chunk: ``head + document + tail``.

    ``head`` holds everything before the document text (template, query/instruction where the
    format puts them first, and the metadata lines); ``tail`` everything after it. Only
    ``document`` tokens are ever truncated. Fixed ids tokenized on their own go around the
    chunk (``before``/``after`` of :func:`encode_prompt_parts`)."""

    head: str
    document: str
    tail: str


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def encode_prompt_parts(
    encoder: TextEncoder,
    parts: Sequence[PromptParts],
    *,
    before: Sequence[int] = (),
    after: Sequence[int] = (),
    add_special_tokens: bool,
    max_length: int,
) -> list[EncodedDocument]:
    """Tokenize ``head + document + tail`` as ONE text per prompt (exactly as the model card
    tokenizes the whole prompt), wrapped in ``before``/``after`` ids.

    When the result exceeds ``max_length``, only DOCUMENT tokens are removed: the jointly
    tokenized ``head + document`` is cut from the right and ``encode(tail)`` follows, so the
    query/instruction tail (where the score is read) and the metadata in ``head`` survive. With
    an empty tail (qwen3) this is exactly the official right truncation of the body.
    ``prefix_len`` is the length of the ids shared with ``before + encode(head)`` (capped so
    that at least one token follows it). Raises ``RerankInputError`` (field ``query``) when the
    fixed parts alone leave no room for a document token."""
    sp_pre = encoder.special_prefix if add_special_tokens else ()
    sp_suf = encoder.special_suffix if add_special_tokens else ()
    full = encoder.encode_batch([p.head + p.document + p.tail for p in parts])
    heads: dict[str, list[int]] = {}
    out: list[EncodedDocument] = []
    for p, ids in zip(parts, full, strict=True):
        head_ids = heads.get(p.head)
        if head_ids is None:
            head_ids = [*before, *sp_pre, *encoder.encode(p.head)]
            heads[p.head] = head_ids
        whole = [*before, *sp_pre, *ids, *sp_suf, *after]
        if len(whole) <= max_length:
            prefix = min(common_prefix_length(whole, head_ids), len(whole) - 1)
            out.append(EncodedDocument((EncodedInput(tuple(whole), prefix_len=prefix),)))
            continue
        tail_ids = [*encoder.encode(p.tail), *sp_suf, *after] if p.tail else [*sp_suf, *after]
        budget = max_length - len(before) - len(sp_pre) - len(tail_ids)
        if budget <= len(head_ids) - len(before) - len(sp_pre):
            raise RerankInputError(
                "query",
                f"the query, instruction, metadata and prompt template take "
                f"{len(head_ids) + len(tail_ids)} tokens, leaving no room for the document "
                f"within max_length={max_length}",
            )
        joined = encoder.encode(p.head + p.document) if p.tail else ids
        merged = (*before, *sp_pre, *joined[:budget], *tail_ids)
        prefix = min(common_prefix_length(merged, head_ids), len(merged) - 1)
        out.append(
            EncodedDocument(
                (EncodedInput(merged, prefix_len=prefix),), truncated=len(joined) > budget
            )
        )
    return out


class PromptFormat(CausalFormat):
    """A causal format built from a text prompt: :meth:`prompt_parts` per document, tokenized
    as one text (plus fixed ``before``/``after`` ids from :meth:`wrapper_ids`) by
    :func:`encode_prompt_parts`, which only ever truncates the document span.

    A subclass gives the text before the document slot (:meth:`head`) and after it
    (:meth:`tail`); the slot itself is the metadata rule of every format
    (:func:`~.base.render_document_slot`)."""

    @abstractmethod
    def head(self, query: str, instruction: str | None) -> str:
        """The prompt text before the document slot."""

    def tail(self, query: str, instruction: str | None) -> str:
        """The prompt text after the document (none by default)."""
        return ""

    def prompt_parts(
        self, query: str, instruction: str | None, document: str, metadata: str | None
    ) -> PromptParts:
        """The prompt of one document."""
        meta, doc = render_document_slot(document, metadata)
        return PromptParts(self.head(query, instruction) + meta, doc, self.tail(query, instruction))

    def wrapper_ids(self, encoder: TextEncoder) -> tuple[list[int], list[int]]:
        """Ids tokenized on their own before / after each prompt (none by default)."""
        return [], []

    def encode(
        self, encoder: TextEncoder, request: RerankRequest, *, max_length: int
    ) -> EncodedRequest:
        parts = [
            self.prompt_parts(
                request.query, request.instruction, d, metadata_at(request.metadata, i)
            )
            for i, d in enumerate(request.documents)
        ]
        before, after = self.wrapper_ids(encoder)
        docs = encode_prompt_parts(
            encoder, parts, before=before, after=after, add_special_tokens=True,
            max_length=max_length,
        )  # fmt: skip
        return EncodedRequest(tuple(docs))
