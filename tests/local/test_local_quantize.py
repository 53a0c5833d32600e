"""``LocalReranker(quantize="int8")``: opt-in dynamic int8 on CPU (backends/local/quantize.py).

- Agreement with fp32 on the tiny random models, every format: Spearman of the raw scores,
  top-10 overlap and max |delta raw| relative to the score spread, on 40 documents. (Tiny
  random models are the hard case: hidden 64 and near-flat scores; the benchmark models'
  numbers are in docs/benchmarks.md.)
- Never silent: the default leaves every linear layer fp32; int8 quantises the body only (the
  classifier head, the causal formats' lm_head rows and the gated MLP's ``down_proj`` stay
  fp32); int8 on a CUDA device string,
  in bf16, or with an automatic device that resolves to CUDA fails before any weight loads.
"""

from __future__ import annotations

import random
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from rerank_integrations.backends.local import LocalReranker, loading
from rerank_integrations.backends.local.quantize import parse_quantize, quantize_runner
from rerank_integrations.errors import RerankInputError, UnsupportedFeatureError

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.agreement import agreement  # noqa: E402

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


def quantized_linear_count(module: Any) -> tuple[int, int]:
    """``(quantised, fp32)`` counts of the linear layers in ``module``."""
    quantised = plain = 0
    for sub in module.modules():
        name = type(sub).__name__
        if name == "Linear" and type(sub).__module__.startswith("torch.ao.nn.quantized"):
            quantised += 1
        elif name == "Linear":
            plain += 1
    return quantised, plain


_WORDS = (
    "energy",
    "climate",
    "paris",
    "france",
    "berlin",
    "solar",
    "wind",
    "river",
    "city",
    "history",
    "music",
    "art",
    "science",
    "data",
    "model",
    "capital",
    "europe",
    "carbon",
)


def _docs(n: int = 40) -> list[str]:
    rng = random.Random(0)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 60))) for _ in range(n)]


def _raw(reranker: LocalReranker, docs: list[str]) -> list[float]:
    out = [0.0] * len(docs)
    for r in reranker.rerank("How are energy and climate related?", docs):
        out[r.index] = r.raw_score
    return out


@pytest.fixture
def model_dirs(
    tiny_ctxl_dir: Path, tiny_mxbai_dir: Path, tiny_qwen3_reranker_dir: Path, tiny_xlmr_dir: Path
) -> dict[str, Path]:
    return {
        "ctxl-v2": tiny_ctxl_dir,
        "mxbai-v2": tiny_mxbai_dir,
        "qwen3": tiny_qwen3_reranker_dir,
        "cross-encoder": tiny_xlmr_dir,
    }


@pytest.mark.parametrize("fmt", ["ctxl-v2", "mxbai-v2", "qwen3", "cross-encoder"])
def test_int8_agrees_with_fp32(fmt: str, model_dirs: dict[str, Path]) -> None:
    docs = _docs()
    kwargs: dict[str, Any] = {"model_format": fmt, "device": "cpu", "instruction_mode": "prepend"}
    with LocalReranker(str(model_dirs[fmt]), **kwargs) as fp32:
        ref = _raw(fp32, docs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch.ao's deprecation notices do not reach the user
        int8 = LocalReranker(str(model_dirs[fmt]), quantize="int8", **kwargs)
    with int8:
        got = _raw(int8, docs)
    a = agreement(ref, got, k=10)
    assert a["spread"] > 0
    assert 0 < a["max_abs_delta"] <= 0.25 * a["spread"], a  # quantised, but close
    assert a["spearman"] >= 0.9, a
    assert a["top_k"] >= 0.7, a


def test_default_is_fp32_and_int8_quantises_the_body_only(
    tiny_xlmr_dir: Path, tiny_mxbai_dir: Path
) -> None:
    with LocalReranker(str(tiny_xlmr_dir), device="cpu") as plain:
        assert plain.quantize is None and plain.to_config()["quantize"] is None
        quantised, fp32 = quantized_linear_count(plain._engine._runner.module)  # type: ignore[union-attr]
        assert quantised == 0 and fp32 > 0
    with LocalReranker(str(tiny_xlmr_dir), device="cpu", quantize="int8") as r8:
        assert r8.quantize == "int8" and r8.to_config()["quantize"] == "int8"
        module = r8._engine._runner.module  # type: ignore[union-attr]
        body_q, body_fp = quantized_linear_count(module.base_model)
        assert body_q > 0 and body_fp == 0  # every encoder linear is int8
        assert quantized_linear_count(module.classifier) == (0, 2)  # the head stays fp32
    with LocalReranker(str(tiny_mxbai_dir), device="cpu", quantize="int8") as c8:
        runner: Any = c8._engine._runner
        fp32_names = {
            name.rsplit(".", 1)[-1]
            for name, sub in runner.module.named_modules()
            if type(sub) is torch.nn.Linear
        }
        assert fp32_names == {"down_proj"}  # only the gated MLP's down projection stays fp32
        quantised, fp32 = quantized_linear_count(runner.module)
        assert fp32 == runner.module.config.num_hidden_layers and quantised == 6 * fp32
        assert runner.score_weight.dtype == torch.float32  # the lm_head rows stay fp32
        assert runner.score_weight.shape[0] == 2  # still only the two rows mxbai reads


def _no_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("nothing may be read before the quantize check")

    monkeypatch.setattr(loading, "read_config_dict", refuse)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"device": "cuda"},
        {"device": "cuda:1"},
        {"device": "mps"},
        {"device": "cpu", "dtype": "bfloat16"},
        {"dtype": "float16"},
    ],
)
def test_int8_on_another_device_or_dtype_fails_before_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, Any]
) -> None:
    _no_loading(monkeypatch)
    with pytest.raises(RerankInputError) as err:
        LocalReranker(str(tmp_path / "missing"), quantize="int8", **kwargs)
    assert err.value.field == "quantize"


def test_int8_with_an_automatic_cuda_device_fails_before_the_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_loading(monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(RerankInputError) as err:
        LocalReranker(str(tmp_path / "missing"), quantize="int8")
    assert err.value.field == "quantize" and "'cuda'" in str(err.value)


def test_parse_quantize() -> None:
    assert parse_quantize(None) is None
    assert parse_quantize("int8") == "int8"


def test_quantize_runner_refuses_what_it_cannot_quantise() -> None:
    class NoModule:
        pass

    with pytest.raises(UnsupportedFeatureError, match="torch module"):
        quantize_runner(torch, NoModule(), "int8")

    class Runner:
        def __init__(self) -> None:
            self.module = torch.nn.Sequential(torch.nn.Linear(4, 4))

    class TorchWithoutAo:
        nn = torch.nn
        qint8 = torch.qint8
        ao = None
        __version__ = "9.0"

    with pytest.raises(UnsupportedFeatureError, match="no longer has"):
        quantize_runner(TorchWithoutAo(), Runner(), "int8")
    runner = Runner()
    quantize_runner(torch, runner, "int8")
    assert quantized_linear_count(runner.module) == (1, 0)


def test_config_round_trip_and_copies_keep_int8(tiny_xlmr_dir: Path) -> None:
    import copy

    from rerank_integrations import Reranker

    with LocalReranker(str(tiny_xlmr_dir), device="cpu", quantize="int8") as r8:
        config = r8.to_config()
        assert config["quantize"] == "int8"
        with Reranker.from_config(config) as rebuilt:
            assert isinstance(rebuilt, LocalReranker) and rebuilt.quantize == "int8"
        with copy.deepcopy(r8) as copied:
            assert copied.quantize == "int8"
            module = copied._engine._runner.module  # type: ignore[union-attr]
            assert quantized_linear_count(module.base_model)[0] > 0
