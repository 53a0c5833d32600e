"""``cross-encoder`` format on a tiny random BERT whose pairs carry segment ids
(token_type_ids 0 for the query, 1 for the document) vs sentence-transformers' ``CrossEncoder``.

The two must agree within 1e-5, and the same model with all-zero token types must score
differently: that proves the segment ids reach the model (the parity is not vacuous).
"""

from __future__ import annotations

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
    "The quick brown fox jumps over the lazy dog.",
    "Green tea contains antioxidants called catechins.",
    "¿Dónde está la biblioteca?",
    "绿茶富含儿茶素等抗氧化剂。",
    "yes",
]


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from helpers.tiny_models import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert") / "tiny-bert-cross-encoder")


def _raw_local(model_dir: Path) -> list[float]:
    from rerank_integrations.backends.local import LocalReranker

    reranker = LocalReranker(
        model=str(model_dir), model_format="cross-encoder", device="cpu", dtype="float32"
    )
    try:
        results = reranker.rerank(QUERY, DOCS)
    finally:
        reranker.close()
    return [r.raw_score for r in sorted(results, key=lambda r: r.index)]


def test_tokenizer_gives_the_document_segment_id_1(tiny_bert_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    enc = tok(QUERY, DOCS[0])
    ids, types = enc["input_ids"], enc["token_type_ids"]
    first_sep = ids.index(tok.sep_token_id)
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert set(types[: first_sep + 1]) == {0}
    assert set(types[first_sep + 1 :]) == {1}  # the document and its [SEP]
    assert tok.unk_token_id not in ids


def test_local_matches_cross_encoder_and_uses_segment_ids(tiny_bert_dir: Path) -> None:
    import torch
    from sentence_transformers import CrossEncoder
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    local = _raw_local(tiny_bert_dir)
    ce: Any = CrossEncoder(str(tiny_bert_dir), device="cpu")
    want = [
        float(s) for s in ce.predict([(QUERY, d) for d in DOCS], activation_fn=torch.nn.Identity())
    ]
    assert max(abs(a - b) for a, b in zip(local, want, strict=True)) <= TOL, (local, want)

    tok = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_bert_dir)).eval()
    enc = tok([QUERY] * len(DOCS), DOCS, padding=True, return_tensors="pt")
    assert bool((enc["token_type_ids"] == 1).any(dim=1).all())
    enc["token_type_ids"] = torch.zeros_like(enc["token_type_ids"])
    with torch.no_grad():
        zero = model(**enc).logits[:, 0].tolist()
    assert min(abs(a - b) for a, b in zip(local, zero, strict=True)) > 100 * TOL, (local, zero)
