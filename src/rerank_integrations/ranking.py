"""Ordering and selection of results: pure functions shared by backends and adapters."""

from __future__ import annotations

import math
from collections.abc import Iterable

from rerank_integrations.errors import RerankInputError
from rerank_integrations.results import RerankResult


def sort_results(results: Iterable[RerankResult]) -> list[RerankResult]:
    """Sort by ``relevance_score`` descending; ties keep input order (``index`` ascending)."""
    return sorted(results, key=lambda r: (-r.relevance_score, r.index))


def validate_score_threshold(threshold: object, *, field: str = "score_threshold") -> float | None:
    """``None`` or a finite real number (``0`` and ``0.0`` are real thresholds)."""
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise RerankInputError(field, f"must be a number or None, got {type(threshold).__name__}")
    if not math.isfinite(threshold):
        raise RerankInputError(field, f"must be finite, got {threshold}")
    return float(threshold)


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
