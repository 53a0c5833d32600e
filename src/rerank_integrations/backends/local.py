"""``LocalReranker``: rerank on this machine with torch + transformers.

A thin shell: :mod:`.local_loading` loads the model and picks the format recipe
(:mod:`.local_formats`), :mod:`.local_engine` runs the batches. The model loads EAGERLY in the
constructor, so a wrong id, a missing file or an unsafe checkpoint fails at construction, not
on the first query.

Install with ``pip install "rerank-integrations[local]"``. See docs/local.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Literal

from rerank_integrations.backends.local_formats import FORMATS, EncodedRequest, FormatRecipe
from rerank_integrations.base import Reranker
from rerank_integrations.errors import RerankInputError, RerankTypeError, UnsupportedFeatureError
from rerank_integrations.extras import import_extra
from rerank_integrations.results import RerankResult
from rerank_integrations.validation import RerankRequest

logger = logging.getLogger("rerank_integrations.backends.local")

__all__ = ["DEFAULT_MODEL", "LocalReranker"]

DEFAULT_MODEL = "ContextualAI/ctxl-rerank-v2-instruct-multilingual-1b"

InstructionMode = Literal["error", "prepend"]

_DEFAULT_BATCH_SIZE = 64
_DEFAULT_TOKEN_BUDGET = {"cuda": 32768, "mps": 4096, "cpu": 2048}
# Cross-encoders on CPU: small batches keep the bidirectional attention in cache; measured on
# the benchmark's W1 (docs/benchmarks.md) 512 tokens gave 2.1x the reference vs 1.5x at 2048.
_CPU_CLASSIFIER_TOKEN_BUDGET = 512


def _positive_int(field: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RerankTypeError(field, f"must be a positive int or None, got {type(value).__name__}")
    if value < 1:
        raise RerankInputError(field, f"must be >= 1, got {value}")
    return value


def _optional_str(field: str, value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise RerankTypeError(field, f"must be a str or None, got {type(value).__name__}")
    return value


def _bool(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise RerankTypeError(field, f"must be a bool, got {type(value).__name__}")
    return value


class LocalReranker(Reranker):
    """Scores with a reranker model on this machine, exactly as the model's authors score it.

    Args:
        model: hub id or local directory (default: ctxl-rerank-v2 1b, CC-BY-NC-SA-4.0).
        model_format: ``"ctxl-v2"``, ``"mxbai-v2"``, ``"qwen3"`` or ``"cross-encoder"``;
            ``None`` detects it from the id / config (error listing the formats if it cannot).
        device: ``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"cpu"``; ``None``: CUDA > MPS > CPU.
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"``; ``None``: bf16 on CUDA (fp16 where
            bf16 is unsupported), fp32 elsewhere.
        batch_size: max inputs per batch (default 64); the token budget usually binds first.
        max_length: max tokens per input (per window for cross-encoders; the query+document
            part for mxbai-v2, as its reference). ``None``: the format's default.
        instruction_mode: for formats without an instruction slot (cross-encoders):
            ``"error"`` raises ``UnsupportedFeatureError``; ``"prepend"`` scores
            ``f"{instruction} {query}"``.
        trust_remote_code: allow executing code shipped with the checkpoint (off; jina-v2
            loads without it).
        allow_pickle: allow loading pickle (``.bin``) weights (off: safetensors only).
        token_budget: max padded tokens per batch (default 32768 on CUDA, 4096 on MPS, 2048
            on CPU — 512 for cross-encoders — where bigger batches only add padding).
        attn_implementation: e.g. ``"sdpa"``, ``"flash_attention_2"``, ``"eager"``; ``None``:
            flash-attention 2 on CUDA when installed, else SDPA.
        revision: hub revision (branch, tag or commit) to load.
        prefix_caching: reuse the query prefix's KV cache across documents (causal formats).
    """

    backend_name = "local"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        model_format: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int | None = None,
        max_length: int | None = None,
        instruction_mode: InstructionMode = "error",
        trust_remote_code: bool = False,
        allow_pickle: bool = False,
        token_budget: int | None = None,
        attn_implementation: str | None = None,
        revision: str | None = None,
        prefix_caching: bool = True,
    ) -> None:
        from rerank_integrations.backends.local_loading import parse_dtype

        if not isinstance(model, str) or not model.strip():
            raise RerankInputError("model", "must be a non-empty str (hub id or local directory)")
        if model_format is not None and model_format not in FORMATS:
            raise RerankInputError(
                "model_format", f"unknown format {model_format!r}; use one of {list(FORMATS)}"
            )
        if instruction_mode not in ("error", "prepend"):
            raise RerankInputError(
                "instruction_mode", f"must be 'error' or 'prepend', got {instruction_mode!r}"
            )
        self._model = model
        self._model_format = model_format
        self._device = _optional_str("device", device)
        self._dtype = parse_dtype(dtype)
        self._batch_size = _positive_int("batch_size", batch_size)
        self._max_length = _positive_int("max_length", max_length)
        self._instruction_mode: InstructionMode = instruction_mode
        self._trust_remote_code = _bool("trust_remote_code", trust_remote_code)
        self._allow_pickle = _bool("allow_pickle", allow_pickle)
        self._token_budget = _positive_int("token_budget", token_budget)
        self._attn_implementation = _optional_str("attn_implementation", attn_implementation)
        self._revision = _optional_str("revision", revision)
        self._prefix_caching = _bool("prefix_caching", prefix_caching)

        torch = import_extra("torch", extra="local", feature="LocalReranker")
        import_extra("transformers", extra="local", feature="LocalReranker")
        from rerank_integrations.backends.local_engine import (
            CausalRunner,
            ClassifierRunner,
            EngineSettings,
            LocalEngine,
        )
        from rerank_integrations.backends.local_loading import load_model

        loaded = load_model(
            model,
            model_format=model_format,
            device=self._device,
            dtype=self._dtype,
            trust_remote_code=self._trust_remote_code,
            allow_pickle=self._allow_pickle,
            attn_implementation=self._attn_implementation,
            revision=self._revision,
        )
        self._recipe: FormatRecipe = loaded.recipe
        self._encoder = loaded.encoder
        default_len = loaded.recipe.default_max_length(
            loaded.max_positions, loaded.tokenizer_max_length
        )
        too_long = self._max_length is not None and self._max_length > loaded.max_positions
        if too_long and loaded.recipe.name != "mxbai-v2":  # mxbai reduces it like its reference
            raise RerankInputError(
                "max_length",
                f"{self._max_length} exceeds the model's {loaded.max_positions} positions",
            )
        self._effective_max_length = (
            self._max_length if self._max_length is not None else default_len
        )
        runner: Any
        if loaded.kind == "causal":
            runner = CausalRunner(
                torch,
                loaded.module,
                score_weight=loaded.score_weight,
                score_bias=loaded.score_bias,
                pad_token_id=loaded.pad_token_id,
                device=loaded.device,
            )
        else:
            runner = ClassifierRunner(
                torch, loaded.module, pad_token_id=loaded.pad_token_id, device=loaded.device
            )
        budget = self._token_budget
        if budget is None and loaded.device.type == "cpu" and self._recipe.kind == "classifier":
            budget = _CPU_CLASSIFIER_TOKEN_BUDGET
        elif budget is None:
            budget = _DEFAULT_TOKEN_BUDGET.get(loaded.device.type, 2048)
        self._engine = LocalEngine(
            runner,
            EngineSettings(
                token_budget=budget,
                max_batch_size=self._batch_size or _DEFAULT_BATCH_SIZE,
                prefix_caching=self._prefix_caching,
            ),
        )
        self.device = str(loaded.device)
        self.torch_dtype = str(loaded.dtype).removeprefix("torch.")
        self.attn_implementation_used = loaded.attn_implementation
        logger.info(
            "LocalReranker %s: format=%s device=%s dtype=%s attention=%s max_length=%d",
            model,
            loaded.recipe.name,
            self.device,
            self.torch_dtype,
            loaded.attn_implementation,
            self._effective_max_length,
        )

    # -- properties -------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return self._model

    @property
    def model_format(self) -> str:
        """The format recipe in use (detected or given)."""
        return self._recipe.name

    @property
    def max_length(self) -> int:
        """The max tokens per input in effect."""
        return self._effective_max_length

    @property
    def recipe(self) -> FormatRecipe:
        return self._recipe

    # -- scoring ------------------------------------------------------------------------------

    def _instruction(self, request: RerankRequest) -> str | None:
        instruction = request.instruction
        unsupported = instruction is not None and not self._recipe.follows_instruction
        if unsupported and self._instruction_mode == "error":
            raise UnsupportedFeatureError(
                f"the {self._recipe.name!r} format ({self._model}) cannot follow an "
                "instruction; drop it, or pass instruction_mode='prepend' to score "
                "'{instruction} {query}' as the query"
            )
        return instruction

    def _encode(self, request: RerankRequest) -> EncodedRequest:
        instruction = self._instruction(request)
        encoded = self._recipe.encode(
            self._encoder,
            request.query,
            instruction,
            request.documents,
            request.metadata,
            max_length=self._effective_max_length,
        )
        self._warn_truncation(encoded)
        return encoded

    def _warn_truncation(self, encoded: EncodedRequest) -> None:
        n = encoded.num_truncated
        if n or encoded.query_truncated:
            parts = []
            if n:
                parts.append(f"{n} of {len(encoded.documents)} documents were truncated")
            if encoded.query_truncated:
                parts.append("the query was truncated")
            logger.warning(
                "%s to fit max_length=%d (%s format)",
                " and ".join(parts),
                self._effective_max_length,
                self._recipe.name,
            )
        if encoded.num_windowed:
            logger.info(
                "%d documents longer than the %d-token window were scored by overlapping windows",
                encoded.num_windowed,
                self._effective_max_length,
            )

    def _inputs(self, encoded: EncodedRequest) -> list[Any]:
        return [x for doc in encoded.documents for x in doc.inputs]

    def _results(
        self, encoded: EncodedRequest, rows: Sequence[tuple[float, ...]]
    ) -> list[RerankResult]:
        recipe = self._recipe
        out = []
        pos = 0
        for index, doc in enumerate(encoded.documents):
            window_rows = rows[pos : pos + len(doc.inputs)]
            pos += len(doc.inputs)
            raw = max(recipe.raw_score(r) for r in window_rows)
            out.append(RerankResult(index, recipe.relevance(raw), raw))
        return out

    def _score(self, request: RerankRequest) -> Sequence[RerankResult]:
        encoded = self._encode(request)
        rows = self._engine.score(self._inputs(encoded))
        return self._results(encoded, rows)

    async def _ascore(self, request: RerankRequest) -> Sequence[RerankResult]:
        self._instruction(request)  # fail fast on the loop, before any thread hop
        encoded = await asyncio.to_thread(self._encode, request)
        future = self._engine.submit(self._inputs(encoded))
        rows = await asyncio.wrap_future(future)
        return self._results(encoded, rows)

    # -- lifecycle / config --------------------------------------------------------------------

    def close(self) -> None:
        """Stop the worker thread and free the model memory. Idempotent; a closed reranker
        raises ``RerankError`` when used."""
        self._engine.close()

    def to_config(self) -> dict[str, Any]:
        return {
            "backend": self.backend_name,
            "model": self._model,
            "model_format": self._model_format,
            "device": self._device,
            "dtype": self._dtype,
            "batch_size": self._batch_size,
            "max_length": self._max_length,
            "instruction_mode": self._instruction_mode,
            "trust_remote_code": self._trust_remote_code,
            "allow_pickle": self._allow_pickle,
            "token_budget": self._token_budget,
            "attn_implementation": self._attn_implementation,
            "revision": self._revision,
            "prefix_caching": self._prefix_caching,
        }

    def __repr__(self) -> str:
        return (
            f"LocalReranker(model={self._model!r}, model_format={self._recipe.name!r}, "
            f"device={self.device!r}, dtype={self.torch_dtype!r})"
        )
