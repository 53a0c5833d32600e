"""What a local format is: :class:`LocalFormat` (and :class:`CausalFormat` for causal LMs).

A format owns everything about one model family:

- **recognition**: :meth:`LocalFormat.matches` looks at the model id / directory name and the
  raw ``config.json`` (a :class:`ModelInfo`); the registry (``formats.FORMATS``) asks every
  format in order and the first match wins;
- **building**: :meth:`LocalFormat.build` loads the network from a
  :class:`~rerank_integrations.backends.local.checkpoint.Checkpoint` (which transformers class,
  or a converter such as the jina mapping) and returns the format bound to that checkpoint
  plus the batch runner the engine drives (a :class:`BuiltModel`);
- **prompt / encoding**: :meth:`LocalFormat.encode` turns ``(query, instruction, documents,
  metadata)`` into token ids, with the format's truncation rule;
- **scores**: :meth:`LocalFormat.raw_score` combines the rows the runner read into the raw
  score, :meth:`LocalFormat.relevance` maps it onto ``relevance_score``;
- **lengths**: :meth:`LocalFormat.default_max_length` and ``max_length_policy`` (refuse a
  ``max_length`` beyond the model's positions, or reduce it like the reference does).

Encoding and scoring need no torch: a format only sees a :class:`TextEncoder` (plain
"text -> ids" functions), so every prompt, truncation and window rule is unit-testable with a
toy encoder. Only :meth:`LocalFormat.build` touches the loaded checkpoint.

Metadata (one rule for every format, :func:`~rerank_integrations.folding.fold_metadata`): a
non-empty metadata string goes on its own line(s) right BEFORE the document text, inside the
document slot of the prompt (``{metadata}\\n{document}``). Truncation only ever removes document
tokens, so metadata is never cut — except in a long document's cross-encoder windows, where it
is capped to half of each window (:mod:`.cross_encoder`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Literal, Protocol

from rerank_integrations.backends.local.checkpoint import Checkpoint
from rerank_integrations.backends.local.engine import BatchRunner, EncodedInput
from rerank_integrations.backends.local.runners import CausalRunner, score_rows
from rerank_integrations.backends.local.tokenizer import PairTemplate
from rerank_integrations.errors import ModelLoadError, RerankInputError
from rerank_integrations.folding import fold_metadata
from rerank_integrations.validation import RerankRequest

__all__ = [
    "DEFAULT_TOKEN_BUDGETS",
    "BuiltModel",
    "CausalFormat",
    "EncodedDocument",
    "EncodedInput",
    "EncodedRequest",
    "LocalFormat",
    "ModelInfo",
    "PairTemplate",
    "TextEncoder",
    "attention_used",
    "document_slots",
    "metadata_at",
    "render_document_slot",
    "sigmoid",
    "single_token_id",
]


# ---------------------------------------------------------------------------------------------
# Value types
# ---------------------------------------------------------------------------------------------


class TextEncoder(Protocol):
    """What a format needs from a tokenizer (implemented over a HF fast tokenizer in
    :mod:`..tokenizer`; a toy one in the tests)."""

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
class EncodedDocument:
    """The model inputs of one document: one, or several windows for long cross-encoder
    documents (the document's raw score is the max over its windows). ``metadata_cut``: the
    windows hold only part of the document's metadata (the cross-encoder window cap)."""

    inputs: tuple[EncodedInput, ...]
    truncated: bool = False
    metadata_cut: bool = False


@dataclass(frozen=True, slots=True)
class EncodedRequest:
    """The encoded documents of one call, in order; ``query_truncated`` when the query itself
    had to be cut."""

    documents: tuple[EncodedDocument, ...]
    query_truncated: bool = False

    @property
    def num_truncated(self) -> int:
        return sum(doc.truncated for doc in self.documents)

    @property
    def num_windowed(self) -> int:
        return sum(len(doc.inputs) > 1 for doc in self.documents)

    @property
    def num_metadata_cut(self) -> int:
        return sum(doc.metadata_cut for doc in self.documents)


@dataclass(frozen=True)
class ModelInfo:
    """What format detection sees: the id or path the user passed and its raw ``config.json``."""

    model: str
    config: Mapping[str, Any]

    @property
    def names(self) -> str:
        """The id / path and the config's ``_name_or_path``, lower-cased with ``/`` separators:
        where hub-id hints such as ``mxbai-rerank`` are found."""
        name = self.model.replace("\\", "/").lower()
        if self.config.get("_name_or_path"):
            name += " " + str(self.config["_name_or_path"]).lower()
        return name

    @property
    def architectures(self) -> tuple[str, ...]:
        """The config's architecture names (none when ``architectures`` is not a list)."""
        archs = self.config.get("architectures")
        if not isinstance(archs, list | tuple):
            return ()
        return tuple(a for a in archs if isinstance(a, str))

    def has_architecture(self, suffix: str) -> bool:
        """Whether an architecture name ends with ``suffix`` (e.g. ``"ForCausalLM"``)."""
        return any(a.endswith(suffix) for a in self.architectures)


@dataclass(frozen=True)
class BuiltModel:
    """What :meth:`LocalFormat.build` returns: the format bound to the checkpoint (constants
    read from it), the runner the engine drives and the attention implementation in use."""

    format: LocalFormat
    runner: BatchRunner
    attn_implementation: str


# ---------------------------------------------------------------------------------------------
# Pure helpers shared by the formats
# ---------------------------------------------------------------------------------------------


def sigmoid(x: float) -> float:
    """A numerically safe logistic function."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def render_document_slot(document: str, metadata: str | None) -> tuple[str, str]:
    """The protected text placed before the document (metadata lines) and the document itself:
    ``("", document)`` without metadata, ``(f"{metadata}\\n", document)`` with it (so the two
    parts joined are :func:`~rerank_integrations.folding.fold_metadata`)."""
    return fold_metadata("", metadata), document


def metadata_at(metadata: Sequence[str] | None, i: int) -> str | None:
    """The metadata string of document ``i`` (``None`` when the call has no metadata)."""
    return metadata[i] if metadata is not None else None


def document_slots(
    documents: Sequence[str], metadata: Sequence[str] | None
) -> Iterator[tuple[str, str]]:
    """:func:`render_document_slot` of every document with its metadata."""
    for i, document in enumerate(documents):
        yield render_document_slot(document, metadata_at(metadata, i))


def single_token_id(encoder: TextEncoder, token: str) -> int:
    """The id of a token string, or of the one token its text encodes to."""
    tid = encoder.token_id(token)
    if tid is not None:
        return tid
    ids = encoder.encode(token)
    if len(ids) != 1:
        raise ModelLoadError(f"the tokenizer has no single token for {token!r} (got {ids})")
    return ids[0]


def attention_used(module: Any, requested: str) -> str:
    """The attention implementation a loaded transformers module actually runs."""
    return str(getattr(module.config, "_attn_implementation", requested))


# ---------------------------------------------------------------------------------------------
# Formats
# ---------------------------------------------------------------------------------------------

#: max padded tokens per batch by device type (other devices: 2048); bigger batches on CPU only
#: add padding.
DEFAULT_TOKEN_BUDGETS: Mapping[str, int] = MappingProxyType(
    {"cuda": 32768, "mps": 4096, "cpu": 2048}
)


class LocalFormat(ABC):
    """One model family's recognition, loading, prompt, scores and length policy.

    Subclass it as a frozen dataclass holding the format's constants (prompt pieces, score
    tokens); :meth:`build` returns a copy bound to the loaded checkpoint where a constant comes
    from the model (see :class:`~.mxbai_v2.MxbaiV2Format`). Add it to a detection order with
    ``LocalReranker(formats=(MyFormat(), *FORMATS))`` or pass it as ``model_format=MyFormat()``;
    docs/design.md "Adding a local format" has a worked example."""

    #: the name accepted by ``LocalReranker(model_format=...)`` and shown in ``model_format``.
    name: ClassVar[str]
    #: which models it serves, for the "cannot tell which format" error and the CLI help.
    summary: ClassVar[str]
    #: whether the prompt has a slot for an instruction (else ``instruction_mode`` decides).
    follows_instruction: ClassVar[bool]
    #: whether the prompt has a slot of its own for per-document metadata (else metadata is
    #: folded into the document text); adapters send metadata by default only to a slot.
    has_metadata_slot: ClassVar[bool] = False
    #: a ``max_length`` beyond the model's positions: ``"refuse"`` (``RerankInputError``) or
    #: ``"clamp"`` (accepted; :meth:`encode` reduces it, as the format's reference does).
    max_length_policy: ClassVar[Literal["refuse", "clamp"]] = "refuse"
    #: default max padded tokens per batch, by device type.
    token_budgets: ClassVar[Mapping[str, int]] = DEFAULT_TOKEN_BUDGETS
    #: coefficients applied to the score rows the runner returns: raw = sum(c_i * row_i).
    row_weights: ClassVar[tuple[float, ...]] = (1.0,)

    @abstractmethod
    def matches(self, info: ModelInfo) -> bool:
        """Whether this format scores the model ``info`` describes (format detection)."""

    def loads_without_repository_code(self, info: ModelInfo) -> bool:
        """True when :meth:`build` loads this checkpoint with stock classes although its config
        points at repository code (``auto_map``), so that code is never needed."""
        return False

    @abstractmethod
    def build(self, checkpoint: Checkpoint) -> BuiltModel:
        """Load the network from ``checkpoint`` and bind the format to it."""

    def default_max_length(self, max_positions: int, tokenizer_max_length: int | None) -> int:
        """``max_length`` when the caller gives none."""
        return min(8192, max_positions)

    def resolve_max_length(
        self, requested: int | None, max_positions: int, tokenizer_max_length: int | None
    ) -> int:
        """The ``max_length`` in effect, by :attr:`max_length_policy`."""
        if requested is None:
            return self.default_max_length(max_positions, tokenizer_max_length)
        if requested > max_positions and self.max_length_policy == "refuse":
            raise RerankInputError(
                "max_length", f"{requested} exceeds the model's {max_positions} positions"
            )
        return requested

    def default_token_budget(self, device_type: str) -> int:
        return self.token_budgets.get(device_type, DEFAULT_TOKEN_BUDGETS["cpu"])

    @abstractmethod
    def encode(
        self, encoder: TextEncoder, request: RerankRequest, *, max_length: int
    ) -> EncodedRequest:
        """Token ids of the model input(s) of every document of ``request`` (its query,
        instruction, documents and metadata), truncated to ``max_length``."""

    def raw_score(self, rows: Sequence[float]) -> float:
        """The raw score of one model input from the rows its runner returned."""
        return math.fsum(w * r for w, r in zip(self.row_weights, rows, strict=True))

    def relevance(self, raw: float) -> float:
        """``relevance_score`` in [0, 1] of a raw score (default ``sigmoid(raw)``)."""
        return sigmoid(raw)


class CausalFormat(LocalFormat):
    """A format that reads 1-2 vocabulary rows of a causal LM at the last position.

    :meth:`build` loads ``AutoModelForCausalLM``, keeps the decoder body plus the ``lm_head``
    rows of :meth:`score_token_ids` (the full-vocabulary projection is never computed, nor
    kept in memory when untied) and drives it with a :class:`~..runners.CausalRunner`."""

    @abstractmethod
    def score_token_ids(self, encoder: TextEncoder) -> tuple[int, ...]:
        """Vocabulary rows read at the last position (``raw_score`` gets them in this order)."""

    def bind(self, checkpoint: Checkpoint) -> CausalFormat:
        """This format with the constants that come from the checkpoint (none by default)."""
        return self

    def build(self, checkpoint: Checkpoint) -> BuiltModel:
        fmt = self.bind(checkpoint)
        lm = checkpoint.from_pretrained("AutoModelForCausalLM")
        torch, device = checkpoint.torch, checkpoint.device
        weight, bias = score_rows(
            torch,
            lm,
            fmt.score_token_ids(checkpoint.encoder),
            device=device,
            dtype=checkpoint.dtype,
        )
        attn = attention_used(lm, checkpoint.attn_implementation)
        body = lm.base_model
        del lm  # drops lm_head unless it is tied to the input embeddings
        pad = checkpoint.pad_token_id
        if pad is None:
            pad = checkpoint.eos_token_id if checkpoint.eos_token_id is not None else 0
        runner = CausalRunner(
            torch,
            body.to(device).eval(),
            score_weight=weight,
            score_bias=bias,
            pad_token_id=int(pad),
            device=device,
        )
        return BuiltModel(fmt, runner, attn)
