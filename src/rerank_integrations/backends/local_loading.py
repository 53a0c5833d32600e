"""Loading a local reranker: format detection, device/dtype/attention choice, safe weights.

- :func:`detect_format` (pure) picks the scoring recipe from the model id / directory name and
  its ``config.json``; it raises ``ModelLoadError`` listing the formats when it cannot tell.
- Weights load with ``use_safetensors=True`` unless ``allow_pickle=True``; repository code is
  never executed unless ``trust_remote_code=True`` is passed explicitly. jina-reranker-v2
  checkpoints (custom code on the hub) load into the stock XLM-R classes through the name
  mapping in :mod:`.local_jina`, without remote code.
- Causal formats keep only the decoder body plus the 1-2 ``lm_head`` rows their recipe reads,
  so the full-vocabulary projection is never computed (nor kept in memory when untied).

torch/transformers are imported through :func:`~rerank_integrations.extras.import_extra` inside
the functions; importing this module is cheap.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rerank_integrations.backends.local_formats import (
    FORMATS,
    CrossEncoderRecipe,
    CtxlV2Recipe,
    FormatRecipe,
    MxbaiV2Recipe,
    PairTemplate,
    Qwen3Recipe,
    mxbai_estimated_max,
)
from rerank_integrations.errors import ModelLoadError, RerankInputError
from rerank_integrations.extras import import_extra

logger = logging.getLogger("rerank_integrations.backends.local")

__all__ = [
    "HFTextEncoder",
    "LoadedModel",
    "choose_attn_implementation",
    "detect_format",
    "load_model",
    "parse_dtype",
    "read_config_dict",
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


# ---------------------------------------------------------------------------------------------
# Pure decisions
# ---------------------------------------------------------------------------------------------


def _architectures(config: Mapping[str, Any]) -> list[str]:
    archs = config.get("architectures") or []
    return [a for a in archs if isinstance(a, str)]


def detect_format(model: str, config: Mapping[str, Any]) -> str:
    """The format name for a model id / local path and its raw ``config.json`` dict.

    Rules, first match wins (names compared case-insensitively):
    ``ctxl-rerank`` -> ``ctxl-v2``; ``qwen3-reranker`` -> ``qwen3``; ``mxbai-rerank`` with a
    causal-LM architecture -> ``mxbai-v2``; a jina-reranker-v2 checkpoint or any
    ``*ForSequenceClassification`` architecture -> ``cross-encoder``."""
    from rerank_integrations.backends.local_jina import is_jina_checkpoint

    name = model.replace("\\", "/").lower()
    if config.get("_name_or_path"):
        name += " " + str(config["_name_or_path"]).lower()
    archs = _architectures(config)
    causal = any(a.endswith("ForCausalLM") for a in archs)
    if "ctxl-rerank" in name:
        return CtxlV2Recipe.name
    if "qwen3-reranker" in name:
        return Qwen3Recipe.name
    if "mxbai-rerank" in name and causal:
        return MxbaiV2Recipe.name
    if is_jina_checkpoint(config) or any(a.endswith("ForSequenceClassification") for a in archs):
        return CrossEncoderRecipe.name
    raise ModelLoadError(
        f"cannot tell which scoring format {model!r} uses (architectures={archs or None}). "
        f"Pass model_format= one of {list(FORMATS)}: 'ctxl-v2' (ContextualAI "
        "ctxl-rerank-v2), 'mxbai-v2' (mixedbread mxbai-rerank-*-v2), 'qwen3' (Qwen3-Reranker), "
        "'cross-encoder' (one-label sequence classifiers: jina-reranker-v2, bge-reranker, "
        "ms-marco)."
    )


def parse_dtype(dtype: object) -> str | None:
    """Canonical dtype name (``float32``/``bfloat16``/``float16``) or ``None`` (automatic).

    Accepts those names, their short forms (``fp32``, ``bf16``, ``fp16``, ``half``) and
    ``torch.dtype`` objects."""
    if dtype is None:
        return None
    if isinstance(dtype, str):
        name = _DTYPE_NAMES.get(dtype.lower().removeprefix("torch."))
    else:
        name = _DTYPE_NAMES.get(str(dtype).removeprefix("torch."))
    if name is None:
        raise RerankInputError(
            "dtype", f"unsupported dtype {dtype!r}; use 'float32', 'bfloat16' or 'float16'"
        )
    return name


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
    xlmr_arch = any(a.startswith("XLMRoberta") for a in _architectures(config))
    if config.get("model_type") in _PADDED_POSITION_TYPES or (
        "model_type" not in config and xlmr_arch
    ):
        pad = config.get("pad_token_id")
        max_pos -= (pad if isinstance(pad, int) else 1) + 1
    return max_pos


# ---------------------------------------------------------------------------------------------
# Tokenizer view
# ---------------------------------------------------------------------------------------------


def _find(seq: Sequence[int], sub: Sequence[int], start: int = 0) -> int:
    n = len(sub)
    for i in range(start, len(seq) - n + 1):
        if list(seq[i : i + n]) == list(sub):
            return i
    return -1


class HFTextEncoder:
    """A :class:`~.local_formats.TextEncoder` over a private copy of a fast tokenizer's Rust
    backend (no truncation, no padding: thread-safe for concurrent callers)."""

    def __init__(self, hf_tokenizer: Any) -> None:
        backend = getattr(hf_tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ModelLoadError(
                "the local backend needs a fast (tokenizers-based) tokenizer; this model only "
                "has a slow one"
            )
        tokenizers = import_extra("tokenizers", extra="local", feature=_FEATURE)
        tok = tokenizers.Tokenizer.from_str(backend.to_str())
        tok.no_truncation()
        tok.no_padding()
        self._tok = tok
        probe_a, probe_b = "hello world", "the answer"
        plain_a = self.encode(probe_a)
        with_specials = tok.encode(probe_a, add_special_tokens=True).ids
        at = _find(with_specials, plain_a)
        if at < 0:
            raise ModelLoadError("could not locate the text inside the tokenizer's special tokens")
        self.special_prefix: tuple[int, ...] = tuple(with_specials[:at])
        self.special_suffix: tuple[int, ...] = tuple(with_specials[at + len(plain_a) :])
        self.model_input_names = tuple(getattr(hf_tokenizer, "model_input_names", ()))
        self._pair_probe = (probe_a, probe_b)

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        return [list(e.ids) for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def token_id(self, token: str) -> int | None:
        tid = self._tok.token_to_id(token)
        return int(tid) if tid is not None else None

    def pair_template(self) -> PairTemplate:
        """Learn ``prefix + A + middle + B + suffix`` from the tokenizer's own pair encoding."""
        a_text, b_text = self._pair_probe
        a, b = self.encode(a_text), self.encode(b_text)
        enc = self._tok.encode(a_text, b_text, add_special_tokens=True)
        ids, types = list(enc.ids), list(enc.type_ids)
        i = _find(ids, a)
        j = _find(ids, b, i + len(a)) if i >= 0 else -1
        if i < 0 or j < 0:
            raise ModelLoadError("could not learn the tokenizer's pair template")
        return PairTemplate(
            prefix=tuple(ids[:i]),
            middle=tuple(ids[i + len(a) : j]),
            suffix=tuple(ids[j + len(b) :]),
            type_a=int(types[0]) if types else 0,
            type_b=int(types[-1]) if types else 0,
            uses_token_types="token_type_ids" in self.model_input_names,
        )


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    """Everything the engine needs. ``module`` is the decoder body (causal) or the classifier;
    ``score_weight``/``score_bias`` are the ``lm_head`` rows of the recipe (causal only)."""

    recipe: FormatRecipe
    kind: str
    module: Any
    score_weight: Any | None
    score_bias: Any | None
    encoder: HFTextEncoder
    pad_token_id: int
    device: Any
    dtype: Any
    attn_implementation: str
    max_positions: int
    tokenizer_max_length: int | None


def read_config_dict(model: str, *, revision: str | None = None) -> dict[str, Any]:
    """The raw ``config.json`` of a hub id or local directory (no model class needed, so
    configs without ``model_type`` — jina — work)."""
    transformers = import_extra("transformers", extra="local", feature=_FEATURE)
    base = getattr(transformers, "PreTrainedConfig", None) or transformers.PretrainedConfig
    try:
        config, _ = base.get_config_dict(model, revision=revision)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not read the config of {model!r}: {exc}") from exc
    return dict(config)


def _dtype_kwarg(transformers: Any) -> str:
    """``dtype`` (transformers >= 4.56, the only spelling in 5.x) or ``torch_dtype`` (older)."""
    major, minor = (int(p) for p in str(transformers.__version__).split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


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
    if config.get("model_type") not in known:
        raise ModelLoadError(
            f"{model!r} needs code from its repository (auto_map, model_type="
            f"{config.get('model_type')!r}); it is not executed by default. Pass "
            "trust_remote_code=True only if you trust that repository."
        )


def _load_error(model: str, exc: Exception, *, allow_pickle: bool) -> ModelLoadError:
    text = str(exc)
    hint = ""
    if not allow_pickle and ("safetensors" in text or ".bin" in text or "pytorch_model" in text):
        hint = (
            " Only safetensors weights are loaded by default; pass allow_pickle=True to load "
            "pickle (.bin) weights, and only from a source you trust."
        )
    elif "trust_remote_code" in text:
        hint = " Pass trust_remote_code=True only if you trust the repository's code."
    return ModelLoadError(f"could not load {model!r}: {text}{hint}")


def _from_pretrained(
    auto_cls: Any, model: str, kwargs: dict[str, Any], *, allow_pickle: bool, explicit_attn: bool
) -> Any:
    try:
        return auto_cls.from_pretrained(model, **kwargs)
    except (ValueError, ImportError) as exc:
        if explicit_attn or kwargs.get("attn_implementation") == "eager" or (
            "attn" not in str(exc).lower() and "attention" not in str(exc).lower()
        ):
            raise _load_error(model, exc, allow_pickle=allow_pickle) from exc
        logger.info(
            "attention %s unavailable (%s); using eager", kwargs["attn_implementation"], exc
        )
        return _from_pretrained(
            auto_cls,
            model,
            {**kwargs, "attn_implementation": "eager"},
            allow_pickle=allow_pickle,
            explicit_attn=True,
        )
    except OSError as exc:
        raise _load_error(model, exc, allow_pickle=allow_pickle) from exc


def _resolve_weight_files(model: str, revision: str | None, allow_pickle: bool) -> list[Path]:
    """The safetensors files (or, with allow_pickle, .bin files) of a local dir or hub repo."""
    names = ["model.safetensors", "model.safetensors.index.json"]
    if allow_pickle:
        names += ["pytorch_model.bin", "pytorch_model.bin.index.json"]
    if os.path.isdir(model):
        root = Path(model)
        for name in names:
            if (root / name).is_file():
                return _expand_index(root / name, lambda f: root / f)
        raise ModelLoadError(
            f"no {'weights' if allow_pickle else 'safetensors weights'} in {model!r}"
            + ("" if allow_pickle else " (pass allow_pickle=True to load .bin files)")
        )
    hub = import_extra("huggingface_hub", extra="local", feature=_FEATURE)
    errors = []
    for name in names:
        try:
            path = Path(hub.hf_hub_download(model, name, revision=revision))
        except Exception as exc:  # this candidate file is missing: try the next one
            errors.append(f"{name}: {exc}")
            continue
        return _expand_index(
            path, lambda f: Path(hub.hf_hub_download(model, f, revision=revision))
        )
    raise ModelLoadError(f"no loadable weights found for {model!r}: " + "; ".join(errors))


def _expand_index(path: Path, fetch: Any) -> list[Path]:
    if not path.name.endswith(".index.json"):
        return [path]
    index = json.loads(path.read_text(encoding="utf-8"))
    return [fetch(f) for f in sorted(set(index["weight_map"].values()))]


def _load_state_dict(files: Sequence[Path]) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for f in files:
        if f.suffix == ".safetensors":
            st = import_extra("safetensors.torch", extra="local", feature=_FEATURE)
            state.update(st.load_file(str(f)))
        else:
            torch = import_extra("torch", extra="local", feature=_FEATURE)
            state.update(torch.load(str(f), map_location="cpu", weights_only=True))
    return state


def _load_jina(
    transformers: Any,
    torch: Any,
    model: str,
    config: Mapping[str, Any],
    *,
    revision: str | None,
    allow_pickle: bool,
    dtype: Any,
    attn: str,
) -> Any:
    from rerank_integrations.backends.local_jina import jina_config_to_xlmr, map_jina_state_dict

    cfg = transformers.XLMRobertaConfig.from_dict(jina_config_to_xlmr(config))
    files = _resolve_weight_files(model, revision, allow_pickle)
    state = map_jina_state_dict(_load_state_dict(files))
    cls = transformers.XLMRobertaForSequenceClassification
    try:
        module = cls._from_config(cfg, attn_implementation=attn)
    except (ValueError, ImportError):
        module = cls._from_config(cfg, attn_implementation="eager")
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise ModelLoadError(
            f"jina checkpoint {model!r} does not match the stock XLM-R classes: "
            f"missing={missing[:5]}, unexpected={list(unexpected)[:5]}"
        )
    return module.to(dtype)


def load_model(
    model: str,
    *,
    model_format: str | None,
    device: str | None,
    dtype: str | None,
    trust_remote_code: bool,
    allow_pickle: bool,
    attn_implementation: str | None,
    revision: str | None,
) -> LoadedModel:
    """Load tokenizer + model for ``model`` and build its recipe (see the module docstring)."""
    torch = import_extra("torch", extra="local", feature=_FEATURE)
    transformers = import_extra("transformers", extra="local", feature=_FEATURE)
    from rerank_integrations.backends.local_jina import is_jina_checkpoint

    config = read_config_dict(model, revision=revision)
    fmt = model_format if model_format is not None else detect_format(model, config)
    jina = is_jina_checkpoint(config)
    if not jina:
        _check_remote_code(model, config, trust_remote_code)
    dev = resolve_device(torch, device)
    tdtype = resolve_dtype(torch, dtype, dev)
    dtype_name = str(tdtype).removeprefix("torch.")
    attn = choose_attn_implementation(
        dev.type,
        dtype_name,
        attn_implementation,
        flash_available=importlib.util.find_spec("flash_attn") is not None,
    )

    try:
        hf_tok = transformers.AutoTokenizer.from_pretrained(
            model, revision=revision, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError, ImportError) as exc:
        raise _load_error(model, exc, allow_pickle=allow_pickle) from exc
    encoder = HFTextEncoder(hf_tok)
    tok_max = getattr(hf_tok, "model_max_length", None)
    tok_max = int(tok_max) if isinstance(tok_max, int) and tok_max < 1_000_000 else None
    positions = usable_positions(config)

    kwargs: dict[str, Any] = {
        _dtype_kwarg(transformers): tdtype,
        "attn_implementation": attn,
        "trust_remote_code": trust_remote_code,
        "use_safetensors": None if allow_pickle else True,
        "revision": revision,
    }
    recipe: FormatRecipe
    if fmt == CrossEncoderRecipe.name:
        if jina:
            module = _load_jina(
                transformers,
                torch,
                model,
                config,
                revision=revision,
                allow_pickle=allow_pickle,
                dtype=tdtype,
                attn=attn,
            )
        else:
            module = _from_pretrained(
                transformers.AutoModelForSequenceClassification,
                model,
                kwargs,
                allow_pickle=allow_pickle,
                explicit_attn=attn_implementation is not None,
            )
        num_labels = int(getattr(module.config, "num_labels", 1))
        if num_labels != 1:
            raise ModelLoadError(
                f"{model!r} has {num_labels} labels; the cross-encoder format needs one"
            )
        module = module.to(dev).eval()
        recipe = CrossEncoderRecipe(pair=encoder.pair_template())
        pad = hf_tok.pad_token_id
        if pad is None:
            pad = getattr(module.config, "pad_token_id", None) or 0
        return LoadedModel(
            recipe=recipe,
            kind="classifier",
            module=module,
            score_weight=None,
            score_bias=None,
            encoder=encoder,
            pad_token_id=int(pad),
            device=dev,
            dtype=tdtype,
            attn_implementation=str(getattr(module.config, "_attn_implementation", attn)),
            max_positions=positions,
            tokenizer_max_length=tok_max,
        )

    if fmt == CtxlV2Recipe.name:
        recipe = CtxlV2Recipe()
    elif fmt == Qwen3Recipe.name:
        recipe = Qwen3Recipe()
    elif fmt == MxbaiV2Recipe.name:
        recipe = MxbaiV2Recipe(
            estimated_max=mxbai_estimated_max(model), model_max_positions=positions
        )
    else:
        raise RerankInputError(
            "model_format", f"unknown format {fmt!r}; use one of {list(FORMATS)}"
        )
    lm = _from_pretrained(
        transformers.AutoModelForCausalLM,
        model,
        kwargs,
        allow_pickle=allow_pickle,
        explicit_attn=attn_implementation is not None,
    )
    head = lm.get_output_embeddings()
    ids = list(recipe.score_token_ids(encoder))
    vocab = int(head.weight.shape[0])
    if any(i < 0 or i >= vocab for i in ids):
        raise ModelLoadError(f"score token ids {ids} are outside the model's vocabulary ({vocab})")
    with torch.no_grad():
        weight = head.weight[ids].detach().clone().to(device=dev, dtype=tdtype)
        bias = getattr(head, "bias", None)
        bias = bias[ids].detach().clone().to(device=dev, dtype=tdtype) if bias is not None else None
    body = lm.base_model
    attn_used = str(getattr(lm.config, "_attn_implementation", attn))
    del lm, head  # drops lm_head unless it is tied to the input embeddings
    body = body.to(dev).eval()
    pad = hf_tok.pad_token_id
    if pad is None:
        pad = hf_tok.eos_token_id if hf_tok.eos_token_id is not None else 0
    return LoadedModel(
        recipe=recipe,
        kind="causal",
        module=body,
        score_weight=weight,
        score_bias=bias,
        encoder=encoder,
        pad_token_id=int(pad),
        device=dev,
        dtype=tdtype,
        attn_implementation=attn_used,
        max_positions=positions,
        tokenizer_max_length=tok_max,
    )
