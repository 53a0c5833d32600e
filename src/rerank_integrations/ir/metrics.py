"""IR metrics through ir-measures (trec_eval's code via pytrec_eval) and paired tests (scipy).

Nothing here computes a metric by hand: :func:`evaluate` hands the runs and the qrels to
``ir_measures.iter_calc``. What this module decides is the evaluation's frame:

- **Metric names** are ir-measures' (``nDCG@10``, ``RR@10``, ``R@100``, ``AP``, ``P@5``, ...,
  with its aliases ``MRR@10`` and ``Recall@100``); the name the user wrote is the label.
- **Ties.** ir-measures takes each measure from a different provider and they break score
  ties differently (trec_eval's nDCG/recall: docid descending; the MS MARCO RR@10: docid
  ascending). :func:`break_ties` first gives every query's documents strictly decreasing
  scores in trec_eval's order (:func:`~.formats.ranked`), so every metric sees one ranking.
- **Queries.** The evaluated queries are those of the qrels that at least one run answers.
  A run that lacks one of them scores 0 on it (trec_eval ``-c``) and the count is reported;
  run queries without judgements are reported and left out; a run that shares no query with
  the qrels is an error, never a score of 0. Judged queries that no run answers are reported
  and left out; evaluated queries whose judgements are all 0 (no relevant document: every
  metric is 0 on them, for every system) are evaluated and reported
  (:attr:`Evaluation.all_zero_queries`); judgements naming documents missing from the corpus
  are counted by :func:`judged_docs_not_in_corpus` and still count (as trec_eval does) in the
  ideal ranking, hence in nDCG and recall.
- **Significance.** Each system against a baseline, per metric: a paired two-sided t-test
  (``scipy.stats.ttest_rel``, default) or a Wilcoxon signed-rank test, over the evaluated
  queries; wins/ties/losses count the per-query deltas.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from rerank_integrations.errors import RerankInputError
from rerank_integrations.extras import import_extra
from rerank_integrations.ir import EVAL_EXTRA, MAX_EXAMPLE_IDS, example_ids
from rerank_integrations.ir.formats import Qrels, Run, ranked
from rerank_integrations.validation import choice_value, optional_str_sequence

__all__ = [
    "TESTS",
    "Comparison",
    "Coverage",
    "Evaluation",
    "MissingJudged",
    "break_ties",
    "compare",
    "evaluate",
    "judged_docs_not_in_corpus",
    "paired_p_value",
    "parse_metrics",
]

TESTS = ("ttest", "wilcoxon")
_TIE = 1e-12


def _ir_measures() -> Any:
    return import_extra("ir_measures", extra=EVAL_EXTRA, feature="IR metrics")


def parse_metrics(names: Sequence[str]) -> dict[str, Any]:
    """``label -> ir_measures measure`` for each name (duplicates and unknowns rejected)."""
    checked = optional_str_sequence("metrics", names) or ()
    ir_measures = _ir_measures()
    parsed: dict[str, Any] = {}
    for name in checked:
        label = name.strip()
        if not label:
            raise RerankInputError("metrics", "empty metric name")
        try:
            measure = ir_measures.parse_measure(label)
        except (NameError, ValueError, TypeError) as exc:
            raise RerankInputError(
                "metrics",
                f"{label!r} is not an ir-measures measure ({exc}); "
                "e.g. nDCG@10, MRR@10, Recall@100, AP, P@5",
            ) from None
        if label in parsed or any(str(m) == str(measure) for m in parsed.values()):
            raise RerankInputError("metrics", f"{label!r} is listed twice")
        parsed[label] = measure
    if not parsed:
        raise RerankInputError("metrics", "no metric given")
    return parsed


def break_ties(run: Mapping[str, Mapping[str, float]]) -> Run:
    """The same rankings with strictly decreasing scores ``n, n-1, ..., 1`` per query, in
    trec_eval's order (score descending, ties by docid descending)."""
    out: Run = {}
    for qid, scores in run.items():
        n = len(scores)
        out[qid] = {doc_id: float(n - i) for i, (doc_id, _) in enumerate(ranked(scores))}
    return out


@dataclass(slots=True)
class Coverage:
    """Queries of one run outside the evaluated set, and evaluated queries it lacks."""

    not_in_qrels: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Evaluation:
    """Per-query metric values of every system over the same evaluated queries."""

    metrics: list[str]
    query_ids: list[str]
    systems: list[str]
    values: dict[str, dict[str, dict[str, float]]]
    coverage: dict[str, Coverage]
    qrels_queries_unanswered: list[str]
    all_zero_queries: list[str] = field(default_factory=list)
    """Evaluated queries whose every judgement is 0 or less: no relevant document."""

    def mean(self, system: str, metric: str) -> float:
        """The metric's mean over the evaluated queries."""
        per_query = self.values[system][metric]
        return math.fsum(per_query[q] for q in self.query_ids) / len(self.query_ids)

    def deltas(self, system: str, baseline: str, metric: str) -> list[float]:
        """``system - baseline`` per evaluated query (in :attr:`query_ids` order)."""
        a, b = self.values[system][metric], self.values[baseline][metric]
        return [a[q] - b[q] for q in self.query_ids]


def evaluate(qrels: Qrels, runs: Mapping[str, Run], metrics: Sequence[str]) -> Evaluation:
    """Every metric, per query, for every run (see the module docstring for the frame)."""
    ir_measures = _ir_measures()
    measures = parse_metrics(metrics)
    if not runs:
        raise RerankInputError("runs", "no run to evaluate")
    for name, run in runs.items():
        if not any(qid in qrels for qid in run):
            raise RerankInputError(
                f"run {name!r}",
                f"shares no query id with the qrels (run: {example_ids(list(run))}; qrels: "
                f"{example_ids(list(qrels))}): wrong qrels file or split?",
            )
    answered = set().union(*(set(run) for run in runs.values()))
    query_ids = sorted(q for q in qrels if q in answered)
    evaluated = set(query_ids)
    judged = {q: qrels[q] for q in query_ids}
    values: dict[str, dict[str, dict[str, float]]] = {}
    coverage: dict[str, Coverage] = {}
    by_measure = {str(m): label for label, m in measures.items()}
    for name, run in runs.items():
        ranked_run = break_ties({q: s for q, s in run.items() if q in evaluated})
        per_metric: dict[str, dict[str, float]] = {label: {} for label in measures}
        for metric in ir_measures.iter_calc(list(measures.values()), judged, ranked_run):
            per_metric[by_measure[str(metric.measure)]][metric.query_id] = float(metric.value)
        for label in measures:  # an evaluated query the run lacks scores 0 (trec_eval -c)
            for qid in query_ids:
                per_metric[label].setdefault(qid, 0.0)
        values[name] = per_metric
        coverage[name] = Coverage(
            not_in_qrels=[q for q in run if q not in qrels],
            missing=[q for q in query_ids if q not in run],
        )
    return Evaluation(
        list(measures),
        query_ids,
        list(runs),
        values,
        coverage,
        [q for q in qrels if q not in answered],
        [q for q in query_ids if all(rel <= 0 for rel in qrels[q].values())],
    )


@dataclass(frozen=True, slots=True)
class MissingJudged:
    """Judgements whose document is not in the corpus: ``count`` of them, ``relevant`` of
    those with a relevance above 0, over ``queries`` queries; ``examples``: doc ids."""

    count: int
    relevant: int
    queries: int
    examples: list[str]


def judged_docs_not_in_corpus(qrels: Qrels, corpus_ids: Set[str]) -> MissingJudged:
    """Count the judgements naming a document the corpus lacks (a sign of another corpus
    version: a relevant one can never be retrieved but still raises the ideal DCG)."""
    count = relevant = 0
    queries: set[str] = set()
    examples: list[str] = []
    for qid, judged in qrels.items():
        for doc_id, rel in judged.items():
            if doc_id in corpus_ids:
                continue
            count += 1
            relevant += rel > 0
            queries.add(qid)
            if len(examples) < MAX_EXAMPLE_IDS and doc_id not in examples:
                examples.append(doc_id)
    return MissingJudged(count, relevant, len(queries), examples)


def paired_p_value(deltas: Sequence[float], test: str = "ttest") -> float | None:
    """Two-sided p-value of a paired test on per-query deltas; ``None`` under 2 queries.

    All deltas equal: 1.0 when they are 0, else 0.0 (the limit of the t-test).
    """
    choice_value("test", test, TESTS)
    if len(deltas) < 2:
        return None
    if max(deltas) - min(deltas) <= _TIE:
        return 1.0 if abs(deltas[0]) <= _TIE else 0.0
    stats = import_extra("scipy.stats", extra=EVAL_EXTRA, feature="significance tests")
    if test == "ttest":  # paired t-test == one-sample t-test of the deltas (ttest_rel)
        result = stats.ttest_1samp(list(deltas), 0.0)
    else:  # scipy's defaults: zero deltas dropped ("wilcox"), exact or normal approximation
        result = stats.wilcoxon(list(deltas))
    p = float(result.pvalue)
    return p if math.isfinite(p) else None


@dataclass(frozen=True, slots=True)
class Comparison:
    """One system against the baseline on one metric."""

    system: str
    baseline: str
    metric: str
    mean_delta: float
    wins: int
    ties: int
    losses: int
    p_value: float | None
    test: str


def compare(evaluation: Evaluation, baseline: str, *, test: str = "ttest") -> list[Comparison]:
    """Every other system against ``baseline``, for every metric."""
    choice_value("baseline", baseline, evaluation.systems)
    choice_value("test", test, TESTS)
    out = []
    for system in evaluation.systems:
        if system == baseline:
            continue
        for metric in evaluation.metrics:
            deltas = evaluation.deltas(system, baseline, metric)
            out.append(
                Comparison(
                    system,
                    baseline,
                    metric,
                    math.fsum(deltas) / len(deltas),
                    sum(d > _TIE for d in deltas),
                    sum(abs(d) <= _TIE for d in deltas),
                    sum(d < -_TIE for d in deltas),
                    paired_p_value(deltas, test),
                    test,
                )
            )
    return out
