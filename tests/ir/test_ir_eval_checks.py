"""Cases ``eval`` used to pass over silently: judgements naming documents the corpus lacks,
evaluated queries whose judgements are all 0, judged queries no run answers (each counted
with example ids in a warning and in ``--json``); a byte-order mark at the start of any
input file."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from rerank_integrations.cli import main
from rerank_integrations.ir.formats import (
    beir_paths,
    parse_json,
    read_corpus,
    read_qrels,
    read_queries,
    read_run,
)
from rerank_integrations.ir.metrics import evaluate, judged_docs_not_in_corpus

BOM = "\ufeff"


def test_qrels_checks_are_counted_with_examples_in_json_and_warnings(
    beir_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text(
        "q1\td0\t1\nq1\tghost-1\t2\n"  # a relevant document the corpus lacks
        "q2\td3\t0\nq2\td5\t0\n"  # judged, but nothing relevant
        "q3\td4\t1\nq3\tghost-2\t0\n"
        "q4\td1\t1\n",  # judged, in no run
        encoding="utf-8",
    )
    run = tmp_path / "a.trec"
    run.write_text(
        "q1 Q0 d0 1 3.0 a\nq1 Q0 d6 2 2.0 a\nq2 Q0 d3 1 1.0 a\nq3 Q0 d4 1 1.0 a\n",
        encoding="utf-8",
    )
    argv = ["eval", "--data", str(beir_dir), "--qrels", str(qrels), str(run), "--json"]
    argv += ["--metrics", "nDCG@10,R@100"]
    with caplog.at_level(logging.WARNING):
        assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    checks = data["qrels_checks"]
    assert checks["queries_unanswered"] == {"count": 1, "examples": ["q4"]}
    assert checks["queries_all_zero"] == {"count": 1, "examples": ["q2"]}
    assert checks["docs_not_in_corpus"] == {
        "count": 2,
        "relevant": 1,
        "queries": 2,
        "examples": ["ghost-1", "ghost-2"],
    }
    logged = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    for line in (
        "1 qrels queries are in no run and are not evaluated (e.g. 'q4')",
        "1 evaluated queries have only zero judgements (no relevant document): every metric "
        "is 0 on them for every system (e.g. 'q2')",
        "2 judgements (1 relevant) of 2 queries name doc ids that are not in the corpus",
        "(e.g. 'ghost-1', 'ghost-2')",
    ):
        assert line in logged and line in "\n".join(data["warnings"])
    # the values are trec_eval's, unchanged: the missing relevant doc stays in the ideal
    # ranking (q1: 1 of 2 relevant retrieved), the all-zero query scores 0 and is evaluated
    means = data["systems"][0]["means"]
    assert data["queries"] == 3
    assert means["R@100"] == pytest.approx((0.5 + 0.0 + 1.0) / 3)


def test_evaluation_helpers_count_the_cases() -> None:
    qrels = {"q1": {"a": 0, "b": -1}, "q2": {"c": 1, "x": 1, "y": 0}, "q3": {"z": 2}}
    evaluation = evaluate(qrels, {"r": {"q1": {"a": 1.0}, "q2": {"c": 1.0}}}, ["nDCG@10"])
    assert evaluation.all_zero_queries == ["q1"]
    assert evaluation.qrels_queries_unanswered == ["q3"]
    missing = judged_docs_not_in_corpus(qrels, {"a", "b", "c"})
    assert (missing.count, missing.relevant, missing.queries) == (3, 2, 2)
    assert missing.examples == ["x", "y", "z"]


def test_byte_order_mark_at_the_start_of_every_input_file(beir_dir: Path, tmp_path: Path) -> None:
    plain = beir_paths(beir_dir)
    bom_dir = tmp_path / "bom"
    (bom_dir / "qrels").mkdir(parents=True)
    copies = {
        plain.corpus: bom_dir / "corpus.jsonl",
        plain.queries: bom_dir / "queries.jsonl",
        plain.qrels: bom_dir / "qrels" / "test.tsv",
    }
    for source, target in copies.items():
        target.write_bytes(BOM.encode("utf-8") + source.read_bytes())
    paths = beir_paths(bom_dir)
    assert read_corpus(paths.corpus) == read_corpus(plain.corpus)
    assert read_queries(paths.queries) == read_queries(plain.queries)
    assert read_qrels(paths.qrels) == read_qrels(plain.qrels)
    # a headerless qrels file and a run: the first id must not carry the mark
    headerless = tmp_path / "q.tsv"
    headerless.write_text(f"{BOM}q1\td0\t1\n", encoding="utf-8")
    assert read_qrels(headerless) == {"q1": {"d0": 1}}
    run = tmp_path / "r.trec"
    run.write_text(f"{BOM}q1 Q0 d0 1 1.0 t\n", encoding="utf-8")
    assert read_run(run) == {"q1": {"d0": 1.0}}
    # a JSON file read whole (a --config file) and a JSON line
    assert parse_json(BOM + '{"backend": "local"}', "config.json", whole_file=True) == {
        "backend": "local"
    }


def test_eval_reads_files_with_a_byte_order_mark(
    beir_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "a.trec"
    run.write_text(f"{BOM}q1 Q0 d6 1 2.0 a\nq2 Q0 d3 1 1.0 a\n", encoding="utf-8")
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text(f"{BOM}query-id\tcorpus-id\tscore\nq1\td6\t1\nq2\td3\t1\n", encoding="utf-8")
    assert main(["eval", "--data", str(beir_dir), "--qrels", str(qrels), str(run), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["queries"] == 2 and data["systems"][0]["queries_not_in_qrels"] == 0
