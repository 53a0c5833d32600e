"""Agreement of two score lists over the same documents (int8 vs fp32): Spearman's rank
correlation, top-k overlap and the largest absolute difference. Pure Python, no scipy."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["agreement", "max_abs_delta", "ranks", "spearman", "top_k_overlap"]


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties get the mean of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rho: the Pearson correlation of the ranks (1.0 for identical orders)."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("need two score lists of the same length >= 2")
    ra, rb = ranks(a), ranks(b)
    ma, mb = math.fsum(ra) / len(ra), math.fsum(rb) / len(rb)
    cov = math.fsum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    va = math.fsum((x - ma) ** 2 for x in ra)
    vb = math.fsum((y - mb) ** 2 for y in rb)
    if va == 0 or vb == 0:
        return 1.0 if va == vb else 0.0
    return cov / math.sqrt(va * vb)


def top_k_overlap(a: Sequence[float], b: Sequence[float], k: int = 10) -> float:
    """Share of the top ``k`` documents by ``a`` that are also in the top ``k`` by ``b``."""
    k = min(k, len(a))
    top_a = set(sorted(range(len(a)), key=lambda i: (-a[i], i))[:k])
    top_b = set(sorted(range(len(b)), key=lambda i: (-b[i], i))[:k])
    return len(top_a & top_b) / k


def max_abs_delta(a: Sequence[float], b: Sequence[float]) -> float:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def agreement(reference: Sequence[float], other: Sequence[float], k: int = 10) -> dict[str, float]:
    """``spearman``, ``top_k`` (overlap at ``k``), ``max_abs_delta`` and the reference's
    ``spread`` (max - min)."""
    return {
        "spearman": spearman(reference, other),
        "top_k": top_k_overlap(reference, other, k),
        "max_abs_delta": max_abs_delta(reference, other),
        "spread": max(reference) - min(reference),
    }
