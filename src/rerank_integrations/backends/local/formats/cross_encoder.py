"""``cross-encoder``: one-label sequence classifiers (jina-reranker-v2, bge-reranker-v2-m3,
ms-marco cross-encoders), scored on the tokenizer's own pair encoding of ``(query, document)``.

- Built with ``AutoModelForSequenceClassification``; a jina-reranker-v2 checkpoint (custom code
  on the hub) loads into the stock XLM-R classes through :mod:`..jina`, without that code.
- raw = the classifier logit; ``relevance_score = sigmoid(raw)`` (sentence-transformers'
  ``CrossEncoder`` default).
- Long documents are scored by windows (jina-reranker-v2's ``compute_score``, published with
  its model, applied to every cross-encoder): the query is cut to
  :meth:`CrossEncoderFormat.query_limit` tokens (512 for a 1024 window); a window holds
  ``P = max_length - len(query) - specials - len(metadata)`` document tokens; neighbours
  overlap by ``min(80, P // 4)``; the last window is right-aligned; the metadata is repeated in
  every window; the document's raw score is the MAX over its windows.
- Metadata in windows is capped (:meth:`CrossEncoderFormat.metadata_limit`): at most half of
  the room after the query (its first tokens and its last one, the line break before the
  document), so ``P`` is at least half the room and the window count is bounded by the
  document's length, whatever the metadata's. A document that fits one input keeps all of its
  metadata (nothing changes for short documents); the reranker warns once per call when
  metadata was cut.
- No instruction slot: an instruction raises ``UnsupportedFeatureError`` unless
  ``instruction_mode="prepend"``, which scores
  :func:`~rerank_integrations.folding.fold_instruction` (``f"{instruction} {query}"``) as the
  query.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import ClassVar

from rerank_integrations.backends.local.checkpoint import Checkpoint
from rerank_integrations.backends.local.engine import EncodedInput
from rerank_integrations.backends.local.formats.base import (
    DEFAULT_TOKEN_BUDGETS,
    BuiltModel,
    EncodedDocument,
    EncodedRequest,
    LocalFormat,
    ModelInfo,
    TextEncoder,
    attention_used,
    document_slots,
)
from rerank_integrations.backends.local.jina import is_jina_checkpoint, load_jina
from rerank_integrations.backends.local.runners import ClassifierRunner
from rerank_integrations.backends.local.tokenizer import PairTemplate
from rerank_integrations.errors import ModelLoadError, RerankInputError
from rerank_integrations.folding import fold_instruction
from rerank_integrations.validation import RerankRequest

__all__ = ["CrossEncoderFormat", "cap_metadata", "split_windows"]


def cap_metadata(meta_ids: list[int], limit: int) -> tuple[list[int], bool]:
    """``meta_ids`` cut to at most ``limit`` tokens — its first ``limit - 1`` and its last one
    (the line break that separates it from the document) — and whether it was cut."""
    if len(meta_ids) <= limit:
        return meta_ids, False
    if limit < 2:
        return meta_ids[:limit], True
    return [*meta_ids[: limit - 1], meta_ids[-1]], True


def split_windows(n_tokens: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """``[start, end)`` spans of ``window`` tokens covering ``n_tokens`` with ``overlap``
    tokens shared by neighbours; the last window is right-aligned (ends at ``n_tokens``).

    One span when the text fits. ``window`` must be >= 1 and ``0 <= overlap < window``."""
    if window < 1 or not 0 <= overlap < window:
        raise ValueError(f"bad window={window} / overlap={overlap}")
    if n_tokens <= window:
        return [(0, n_tokens)]
    stride = window - overlap
    spans = []
    start = 0
    while start + window < n_tokens:
        spans.append((start, start + window))
        start += stride
    spans.append((n_tokens - window, n_tokens))
    return spans


#: the unbound format's pair template (no special tokens); ``build`` learns the tokenizer's.
_NO_PAIR = PairTemplate((), (), ())


@dataclass(frozen=True)
class CrossEncoderFormat(LocalFormat):
    """Recognised by a jina-reranker-v2 config or any ``*ForSequenceClassification``
    architecture. ``pair`` is learnt from the tokenizer when the model is built."""

    name: ClassVar[str] = "cross-encoder"
    summary: ClassVar[str] = (
        "one-label sequence classifiers: jina-reranker-v2, bge-reranker, ms-marco"
    )
    follows_instruction: ClassVar[bool] = False
    # Cross-encoders on CPU: small batches keep the bidirectional attention in cache; measured
    # on the benchmark's W1 (docs/benchmarks.md) 512 tokens gave 2.1x the reference vs 1.5x at
    # 2048.
    token_budgets: ClassVar[Mapping[str, int]] = MappingProxyType(
        {**DEFAULT_TOKEN_BUDGETS, "cpu": 512}
    )

    pair: PairTemplate = _NO_PAIR
    max_query_length: int = 512
    min_passage_length: int = 128
    max_overlap: int = 80
    max_metadata_share: float = 0.5

    def matches(self, info: ModelInfo) -> bool:
        return is_jina_checkpoint(info.config) or info.has_architecture("ForSequenceClassification")

    def loads_without_repository_code(self, info: ModelInfo) -> bool:
        return is_jina_checkpoint(info.config)

    def build(self, checkpoint: Checkpoint) -> BuiltModel:
        if is_jina_checkpoint(checkpoint.config):
            module = load_jina(checkpoint)
        else:
            module = checkpoint.from_pretrained("AutoModelForSequenceClassification")
        num_labels = int(getattr(module.config, "num_labels", 1))
        if num_labels != 1:
            raise ModelLoadError(
                f"{checkpoint.model!r} has {num_labels} labels; the {self.name} format needs one"
            )
        module = module.to(checkpoint.device).eval()
        pad = checkpoint.pad_token_id
        if pad is None:
            pad = getattr(module.config, "pad_token_id", None) or 0
        runner = ClassifierRunner(
            checkpoint.torch, module, pad_token_id=int(pad), device=checkpoint.device
        )
        bound = replace(self, pair=checkpoint.pair_template())
        return BuiltModel(bound, runner, attention_used(module, checkpoint.attn_implementation))

    def default_max_length(self, max_positions: int, tokenizer_max_length: int | None) -> int:
        if tokenizer_max_length is not None and 0 < tokenizer_max_length < 1_000_000:
            return min(tokenizer_max_length, max_positions)
        return max_positions

    def query_limit(self, max_length: int) -> int:
        """``min(512, max(room - 128, room // 2))`` with ``room = max_length - specials``: 512
        for jina's 1024 window, at most half the window for small windows."""
        room = max_length - self.pair.num_special
        return max(1, min(self.max_query_length, max(room - self.min_passage_length, room // 2)))

    def metadata_limit(self, room: int) -> int:
        """The most metadata tokens a window holds when ``room`` tokens follow the query:
        ``int(room * max_metadata_share)`` (half), so the document part of every window is
        at least ``room - limit`` tokens."""
        return max(0, int(room * self.max_metadata_share))

    def encode(
        self, encoder: TextEncoder, request: RerankRequest, *, max_length: int
    ) -> EncodedRequest:
        q_all = encoder.encode(fold_instruction(request.query, request.instruction))
        q_ids = q_all[: self.query_limit(max_length)]
        slots = list(document_slots(request.documents, request.metadata))
        full = encoder.encode_batch([m + d for m, d in slots])
        room = max_length - len(q_ids) - self.pair.num_special
        out = []
        for (meta, doc), ids in zip(slots, full, strict=True):
            if len(ids) <= room:
                built, types = self.pair.build(q_ids, ids)
                out.append(EncodedDocument((EncodedInput(built, types),)))
                continue
            meta_ids = encoder.encode(meta) if meta else []
            d_ids = encoder.encode(doc) if meta else ids
            meta_ids, meta_cut = cap_metadata(meta_ids, self.metadata_limit(room))
            window = room - len(meta_ids)
            if window < 1:
                raise RerankInputError(
                    "metadata",
                    f"query + metadata take {len(q_ids) + len(meta_ids)} tokens, leaving no "
                    f"room for the document within max_length={max_length}",
                )
            overlap = min(self.max_overlap, window // 4)
            windows = []
            for start, end in split_windows(len(d_ids), window, overlap):
                built, types = self.pair.build(q_ids, [*meta_ids, *d_ids[start:end]])
                windows.append(EncodedInput(built, types))
            out.append(EncodedDocument(tuple(windows), metadata_cut=meta_cut))
        return EncodedRequest(tuple(out), query_truncated=len(q_ids) < len(q_all))
