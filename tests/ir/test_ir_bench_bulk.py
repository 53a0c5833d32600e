"""benchmarks/bulk.py's data set is deterministic, valid BEIR + TREC, and feeds the CLI's own
job builder (the timing itself is run by hand: docs/benchmarks.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def test_bulk_benchmark_dataset(tiny_xlmr_dir: Path, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from benchmarks import bulk

    lengths = bulk.passage_lengths(60, seed=0)
    assert lengths == bulk.passage_lengths(60, seed=0) and sorted(lengths)[30] in range(110, 131)
    assert min(lengths) >= bulk.PASSAGE_MIN and max(lengths) <= bulk.PASSAGE_MAX
    tok = transformers.AutoTokenizer.from_pretrained(tiny_xlmr_dir)
    a = bulk.write_dataset(tok, tmp_path / "a", queries=4, k=5, seed=1)
    b = bulk.write_dataset(tok, tmp_path / "b", queries=4, k=5, seed=1)
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv", "candidates.trec"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    jobs = bulk._jobs(a, 5)
    assert [j.query_id for j in jobs] == ["q0", "q1", "q2", "q3"]
    assert all(len(j.documents) == 5 for j in jobs)
    same = {j.query_id: dict.fromkeys(j.doc_ids, 1.0) for j in jobs}
    assert bulk._compare(same, same) == (0.0, True)
