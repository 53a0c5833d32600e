"""The outputs of an evaluation: a side-by-side table, a JSON document, coverage warnings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rerank_integrations.ir import MAX_EXAMPLE_IDS, example_ids
from rerank_integrations.ir.metrics import Comparison, Evaluation, MissingJudged

__all__ = ["coverage_warnings", "qrels_warnings", "render_table", "to_json"]


def coverage_warnings(evaluation: Evaluation) -> list[str]:
    """One line per count of queries outside the comparison (never silently dropped)."""
    out = []
    n = len(evaluation.query_ids)
    for system, cov in evaluation.coverage.items():
        if cov.not_in_qrels:
            out.append(
                f"{system}: {len(cov.not_in_qrels)} run queries have no judgements in the "
                f"qrels and are not evaluated (e.g. {example_ids(cov.not_in_qrels)})"
            )
        if cov.missing:
            out.append(
                f"{system}: lacks {len(cov.missing)} of the {n} evaluated queries; they "
                f"score 0 (e.g. {example_ids(cov.missing)})"
            )
    unanswered = evaluation.qrels_queries_unanswered
    if unanswered:
        out.append(
            f"{len(unanswered)} qrels queries are in no run and are not evaluated "
            f"(e.g. {example_ids(unanswered)})"
        )
    return out


def qrels_warnings(evaluation: Evaluation, missing: MissingJudged | None = None) -> list[str]:
    """One line per count of judgements that change the metrics unnoticed otherwise:
    evaluated queries without a relevant document, judged documents the corpus lacks."""
    out = []
    zero = evaluation.all_zero_queries
    if zero:
        out.append(
            f"{len(zero)} evaluated queries have only zero judgements (no relevant document): "
            f"every metric is 0 on them for every system (e.g. {example_ids(zero)})"
        )
    if missing is not None and missing.count:
        out.append(
            f"{missing.count} judgements ({missing.relevant} relevant) of {missing.queries} "
            "queries name doc ids that are not in the corpus: they can never be retrieved "
            "but count in the ideal ranking (nDCG, recall); wrong corpus version? "
            f"(e.g. {example_ids(missing.examples)})"
        )
    return out


def _checks(evaluation: Evaluation, missing: MissingJudged | None) -> dict[str, Any]:
    unanswered = evaluation.qrels_queries_unanswered
    zero = evaluation.all_zero_queries
    checks: dict[str, Any] = {
        "queries_unanswered": {
            "count": len(unanswered),
            "examples": unanswered[:MAX_EXAMPLE_IDS],
        },
        "queries_all_zero": {"count": len(zero), "examples": zero[:MAX_EXAMPLE_IDS]},
        "docs_not_in_corpus": None,  # no corpus given
    }
    if missing is not None:
        checks["docs_not_in_corpus"] = {
            "count": missing.count,
            "relevant": missing.relevant,
            "queries": missing.queries,
            "examples": missing.examples,
        }
    return checks


def _by_key(comparisons: Sequence[Comparison]) -> dict[tuple[str, str], Comparison]:
    return {(c.system, c.metric): c for c in comparisons}


def _cell(value: float, comparison: Comparison | None, alpha: float) -> str:
    if comparison is None:
        return f"{value:.4f}"
    p = comparison.p_value
    p_text = "p=n/a" if p is None else f"p={p:.3f}" + ("*" if p < alpha else " ")
    return f"{value:.4f} {comparison.mean_delta:+.4f} {p_text}"


def _grid(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]


def render_table(
    evaluation: Evaluation, comparisons: Sequence[Comparison], *, baseline: str, alpha: float
) -> str:
    """Means side by side (with delta and p against the baseline), then wins/ties/losses."""
    by_key = _by_key(comparisons)
    test = comparisons[0].test if comparisons else "ttest"
    test_name = {"ttest": "paired t-test", "wilcoxon": "Wilcoxon signed-rank test"}[test]
    lines = [
        f"{len(evaluation.query_ids)} queries evaluated; baseline {baseline}; "
        f"delta and two-sided {test_name} against it, * p < {alpha:g}",
        "",
    ]
    rows = []
    for system in evaluation.systems:
        label = f"{system} (baseline)" if system == baseline else system
        rows.append(
            [label]
            + [
                _cell(evaluation.mean(system, m), by_key.get((system, m)), alpha)
                for m in evaluation.metrics
            ]
        )
    lines += _grid(["system", *evaluation.metrics], rows)
    others = [s for s in evaluation.systems if s != baseline]
    if others:
        lines += ["", f"per-query deltas against {baseline}: wins/ties/losses"]
        wtl = [
            [s]
            + [
                f"{c.wins}/{c.ties}/{c.losses}"
                for c in (by_key[(s, m)] for m in evaluation.metrics)
            ]
            for s in others
        ]
        lines += _grid(["system", *evaluation.metrics], wtl)
    return "\n".join(lines) + "\n"


def to_json(
    evaluation: Evaluation,
    comparisons: Sequence[Comparison],
    *,
    baseline: str,
    alpha: float,
    sources: Mapping[str, str] | None = None,
    warnings: Sequence[str] = (),
    missing: MissingJudged | None = None,
) -> dict[str, Any]:
    """Everything of the evaluation as JSON-ready data (per-query values and deltas too);
    ``qrels_checks``: judged queries no run answers, evaluated queries with only zero
    judgements, judgements naming documents the corpus lacks (``missing``; ``None`` when no
    corpus was given), each a count with example ids."""
    systems = []
    for name in evaluation.systems:
        cov = evaluation.coverage[name]
        systems.append(
            {
                "name": name,
                "source": (sources or {}).get(name),
                "means": {m: evaluation.mean(name, m) for m in evaluation.metrics},
                "queries_not_in_qrels": len(cov.not_in_qrels),
                "queries_missing": len(cov.missing),
            }
        )
    return {
        "queries": len(evaluation.query_ids),
        "metrics": list(evaluation.metrics),
        "baseline": baseline,
        "test": comparisons[0].test if comparisons else None,
        "alpha": alpha,
        "systems": systems,
        "comparisons": [
            {
                "system": c.system,
                "baseline": c.baseline,
                "metric": c.metric,
                "mean_delta": c.mean_delta,
                "wins": c.wins,
                "ties": c.ties,
                "losses": c.losses,
                "p_value": c.p_value,
                "significant": c.p_value is not None and c.p_value < alpha,
                "per_query_delta": dict(
                    zip(
                        evaluation.query_ids,
                        evaluation.deltas(c.system, c.baseline, c.metric),
                        strict=True,
                    )
                ),
            }
            for c in comparisons
        ],
        "per_query": evaluation.values,
        "qrels_queries_unanswered": len(evaluation.qrels_queries_unanswered),
        "qrels_checks": _checks(evaluation, missing),
        "warnings": list(warnings),
    }
