"""``cross-encoder`` format vs sentence-transformers' ``CrossEncoder`` on a tiny random XLM-R.

Within the window the two must agree within 1e-5 (raw logit and sigmoid). CrossEncoder truncates
long inputs while the local backend windows them (jina-reranker-v2's compute_score), so long
documents are compared with an independent window + max computation written here on top of the
stock transformers model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")

TOL = 1e-5

QUERY = "What is the capital of France?"
DOCS = [
    "Paris is the capital and largest city of France.",
    "Berlin is the capital of Germany!",
    "Is Paris the capital?",
    "no",
    "¿Dónde está la biblioteca?",
    "绿茶富含儿茶素等抗氧化剂。",
    "Green tea contains antioxidants called catechins",
    "The quick brown fox jumps over the lazy dog. " * 4,
]
LONG_DOCS = [
    " ".join(f"Sentence {i}: Paris, Berlin or green tea?" for i in range(30)),
    " ".join(f"Die Katze {i} schläft auf dem Sofa." for i in range(12)),
    "Paris is the capital and largest city of France.",  # short: one window
]


def local_scores(
    model_dir: Path,
    query: str,
    docs: Sequence[str],
    *,
    batch_size: int = 64,
    max_length: int | None = None,
    instruction: str | None = None,
    **kwargs: Any,
) -> tuple[list[float], list[float]]:
    from rerank_integrations.backends.local import LocalReranker

    reranker = LocalReranker(
        model=str(model_dir),
        model_format="cross-encoder",
        device="cpu",
        dtype="float32",
        batch_size=batch_size,
        max_length=max_length,
        **kwargs,
    )
    try:
        results = reranker.rerank(query, list(docs), instruction=instruction)
    finally:
        reranker.close()
    raw = [math.nan] * len(docs)
    rel = [math.nan] * len(docs)
    for r in results:
        raw[r.index] = r.raw_score
        rel[r.index] = r.relevance_score
    return raw, rel


@pytest.fixture(scope="module")
def cross_encoder(tiny_xlmr_dir: Path) -> Any:
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(tiny_xlmr_dir), device="cpu")


def _ce_scores(ce: Any, query: str, docs: Sequence[str]) -> tuple[list[float], list[float]]:
    import torch

    pairs = [(query, d) for d in docs]
    raw = ce.predict(pairs, activation_fn=torch.nn.Identity(), batch_size=3)
    rel = ce.predict(pairs, batch_size=3)  # default activation for one label: sigmoid
    return [float(x) for x in raw], [float(x) for x in rel]


@pytest.mark.parametrize("batch_size", [1, 64], ids=["batch1", "batch64"])
def test_cross_encoder_matches_sentence_transformers(
    tiny_xlmr_dir: Path, cross_encoder: Any, batch_size: int, record_property: Any
) -> None:
    raw, rel = local_scores(tiny_xlmr_dir, QUERY, DOCS, batch_size=batch_size)
    ref_raw, ref_rel = _ce_scores(cross_encoder, QUERY, DOCS)
    d_raw = max(abs(a - b) for a, b in zip(raw, ref_raw, strict=True))
    d_rel = max(abs(a - b) for a, b in zip(rel, ref_rel, strict=True))
    record_property("max_abs_delta_raw", d_raw)
    record_property("max_abs_delta_relevance", d_rel)
    assert d_raw <= TOL, f"raw max |Δ| = {d_raw:.3g}\nlocal={raw}\nCrossEncoder={ref_raw}"
    assert d_rel <= TOL, f"relevance max |Δ| = {d_rel:.3g}"
    assert max(ref_raw) - min(ref_raw) > 1000 * TOL  # the documents really score differently


def test_cross_encoder_instruction_prepend_matches_sentence_transformers(
    tiny_xlmr_dir: Path, cross_encoder: Any, record_property: Any
) -> None:
    instruction = "Prefer recent documents."
    raw, _ = local_scores(
        tiny_xlmr_dir, QUERY, DOCS[:4], instruction=instruction, instruction_mode="prepend"
    )
    ref_raw, _ = _ce_scores(cross_encoder, f"{instruction} {QUERY}", DOCS[:4])
    d_raw = max(abs(a - b) for a, b in zip(raw, ref_raw, strict=True))
    record_property("max_abs_delta_raw", d_raw)
    assert d_raw <= TOL, f"max |Δ| = {d_raw:.3g}"


def test_cross_encoder_instruction_refused_by_default(tiny_xlmr_dir: Path) -> None:
    from rerank_integrations.errors import UnsupportedFeatureError

    with pytest.raises(UnsupportedFeatureError, match="instruction"):
        local_scores(tiny_xlmr_dir, QUERY, DOCS[:2], instruction="Prefer recent documents.")


# ---------------------------------------------------------------------------------------------
# Windowing (independent implementation of jina-reranker-v2's rerank() preprocessing)
# ---------------------------------------------------------------------------------------------


class _WindowOracle:
    """``<s> q </s></s> window </s>``; passage budget ``P = max_length - len(<s> q </s>) - 2``;
    windows of P tokens overlapping by ``min(80, P // 4)``, the last one right-aligned; the
    document's score is the max over windows (jina's ``reranker_tokenize_preproc``)."""

    def __init__(self, model_dir: Path) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(str(model_dir))
        self.model = AutoModelForSequenceClassification.from_pretrained(
            str(model_dir), dtype=torch.float32, attn_implementation="eager"
        ).eval()

    def windows(self, query: str, doc: str, max_length: int) -> list[list[int]]:
        q = self.tok(query)["input_ids"]  # <s> q </s>
        sep = self.tok.sep_token_id
        p_ids = self.tok(doc, add_special_tokens=False)["input_ids"]
        budget = max_length - len(q) - 2
        overlap = min(80, budget // 4)
        if len(p_ids) <= budget:
            return [[*q, sep, *p_ids, sep]]
        out = []
        start = 0
        while start < len(p_ids):
            end = start + budget
            chunk = p_ids[-budget:] if end >= len(p_ids) else p_ids[start:end]
            out.append([*q, sep, *chunk, sep])
            start = end - overlap if end < len(p_ids) else end
        return out

    def score(self, query: str, doc: str, max_length: int) -> tuple[float, int]:
        torch = self.torch
        scores = []
        for ids in self.windows(query, doc, max_length):
            assert len(ids) <= max_length
            with torch.no_grad():
                out = self.model(
                    input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids))
                )
            scores.append(float(out.logits.view(-1)[0]))
        return max(scores), len(scores)


@pytest.mark.parametrize("batch_size", [1, 64], ids=["batch1", "batch64"])
def test_cross_encoder_windows_match_independent_max_over_windows(
    tiny_xlmr_dir: Path, batch_size: int, record_property: Any
) -> None:
    max_length = 40
    oracle = _WindowOracle(tiny_xlmr_dir)
    raw, rel = local_scores(
        tiny_xlmr_dir, "Where is Paris?", LONG_DOCS, batch_size=batch_size, max_length=max_length
    )
    expected = [oracle.score("Where is Paris?", d, max_length) for d in LONG_DOCS]
    assert expected[0][1] > 2 and expected[1][1] >= 2 and expected[2][1] == 1  # really windowed
    d_raw = max(abs(a - e[0]) for a, e in zip(raw, expected, strict=True))
    record_property("max_abs_delta_raw", d_raw)
    assert d_raw <= TOL, f"max |Δ| = {d_raw:.3g}\nlocal={raw}\nwindows={expected}"
    for r, x in zip(rel, raw, strict=True):
        assert abs(r - 1.0 / (1.0 + math.exp(-x))) <= TOL


def test_cross_encoder_window_max_differs_from_truncation(
    tiny_xlmr_dir: Path, cross_encoder: Any
) -> None:
    """Guards the window test: the max over windows is not what plain truncation gives."""
    max_length = 40
    oracle = _WindowOracle(tiny_xlmr_dir)
    best, n = oracle.score("Where is Paris?", LONG_DOCS[0], max_length)
    first = oracle.windows("Where is Paris?", LONG_DOCS[0], max_length)[0]
    import torch

    with torch.no_grad():
        first_score = float(oracle.model(input_ids=torch.tensor([first])).logits.view(-1)[0])
    assert n > 2
    assert best > first_score + 1000 * TOL
