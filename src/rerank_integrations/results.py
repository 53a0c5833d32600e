"""The value every backend returns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RerankResult:
    """One scored document.

    ``index`` is the document's position in the caller's input list.
    ``relevance_score`` is in ``[0, 1]``, higher is more relevant; each backend documents how
    it maps its native score. ``raw_score`` is the model's or API's native number.
    """

    index: int
    relevance_score: float
    raw_score: float
