"""Ordering and selection of results: pure functions shared by backends and adapters."""

from __future__ import annotations

from collections.abc import Iterable

from rerank_integrations.results import RerankResult


def sort_results(results: Iterable[RerankResult]) -> list[RerankResult]:
    """Sort by ``relevance_score`` descending; ties keep input order (``index`` ascending)."""
    return sorted(results, key=lambda r: (-r.relevance_score, r.index))


def select_results(
    results: Iterable[RerankResult],
    *,
    top_n: int | None = None,
    score_threshold: float | None = None,
) -> list[RerankResult]:
    """Sort, keep ``relevance_score >= score_threshold`` (when set), then the first ``top_n``.

    ``top_n=None`` keeps all; a ``top_n`` larger than the list keeps all.
    """
    ranked = sort_results(results)
    if score_threshold is not None:
        ranked = [r for r in ranked if r.relevance_score >= score_threshold]
    return ranked if top_n is None else ranked[:top_n]
