"""``qwen3``: Qwen/Qwen3-Reranker-{0.6B,4B,8B}, a yes/no judgement.

Everything here follows the Qwen3-Reranker model card's transformers code: ``prefix`` and
``suffix`` are tokenized on their own, the body
``<Instruct>: {instruction}\\n<Query>: {query}\\n<Document>: {metadata\\n}{document}`` as one
text and right-truncated (it ends with the document). The instruction defaults to the card's
web-search one. Raw = logit("yes") - logit("no"); ``relevance_score = sigmoid(raw)`` (= the
card's softmax over [no, yes]).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rerank_integrations.backends.local.formats.base import (
    ModelInfo,
    TextEncoder,
    single_token_id,
)
from rerank_integrations.backends.local.formats.prompt import PromptFormat

__all__ = ["Qwen3Format"]


@dataclass(frozen=True)
class Qwen3Format(PromptFormat):
    """Qwen3-Reranker: recognised by ``qwen3-reranker`` in the id / directory name."""

    name: ClassVar[str] = "qwen3"
    summary: ClassVar[str] = "Qwen3-Reranker"
    follows_instruction: ClassVar[bool] = True
    row_weights: ClassVar[tuple[float, ...]] = (1.0, -1.0)

    default_instruction: str = (
        "Given a web search query, retrieve relevant passages that answer the query"
    )
    prefix: str = (
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the "
        'Query and the Instruct provided. Note that the answer can only be "yes" or "no".'
        "<|im_end|>\n<|im_start|>user\n"
    )
    body_head: str = "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: "
    suffix: str = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    yes_token: str = "yes"
    no_token: str = "no"

    def matches(self, info: ModelInfo) -> bool:
        return "qwen3-reranker" in info.names

    def head(self, query: str, instruction: str | None) -> str:
        return self.body_head.format(
            instruction=instruction if instruction else self.default_instruction, query=query
        )

    def score_token_ids(self, encoder: TextEncoder) -> tuple[int, ...]:
        return (single_token_id(encoder, self.yes_token), single_token_id(encoder, self.no_token))

    def wrapper_ids(self, encoder: TextEncoder) -> tuple[list[int], list[int]]:
        return encoder.encode(self.prefix), encoder.encode(self.suffix)
