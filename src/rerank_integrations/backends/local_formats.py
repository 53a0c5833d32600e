"""The scoring recipes of the local backend: one small declarative class per model format.

A recipe says, for one model family, how a ``(query, instruction, metadata, document)`` tuple
becomes token ids (with truncation), which vocabulary rows (causal formats) are read at the last
position, how those numbers combine into the raw score and how the raw score maps onto
``relevance_score``. The engine (:mod:`.local_engine`) knows nothing format-specific; it runs
whatever token ids a recipe produced and hands the rows back to :meth:`FormatRecipe.raw_score`.

Nothing here imports torch or transformers: a recipe only needs a :class:`TextEncoder` (plain
"text -> ids" functions), so every prompt, truncation and window rule is unit-testable with a
toy encoder.

Formats (facts: REFERENCE.md §1; prompts verbatim in docs/local.md):

========== ============================ ============================= =========================
name       score (raw)                  relevance_score               instruction
========== ============================ ============================= =========================
ctxl-v2    logit[id 0], bf16-rounded    sigmoid(raw)                  appended to the query
mxbai-v2   logit["1"] - logit["0"]      sigmoid(raw - m/2), m=9|12    "instruction: ..." line
qwen3      logit["yes"] - logit["no"]   sigmoid(raw)                  <Instruct> (has default)
cross-enc. classifier logit (max/window) sigmoid(raw)                  none (error | prepend)
========== ============================ ============================= =========================

Metadata (one rule for every format): a non-empty metadata string is placed on its own line(s)
right BEFORE the document text, inside the document slot of the prompt
(``{metadata}\\n{document}``). Truncation only ever removes document tokens, so metadata is never
cut; cross-encoder windows repeat it in every window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol

from rerank_integrations.errors import ModelLoadError, RerankInputError

__all__ = [
    "FORMATS",
    "CrossEncoderRecipe",
    "CtxlV2Recipe",
    "EncodedDocument",
    "EncodedInput",
    "EncodedRequest",
    "FormatRecipe",
    "MxbaiV2Recipe",
    "PairTemplate",
    "PromptParts",
    "Qwen3Recipe",
    "TextEncoder",
    "common_prefix_length",
    "encode_prompt_parts",
    "get_recipe",
    "render_document_slot",
    "sigmoid",
    "split_windows",
]


# ---------------------------------------------------------------------------------------------
# Small value types
# ---------------------------------------------------------------------------------------------


class TextEncoder(Protocol):
    """What a recipe needs from a tokenizer (implemented over a HF fast tokenizer in
    :mod:`.local_loading`; a toy one in the tests)."""

    #: ids the tokenizer adds before / after ONE text when special tokens are on (e.g. BOS).
    special_prefix: tuple[int, ...]
    special_suffix: tuple[int, ...]

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        ...

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """:meth:`encode` of many texts."""
        ...

    def token_id(self, token: str) -> int | None:
        """The vocabulary id of a token string (``None`` when it is not in the vocabulary)."""
        ...


@dataclass(frozen=True, slots=True)
class PairTemplate:
    """Where a tokenizer puts its special tokens around a text pair:
    ``prefix + A + middle + B + suffix`` with token-type ids ``type_a`` for ``prefix + A +
    middle`` and ``type_b`` for ``B + suffix`` (BERT: ``[CLS] A [SEP] B [SEP]`` types 0/1;
    XLM-R: ``<s> A </s></s> B </s>`` without token types)."""

    prefix: tuple[int, ...]
    middle: tuple[int, ...]
    suffix: tuple[int, ...]
    type_a: int = 0
    type_b: int = 1
    uses_token_types: bool = False

    @property
    def num_special(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)

    def build(
        self, a: Sequence[int], b: Sequence[int]
    ) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
        ids = (*self.prefix, *a, *self.middle, *b, *self.suffix)
        if not self.uses_token_types:
            return ids, None
        n_a = len(self.prefix) + len(a) + len(self.middle)
        return ids, (self.type_a,) * n_a + (self.type_b,) * (len(ids) - n_a)


@dataclass(frozen=True, slots=True)
class EncodedInput:
    """One model input. ``prefix_len`` leading tokens depend only on the query/instruction (not
    on the document), so their KV cache may be shared by every document of the call."""

    input_ids: tuple[int, ...]
    token_type_ids: tuple[int, ...] | None = None
    prefix_len: int = 0


@dataclass(frozen=True, slots=True)
class EncodedDocument:
    """The model inputs of one document: one, or several windows for long cross-encoder
    documents (the document's raw score is the max over its windows)."""

    inputs: tuple[EncodedInput, ...]
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class EncodedRequest:
    documents: tuple[EncodedDocument, ...]
    query_truncated: bool = False

    @property
    def num_truncated(self) -> int:
        return sum(doc.truncated for doc in self.documents)

    @property
    def num_windowed(self) -> int:
        return sum(len(doc.inputs) > 1 for doc in self.documents)


@dataclass(frozen=True, slots=True)
class PromptParts:
    """A prompt whose document sits between ``head`` and ``tail`` of ONE tokenized chunk.
    ``before``/``after`` are chunks tokenized on their own (as the reference code does)."""

    head: str
    document: str
    tail: str


# ---------------------------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------------------------


def sigmoid(x: float) -> float:
    """A numerically safe logistic function."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def round_bfloat16(x: float) -> float:
    """Round a float to the nearest bfloat16 (round-half-to-even), as ``.to(torch.bfloat16)``."""
    import struct

    if not math.isfinite(x):
        return x
    bits = struct.unpack("<I", struct.pack("<f", x))[0]
    lsb = (bits >> 16) & 1
    bits = (bits + 0x7FFF + lsb) & 0xFFFF0000
    return float(struct.unpack("<f", struct.pack("<I", bits))[0])


def render_document_slot(document: str, metadata: str | None) -> tuple[str, str]:
    """The protected text placed before the document (metadata lines) and the document itself.

    ``("", document)`` without metadata; ``(f"{metadata}\\n", document)`` with it."""
    if metadata:
        return f"{metadata}\n", document
    return "", document


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


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


# ---------------------------------------------------------------------------------------------
# Recipes
# ---------------------------------------------------------------------------------------------

ModelKind = Literal["causal", "classifier"]


class FormatRecipe:
    """Base of the four recipes. Subclasses are frozen dataclasses holding their constants."""

    name: ClassVar[str]
    #: ``causal``: read vocabulary rows at the last position; ``classifier``: one-label head.
    kind: ClassVar[ModelKind]
    #: whether the prompt has a slot for an instruction.
    follows_instruction: ClassVar[bool]
    #: instruction used when the caller gives none (``None``: the prompt has no instruction).
    default_instruction: ClassVar[str | None] = None
    #: padding side of the reference implementation (the engine gets the same scores with
    #: right padding + gathering the last real token, see local_engine).
    reference_padding_side: ClassVar[Literal["left", "right"]]
    #: True when the query precedes the document (a shared prefix worth caching).
    query_first: ClassVar[bool]
    #: coefficients applied to the score rows: raw = sum(c_i * row_i).
    row_weights: ClassVar[tuple[float, ...]] = (1.0,)
    #: round the raw score through bfloat16 (ctxl-v2's model card does).
    round_raw_to_bfloat16: ClassVar[bool] = False

    def score_token_ids(self, encoder: TextEncoder) -> tuple[int, ...]:
        """Vocabulary rows read at the last position (causal formats; ``()`` otherwise)."""
        return ()

    def default_max_length(self, model_max_positions: int, tokenizer_max_length: int | None) -> int:
        return min(8192, model_max_positions)

    def encode(
        self,
        encoder: TextEncoder,
        query: str,
        instruction: str | None,
        documents: Sequence[str],
        metadata: Sequence[str] | None,
        *,
        max_length: int,
    ) -> EncodedRequest:
        raise NotImplementedError

    def raw_score(self, rows: Sequence[float]) -> float:
        raw = math.fsum(w * r for w, r in zip(self.row_weights, rows, strict=True))
        return round_bfloat16(raw) if self.round_raw_to_bfloat16 else raw

    def relevance(self, raw: float) -> float:
        return sigmoid(raw)


def _metadata_for(metadata: Sequence[str] | None, i: int) -> str | None:
    return metadata[i] if metadata is not None else None


@dataclass(frozen=True)
class PromptRecipe(FormatRecipe):
    """A causal recipe built from a text prompt: :meth:`prompt_parts` per document, tokenized as
    one text (plus fixed ``before``/``after`` ids from :meth:`wrapper_ids`) by
    :func:`encode_prompt_parts`, which only ever truncates the document span."""

    def prompt_parts(
        self, query: str, instruction: str | None, document: str, metadata: str | None
    ) -> PromptParts:
        raise NotImplementedError

    def wrapper_ids(self, encoder: TextEncoder) -> tuple[list[int], list[int]]:
        """Ids tokenized on their own before / after each prompt (none by default)."""
        return [], []

    def encode(
        self,
        encoder: TextEncoder,
        query: str,
        instruction: str | None,
        documents: Sequence[str],
        metadata: Sequence[str] | None,
        *,
        max_length: int,
    ) -> EncodedRequest:
        parts = [
            self.prompt_parts(query, instruction, d, _metadata_for(metadata, i))
            for i, d in enumerate(documents)
        ]
        before, after = self.wrapper_ids(encoder)
        docs = encode_prompt_parts(
            encoder, parts, before=before, after=after, add_special_tokens=True,
            max_length=max_length,
        )  # fmt: skip
        return EncodedRequest(tuple(docs))


@dataclass(frozen=True)
class CtxlV2Recipe(PromptRecipe):
    """ContextualAI ctxl-rerank-v2-instruct-multilingual-{1b,2b,6b}.

    Prompt (document BEFORE the query, instruction after one space, no chat template)::

        Check whether a given document contains information helpful to answer the query.
        <Document> {metadata\\n}{document}
        <Query> {query}[ {instruction}] ??

    tokenized as ONE text with the tokenizer's own special tokens (BOS on Mistral-based 6b, none
    on Qwen3-based 1b/2b). Raw score: logit of vocabulary id 0 at the last position, rounded
    through bfloat16 (model card). ``relevance_score = sigmoid(raw)``."""

    name: ClassVar[str] = "ctxl-v2"
    kind: ClassVar[ModelKind] = "causal"
    follows_instruction: ClassVar[bool] = True
    reference_padding_side: ClassVar[Literal["left", "right"]] = "left"
    query_first: ClassVar[bool] = False
    round_raw_to_bfloat16: ClassVar[bool] = True

    header: str = (
        "Check whether a given document contains information helpful to answer the query.\n"
        "<Document> "
    )
    query_line: str = "\n<Query> {query}{instruction} ??"
    score_token: int = 0

    def prompt_parts(
        self, query: str, instruction: str | None, document: str, metadata: str | None
    ) -> PromptParts:
        meta, doc = render_document_slot(document, metadata)
        tail = self.query_line.format(
            query=query, instruction=f" {instruction}" if instruction else ""
        )
        return PromptParts(self.header + meta, doc, tail)

    def score_token_ids(self, encoder: TextEncoder) -> tuple[int, ...]:
        return (self.score_token,)



@dataclass(frozen=True)
class Qwen3Recipe(PromptRecipe):
    """Qwen/Qwen3-Reranker-{0.6B,4B,8B}: yes/no judgement.

    ``prefix`` and ``suffix`` are tokenized on their own; the body
    ``<Instruct>: {instruction}\\n<Query>: {query}\\n<Document>: {metadata\\n}{document}`` as
    one text (official code). Raw = logit("yes") - logit("no");
    ``relevance_score = sigmoid(raw)`` (= the official softmax over [no, yes])."""

    name: ClassVar[str] = "qwen3"
    kind: ClassVar[ModelKind] = "causal"
    follows_instruction: ClassVar[bool] = True
    default_instruction: ClassVar[str | None] = (
        "Given a web search query, retrieve relevant passages that answer the query"
    )
    reference_padding_side: ClassVar[Literal["left", "right"]] = "left"
    query_first: ClassVar[bool] = True
    row_weights: ClassVar[tuple[float, ...]] = (1.0, -1.0)

    prefix: str = (
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the "
        'Query and the Instruct provided. Note that the answer can only be "yes" or "no".'
        "<|im_end|>\n<|im_start|>user\n"
    )
    body_head: str = "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: "
    suffix: str = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    yes_token: str = "yes"
    no_token: str = "no"

    def prompt_parts(
        self, query: str, instruction: str | None, document: str, metadata: str | None
    ) -> PromptParts:
        meta, doc = render_document_slot(document, metadata)
        head = self.body_head.format(
            instruction=instruction if instruction else self.default_instruction, query=query
        )
        return PromptParts(head + meta, doc, "")

    def score_token_ids(self, encoder: TextEncoder) -> tuple[int, ...]:
        return (_single_token(encoder, self.yes_token), _single_token(encoder, self.no_token))

    def wrapper_ids(self, encoder: TextEncoder) -> tuple[list[int], list[int]]:
        return encoder.encode(self.prefix), encoder.encode(self.suffix)


#: estimated maximum raw score per public checkpoint (mxbai-rerank 0.1.6's table).
MXBAI_ESTIMATED_MAX = {
    "mixedbread-ai/mxbai-rerank-base-v2": 9.0,
    "mixedbread-ai/mxbai-rerank-large-v2": 12.0,
}
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
class MxbaiV2Recipe(FormatRecipe):
    """mixedbread-ai/mxbai-rerank-{base,large}-v2, assembled in TOKEN-ID space exactly as
    mxbai-rerank 0.1.6: ``PREFIX + Q + SEP + D + SEP + TASK + SUFFIX`` with each piece tokenized
    on its own; ``Q`` truncated to ``max_length*3//4`` tokens, ``D`` to
    ``min(model_max - len(Q) - template, max_length)`` and the pair ``Q, SEP+D`` capped at
    ``max_length`` by cutting ``SEP+D`` ("only_second"). ``max_length`` is first reduced so that
    ``max_length + template`` fits the model's positions.

    Raw = logit("1") - logit("0"); ``relevance_score = sigmoid(raw - m/2)``."""

    name: ClassVar[str] = "mxbai-v2"
    kind: ClassVar[ModelKind] = "causal"
    follows_instruction: ClassVar[bool] = True
    reference_padding_side: ClassVar[Literal["left", "right"]] = "left"
    query_first: ClassVar[bool] = True
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

    def default_max_length(self, model_max_positions: int, tokenizer_max_length: int | None) -> int:
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
        self,
        encoder: TextEncoder,
        query: str,
        instruction: str | None,
        documents: Sequence[str],
        metadata: Sequence[str] | None,
        *,
        max_length: int,
    ) -> EncodedRequest:
        max_len = self.effective_max_length(encoder, max_length)
        prefix = encoder.encode(self.prefix)
        sep = encoder.encode(self.sep)
        tail = [*sep, *encoder.encode(self.task_prompt), *encoder.encode(self.suffix)]
        template = self.template_length(encoder)
        q_all = encoder.encode(self.query_text(query, instruction))
        q_ids = q_all[: max_len * 3 // 4]
        doc_maxlen = min(self.model_max_positions - len(q_ids) - template, max_len)
        # the pair (Q, SEP + D) is capped at max_len by cutting the second sequence
        limit = max(0, min(doc_maxlen, max_len - len(q_ids) - len(sep)))
        slots = [
            render_document_slot(d, _metadata_for(metadata, i)) for i, d in enumerate(documents)
        ]
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


@dataclass(frozen=True)
class CrossEncoderRecipe(FormatRecipe):
    """Sequence-classification rerankers with one label (jina-reranker-v2, bge-reranker-v2-m3,
    ms-marco cross-encoders): the tokenizer's own pair encoding of ``(query, document)``.

    Long documents are scored by windows (jina's recipe, applied to every cross-encoder): the
    query is cut to :meth:`query_limit` tokens (512 for a 1024 window); a window holds
    ``P = max_length - len(query) - specials - len(metadata)`` document tokens; neighbours
    overlap by ``min(80, P // 4)``; the last window is right-aligned; the document's raw score is
    the MAX over its windows. ``relevance_score = sigmoid(raw)``. No instruction slot: an
    instruction raises ``UnsupportedFeatureError`` unless ``instruction_mode="prepend"``, which
    scores ``f"{instruction} {query}"`` as the query."""

    name: ClassVar[str] = "cross-encoder"
    kind: ClassVar[ModelKind] = "classifier"
    follows_instruction: ClassVar[bool] = False
    reference_padding_side: ClassVar[Literal["left", "right"]] = "right"
    query_first: ClassVar[bool] = False

    pair: PairTemplate = PairTemplate((), (), ())
    max_query_length: int = 512
    min_passage_length: int = 128
    max_overlap: int = 80

    def default_max_length(self, model_max_positions: int, tokenizer_max_length: int | None) -> int:
        if tokenizer_max_length is not None and 0 < tokenizer_max_length < 1_000_000:
            return min(tokenizer_max_length, model_max_positions)
        return model_max_positions

    def query_limit(self, max_length: int) -> int:
        """``min(512, max(room - 128, room // 2))`` with ``room = max_length - specials``: 512
        for jina's 1024 window, at most half the window for small windows."""
        room = max_length - self.pair.num_special
        return max(1, min(self.max_query_length, max(room - self.min_passage_length, room // 2)))

    def encode(
        self,
        encoder: TextEncoder,
        query: str,
        instruction: str | None,
        documents: Sequence[str],
        metadata: Sequence[str] | None,
        *,
        max_length: int,
    ) -> EncodedRequest:
        if instruction:
            query = f"{instruction} {query}"
        q_all = encoder.encode(query)
        q_ids = q_all[: self.query_limit(max_length)]
        slots = [
            render_document_slot(d, _metadata_for(metadata, i)) for i, d in enumerate(documents)
        ]
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
            out.append(EncodedDocument(tuple(windows)))
        return EncodedRequest(tuple(out), query_truncated=len(q_ids) < len(q_all))


def _single_token(encoder: TextEncoder, token: str) -> int:
    tid = encoder.token_id(token)
    if tid is not None:
        return tid
    ids = encoder.encode(token)
    if len(ids) != 1:
        raise ModelLoadError(f"the tokenizer has no single token for {token!r} (got {ids})")
    return ids[0]


#: the format names accepted by ``LocalReranker(model_format=...)``.
FORMATS: tuple[str, ...] = (
    CtxlV2Recipe.name,
    MxbaiV2Recipe.name,
    Qwen3Recipe.name,
    CrossEncoderRecipe.name,
)


def get_recipe(name: str) -> type[FormatRecipe]:
    """The recipe class of a format name; ``RerankInputError`` listing the formats otherwise."""
    for cls in (CtxlV2Recipe, MxbaiV2Recipe, Qwen3Recipe, CrossEncoderRecipe):
        if cls.name == name:
            return cls
    raise RerankInputError("model_format", f"unknown format {name!r}; use one of {list(FORMATS)}")
