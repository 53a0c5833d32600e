"""``rerank-integrations run`` / ``eval`` end to end on the tiny BEIR folder and tiny local
models (random weights: the scores mean nothing, the plumbing is what is tested)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from rerank_integrations.cli import main
from rerank_integrations.ir.first_stage import bm25_run
from rerank_integrations.ir.formats import (
    beir_paths,
    read_corpus,
    read_qrels,
    read_queries,
    read_run,
)

JUDGED = ["q1", "q2", "q3", "q4"]  # q5 has no qrels: BEIR's split rule leaves it out


def _run(beir: Path, model: Path, out: Path, *extra: str) -> int:
    return main(
        [*f"run --data {beir} --model {model} -o {out} --first-stage-k 5 -q".split(), *extra]
    )


def _blocks(path: Path) -> dict[str, list[list[str]]]:
    blocks: dict[str, list[list[str]]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        blocks.setdefault(parts[0], []).append(parts)
    return blocks


def test_run_writes_a_complete_sorted_run(
    beir_dir: Path, tiny_xlmr_dir: Path, tmp_path: Path
) -> None:
    out, first = tmp_path / "run.trec", tmp_path / "bm25.trec"
    assert _run(beir_dir, tiny_xlmr_dir, out, "--first-stage-output", str(first)) == 0
    paths = beir_paths(beir_dir)
    queries = read_queries(paths.queries)
    expected = bm25_run(read_corpus(paths.corpus), [queries[q] for q in JUDGED], 5)
    assert read_run(first) == expected  # the first stage as written is bm25s' own
    blocks = _blocks(out)
    assert list(blocks) == JUDGED  # queries in the queries file's order, each once
    for qid, rows in blocks.items():
        assert [r[3] for r in rows] == [str(i) for i in range(1, len(rows) + 1)]
        scores = [float(r[4]) for r in rows]
        assert scores == sorted(scores, reverse=True)
        assert {r[2] for r in rows} == set(expected[qid])  # every candidate, reranked
        assert {r[5] for r in rows} == {tiny_xlmr_dir.name} and {r[1] for r in rows} == {"Q0"}


@pytest.mark.parametrize(("model", "concurrency"), [("ctxl", "4"), ("xlmr", "1")])
def test_resume_produces_the_same_file_as_an_uninterrupted_run(
    beir_dir: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    model: str,
    concurrency: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model_dir = request.getfixturevalue(f"tiny_{model}_dir")
    whole, out = tmp_path / "whole.trec", tmp_path / "run.trec"
    assert _run(beir_dir, model_dir, whole, "--concurrency", concurrency) == 0
    # as left by a kill: two complete queries, one line of the third, half a line
    lines = whole.read_text(encoding="utf-8").splitlines(keepends=True)
    n_first_two = sum(len(b) for b in list(_blocks(whole).values())[:2])
    out.write_text("".join(lines[: n_first_two + 1]) + lines[n_first_two + 1][:7], encoding="utf-8")
    (tmp_path / "run.trec.meta.json").write_bytes((tmp_path / "whole.trec.meta.json").read_bytes())
    capsys.readouterr()
    args = f"run --data {beir_dir} --model {model_dir} -o {out} --first-stage-k 5".split()
    args += ["--concurrency", concurrency]
    assert main(args) == 0
    assert "2 kept from an earlier run, 2 reranked" in capsys.readouterr().err
    assert out.read_bytes() == whole.read_bytes()
    assert main([*args, "--quiet"]) == 0  # complete: nothing to do, no model loaded
    assert out.read_bytes() == whole.read_bytes()


def test_instruction_field_and_metadata_fields_reach_the_model(
    beir_dir: Path, tiny_ctxl_dir: Path, tmp_path: Path
) -> None:
    plain, rich = tmp_path / "plain.trec", tmp_path / "rich.trec"
    assert _run(beir_dir, tiny_ctxl_dir, plain) == 0
    extra = ["--instruction-field", "instruction", "--metadata-fields", "date,source"]
    assert _run(beir_dir, tiny_ctxl_dir, rich, *extra) == 0
    a, b = read_run(plain), read_run(rich)
    assert a.keys() == b.keys() and all(a[q].keys() == b[q].keys() for q in a)
    assert a != b  # the instruction and the metadata changed the prompts, hence the scores


def test_eval_with_a_model_first_stage_row_is_the_first_stage_run(
    beir_dir: Path, tiny_xlmr_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ir_measures = pytest.importorskip("ir_measures")
    runs, plot = tmp_path / "runs", tmp_path / "eval.png"
    argv = f"eval --data {beir_dir} --model {tiny_xlmr_dir} --first-stage-k 5 --runs-dir {runs}"
    assert main([*argv.split(), "--json", "--plot", str(plot), "--quiet"]) == 0
    data = json.loads(capsys.readouterr().out)
    names = [s["name"] for s in data["systems"]]
    assert names == ["bm25", tiny_xlmr_dir.name] and data["baseline"] == "bm25"
    assert data["queries"] == 4 and data["metrics"] == ["nDCG@10", "MRR@10", "Recall@100"]
    # the first-stage row is exactly the metric of the first-stage run file
    assert main(f"eval --data {beir_dir} {runs / 'bm25.trec'} --json".split()) == 0
    alone = json.loads(capsys.readouterr().out)
    assert alone["systems"][0]["means"] == data["systems"][0]["means"]
    judged = read_qrels(beir_paths(beir_dir).qrels)
    lib = ir_measures.calc_aggregate(
        [ir_measures.parse_measure("nDCG@10")], judged, read_run(runs / "bm25.trec")
    )
    assert data["systems"][0]["means"]["nDCG@10"] == pytest.approx(next(iter(lib.values())))
    comparison = data["comparisons"][0]
    assert set(comparison["per_query_delta"]) == set(JUDGED) and "p_value" in comparison
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_table_of_named_run_files(
    beir_dir: Path, fake_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, first = tmp_path / "fake.trec", tmp_path / "bm25.trec"
    run = f"run --data {beir_dir} --config {fake_config} -o {out} --first-stage-output {first} -q"
    assert main(run.split()) == 0
    ev = f"eval --data {beir_dir} first={first} fake={out} --metrics nDCG@10,P@5 --test wilcoxon"
    assert main(ev.split()) == 0
    table = capsys.readouterr().out
    assert "first (baseline)" in table and "Wilcoxon" in table
    assert next(line for line in table.splitlines() if line.startswith("fake ")).count("p=") == 2


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rerank_integrations", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_malformed_corpus_line_exits_2_naming_file_and_line(beir_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "queries.jsonl").write_bytes((beir_dir / "queries.jsonl").read_bytes())
    (bad / "corpus.jsonl").write_text(
        '{"_id": "d0", "text": "ok"}\n{"_id": "d1", "text": \n', encoding="utf-8"
    )
    out = _cli(*f"run --data {bad} --model /nonexistent/model -o {tmp_path / 'o.trec'}".split())
    assert out.returncode == 2
    assert f"{bad / 'corpus.jsonl'}:2: not valid JSON" in out.stderr
    assert "Traceback" not in out.stderr


def test_unknown_candidate_ids_are_counted_not_dropped_silently(
    beir_dir: Path, fake_config: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    candidates = tmp_path / "cands.trec"
    candidates.write_text(
        "q1 Q0 d0 1 2.0 x\nq1 Q0 nope 2 1.0 x\nq1 Q0 gone 3 0.5 x\n"
        "q2 Q0 d3 1 1.0 x\nqX Q0 d1 1 1.0 x\n",
        encoding="utf-8",
    )
    out = tmp_path / "out.trec"
    with caplog.at_level(logging.WARNING):
        run = f"run --data {beir_dir} --candidates {candidates} --config {fake_config} -o {out}"
        assert main([*run.split(), "--quiet"]) == 0
    text = caplog.text
    assert "1 candidate query ids are not in the queries file" in text and "'qX'" in text
    assert "2 candidates name doc ids that are not in the corpus" in text
    assert list(read_run(out)) == ["q1", "q2"]


def test_eval_mismatch_and_bad_arguments_exit_2(
    beir_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.trec"
    other.write_text("x1 Q0 d0 1 1.0 t\n", encoding="utf-8")
    assert main(["eval", "--data", str(beir_dir), str(other)]) == 2
    assert "shares no query id with the qrels" in capsys.readouterr().err
    assert main(["eval", "--data", str(beir_dir), str(other), "--metrics", "nDCG@10,bogus"]) == 2
    assert "'bogus' is not an ir-measures measure" in capsys.readouterr().err
    bad = tmp_path / "bad.trec"
    bad.write_text("q1 Q0 d0 1 1.0 t\nq1 Q0 d1 one 0.5 t\n", encoding="utf-8")
    assert main(["eval", "--data", str(beir_dir), str(bad)]) == 2
    assert f"{bad}:2: rank must be an integer" in capsys.readouterr().err


def test_resume_mismatch_fails_before_loading_a_model(
    beir_dir: Path, fake_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.trec"
    assert main(f"run --data {beir_dir} --config {fake_config} -o {out} -q".split()) == 0
    rc = main(f"run --data {beir_dir} --model /no/model -o {out} --tag fake-reranker -q".split())
    assert rc == 2
    assert "was made with other settings (the reranker settings differ)" in capsys.readouterr().err


def test_run_against_a_remote_rerank_api(beir_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("httpx")
    from helpers.remote_server import RerankTestServer

    out = tmp_path / "remote.trec"
    with RerankTestServer() as server:
        server.latency = 0.1
        url = server.base_url("vllm")
        cmd = f"run --data {beir_dir} --backend remote --api-format vllm --base-url {url}"
        assert main([*cmd.split(), "--model", "served-model", "-o", str(out), "-q"]) == 0
        assert len(server.bodies()) == 4  # one request per query (no limit hit)
        assert server.max_in_flight > 1  # the queries were in flight together
    blocks = _blocks(out)
    assert list(blocks) == JUDGED and {r[5] for rows in blocks.values() for r in rows} == {
        "served-model"
    }


def test_eval_counts_unknown_docs_and_missing_queries(
    beir_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = tmp_path / "a.trec", tmp_path / "b.trec"
    a.write_text("q1 Q0 d6 1 2.0 a\nq1 Q0 ghost 2 1.0 a\nq2 Q0 d3 1 1.0 a\n", encoding="utf-8")
    b.write_text("q1 Q0 d0 1 1.0 b\nq9 Q0 d0 1 1.0 b\n", encoding="utf-8")
    assert main(["eval", "--data", str(beir_dir), str(a), str(b), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["queries"] == 2  # q1, q2: judged and answered by at least one run
    warnings = "\n".join(data["warnings"])
    assert "a: 1 retrieved doc ids are not in the corpus" in warnings
    assert "b: lacks 1 of the 2 evaluated queries; they score 0" in warnings
    assert "b: 1 run queries have no judgements" in warnings
    assert "2 qrels queries are in no run" in warnings
    assert data["systems"][1]["queries_missing"] == 1


def test_missing_extra_names_the_install_command(
    beir_dir: Path,
    fake_config: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "bm25s", None)  # as if not installed
    assert main(f"run --data {beir_dir} --config {fake_config} -o {tmp_path / 'o'} -q".split()) == 2
    assert 'pip install "rerank-integrations[eval]"' in capsys.readouterr().err


@pytest.mark.parametrize(
    "bad", ["--first-stage-k 0", "--concurrency 0", "--max-queries 0", "--alpha 1.5"]
)
def test_bad_numbers_exit_2_before_any_work(
    beir_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    cmd = "eval" if "alpha" in bad else f"run -o {tmp_path / 'o'}"
    argv = f"{cmd} --data {beir_dir} --model /no/model {bad}".split()
    assert main(argv) == 2
    assert bad.split()[0][2:].replace("-", "_") in capsys.readouterr().err
