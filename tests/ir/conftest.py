"""Fixtures of the run/eval tests: a tiny BEIR folder written by the tests, reranker configs.

The data set: 12 documents (title, text, a ``date`` field and a ``metadata`` object with a
``source``), 5 queries with an ``instruction`` field on 4 of them, graded qrels for 4
queries (``q5`` is unjudged, so BEIR's split rule leaves it out) in BEIR's tsv format.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DOCS = [
    ("d0", "Paris", "Paris is the capital and largest city of France.", "2021-03-01"),
    ("d1", "Berlin", "Berlin is the capital of Germany and its largest city.", "2019-06-12"),
    ("d2", "Foxes", "The quick brown fox jumps over the lazy dog.", "2015-01-01"),
    ("d3", "Bread", "Mix flour, water, salt and yeast; knead, rest and bake bread.", "2024-02-02"),
    ("d4", "Tea", "Green tea contains antioxidants called catechins.", "2023-11-30"),
    ("d5", "Baking", "How do I bake bread at home? Flour, yeast and an oven.", "2022-08-08"),
    ("d6", "France", "The capital of France is Paris, on the river Seine.", "2025-01-15"),
    ("d7", "Drinks", "Tea and coffee are popular drinks rich in antioxidants.", "2020-05-05"),
    ("d8", "Rivers", "The Seine flows through Paris; the Spree through Berlin.", "2018-09-09"),
    ("d9", "Coffee", "Coffee prices rose this year in Europe.", "2025-06-01"),
    ("d10", "Germany", "Germany's capital Berlin hosts the Bundestag.", "2024-10-10"),
    ("d11", "Dogs", "A lazy dog sleeps on the sofa all day.", "2017-07-07"),
]
QUERIES = [
    ("q1", "What is the capital of France?", "Prefer recent documents"),
    ("q2", "How do I bake bread?", "Prefer step-by-step recipes"),
    ("q3", "green tea antioxidants", None),
    ("q4", "capital of Germany", "Prefer official sources"),
    ("q5", "lazy dog", "Prefer short documents"),
]
QRELS = [
    ("q1", "d0", 1), ("q1", "d6", 2), ("q1", "d8", 0),
    ("q2", "d3", 2), ("q2", "d5", 1),
    ("q3", "d4", 1), ("q3", "d7", 1),
    ("q4", "d1", 1), ("q4", "d10", 2),
]  # fmt: skip


def write_beir(root: Path) -> Path:
    """Write the tiny BEIR folder under ``root`` and return it."""
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    with (root / "corpus.jsonl").open("w", encoding="utf-8") as fh:
        for doc_id, title, text, date in DOCS:
            record = {
                "_id": doc_id,
                "title": title,
                "text": text,
                "date": date,
                "metadata": {"source": f"source-{doc_id}"},
            }
            fh.write(json.dumps(record) + "\n")
    with (root / "queries.jsonl").open("w", encoding="utf-8") as fh:
        for qid, text, instruction in QUERIES:
            record: dict[str, object] = {"_id": qid, "text": text}
            if instruction is not None:
                record["instruction"] = instruction
            fh.write(json.dumps(record) + "\n")
    with (root / "qrels" / "test.tsv").open("w", encoding="utf-8") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for qid, doc_id, rel in QRELS:
            fh.write(f"{qid}\t{doc_id}\t{rel}\n")
    return root


@pytest.fixture(scope="session")
def beir_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BEIR folder (read-only by convention: tests write their outputs elsewhere)."""
    return write_beir(tmp_path_factory.mktemp("beir") / "tiny")


@pytest.fixture(scope="session")
def fake_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``--config`` file for the in-tree FakeReranker (no torch): fixed scores per text."""
    scores = {f"{title} {text}": float(i % 5) for i, (_, title, text, _) in enumerate(DOCS)}
    path = tmp_path_factory.mktemp("configs") / "fake.json"
    path.write_text(
        json.dumps(
            {
                "backend": "rerank_integrations._testing:FakeReranker",
                "scores": scores,
                "model": "fake-reranker",
            }
        ),
        encoding="utf-8",
    )
    return path
