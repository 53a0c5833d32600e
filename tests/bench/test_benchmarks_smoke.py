"""Smoke test of the benchmark harness (benchmarks/): fast, CPU, no downloads.

- Workloads are a pure function of (tokenizer, seed) and have the specified token lengths.
- The reference recipes written in benchmarks/references.py score like our LocalReranker on the
  benchmark's own (CPU-profile) random models, so a speed ratio in the table compares the same
  computation. (The official mxbai-rerank package runs only under transformers 4; its parity
  with our backend is tested in tests/parity/test_local_parity_mxbai.py, here the mxbai token-id
  assembly of the plain recipe is checked.)
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def bench_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from benchmarks.models import build_model

    root = tmp_path_factory.mktemp("bench_models")
    return {f: build_model(f, "cpu", root) for f in ("ctxl-v2", "qwen3", "mxbai-v2",
                                                      "cross-encoder")}


@pytest.fixture(scope="module")
def qwen_tok(bench_models: dict[str, Path]) -> object:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(bench_models["ctxl-v2"])


def _n_tokens(tok: object, text: str) -> int:
    return len(tok(text, add_special_tokens=False)["input_ids"])  # type: ignore[operator]


def test_w1_lengths_are_lognormal_with_the_specified_median_and_tail() -> None:
    from benchmarks.workloads import token_lengths_w1

    lengths = token_lengths_w1(seed=0)
    assert len(lengths) == 100
    assert statistics.median(lengths) == pytest.approx(200, abs=5)
    assert max(lengths) == 2000  # the tail reaches ~2,000 tokens
    assert min(lengths) >= 16
    # log-normal: the mean sits well above the median, a quarter of docs are below ~110
    assert statistics.mean(lengths) > 1.3 * statistics.median(lengths)
    assert sorted(lengths)[25] < 120
    assert token_lengths_w1(seed=0) == lengths
    assert token_lengths_w1(seed=1) != lengths
    assert sorted(token_lengths_w1(seed=1)) == sorted(lengths)  # same distribution, new order


def test_workloads_are_deterministic_and_hit_token_lengths(qwen_tok: object) -> None:
    from benchmarks.workloads import make_workload

    w1 = make_workload("W1", qwen_tok, seed=0)
    assert w1 == make_workload("W1", qwen_tok, seed=0)
    assert make_workload("W1", qwen_tok, seed=1).documents != w1.documents
    assert w1.instruction and w1.n_docs == 100
    got = [_n_tokens(qwen_tok, d) for d in w1.documents]
    assert all(abs(g - t) <= 2 for g, t in zip(got, w1.target_lengths, strict=True))
    w2 = make_workload("W2", qwen_tok, seed=0)
    assert w2.n_docs == 64 and w2.instruction is None
    assert all(abs(_n_tokens(qwen_tok, d) - 512) <= 2 for d in w2.documents)
    # multilingual: several scripts appear
    text = " ".join(w1.documents)
    for ch in ("д", "α", "ع", "म", "模"):  # noqa: RUF001
        assert ch in text


def _small(tok: object, n: int = 6) -> tuple[str, list[str]]:
    import random

    from benchmarks.workloads import text_with_tokens

    rng = random.Random(3)
    docs = [text_with_tokens(tok, rng, k) for k in (5, 40, 120, 17, 300, 64)[:n]]
    docs[1] += "?"  # punctuation at the end (mxbai's piecewise assembly differs here)
    return "Wie hängen Energie und Klima zusammen?", docs


@pytest.mark.parametrize("fmt", ["ctxl-v2", "qwen3", "mxbai-v2", "cross-encoder"])
def test_reference_recipes_agree_with_our_backend(fmt: str, bench_models: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    from benchmarks.references import CrossEncoderReference, PlainCausal
    from rerank_integrations.backends.local import LocalReranker

    mdir = bench_models[fmt]
    tok = AutoTokenizer.from_pretrained(mdir)
    query, docs = _small(tok)
    instruction = None if fmt == "cross-encoder" else "Prefer primary sources."
    if fmt == "cross-encoder":
        ref: object = CrossEncoderReference(str(mdir), device="cpu", dtype="float32")
        # a document longer than the 1,024-token window: scored by windows on both sides
        import random

        from benchmarks.workloads import text_with_tokens

        docs.append(text_with_tokens(tok, random.Random(5), 1400))
    else:
        ref = PlainCausal(str(mdir), fmt, device="cpu", dtype="float32", batch_size=4)
    ours = LocalReranker(str(mdir), model_format=fmt, device="cpu", dtype="float32")
    try:
        res = ours.rerank(query, docs, instruction=instruction)
    finally:
        ours.close()
    raw = {r.index: r.raw_score for r in res}
    expected = ref.score(query, docs, instruction)  # type: ignore[attr-defined]
    assert len(expected) == len(docs)
    spread = max(expected) - min(expected)
    assert spread > 0  # not a degenerate model (a wrong recipe would then pass)
    tol = 0.07 if fmt == "ctxl-v2" else 1e-4  # ctxl: both sides round through bfloat16
    for i, e in enumerate(expected):
        assert raw[i] == pytest.approx(e, abs=tol), (i, raw[i], e)


def test_render_produces_one_row_per_result() -> None:
    from benchmarks.bench import render

    row = {"format": "ctxl-v2", "workload": "W1", "profile": "cpu", "vocab": 10, "docs": 1,
           "tokens": 5, "head_share_real": 0.18, "head_share_model": 0.18, "ours_docs_s": 3.0,
           "ref_docs_s": 1.0, "ratio": 3.0, "ours_peak_mb": 1, "ref_peak_mb": 2,
           "max_abs_delta": 0.0, "score_spread": 1.0, "reference": "x"}
    table = render({"local": [row, {**row, "workload": "W2", "ratio": 0.5}]})
    assert "**3.00x**" in table and "**0.50x**" in table
    assert table.count("| ctxl-v2 |") == 2
