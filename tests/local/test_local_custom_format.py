"""A format added without touching any module: defined here, detected and scored by LocalReranker.

``HalfSigmoidFormat`` is a cross-encoder variant with its own detection rule (``half-sigmoid`` in
the directory name) and its own score mapping (``relevance = sigmoid(raw / 2)``). Its raw scores
are compared with an independent run of the same tiny model through plain transformers, and its
relevance scores with the mapping computed here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from helpers.tiny_models import make_tiny_xlmr  # noqa: E402

from rerank_integrations import RerankInputError  # noqa: E402
from rerank_integrations.backends.local import (  # noqa: E402
    FORMATS,
    CrossEncoderFormat,
    LocalReranker,
    ModelInfo,
    detect_format,
)

QUERY = "What is the capital of France?"
DOCS = [
    "Paris is the capital and largest city of France.",
    "Berlin is the capital of Germany!",
    "Green tea contains antioxidants called catechins.",
    "no",
]


@dataclass(frozen=True)
class HalfSigmoidFormat(CrossEncoderFormat):
    """Cross-encoders whose directory name says ``half-sigmoid``, scored ``sigmoid(raw / 2)``."""

    name: ClassVar[str] = "half-sigmoid"
    summary: ClassVar[str] = "test cross-encoders named *half-sigmoid*"

    def matches(self, info: ModelInfo) -> bool:
        return "half-sigmoid" in info.names and info.has_architecture("ForSequenceClassification")

    def relevance(self, raw: float) -> float:
        return 1.0 / (1.0 + math.exp(-raw / 2))


MY_FORMATS = (HalfSigmoidFormat(), *FORMATS)


@pytest.fixture(scope="module")
def half_sigmoid_dir(tiny_models_root: Path) -> Path:
    return make_tiny_xlmr(tiny_models_root / "tiny-half-sigmoid-cross-encoder", seed=7)


def _reference_raw(model_dir: Path, query: str, docs: list[str]) -> list[float]:
    """The classifier logit of each (query, document) pair, straight from transformers."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(
        str(model_dir), dtype=torch.float32
    ).eval()
    batch = tok([query] * len(docs), docs, padding=True, return_tensors="pt")
    with torch.no_grad():
        return [float(x) for x in model(**batch).logits[:, 0]]


def test_the_format_is_detected_from_the_callers_list(half_sigmoid_dir: Path) -> None:
    config = json.loads((half_sigmoid_dir / "config.json").read_text(encoding="utf-8"))
    assert isinstance(detect_format(str(half_sigmoid_dir), config, MY_FORMATS), HalfSigmoidFormat)
    assert detect_format(str(half_sigmoid_dir), config).name == "cross-encoder"  # registry
    assert "half-sigmoid" not in [f.name for f in FORMATS]  # no module was touched
    with LocalReranker(str(half_sigmoid_dir), formats=MY_FORMATS, dtype="float32") as r:
        assert r.model_format == "half-sigmoid"
        assert isinstance(r.format, HalfSigmoidFormat)
        assert r.format.pair.num_special == 4  # built like a cross-encoder: <s> q </s></s> d </s>
        assert r.max_length == 256  # the cross-encoder length policy it inherits
    with LocalReranker(str(half_sigmoid_dir), dtype="float32") as plain:
        assert plain.model_format == "cross-encoder"


def test_scores_follow_the_formats_own_mapping(half_sigmoid_dir: Path) -> None:
    expected_raw = _reference_raw(half_sigmoid_dir, QUERY, DOCS)
    assert max(expected_raw) - min(expected_raw) > 1e-2  # a sharp comparison
    with LocalReranker(str(half_sigmoid_dir), formats=MY_FORMATS, dtype="float32") as r:
        results = r.rerank(QUERY, DOCS)
    assert sorted(x.index for x in results) == list(range(len(DOCS)))
    for x in results:
        raw = expected_raw[x.index]
        assert x.raw_score == pytest.approx(raw, abs=1e-5)
        assert x.relevance_score == pytest.approx(1.0 / (1.0 + math.exp(-raw / 2)), abs=1e-6)
        assert x.relevance_score != pytest.approx(1.0 / (1.0 + math.exp(-raw)), abs=1e-4)
    scores = [x.relevance_score for x in results]
    assert scores == sorted(scores, reverse=True)


def test_a_format_object_or_its_name_selects_it(
    half_sigmoid_dir: Path, tiny_xlmr_dir: Path
) -> None:
    expected = _reference_raw(tiny_xlmr_dir, QUERY, DOCS[:2])
    # the object works on a model its detection rule would not pick ...
    with LocalReranker(str(tiny_xlmr_dir), model_format=HalfSigmoidFormat()) as r:
        assert r.model_format == "half-sigmoid"
        got = {x.index: x for x in r.rerank(QUERY, DOCS[:2])}
        for i, raw in enumerate(expected):
            assert got[i].relevance_score == pytest.approx(1 / (1 + math.exp(-raw / 2)), abs=1e-6)
        assert r.to_config()["model_format"] == "half-sigmoid"
    # ... and so does its name, looked up in the caller's list
    with LocalReranker(str(tiny_xlmr_dir), model_format="half-sigmoid", formats=MY_FORMATS) as r:
        assert isinstance(r.format, HalfSigmoidFormat)
    with pytest.raises(RerankInputError) as err:
        LocalReranker(str(half_sigmoid_dir), model_format="half-sigmoid")  # not in the registry
    assert err.value.field == "model_format"
