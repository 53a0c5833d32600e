"""Metrics are the library's (pytrec_eval / ir-measures), ties are broken one way for every
metric, coverage is counted, a qrels/run mismatch is an error, p-values are scipy's."""

from __future__ import annotations

import json
import random

import pytest

from rerank_integrations import RerankInputError
from rerank_integrations.ir.metrics import (
    break_ties,
    compare,
    evaluate,
    paired_p_value,
    parse_metrics,
)
from rerank_integrations.ir.report import coverage_warnings, render_table, to_json

ir_measures = pytest.importorskip("ir_measures")
pytrec_eval = pytest.importorskip("pytrec_eval")
stats = pytest.importorskip("scipy.stats")

QRELS = {
    "q1": {"a": 1, "b": 0, "c": 2, "e": 1},
    "q2": {"x": 1, "y": 0},
    "q3": {"m": 1},
    "q4": {"n": 1},  # in no run
}
# ties (a/b at 1.0, c/d at 0.5, x/y at 5), unjudged documents (z, d), a query the qrels do
# not know (q9), a judged query one run lacks (q3 in A)
RUN_A = {
    "q1": {"z": 3.0, "a": 1.0, "b": 1.0, "c": 0.5, "d": 0.5},
    "q2": {"y": 2.0, "x": 1.0},
    "q9": {"k": 1.0},
}
RUN_B = {"q1": {"c": 2.0, "a": 1.0}, "q2": {"x": 5.0, "y": 5.0}, "q3": {"m": 0.1, "o": 0.2}}
METRICS = ["nDCG@10", "MRR@10", "Recall@100"]


def _trec_eval(run: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """pytrec_eval (trec_eval's own code) on the RAW run, ties and all."""
    evaluator = pytrec_eval.RelevanceEvaluator(QRELS, {"ndcg_cut.10", "recip_rank", "recall.100"})
    return evaluator.evaluate(run)  # type: ignore[no-any-return]


def test_metrics_equal_trec_eval_on_hand_made_runs_with_ties_and_unjudged_docs() -> None:
    ev = evaluate(QRELS, {"A": RUN_A, "B": RUN_B}, METRICS)
    assert ev.query_ids == ["q1", "q2", "q3"]
    for name, run in (("A", RUN_A), ("B", RUN_B)):
        expected = _trec_eval(run)
        for qid in ev.query_ids:
            want = expected.get(qid, {"ndcg_cut_10": 0.0, "recip_rank": 0.0, "recall_100": 0.0})
            # every run here has <= 10 documents a query, so RR@10 == trec_eval's recip_rank
            assert ev.values[name]["nDCG@10"][qid] == pytest.approx(want["ndcg_cut_10"], abs=1e-12)
            assert ev.values[name]["MRR@10"][qid] == pytest.approx(want["recip_rank"], abs=1e-12)
            assert ev.values[name]["Recall@100"][qid] == pytest.approx(
                want["recall_100"], abs=1e-12
            )
    # hand-checked: A/q1 ranks z (unjudged), then the a/b tie as b, a (docid descending) -> 1/3
    assert ev.values["A"]["MRR@10"]["q1"] == pytest.approx(1 / 3)
    assert ev.values["B"]["MRR@10"]["q2"] == pytest.approx(0.5)  # tie x/y: y first


def test_means_equal_ir_measures_aggregate_on_the_same_ranking() -> None:
    ev = evaluate(QRELS, {"B": RUN_B}, METRICS)
    measures = [ir_measures.parse_measure(m) for m in METRICS]
    agg = ir_measures.calc_aggregate(
        measures, {q: QRELS[q] for q in ev.query_ids}, break_ties(RUN_B)
    )
    for label, measure in zip(METRICS, measures, strict=True):
        assert ev.mean("B", label) == pytest.approx(agg[measure], abs=1e-12)


def test_tie_breaking_is_why_runs_are_re_scored_first() -> None:
    # ir-measures' default RR@10 (the MS MARCO provider) breaks the a/b tie the other way
    # (docid ascending): on the raw run it disagrees with trec_eval's ordering
    raw = ir_measures.iter_calc([ir_measures.parse_measure("RR@10")], QRELS, RUN_A)
    per_query = {m.query_id: m.value for m in raw}
    assert per_query["q1"] == pytest.approx(0.5)
    ev = evaluate(QRELS, {"A": RUN_A}, ["MRR@10"])
    assert ev.values["A"]["MRR@10"]["q1"] == pytest.approx(1 / 3)


def test_break_ties_keeps_the_ranking_with_strict_scores() -> None:
    out = break_ties({"q": {"a": 1.0, "b": 1.0, "c": 3.0}})
    assert out == {"q": {"c": 3.0, "b": 2.0, "a": 1.0}}


def test_coverage_counted_and_missing_queries_score_zero() -> None:
    ev = evaluate(QRELS, {"A": RUN_A, "B": RUN_B}, METRICS)
    assert ev.coverage["A"].missing == ["q3"]
    assert ev.coverage["A"].not_in_qrels == ["q9"]
    assert ev.coverage["B"].missing == [] and ev.coverage["B"].not_in_qrels == []
    assert ev.qrels_queries_unanswered == ["q4"]
    assert all(ev.values["A"][m]["q3"] == 0.0 for m in METRICS)
    warnings = coverage_warnings(ev)
    assert any("A: lacks 1 of the 3 evaluated queries" in w for w in warnings)
    assert any("A: 1 run queries have no judgements" in w for w in warnings)
    assert any("1 qrels queries are in no run" in w for w in warnings)


def test_a_run_sharing_no_query_with_the_qrels_is_an_error() -> None:
    with pytest.raises(RerankInputError, match="shares no query id with the qrels"):
        evaluate(QRELS, {"B": RUN_B, "other": {"x1": {"d": 1.0}}}, METRICS)


@pytest.mark.parametrize("bad", [["nDCG@10", "nope@3"], ["nDCG@x"], [""], ["MRR@10", "RR@10"]])
def test_bad_metric_names(bad: list[str]) -> None:
    with pytest.raises(RerankInputError) as info:
        parse_metrics(bad)
    assert info.value.field == "metrics"


def _random_runs(seed: int, n: int = 25) -> tuple[dict, dict, dict]:  # type: ignore[type-arg]
    rng = random.Random(seed)
    qrels, a, b = {}, {}, {}
    for q in range(n):
        docs = [f"d{i}" for i in range(15)]
        qrels[f"q{q}"] = {d: rng.choice([0, 0, 1, 2]) for d in rng.sample(docs, 6)}
        a[f"q{q}"] = {d: rng.random() for d in docs}
        b[f"q{q}"] = {d: rng.random() + (0.3 if qrels[f"q{q}"].get(d) else 0.0) for d in docs}
    return qrels, a, b


def test_p_values_are_scipys_paired_tests() -> None:
    qrels, a, b = _random_runs(0)
    ev = evaluate(qrels, {"a": a, "b": b}, ["nDCG@10", "MRR@10", "P@5", "AP"])
    for test in ("ttest", "wilcoxon"):
        for c in compare(ev, "a", test=test):
            xs = [ev.values["a"][c.metric][q] for q in ev.query_ids]
            ys = [ev.values["b"][c.metric][q] for q in ev.query_ids]
            assert xs != ys
            ref = stats.ttest_rel(ys, xs) if test == "ttest" else stats.wilcoxon(ys, xs)
            assert c.p_value == pytest.approx(float(ref.pvalue), rel=1e-9)
            deltas = [y - x for x, y in zip(xs, ys, strict=True)]
            assert c.mean_delta == pytest.approx(sum(deltas) / len(deltas))
            assert (c.wins, c.ties, c.losses) == (
                sum(d > 0 for d in deltas),
                sum(d == 0 for d in deltas),
                sum(d < 0 for d in deltas),
            )


def test_p_value_edge_cases() -> None:
    assert paired_p_value([0.1]) is None
    assert paired_p_value([0.0, 0.0, 0.0]) == 1.0
    assert paired_p_value([0.0, 0.0, 0.0], "wilcoxon") == 1.0
    assert paired_p_value([0.2, 0.2, 0.2]) == 0.0


def test_table_and_json_show_every_system_side_by_side() -> None:
    qrels, a, b = _random_runs(1, n=8)
    ev = evaluate(qrels, {"bm25": a, "model": b}, METRICS)
    comparisons = compare(ev, "bm25")
    table = render_table(ev, comparisons, baseline="bm25", alpha=0.05)
    header = next(line for line in table.splitlines() if line.startswith("system"))
    assert all(m in header for m in METRICS)
    assert "bm25 (baseline)" in table and "wins/ties/losses" in table
    model_row = next(line for line in table.splitlines() if line.startswith("model "))
    assert f"{ev.mean('model', 'nDCG@10'):.4f}" in model_row
    data = json.loads(json.dumps(to_json(ev, comparisons, baseline="bm25", alpha=0.05)))
    assert data["queries"] == 8 and [s["name"] for s in data["systems"]] == ["bm25", "model"]
    first = data["comparisons"][0]
    assert set(first["per_query_delta"]) == set(ev.query_ids)
    assert data["per_query"]["model"]["nDCG@10"] == ev.values["model"]["nDCG@10"]
