"""Load jina-reranker-v2 checkpoints into the stock XLM-RoBERTa classes, without remote code.

jinaai/jina-reranker-v2-base-multilingual ships custom modelling code (``trust_remote_code``)
whose parameters are named differently from transformers' ``XLMRobertaForSequenceClassification``
although the network is the same (post-LayerNorm blocks, exact GELU, classification head on the
first token). These pure functions translate its config and state dict so the stock class can
load them; nothing here imports torch (tensors are only sliced through their own methods).
:func:`load_jina` builds the stock classifier from such a checkpoint (the cross-encoder format's
loader for jina checkpoints).

Name mapping (from the modelling code published with jinaai/jina-reranker-v2-base-multilingual;
vLLM maps it the same way), applied to every key:

====================================  ===================================================
jina                                  stock XLM-R
====================================  ===================================================
``roberta.emb_ln.*``                  ``roberta.embeddings.LayerNorm.*``
``encoder.layers.N``                  ``encoder.layer.N``
``mixer.Wqkv.{weight,bias}``          ``attention.self.{query,key,value}.*`` (split in 3
                                      along dim 0, in q, k, v order)
``mixer.out_proj``                    ``attention.output.dense``
``norm1``                             ``attention.output.LayerNorm``
``mlp.fc1``                           ``intermediate.dense``
``mlp.fc2``                           ``output.dense``
``norm2``                             ``output.LayerNorm``
``classifier.{dense,out_proj}.*``     unchanged (same head names)
``roberta.embeddings.*_embeddings``   unchanged
====================================  ===================================================

Any key that does not map onto a known stock parameter raises ``ModelLoadError``: weights are
never dropped silently.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rerank_integrations.backends.local.checkpoint import (
    Checkpoint,
    failure_reason,
    load_failures,
    mismatch_error,
)
from rerank_integrations.backends.local.files import CONFIG_FILE, WEIGHT_FILES, file_label
from rerank_integrations.errors import ModelLoadError

__all__ = [
    "JINA_KEY_RENAMES",
    "is_jina_checkpoint",
    "jina_config_to_xlmr",
    "load_jina",
    "map_jina_state_dict",
]

# Sub-module renames inside one encoder layer (jina -> stock), matched on whole dotted parts.
JINA_KEY_RENAMES: tuple[tuple[str, str], ...] = (
    ("mixer.out_proj", "attention.output.dense"),
    ("norm1", "attention.output.LayerNorm"),
    ("mlp.fc1", "intermediate.dense"),
    ("mlp.fc2", "output.dense"),
    ("norm2", "output.LayerNorm"),
)

_PREFIX = r"(?P<prefix>(?:roberta\.)?)"
_LAYER = re.compile(_PREFIX + r"encoder\.layers\.(?P<n>\d+)\.(?P<rest>.+)$")
_EMB_LN = re.compile(_PREFIX + r"emb_ln\.(?P<kind>weight|bias)$")
_EMBEDDINGS = re.compile(_PREFIX + r"embeddings\.(?:word|position|token_type)_embeddings\.weight$")
_HEAD = re.compile(r"classifier\.(?:dense|out_proj)\.(?:weight|bias)$")
_LAYER_TAIL = re.compile(
    r"(?:attention\.output\.dense|attention\.output\.LayerNorm|intermediate\.dense"
    r"|output\.dense|output\.LayerNorm)\.(?:weight|bias)$"
)
_WQKV = re.compile(r"mixer\.Wqkv\.(?P<kind>weight|bias)$")

# Keys of jina's config that only its custom code understands; dropped from the stock config.
_REMOTE_CODE_KEYS = ("auto_map",)


def is_jina_checkpoint(config: Mapping[str, Any]) -> bool:
    """True for a jina-reranker-v2 style config: no ``model_type`` and an XLM-RoBERTa
    architecture served by jina's flash-attention custom code.

    Stock XLM-R / RoBERTa configs always carry ``model_type``, so they are never matched."""
    if config.get("model_type"):
        return False
    architectures = config.get("architectures")
    if not isinstance(architectures, list | tuple):
        architectures = []
    xlmr_arch = any(isinstance(a, str) and a.startswith("XLMRoberta") for a in architectures)
    auto_map = config.get("auto_map") or {}
    flash_code = isinstance(auto_map, Mapping) and any(
        "XLMRobertaFlash" in str(v) or "modeling_xlm_roberta" in str(v) for v in auto_map.values()
    )
    return (xlmr_arch or flash_code) and (flash_code or "use_flash_attn" in config)


def jina_config_to_xlmr(config: Mapping[str, Any]) -> dict[str, Any]:
    """A stock ``XLMRobertaConfig`` dict for a jina-reranker-v2 config (a new dict; the input
    is not modified).

    Adds ``model_type: xlm-roberta`` and the sequence-classification architecture, keeps one
    label unless the config says otherwise, and drops ``auto_map`` so nothing points at remote
    code. Raises ``ModelLoadError`` if the network is not one the stock class reproduces."""
    out = {k: v for k, v in config.items() if k not in _REMOTE_CODE_KEYS}
    act = out.get("hidden_act", "gelu")
    if act != "gelu":
        # jina's blocks use exact GELU for "gelu"; tanh variants would need another class.
        raise ModelLoadError(
            f"jina checkpoint with hidden_act={act!r} is not supported without remote code "
            "(only exact 'gelu' maps onto the stock XLM-RoBERTa classes)"
        )
    pos_type = out.get("position_embedding_type", "absolute")
    if pos_type != "absolute":
        raise ModelLoadError(
            f"jina checkpoint with position_embedding_type={pos_type!r} is not supported "
            "without remote code (only 'absolute')"
        )
    out["model_type"] = "xlm-roberta"
    out["architectures"] = ["XLMRobertaForSequenceClassification"]
    out["position_embedding_type"] = "absolute"
    out["hidden_act"] = "gelu"
    if "num_labels" not in out and "id2label" not in out:
        out["num_labels"] = 1
    out.setdefault("pad_token_id", 1)
    out.setdefault("bos_token_id", 0)
    out.setdefault("eos_token_id", 2)
    out.setdefault("type_vocab_size", 1)
    out.setdefault("layer_norm_eps", 1e-5)
    return out


def map_jina_state_dict(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Rename a jina-reranker-v2 state dict onto ``XLMRobertaForSequenceClassification``'s
    parameter names (a new dict; tensors are shared or viewed, the input is not modified).

    The fused ``mixer.Wqkv`` weight ``[3H, H]`` and bias ``[3H]`` are split in three equal
    parts along dim 0 into query, key and value. Raises ``ModelLoadError`` for any key that
    does not map onto a known stock parameter, for a Wqkv whose first dimension is not
    divisible by three, and for two keys mapping onto the same name."""
    out: dict[str, Any] = {}
    unknown: list[str] = []

    def put(name: str, value: Any, source: str) -> None:
        if name in out:
            raise ModelLoadError(f"jina checkpoint: {source!r} maps onto {name!r} twice")
        out[name] = value

    for key, value in state_dict.items():
        if _EMBEDDINGS.match(key) or _HEAD.match(key):
            put(key, value, key)
            continue
        m = _EMB_LN.match(key)
        if m:
            put(f"{m['prefix']}embeddings.LayerNorm.{m['kind']}", value, key)
            continue
        m = _LAYER.match(key)
        if not m:
            unknown.append(key)
            continue
        base = f"{m['prefix']}encoder.layer.{m['n']}."
        rest = m["rest"]
        qkv = _WQKV.match(rest)
        if qkv:
            rows = int(value.shape[0])
            if rows % 3:
                raise ModelLoadError(
                    f"jina checkpoint: {key!r} has first dimension {rows}, not divisible by 3"
                )
            query, key_part, val = value.chunk(3, dim=0)
            kind = qkv["kind"]
            put(f"{base}attention.self.query.{kind}", query, key)
            put(f"{base}attention.self.key.{kind}", key_part, key)
            put(f"{base}attention.self.value.{kind}", val, key)
            continue
        renamed = _rename_layer_part(rest)
        if renamed is None:
            unknown.append(key)
            continue
        put(base + renamed, value, key)

    if unknown:
        shown = ", ".join(repr(k) for k in sorted(unknown)[:10])
        more = f" (and {len(unknown) - 10} more)" if len(unknown) > 10 else ""
        raise ModelLoadError(
            f"jina checkpoint has {len(unknown)} parameter(s) with no stock XLM-RoBERTa "
            f"equivalent: {shown}{more}. Refusing to drop weights silently; load it with "
            "trust_remote_code=True if this checkpoint needs jina's own code."
        )
    return out


def _rename_layer_part(rest: str) -> str | None:
    """``mixer.out_proj.weight`` -> ``attention.output.dense.weight`` etc.; None if unknown."""
    for jina, stock in JINA_KEY_RENAMES:
        if rest.startswith(jina + "."):
            candidate = stock + rest[len(jina) :]
            return candidate if _LAYER_TAIL.match(candidate) else None
    return None


def load_jina(checkpoint: Checkpoint) -> Any:
    """The stock ``XLMRobertaForSequenceClassification`` holding a jina checkpoint's weights (in
    the checkpoint's dtype setting, not yet on its device); no repository code runs.

    Raises ``ModelLoadError`` when a stock parameter is left without a weight or a weight
    without a parameter, when a weight's shape is not the one the config gives, and when the
    config or the weights cannot be read (naming the file)."""
    transformers = checkpoint.transformers
    stock = jina_config_to_xlmr(checkpoint.config)
    try:
        cfg = transformers.XLMRobertaConfig.from_dict(stock)
    except load_failures() as exc:
        raise ModelLoadError(
            f"could not load {checkpoint.model!r}: {file_label(checkpoint.model, CONFIG_FILE)}: "
            f"{failure_reason(exc)}"
        ) from exc
    state = map_jina_state_dict(checkpoint.state_dict())
    cls = transformers.XLMRobertaForSequenceClassification
    try:
        module = cls._from_config(cfg, attn_implementation=checkpoint.attn_implementation)
    except (ValueError, ImportError):
        module = cls._from_config(cfg, attn_implementation="eager")
    expected = module.state_dict()
    mismatched = [
        (name, tuple(value.shape), tuple(expected[name].shape))
        for name, value in state.items()
        if name in expected and tuple(value.shape) != tuple(expected[name].shape)
    ]
    if mismatched:
        names = WEIGHT_FILES if checkpoint.allow_pickle else WEIGHT_FILES[:2]
        raise mismatch_error(checkpoint.model, mismatched, names)
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise ModelLoadError(
            f"jina checkpoint {checkpoint.model!r} does not match the stock XLM-R classes: "
            f"missing={missing[:5]}, unexpected={list(unexpected)[:5]}"
        )
    return module.to(checkpoint.dtype)
