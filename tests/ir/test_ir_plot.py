"""The evaluation chart says what it shows: a title naming the data set and the first stage,
and on the bars the significance marks the table prints (matplotlib objects, not pixels)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rerank_integrations.cli import main
from rerank_integrations.ir import plot
from rerank_integrations.ir.metrics import compare, evaluate
from rerank_integrations.ir.report import render_table

pytest.importorskip("matplotlib")
pytest.importorskip("ir_measures")

MEDLINE = Path(__file__).parent / "data" / "medline-150"
METRICS = ["nDCG@10", "RR@10"]


def _evaluation() -> tuple[Any, list[Any]]:
    """12 queries, one relevant document each: ``better`` puts it first everywhere (a
    significant gain), ``mixed`` first on half the queries and last on the others (not)."""
    queries = [f"q{i:02d}" for i in range(12)]
    qrels = {q: {"rel": 1} for q in queries}

    def at(rank: int) -> dict[str, float]:
        docs = [f"d{j}" for j in range(9)]
        docs.insert(rank - 1, "rel")
        return {d: float(10 - i) for i, d in enumerate(docs)}

    runs = {
        "bm25": {q: at(3) for q in queries},
        "better": {q: at(1) for q in queries},
        "mixed": {q: at(1 if i % 2 else 10) for i, q in enumerate(queries)},
    }
    evaluation = evaluate(qrels, runs, METRICS)
    return evaluation, compare(evaluation, "bm25")


def _bar_labels(fig: Any) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts]


def test_bars_carry_the_tables_significance_marks() -> None:
    evaluation, comparisons = _evaluation()
    fig = plot.evaluation_figure(
        evaluation, "bm25", title="toy · first stage: bm25", comparisons=comparisons, alpha=0.05
    )
    table = render_table(evaluation, comparisons, baseline="bm25", alpha=0.05)
    labels = _bar_labels(fig)
    # bar_label order: system by system, metric by metric within each
    assert len(labels) == len(evaluation.systems) * len(METRICS)
    rows = {line.split()[0]: line for line in table.splitlines()[3:6]}
    for i, system in enumerate(evaluation.systems):
        cells = rows[system].split("  ")[1:] if system != "bm25" else []
        for j, metric in enumerate(METRICS):
            label = labels[i * len(METRICS) + j]
            assert label.startswith(f"{evaluation.mean(system, metric):.3f}")
            marked = system != "bm25" and "*" in [c for c in cells if c.strip()][j]
            assert label.endswith(plot.SIGNIFICANT) == marked, (system, metric, label)
    assert [label.endswith("*") for label in labels] == [False, False, True, True, False, False]
    bars = fig.axes[0]
    assert bars.get_title() == "toy · first stage: bm25 (12 queries)"
    assert "* p < 0.05 against bm25 (two-sided paired t-test)" in bars.get_xlabel()


def test_without_comparisons_no_mark_and_the_old_title() -> None:
    evaluation, _ = _evaluation()
    fig = plot.evaluation_figure(evaluation, "bm25")
    assert not any(label.endswith("*") for label in _bar_labels(fig))
    assert fig.axes[0].get_title() == "12 queries" and fig.axes[0].get_xlabel() == ""


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every figure ``eval --plot`` draws (the real one, kept for inspection)."""
    drawn: list[Any] = []
    real = plot.evaluation_figure

    def spy(*args: Any, **kwargs: Any) -> Any:
        drawn.append(real(*args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(plot, "evaluation_figure", spy)
    return drawn


def test_eval_chart_names_the_data_set_and_the_first_stage(
    figures: list[Any],
    fake_config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    chart, runs = tmp_path / "eval.png", tmp_path / "runs"
    argv = f"eval --data {MEDLINE} --config {fake_config} --first-stage-k 5 --runs-dir {runs}"
    assert main([*argv.split(), "--plot", str(chart), "-q"]) == 0
    table = capsys.readouterr().out
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (fig,) = figures
    title = fig.axes[0].get_title()
    assert title == (
        "medline-150 · first stage: BM25 (english stemmer, k1 1.2, b 0.75), top 5 (6 queries)"
    )
    marks = [label.endswith("*") for label in _bar_labels(fig)]
    fake_row = next(line for line in table.splitlines() if line.startswith("fake-reranker"))
    assert marks[3:] == ["*" in cell for cell in fake_row.split("p=")[1:]]

    # other analyzer options are named; run files alone name the baseline instead
    figures.clear()
    runs2 = tmp_path / "runs2"
    argv2 = f"eval --data {MEDLINE} --config {fake_config} --first-stage-k 5 --runs-dir {runs2}"
    argv2 += " --bm25-stemmer none --bm25-k1 0.9 --bm25-b 0.4"
    assert main([*argv2.split(), "--plot", str(chart), "-q"]) == 0
    assert "BM25 (no stemmer, k1 0.9, b 0.4), top 5" in figures[-1].axes[0].get_title()
    figures.clear()
    first = runs / "bm25.trec"
    assert main(f"eval --data {MEDLINE} bm25={first} --plot {chart} -q".split()) == 0
    assert figures[-1].axes[0].get_title() == "medline-150 · baseline: bm25 (6 queries)"
