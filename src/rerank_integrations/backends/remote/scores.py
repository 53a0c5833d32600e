"""From a call's returned scores to ``relevance_score``: a pure function, monotone in the raw
score.

Every supported format returns 0-1 scores, and those are used as they are. A server that
returns numbers outside 0-1 (a vLLM model served with ``"method": "no_post_processing"``
returns logits) gets them clipped to 0-1, and clipping alone would tie every score above 1
at 1.0 (raw 5, 6 and 7 would come back in input order). So the scores that clip to the same
bound are then separated by the smallest steps a float can take, in raw order:
raw 7, 6, 5 -> relevance 1.0, 1 - 2**-53, 1 - 2**-52 (and raw -5, -6, -7 -> 2 * 5e-324,
5e-324, 0.0). Within one call, relevance is thus STRICTLY increasing in raw (equal raw
scores get equal relevance, ties keep input order), always in ``[0, 1]``, and equal to the
clipped raw score up to a few units in the last place.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rerank_integrations.backends.remote.formats import to_relevance

__all__ = ["IN_RANGE_SLACK", "out_of_range", "relevance_scores"]

IN_RANGE_SLACK = 1e-6
"""Scores within this of ``[0, 1]`` count as in range (float noise of a 0-1 activation)."""


def out_of_range(score: float) -> bool:
    """Whether a returned score is outside ``[0, 1]`` by more than float noise."""
    return not -IN_RANGE_SLACK <= score <= 1.0 + IN_RANGE_SLACK


def relevance_scores(raw: Sequence[float]) -> list[float]:
    """The ``relevance_score`` of each of a call's (finite) raw scores, in the same order.

    The raw score clipped to ``[0, 1]`` (:func:`to_relevance`), then made strictly monotone:
    going down from the highest raw score, each lower raw score gets at most the float just
    below the previous relevance; then, going up from the lowest, at least the float just
    above (so nothing drops under 0). Scores already apart are left unchanged.
    """
    values = [to_relevance(r) for r in raw]
    if len(values) < 2:
        return values
    order = sorted(range(len(raw)), key=lambda i: raw[i])
    # Down from the top: strictly decreasing, never above 1.
    for k in range(len(order) - 2, -1, -1):
        here, above = order[k], order[k + 1]
        if raw[here] == raw[above]:
            values[here] = values[above]
        elif values[here] >= values[above]:
            values[here] = math.nextafter(values[above], -math.inf)
    # Up from the bottom: strictly increasing, never below 0.
    values[order[0]] = max(values[order[0]], 0.0)
    for k in range(1, len(order)):
        here, below = order[k], order[k - 1]
        if raw[here] == raw[below]:
            values[here] = values[below]
        elif values[here] <= values[below]:
            values[here] = math.nextafter(values[below], math.inf)
    return [min(1.0, max(0.0, v)) for v in values]
