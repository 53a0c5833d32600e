"""``ctxl-v2``: ContextualAI/ctxl-rerank-v2-instruct-multilingual-{1b,2b,6b}.

Everything here follows the ctxl-rerank-v2 model card (Hugging Face model page): the prompt,
tokenized as ONE text with the tokenizer's own special tokens (BOS on the Mistral-based 6b, none
on the Qwen3-based 1b/2b), no chat template, the document BEFORE the query::

    Check whether a given document contains information helpful to answer the query.
    <Document> {metadata\\n}{document}
    <Query> {query}[ {instruction}] ??

Raw score: the logit of vocabulary id 0 at the last position, rounded through bfloat16 as the
model card's code does. ``relevance_score = sigmoid(raw)`` (our choice; the hosted API's
normalisation is unpublished). The card publishes no truncation rule: the document is cut,
the query tail where the score is read is kept.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from rerank_integrations.backends.local.formats.base import ModelInfo, TextEncoder
from rerank_integrations.backends.local.formats.prompt import PromptFormat

__all__ = ["CtxlV2Format", "round_bfloat16"]


def round_bfloat16(x: float) -> float:
    """Round a float to the nearest bfloat16 (round-half-to-even), as ``.to(torch.bfloat16)``."""
    if not math.isfinite(x):
        return x
    bits = struct.unpack("<I", struct.pack("<f", x))[0]
    lsb = (bits >> 16) & 1
    bits = (bits + 0x7FFF + lsb) & 0xFFFF0000
    return float(struct.unpack("<f", struct.pack("<I", bits))[0])


@dataclass(frozen=True)
class CtxlV2Format(PromptFormat):
    """ContextualAI ctxl-rerank-v2: recognised by ``ctxl-rerank`` in the id / directory name."""

    name: ClassVar[str] = "ctxl-v2"
    summary: ClassVar[str] = "ContextualAI ctxl-rerank-v2"
    follows_instruction: ClassVar[bool] = True
    has_metadata_slot: ClassVar[bool] = True

    header: str = (
        "Check whether a given document contains information helpful to answer the query.\n"
        "<Document> "
    )
    query_line: str = "\n<Query> {query}{instruction} ??"
    score_token: int = 0

    def matches(self, info: ModelInfo) -> bool:
        return "ctxl-rerank" in info.names

    def head(self, query: str, instruction: str | None) -> str:
        return self.header

    def tail(self, query: str, instruction: str | None) -> str:
        return self.query_line.format(
            query=query, instruction=f" {instruction}" if instruction else ""
        )

    def score_token_ids(self, encoder: TextEncoder) -> tuple[int, ...]:
        return (self.score_token,)

    def raw_score(self, rows: Sequence[float]) -> float:
        return round_bfloat16(super().raw_score(rows))
