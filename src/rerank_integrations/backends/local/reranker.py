"""``LocalReranker``: rerank on this machine with torch + transformers.

A thin shell: :mod:`.loading` finds the model's format (:mod:`.formats`) and lets it build the
model, :mod:`.engine` runs the batches. Every argument is checked first (wrong type:
``RerankTypeError``, bad value: ``RerankInputError``, both naming the field); then the model
loads EAGERLY in the constructor, so a wrong id, a missing file or an unsafe checkpoint fails at
construction, not on the first query; so does a malformed one (a config that is not JSON or
nested too deeply, truncated weights, a config that does not match its weights): every failure
to load is a ``ModelLoadError`` naming the file and the reason. A score that is not a finite
number (a corrupt checkpoint's NaN) is never returned: the call raises ``NonFiniteScoreError``.

Lifecycle (docs/reliability.md "Local backend"): ``close()`` (or ``with``) frees the model; a
reranker dropped without it is collected with its model and worker thread; after
``os.fork()`` the child can keep using it; ``pickle`` / ``copy.deepcopy`` rebuild it from its
settings (the model loads again, eagerly; weights and threads are never pickled).

Install with ``pip install "rerank-integrations[local]"``. See docs/local.md.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from typing import Any, Literal, cast

from rerank_integrations import tracing
from rerank_integrations.backends.local.engine import (
    EncodedInput,
    EngineSettings,
    LocalEngine,
    current_call_scope,
)
from rerank_integrations.backends.local.formats import resolve_format, validate_formats
from rerank_integrations.backends.local.formats.base import EncodedRequest, LocalFormat
from rerank_integrations.backends.local.loading import parse_device, parse_dtype
from rerank_integrations.backends.local.quantize import (
    Quantize,
    check_quantize_request,
    parse_quantize,
)
from rerank_integrations.base import Reranker
from rerank_integrations.errors import (
    NonFiniteScoreError,
    RerankerClosedError,
    UnsupportedFeatureError,
)
from rerank_integrations.results import RerankResult
from rerank_integrations.validation import (
    RerankRequest,
    bool_value,
    choice_value,
    optional_int,
    optional_str,
    str_value,
)

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_MODEL", "LocalReranker"]

DEFAULT_MODEL = "ContextualAI/ctxl-rerank-v2-instruct-multilingual-1b"

InstructionMode = Literal["error", "prepend"]
INSTRUCTION_MODES: tuple[InstructionMode, ...] = ("error", "prepend")

_DEFAULT_BATCH_SIZE = 64


class LocalReranker(Reranker):
    """Scores with a reranker model on this machine, exactly as the model's authors score it.

    Args:
        model: hub id or local directory (default: ctxl-rerank-v2 1b, CC-BY-NC-SA-4.0).
        model_format: a format name (``"ctxl-v2"``, ``"mxbai-v2"``, ``"qwen3"``,
            ``"cross-encoder"``, or one of ``formats``) or a
            :class:`~rerank_integrations.backends.local.LocalFormat` object; ``None`` detects
            it from the id / config (error listing the formats if it cannot).
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
        formats: the formats to detect from, in order, and to look ``model_format`` names up
            in (default: the registry ``FORMATS``). Not part of :meth:`to_config`.
        quantize: ``None`` (fp32, the default) or ``"int8"``: dynamic int8 quantisation of the
            model body's linear layers, CPU and fp32 only (``RerankInputError`` naming
            ``quantize`` on another device or dtype, before anything loads); faster, scores
            close to but not equal to fp32 (docs/local.md "int8 on CPU").
    """

    backend_name = "local"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        model_format: str | LocalFormat | None = None,
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
        formats: Sequence[LocalFormat] | None = None,
        quantize: Quantize | None = None,
    ) -> None:
        self._model = str_value("model", model)
        formats_used = validate_formats(formats)
        self._formats = None if formats is None else tuple(formats_used)
        self._model_format = resolve_format(model_format, formats_used)
        self._device = parse_device(device)
        self._dtype = parse_dtype(dtype)
        self._batch_size = optional_int("batch_size", batch_size, minimum=1)
        self._max_length = optional_int("max_length", max_length, minimum=1)
        self._instruction_mode = cast(
            InstructionMode, choice_value("instruction_mode", instruction_mode, INSTRUCTION_MODES)
        )
        self._trust_remote_code = bool_value("trust_remote_code", trust_remote_code)
        self._allow_pickle = bool_value("allow_pickle", allow_pickle)
        self._token_budget = optional_int("token_budget", token_budget, minimum=1)
        self._attn_implementation = optional_str("attn_implementation", attn_implementation)
        self._revision = optional_str("revision", revision)
        self._prefix_caching = bool_value("prefix_caching", prefix_caching)
        self._quantize = parse_quantize(quantize)
        check_quantize_request(self._quantize, self._device, self._dtype)

        from rerank_integrations.backends.local.loading import load_model

        loaded = load_model(
            self._model,
            model_format=self._model_format,
            formats=formats_used,
            device=self._device,
            dtype=self._dtype,
            trust_remote_code=self._trust_remote_code,
            allow_pickle=self._allow_pickle,
            attn_implementation=self._attn_implementation,
            revision=self._revision,
            quantize=self._quantize,
        )
        self._format: LocalFormat = loaded.format
        self._encoder = loaded.encoder
        try:
            self._effective_max_length = self._format.resolve_max_length(
                self._max_length, loaded.max_positions, loaded.tokenizer_max_length
            )
        except BaseException:
            loaded.runner.release()
            raise
        budget = self._token_budget or self._format.default_token_budget(loaded.device.type)
        self._engine = LocalEngine(
            loaded.runner,
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
            "LocalReranker %s: format=%s device=%s dtype=%s%s attention=%s max_length=%d",
            self._model,
            self._format.name,
            self.device,
            self.torch_dtype,
            f" quantize={self._quantize}" if self._quantize else "",
            loaded.attn_implementation,
            self._effective_max_length,
        )

    # -- properties -------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return self._model

    @property
    def model_format(self) -> str:
        """The name of the format in use (detected or given)."""
        return self._format.name

    @property
    def max_length(self) -> int:
        """The max tokens per input in effect."""
        return self._effective_max_length

    @property
    def format(self) -> LocalFormat:
        """The :class:`LocalFormat` in use, bound to this checkpoint."""
        return self._format

    @property
    def has_metadata_slot(self) -> bool:
        """Whether the format's prompt has a metadata slot of its own (ctxl-v2)."""
        return self._format.has_metadata_slot

    @property
    def closed(self) -> bool:
        return self._engine.closed

    @property
    def quantize(self) -> Quantize | None:
        """``"int8"`` when the linear layers run quantised, ``None`` for the fp32 default."""
        return self._quantize

    # -- scoring ------------------------------------------------------------------------------

    def _check_instruction(self, request: RerankRequest) -> None:
        unsupported = request.instruction is not None and not self._format.follows_instruction
        if unsupported and self._instruction_mode == "error":
            raise UnsupportedFeatureError(
                f"the {self._format.name!r} format ({self._model}) cannot follow an "
                "instruction; drop it, or pass instruction_mode='prepend' to score "
                "'{instruction} {query}' as the query"
            )

    def _encode(self, request: RerankRequest) -> EncodedRequest:
        self._check_instruction(request)
        encoded = self._format.encode(self._encoder, request, max_length=self._effective_max_length)
        self._warn_truncation(encoded)
        return encoded

    def _warn_truncation(self, encoded: EncodedRequest) -> None:
        """At most one warning of each kind per call, naming the call's label (the bulk
        runner's query id, :func:`~.engine.call_scope`) when there is one."""
        label = current_call_scope().label
        where = f"query {label!r}: " if label is not None else ""
        n = encoded.num_truncated
        if n or encoded.query_truncated:
            parts = []
            if n:
                parts.append(f"{n} of {len(encoded.documents)} documents were truncated")
            if encoded.query_truncated:
                parts.append("the query was truncated")
            logger.warning(
                "%s%s to fit max_length=%d (%s format)",
                where,
                " and ".join(parts),
                self._effective_max_length,
                self._format.name,
            )
        if encoded.num_metadata_cut:
            logger.warning(
                "%sthe metadata of %d long documents was cut to half of the room a %d-token window "
                "leaves after the query, so every window keeps room for the document (%s format)",
                where,
                encoded.num_metadata_cut,
                self._effective_max_length,
                self._format.name,
            )
        if encoded.num_windowed:
            logger.info(
                "%s%d documents longer than the %d-token window were scored by overlapping windows",
                where,
                encoded.num_windowed,
                self._effective_max_length,
            )

    def _inputs(self, encoded: EncodedRequest) -> list[EncodedInput]:
        inputs = [x for doc in encoded.documents for x in doc.inputs]
        if tracing.ENABLED:  # batches are not reported: the engine shares them across calls
            tracing.add_attributes(
                {
                    "rerank_integrations.format": self._format.name,
                    "rerank_integrations.local.inputs": len(inputs),
                    "rerank_integrations.local.windowed_documents": encoded.num_windowed,
                    "rerank_integrations.truncated_documents": encoded.num_truncated,
                }
            )
        return inputs

    def _results(
        self, encoded: EncodedRequest, rows: Sequence[tuple[float, ...]]
    ) -> list[RerankResult]:
        """One result per document (the max raw score over its windows). A document whose rows,
        raw score or relevance is not a finite number fails the whole call with
        :class:`NonFiniteScoreError` naming them: NaN cannot be sorted, and ``+inf``/``-inf``
        tie (docs/reliability.md "A model that scores NaN")."""
        out = []
        bad = []
        pos = 0
        for index, doc in enumerate(encoded.documents):
            window_rows = rows[pos : pos + len(doc.inputs)]
            pos += len(doc.inputs)
            result = _finite_result(self._format, index, window_rows)
            if result is None:
                bad.append(index)
            else:
                out.append(result)
        if bad:
            raise self._non_finite(bad, len(encoded.documents))
        return out

    def _non_finite(self, indices: Sequence[int], total: int) -> NonFiniteScoreError:
        shown = ", ".join(str(i) for i in indices[:10]) + (", ..." if len(indices) > 10 else "")
        overflow = (
            f", or the {self.torch_dtype} computation overflowed (try dtype='float32')"
            if self.torch_dtype != "float32"
            else ""
        )
        return NonFiniteScoreError(
            f"{self._model!r} scored {len(indices)} of {total} documents NaN or infinite "
            f"(indices {shown}); no result is returned. The checkpoint's weights may be "
            f"corrupt (NaN or infinite values){overflow}.",
            model=self._model,
            indices=indices,
        )

    def _score(self, request: RerankRequest) -> Sequence[RerankResult]:
        encoded = self._encode(request)
        rows = self._engine.score(self._inputs(encoded))
        return self._results(encoded, rows)

    async def _ascore(self, request: RerankRequest) -> Sequence[RerankResult]:
        self._check_instruction(request)  # fail fast on the loop, before any thread hop
        encoded = await asyncio.to_thread(self._encode, request)
        future = self._engine.submit(self._inputs(encoded))
        rows = await asyncio.wrap_future(future)
        return self._results(encoded, rows)

    # -- lifecycle / config --------------------------------------------------------------------

    def close(self) -> None:
        """Stop the worker thread and free the model memory. Idempotent and final: a closed
        reranker raises ``RerankerClosedError`` when used (calls already queued finish)."""
        self._engine.close()

    def _settings(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this reranker: :meth:`to_config` (minus
        ``backend``) with the ``model_format`` object and ``formats`` as given."""
        settings = self.to_config()
        del settings["backend"]
        settings["model_format"] = self._model_format
        settings["formats"] = self._formats
        return settings

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle / copy / deepcopy rebuild the reranker from its settings: the copy loads the
        model again (eagerly, as the constructor does) and has its own worker; weights, locks
        and threads are never pickled. A closed reranker cannot be copied."""
        if self._engine.closed:
            raise RerankerClosedError(
                "this LocalReranker is closed; a closed reranker cannot be copied"
            )
        return (_rebuild, (type(self), self._settings()))

    def to_config(self) -> dict[str, Any]:
        return {
            "backend": self.backend_name,
            "model": self._model,
            "model_format": None if self._model_format is None else self._model_format.name,
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
            "quantize": self._quantize,
        }

    def __repr__(self) -> str:
        return (
            f"LocalReranker(model={self._model!r}, model_format={self._format.name!r}, "
            f"device={self.device!r}, dtype={self.torch_dtype!r})"
        )


def _finite_result(
    fmt: LocalFormat, index: int, window_rows: Sequence[tuple[float, ...]]
) -> RerankResult | None:
    """The result of one document from the rows of its windows, or ``None`` when a row, the
    raw score or the relevance is not finite (checked before ``raw_score`` sums the rows:
    ``math.fsum`` raises on ``inf - inf``)."""
    if not all(math.isfinite(v) for row in window_rows for v in row):
        return None
    raw = max(fmt.raw_score(r) for r in window_rows)
    if not math.isfinite(raw):
        return None
    relevance = fmt.relevance(raw)
    if not math.isfinite(relevance):
        return None
    return RerankResult(index, relevance, raw)


def _rebuild(cls: type[LocalReranker], settings: dict[str, Any]) -> LocalReranker:
    """Unpickling / copying: a new reranker from :meth:`LocalReranker._settings`."""
    return cls(**settings)
