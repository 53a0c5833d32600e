"""examples/evaluate_beir.py runs end to end on its bundled sample with a tiny local model,
and the shipped sample is a valid BEIR folder."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from rerank_integrations.ir.formats import beir_paths, read_corpus, read_qrels, read_queries

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "data" / "beir-mini"


def test_the_bundled_sample_is_a_beir_folder() -> None:
    paths = beir_paths(SAMPLE)
    corpus, queries, qrels = (
        read_corpus(paths.corpus),
        read_queries(paths.queries),
        read_qrels(paths.qrels),
    )
    assert len(queries) == len(qrels) == 8
    assert all(d in corpus for judged in qrels.values() for d in judged)


def test_evaluate_beir_example(
    tiny_xlmr_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # in this process (the interpreter and torch are already up): the example's own main()
    example = runpy.run_path(str(ROOT / "examples" / "evaluate_beir.py"), run_name="example")
    rc = example["main"](["--model", str(tiny_xlmr_dir), "--out", str(tmp_path), "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "8 queries evaluated; baseline bm25" in out
    assert any(line.startswith("reranked ") and "p=" in line for line in out.splitlines())
    for name in ("bm25.trec", "reranked.trec", "reranked.trec.meta.json", "eval.png"):
        assert (tmp_path / name).is_file(), name
