"""Loading a local reranker: device/dtype/attention choice, then the format's detection and build.

- :func:`load_model` reads the raw ``config.json``, asks the formats (in order) which one
  matches unless one is given, loads the tokenizer and hands a
  :class:`~.checkpoint.Checkpoint` to the format's ``build``, which picks the transformers
  class (or a converter) and the runner; the checkpoint loads the weights (:mod:`.checkpoint`).
- Weights load with ``use_safetensors=True`` unless ``allow_pickle=True``; repository code is
  never executed unless ``trust_remote_code=True`` is passed explicitly. A config that points at
  repository code (``auto_map``) is refused before transformers is asked, unless the format
  loads that checkpoint with stock classes (jina-reranker-v2, :mod:`.jina`).
- :func:`parse_device` / :func:`parse_dtype` check the constructor's ``device`` / ``dtype``
  without torch, before anything is loaded.

torch/transformers are imported through :func:`~rerank_integrations.extras.import_extra` inside
the functions; importing this module is cheap.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rerank_integrations.backends.local.checkpoint import (
    Checkpoint,
    failure_reason,
    load_error,
    load_failures,
)
from rerank_integrations.backends.local.engine import BatchRunner
from rerank_integrations.backends.local.files import (
    CONFIG_FILE,
    TOKENIZER_FILES,
    broken_json_file,
    config_problem,
    file_label,
    missing_local_model,
)
from rerank_integrations.backends.local.formats import detect_format
from rerank_integrations.backends.local.formats.base import LocalFormat, ModelInfo
from rerank_integrations.backends.local.quantize import check_quantize_device, quantize_runner
from rerank_integrations.backends.local.tokenizer import HFTextEncoder
from rerank_integrations.errors import ModelLoadError, RerankInputError, RerankTypeError
from rerank_integrations.extras import import_extra
from rerank_integrations.validation import choice_value, optional_str

logger = logging.getLogger(__name__)

__all__ = [
    "DEVICE_TYPES",
    "LoadedModel",
    "choose_attn_implementation",
    "load_model",
    "parse_device",
    "parse_dtype",
    "read_config_dict",
    "usable_positions",
]

_FEATURE = "LocalReranker"

# Model types whose position ids start after the padding index (usable = max_pos - pad - 1).
_PADDED_POSITION_TYPES = frozenset({"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert"})

_DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}

#: torch device types accepted by ``device=`` (optionally with an index: ``"cuda:1"``).
DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu", "hpu", "npu", "mtia")
_DEVICE = re.compile(r"(?P<type>[a-z]+)(?::\d+)?")


# ---------------------------------------------------------------------------------------------
# Pure decisions
# ---------------------------------------------------------------------------------------------


def parse_device(device: object) -> str | None:
    """``None`` (automatic) or a torch device string such as ``"cuda"``, ``"cuda:1"``,
    ``"mps"``, ``"cpu"`` (a non-str is a wrong type, anything else a bad value)."""
    value = optional_str("device", device)
    if value is None:
        return None
    match = _DEVICE.fullmatch(value)
    if match is None or match["type"] not in DEVICE_TYPES:
        raise RerankInputError(
            "device",
            f"not a torch device: {value!r}; use one of {list(DEVICE_TYPES)}, optionally "
            "with an index such as 'cuda:1'",
        )
    return value


def _is_torch_dtype(value: object) -> bool:
    return type(value).__module__ == "torch" and type(value).__name__ == "dtype"


def parse_dtype(dtype: object) -> str | None:
    """Canonical dtype name (``float32``/``bfloat16``/``float16``) or ``None`` (automatic).

    Accepts those names, their short forms (``fp32``, ``bf16``, ``fp16``, ``half``) and
    ``torch.dtype`` objects (recognised without importing torch)."""
    if dtype is None:
        return None
    if isinstance(dtype, str):
        text = dtype.lower().removeprefix("torch.")
    elif _is_torch_dtype(dtype):
        text = str(dtype).removeprefix("torch.")
    else:
        raise RerankTypeError(
            "dtype", f"must be a str, a torch.dtype or None, got {type(dtype).__name__}"
        )
    return _DTYPE_NAMES[choice_value("dtype", text, _DTYPE_NAMES)]


def choose_attn_implementation(
    device_type: str, dtype_name: str, requested: str | None, *, flash_available: bool
) -> str:
    """``requested`` if given, else flash-attention 2 on CUDA in half precision when the
    ``flash_attn`` package is installed, else PyTorch SDPA."""
    if requested is not None:
        return requested
    if device_type == "cuda" and dtype_name in ("bfloat16", "float16") and flash_available:
        return "flash_attention_2"
    return "sdpa"


def usable_positions(config: Mapping[str, Any]) -> int:
    """How many tokens one input may hold."""
    max_pos = config.get("max_position_embeddings")
    if not isinstance(max_pos, int) or max_pos <= 0:
        max_pos = 32768
    xlmr_arch = any(a.startswith("XLMRoberta") for a in ModelInfo("", config).architectures)
    if config.get("model_type") in _PADDED_POSITION_TYPES or (
        "model_type" not in config and xlmr_arch
    ):
        pad = config.get("pad_token_id")
        max_pos -= (pad if isinstance(pad, int) else 1) + 1
    return max_pos


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def read_config_dict(model: str, *, revision: str | None = None) -> dict[str, Any]:
    """The raw ``config.json`` of a hub id or local directory (no model class needed, so
    configs without ``model_type`` — jina — work). ``ModelLoadError`` naming the file and the
    reason when it cannot be read, is not JSON, is not a JSON object or is nested more than
    :data:`~.files.MAX_JSON_DEPTH` levels (before a model is built from it)."""
    transformers = import_extra("transformers", extra="local", feature=_FEATURE)
    base = getattr(transformers, "PreTrainedConfig", None) or transformers.PretrainedConfig
    label = file_label(model, CONFIG_FILE)
    try:
        config, _ = base.get_config_dict(model, revision=revision)
    except load_failures() as exc:
        broken = broken_json_file(model, (CONFIG_FILE,))
        reason = broken[1] if broken is not None else failure_reason(exc)
        raise ModelLoadError(f"could not read {label}: {reason}") from exc
    problem = config_problem(config)
    if problem is not None:
        raise ModelLoadError(f"could not read {label}: {problem}")
    return dict(config)


def resolve_device(torch: Any, device: str | None) -> Any:
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise RerankInputError("device", f"not a torch device: {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RerankInputError("device", "CUDA was requested but is not available")
    return dev


def resolve_dtype(torch: Any, dtype_name: str | None, device: Any) -> Any:
    if dtype_name is None:
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return getattr(torch, dtype_name)


def _check_remote_code(model: str, config: Mapping[str, Any], trust_remote_code: bool) -> None:
    """Refuse, before transformers is asked, a checkpoint that only loads with its own code."""
    if trust_remote_code or not config.get("auto_map"):
        return
    transformers = import_extra("transformers", extra="local", feature=_FEATURE)
    known = transformers.models.auto.configuration_auto.CONFIG_MAPPING_NAMES
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or model_type not in known:
        raise ModelLoadError(
            f"{model!r} needs code from its repository (auto_map, model_type="
            f"{config.get('model_type')!r}); it is not executed by default. Pass "
            "trust_remote_code=True only if you trust that repository."
        )


@dataclass(frozen=True)
class LoadedModel:
    """Everything the reranker needs: the format bound to the checkpoint, the runner its
    ``build`` made, the tokenizer view and what was chosen / read."""

    format: LocalFormat
    runner: BatchRunner
    encoder: HFTextEncoder
    device: Any
    dtype: Any
    attn_implementation: str
    max_positions: int
    tokenizer_max_length: int | None


def load_model(
    model: str,
    *,
    model_format: LocalFormat | None,
    formats: Sequence[LocalFormat],
    device: str | None,
    dtype: str | None,
    trust_remote_code: bool,
    allow_pickle: bool,
    attn_implementation: str | None,
    revision: str | None,
    quantize: str | None = None,
) -> LoadedModel:
    """Load tokenizer + model for ``model`` with ``model_format`` (``None``: the first of
    ``formats`` that matches) and let the format build it (see the module docstring).
    ``quantize="int8"``: the built model's linear layers are quantised (:mod:`.quantize`; CPU
    only, checked before the weights load)."""
    torch = import_extra("torch", extra="local", feature=_FEATURE)
    transformers = import_extra("transformers", extra="local", feature=_FEATURE)
    dev = resolve_device(torch, device)
    check_quantize_device(quantize, dev.type)
    tdtype = resolve_dtype(torch, dtype, dev)

    missing = missing_local_model(model)  # "no such directory", not the hub's repo-id message
    if missing is not None:
        raise ModelLoadError(missing)
    config = read_config_dict(model, revision=revision)
    fmt = model_format if model_format is not None else detect_format(model, config, formats)
    if not fmt.loads_without_repository_code(ModelInfo(model, config)):
        _check_remote_code(model, config, trust_remote_code)
    attn = choose_attn_implementation(
        dev.type,
        str(tdtype).removeprefix("torch."),
        attn_implementation,
        flash_available=importlib.util.find_spec("flash_attn") is not None,
    )
    try:
        hf_tok = transformers.AutoTokenizer.from_pretrained(
            model, revision=revision, trust_remote_code=trust_remote_code
        )
    except Exception as exc:
        # tokenizers raises a bare Exception for a tokenizer.json it cannot deserialize
        if type(exc) is not Exception and not isinstance(exc, (*load_failures(), ImportError)):
            raise
        raise load_error(
            model, exc, allow_pickle=allow_pickle, part="the tokenizer", files=TOKENIZER_FILES
        ) from exc
    tok_max = getattr(hf_tok, "model_max_length", None)
    checkpoint = Checkpoint(
        model=model,
        config=config,
        encoder=HFTextEncoder(hf_tok),
        torch=torch,
        transformers=transformers,
        device=dev,
        dtype=tdtype,
        attn_implementation=attn,
        max_positions=usable_positions(config),
        tokenizer_max_length=(
            int(tok_max) if isinstance(tok_max, int) and tok_max < 1_000_000 else None
        ),
        pad_token_id=hf_tok.pad_token_id,
        eos_token_id=hf_tok.eos_token_id,
        revision=revision,
        trust_remote_code=trust_remote_code,
        allow_pickle=allow_pickle,
        explicit_attn=attn_implementation is not None,
    )
    built = fmt.build(checkpoint)
    if quantize is not None:
        try:
            quantize_runner(torch, built.runner, quantize)
        except BaseException:
            built.runner.release()
            raise
    return LoadedModel(
        format=built.format,
        runner=built.runner,
        encoder=checkpoint.encoder,
        device=dev,
        dtype=tdtype,
        attn_implementation=built.attn_implementation,
        max_positions=checkpoint.max_positions,
        tokenizer_max_length=checkpoint.tokenizer_max_length,
    )
