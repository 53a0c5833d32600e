"""jina-reranker-v2 without remote code: the parameter-name mapping (pure functions) and a tiny
checkpoint written in jina's naming loaded through ``LocalReranker``, which must score exactly
like the stock tiny XLM-R model holding the same weights."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from rerank_integrations.backends.local.jina import (
    is_jina_checkpoint,
    jina_config_to_xlmr,
    map_jina_state_dict,
)
from rerank_integrations.errors import ModelLoadError

QUERY = "What is the capital of France?"
DOCS = [
    "Paris is the capital and largest city of France.",
    "Berlin is the capital of Germany!",
    "no",
    "绿茶富含儿茶素等抗氧化剂。",
    " ".join(f"Sentence {i}: Paris, Berlin or green tea?" for i in range(30)),  # windowed
]

JINA_CONFIG: dict[str, Any] = {
    "architectures": ["XLMRobertaForSequenceClassification"],
    "auto_map": {
        "AutoConfig": "configuration_xlm_roberta.XLMRobertaFlashConfig",
        "AutoModelForSequenceClassification": (
            "modeling_xlm_roberta.XLMRobertaForSequenceClassification"
        ),
    },
    "hidden_act": "gelu",
    "hidden_size": 768,
    "max_position_embeddings": 1026,
    "pad_token_id": 1,
    "position_embedding_type": "absolute",
    "use_flash_attn": True,
    "vocab_size": 250002,
}


# ---------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------


def test_is_jina_checkpoint() -> None:
    assert is_jina_checkpoint(JINA_CONFIG)
    assert not is_jina_checkpoint({**JINA_CONFIG, "model_type": "xlm-roberta"})
    stock = {"model_type": "xlm-roberta", "architectures": ["XLMRobertaForSequenceClassification"]}
    assert not is_jina_checkpoint(stock)
    assert not is_jina_checkpoint({"architectures": ["BertForSequenceClassification"]})
    no_auto_map = {k: v for k, v in JINA_CONFIG.items() if k != "auto_map"}
    assert is_jina_checkpoint(no_auto_map)  # use_flash_attn + XLM-R architecture, no model_type


def test_jina_config_to_xlmr_adds_stock_fields_without_mutating() -> None:
    original = json.loads(json.dumps(JINA_CONFIG))
    cfg = jina_config_to_xlmr(JINA_CONFIG)
    assert original == JINA_CONFIG
    assert cfg["model_type"] == "xlm-roberta"
    assert cfg["architectures"] == ["XLMRobertaForSequenceClassification"]
    assert cfg["num_labels"] == 1
    assert "auto_map" not in cfg  # nothing points at remote code any more
    assert cfg["hidden_size"] == 768 and cfg["pad_token_id"] == 1
    # the stock config class accepts it
    transformers = pytest.importorskip("transformers")
    xcfg = transformers.XLMRobertaConfig.from_dict(cfg)
    assert xcfg.num_labels == 1 and xcfg.model_type == "xlm-roberta"


def test_jina_config_to_xlmr_rejects_networks_the_stock_class_cannot_run() -> None:
    with pytest.raises(ModelLoadError, match="hidden_act"):
        jina_config_to_xlmr({**JINA_CONFIG, "hidden_act": "gelu_new"})
    with pytest.raises(ModelLoadError, match="position_embedding_type"):
        jina_config_to_xlmr({**JINA_CONFIG, "position_embedding_type": "rotary"})


def _jina_layer_keys(torch: Any, h: int = 4) -> dict[str, Any]:
    p = "roberta.encoder.layers.0."
    return {
        p + "mixer.Wqkv.weight": torch.arange(3 * h * h, dtype=torch.float32).view(3 * h, h),
        p + "mixer.Wqkv.bias": torch.arange(3 * h, dtype=torch.float32),
        p + "mixer.out_proj.weight": torch.full((h, h), 1.0),
        p + "mixer.out_proj.bias": torch.full((h,), 2.0),
        p + "norm1.weight": torch.full((h,), 3.0),
        p + "norm1.bias": torch.full((h,), 4.0),
        p + "mlp.fc1.weight": torch.full((2 * h, h), 5.0),
        p + "mlp.fc1.bias": torch.full((2 * h,), 6.0),
        p + "mlp.fc2.weight": torch.full((h, 2 * h), 7.0),
        p + "mlp.fc2.bias": torch.full((h,), 8.0),
        p + "norm2.weight": torch.full((h,), 9.0),
        p + "norm2.bias": torch.full((h,), 10.0),
        "roberta.emb_ln.weight": torch.full((h,), 11.0),
        "roberta.emb_ln.bias": torch.full((h,), 12.0),
        "roberta.embeddings.word_embeddings.weight": torch.full((10, h), 13.0),
        "roberta.embeddings.position_embeddings.weight": torch.full((10, h), 14.0),
        "roberta.embeddings.token_type_embeddings.weight": torch.full((1, h), 15.0),
        "classifier.dense.weight": torch.full((h, h), 16.0),
        "classifier.dense.bias": torch.full((h,), 17.0),
        "classifier.out_proj.weight": torch.full((1, h), 18.0),
        "classifier.out_proj.bias": torch.full((1,), 19.0),
    }


def test_map_jina_state_dict_names_and_wqkv_split_order() -> None:
    torch = pytest.importorskip("torch")
    h = 4
    sd = _jina_layer_keys(torch, h)
    before = {k: v.clone() for k, v in sd.items()}
    out = map_jina_state_dict(sd)
    p = "roberta.encoder.layer.0."
    wqkv = before["roberta.encoder.layers.0.mixer.Wqkv.weight"]
    bqkv = before["roberta.encoder.layers.0.mixer.Wqkv.bias"]
    for i, name in enumerate(("query", "key", "value")):
        assert torch.equal(out[p + f"attention.self.{name}.weight"], wqkv[i * h : (i + 1) * h])
        assert torch.equal(out[p + f"attention.self.{name}.bias"], bqkv[i * h : (i + 1) * h])
    expected_fill = {
        p + "attention.output.dense.weight": 1.0,
        p + "attention.output.dense.bias": 2.0,
        p + "attention.output.LayerNorm.weight": 3.0,
        p + "attention.output.LayerNorm.bias": 4.0,
        p + "intermediate.dense.weight": 5.0,
        p + "intermediate.dense.bias": 6.0,
        p + "output.dense.weight": 7.0,
        p + "output.dense.bias": 8.0,
        p + "output.LayerNorm.weight": 9.0,
        p + "output.LayerNorm.bias": 10.0,
        "roberta.embeddings.LayerNorm.weight": 11.0,
        "roberta.embeddings.LayerNorm.bias": 12.0,
        "roberta.embeddings.word_embeddings.weight": 13.0,
        "roberta.embeddings.position_embeddings.weight": 14.0,
        "roberta.embeddings.token_type_embeddings.weight": 15.0,
        "classifier.dense.weight": 16.0,
        "classifier.dense.bias": 17.0,
        "classifier.out_proj.weight": 18.0,
        "classifier.out_proj.bias": 19.0,
    }
    for key, fill in expected_fill.items():
        assert bool((out[key] == fill).all()), key
    assert set(out) == set(expected_fill) | {
        p + f"attention.self.{n}.{k}" for n in ("query", "key", "value") for k in ("weight", "bias")
    }
    # the input is untouched
    assert set(sd) == set(before)
    assert all(torch.equal(sd[k], before[k]) for k in sd)


@pytest.mark.parametrize(
    "extra_key",
    [
        "roberta.pooler.dense.weight",
        "roberta.encoder.layers.0.mixer.rotary_emb.inv_freq",
        "roberta.encoder.layers.0.mlp.fc3.weight",
        "lm_head.decoder.weight",
        "roberta.encoder.layers.0.norm1.running_mean",
    ],
)
def test_map_jina_state_dict_refuses_unknown_keys(extra_key: str) -> None:
    torch = pytest.importorskip("torch")
    sd = _jina_layer_keys(torch)
    sd[extra_key] = torch.zeros(4)
    with pytest.raises(ModelLoadError, match="no stock XLM-RoBERTa") as info:
        map_jina_state_dict(sd)
    assert extra_key in str(info.value)


def test_map_jina_state_dict_refuses_bad_wqkv() -> None:
    torch = pytest.importorskip("torch")
    sd = _jina_layer_keys(torch)
    sd["roberta.encoder.layers.0.mixer.Wqkv.weight"] = torch.zeros(10, 4)
    with pytest.raises(ModelLoadError, match="divisible by 3"):
        map_jina_state_dict(sd)


def test_map_jina_state_dict_inverts_the_test_factorys_renaming() -> None:
    """Round trip through the independent stock->jina renaming in tests/helpers/tiny_models.py."""
    torch = pytest.importorskip("torch")
    from helpers.tiny_models import xlmr_state_dict_to_jina

    stock = map_jina_state_dict(_jina_layer_keys(torch))
    back = map_jina_state_dict(xlmr_state_dict_to_jina(stock))
    assert set(back) == set(stock)
    assert all(torch.equal(back[k], stock[k]) for k in stock)


# ---------------------------------------------------------------------------------------------
# Loading through LocalReranker
# ---------------------------------------------------------------------------------------------


def _scores(model_dir: Path, docs: Sequence[str], **kwargs: Any) -> tuple[list[float], Any]:
    from rerank_integrations.backends.local import LocalReranker

    kwargs.setdefault("model_format", "cross-encoder")
    reranker = LocalReranker(
        model=str(model_dir), device="cpu", dtype="float32", max_length=40, **kwargs
    )
    try:
        results = reranker.rerank(QUERY, list(docs))
        raw = [math.nan] * len(docs)
        for r in results:
            raw[r.index] = r.raw_score
        return raw, reranker
    finally:
        reranker.close()


def test_jina_checkpoint_loads_without_remote_code_and_matches_stock(
    tiny_jina_dir: Path, tiny_xlmr_dir: Path, record_property: Any
) -> None:
    pytest.importorskip("torch")
    config = json.loads((tiny_jina_dir / "config.json").read_text(encoding="utf-8"))
    assert "model_type" not in config and "auto_map" in config  # really jina-shaped
    # the auto_map modules are NOT shipped: executing remote code could not even start
    assert not list(tiny_jina_dir.glob("*.py"))
    jina_raw, jina = _scores(tiny_jina_dir, DOCS)
    stock_raw, _ = _scores(tiny_xlmr_dir, DOCS)
    delta = max(abs(a - b) for a, b in zip(jina_raw, stock_raw, strict=True))
    record_property("max_abs_delta_raw", delta)
    assert delta <= 1e-6, f"max |Δ| = {delta:.3g}\njina={jina_raw}\nstock={stock_raw}"
    assert max(stock_raw) - min(stock_raw) > 1e-2
    assert jina.to_config()["trust_remote_code"] is False


def test_jina_checkpoint_format_is_detected(tiny_jina_dir: Path) -> None:
    pytest.importorskip("torch")
    from rerank_integrations.backends.local import LocalReranker

    reranker = LocalReranker(model=str(tiny_jina_dir), device="cpu", dtype="float32")
    try:
        assert reranker.model_format == "cross-encoder"
    finally:
        reranker.close()


def test_jina_checkpoint_with_unknown_weights_fails_clearly(
    tiny_jina_dir: Path, tmp_path: Path
) -> None:
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "tiny-jina-reranker-v2-extra"
    shutil.copytree(tiny_jina_dir, broken)
    sd = load_file(str(broken / "model.safetensors"))
    sd["roberta.encoder.layers.0.mixer.rotary_emb.inv_freq"] = torch.zeros(8)
    save_file(sd, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match="rotary_emb"):
        _scores(broken, DOCS[:1])


def test_remote_code_checkpoint_is_refused_unless_trusted(
    tiny_xlmr_dir: Path, tmp_path: Path
) -> None:
    """A checkpoint whose model type only exists in its own code is not executed by default."""
    pytest.importorskip("torch")
    custom = tmp_path / "tiny-custom-reranker"
    shutil.copytree(tiny_xlmr_dir, custom)
    cfg = json.loads((custom / "config.json").read_text(encoding="utf-8"))
    cfg["model_type"] = "my-custom-reranker"
    cfg["auto_map"] = {
        "AutoConfig": "configuration_custom.CustomConfig",
        "AutoModelForSequenceClassification": "modeling_custom.CustomForSequenceClassification",
    }
    (custom / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    with pytest.raises(ModelLoadError, match="trust_remote_code"):
        _scores(custom, DOCS[:1])
