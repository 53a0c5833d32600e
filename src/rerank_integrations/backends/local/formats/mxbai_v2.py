"""``mxbai-v2``: mixedbread-ai/mxbai-rerank-{base,large}-v2.

Everything here follows mxbai-rerank's reference implementation ``MxbaiRerankV2`` (the
``mxbai-rerank`` package, 0.1.6), assembled in TOKEN-ID space exactly as it does:
``PREFIX + Q + SEP + D + SEP + TASK + SUFFIX`` with each piece tokenized on its own.

Lengths are the reference's, which is why this format declares ``max_length_policy =
"clamp"``: ``max_length`` (default 8192) is first reduced so that ``max_length + template``
fits the model's positions, instead of being refused; ``Q`` is cut to ``max_length*3//4``
tokens, ``D`` to ``min(model_max - len(Q) - template, max_length)`` and the pair ``Q, SEP+D``
is capped at ``max_length`` by cutting ``SEP+D`` ("only_second").

Raw = logit("1") - logit("0"); ``relevance_score = sigmoid(raw - m/2)`` with the reference's
estimated maximum ``m`` per checkpoint (9 for base, 12 for large and for unknown models).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import ClassVar, Literal

from rerank_integrations.backends.local.checkpoint import Checkpoint
from rerank_integrations.backends.local.engine import EncodedInput
from rerank_integrations.backends.local.formats.base import (
    CausalFormat,
    EncodedDocument,
    EncodedRequest,
    ModelInfo,
    TextEncoder,
    document_slots,
    sigmoid,
)
from rerank_integrations.validation import RerankRequest

__all__ = ["MXBAI_ESTIMATED_MAX", "MxbaiV2Format", "mxbai_estimated_max"]

#: estimated maximum raw score per public checkpoint (mxbai-rerank 0.1.6's table).
MXBAI_ESTIMATED_MAX: Mapping[str, float] = MappingProxyType(
    {
        "mixedbread-ai/mxbai-rerank-base-v2": 9.0,
        "mixedbread-ai/mxbai-rerank-large-v2": 12.0,
    }
)
MXBAI_DEFAULT_ESTIMATED_MAX = 12.0


def mxbai_estimated_max(model: str) -> float:
    """``m`` of ``sigmoid(raw - m/2)``: 9 for a *-base-v2* id or directory name, 12 for
    *-large-v2* and for anything else (the reference's default for unknown models)."""
    name = model.replace("\\", "/").rstrip("/").lower()
    if name in MXBAI_ESTIMATED_MAX:
        return MXBAI_ESTIMATED_MAX[name]
    base = name.rsplit("/", 1)[-1]
    if "mxbai-rerank-base" in base:
        return 9.0
    return MXBAI_DEFAULT_ESTIMATED_MAX


@dataclass(frozen=True)
class MxbaiV2Format(CausalFormat):
    """mxbai-rerank-v2: recognised by ``mxbai-rerank`` in the id / directory name AND a
    causal-LM architecture (mxbai-rerank v1 models are cross-encoders)."""

    name: ClassVar[str] = "mxbai-v2"
    summary: ClassVar[str] = "mixedbread mxbai-rerank-*-v2"
    follows_instruction: ClassVar[bool] = True
    max_length_policy: ClassVar[Literal["refuse", "clamp"]] = "clamp"
    row_weights: ClassVar[tuple[float, ...]] = (1.0, -1.0)

    estimated_max: float = MXBAI_DEFAULT_ESTIMATED_MAX
    model_max_positions: int = 32768
    prefix: str = (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
        "assistant.<|im_end|>\n<|im_start|>user\n"
    )
    suffix: str = "<|im_end|>\n<|im_start|>assistant\n"
    sep: str = "\n"
    instruction_prompt: str = "instruction: {instruction}"
    query_prompt: str = "query: {query}"
    doc_prompt: str = "document: "
    task_prompt: str = (
        "You are a search relevance expert who evaluates how well documents match search "
        "queries. For each query-document pair, carefully analyze the semantic relationship "
        "between them, then provide your binary relevance judgment (0 for not relevant, 1 for "
        "relevant).\nRelevance:"
    )
    yes_token: str = "1"
    no_token: str = "0"

    def matches(self, info: ModelInfo) -> bool:
        return "mxbai-rerank" in info.names and info.has_architecture("ForCausalLM")

    def bind(self, checkpoint: Checkpoint) -> MxbaiV2Format:
        """``m`` from the model's name, the position limit from its config."""
        return replace(
            self,
            estimated_max=mxbai_estimated_max(checkpoint.model),
            model_max_positions=checkpoint.max_positions,
        )

    def template_length(self, encoder: TextEncoder) -> int:
        """The reference's ``predefined_length`` (prefix + task + suffix + one sep)."""
        return sum(
            len(encoder.encode(t)) for t in (self.prefix, self.task_prompt, self.suffix, self.sep)
        )

    def effective_max_length(self, encoder: TextEncoder, max_length: int) -> int:
        template = self.template_length(encoder)
        if max_length + template > self.model_max_positions:
            return self.model_max_positions - template
        return max_length

    def default_max_length(self, max_positions: int, tokenizer_max_length: int | None) -> int:
        return 8192  # the reference's default; reduced by effective_max_length

    def query_text(self, query: str, instruction: str | None) -> str:
        text = self.query_prompt.format(query=query)
        if instruction:
            text = self.instruction_prompt.format(instruction=instruction) + self.sep + text
        return text

    def score_token_ids(self, encoder: TextEncoder) -> tuple[int, ...]:
        return (encoder.encode(self.yes_token)[0], encoder.encode(self.no_token)[0])

    def relevance(self, raw: float) -> float:
        return sigmoid(raw - self.estimated_max / 2)

    def encode(
        self, encoder: TextEncoder, request: RerankRequest, *, max_length: int
    ) -> EncodedRequest:
        max_len = self.effective_max_length(encoder, max_length)
        prefix = encoder.encode(self.prefix)
        sep = encoder.encode(self.sep)
        tail = [*sep, *encoder.encode(self.task_prompt), *encoder.encode(self.suffix)]
        template = self.template_length(encoder)
        q_all = encoder.encode(self.query_text(request.query, request.instruction))
        q_ids = q_all[: max_len * 3 // 4]
        doc_maxlen = min(self.model_max_positions - len(q_ids) - template, max_len)
        # the pair (Q, SEP + D) is capped at max_len by cutting the second sequence
        limit = max(0, min(doc_maxlen, max_len - len(q_ids) - len(sep)))
        slots = list(document_slots(request.documents, request.metadata))
        full = encoder.encode_batch([self.doc_prompt + m + d for m, d in slots])
        head = [*prefix, *q_ids, *sep]
        out = []
        for (meta, doc), d_ids in zip(slots, full, strict=True):
            truncated = len(d_ids) > limit
            if truncated and meta:
                protected = encoder.encode(self.doc_prompt + meta)
                body = encoder.encode(doc)
                d_ids = [*protected, *body[: max(0, limit - len(protected))]][:limit]
            else:
                d_ids = d_ids[:limit]
            ids = (*head, *d_ids, *tail)
            out.append(EncodedDocument((EncodedInput(ids, prefix_len=len(head)),), truncated))
        return EncodedRequest(tuple(out), query_truncated=len(q_ids) < len(q_all))
