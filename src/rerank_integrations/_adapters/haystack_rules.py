"""The Haystack ranker's decisions, as pure functions (no haystack import).

:mod:`rerank_integrations.haystack` maps ``Document`` objects to these and back:
:func:`document_text` (the text a plain model scores, exactly as Haystack's own rankers build
it), :func:`select_scored` (threshold then ``top_k`` on the score as returned, scaled or raw)
and :func:`local_kwargs` (Haystack's ``model_kwargs`` / ``tokenizer_kwargs`` as LocalReranker
arguments).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rerank_integrations.errors import RerankInputError
from rerank_integrations.results import RerankResult
from rerank_integrations.validation import optional_mapping


def document_text(
    content: str | None,
    meta: Mapping[str, Any],
    fields: Sequence[str],
    separator: str,
    prefix: str = "",
    suffix: str = "",
) -> str:
    """``prefix + separator.join([*values of fields present in meta, content]) + suffix``.

    Haystack's rankers embed ``meta_fields_to_embed`` this way (a missing or ``None`` value is
    skipped); with no fields it is ``prefix + content + suffix``.
    """
    values = [str(meta[k]) for k in fields if meta.get(k) is not None]
    return prefix + separator.join([*values, content or ""]) + suffix


def select_scored(
    results: Sequence[RerankResult], scale: bool, threshold: float | None, limit: int | None
) -> list[tuple[RerankResult, float]]:
    """``(result, score)`` best first: the score is the relevance (``scale``) or the raw score;
    results below ``threshold`` are dropped, then the first ``limit`` kept. Raw scores are
    re-sorted (stable), since they may order ties differently from the relevance."""
    scored = [(r, r.relevance_score if scale else r.raw_score) for r in results]
    if threshold is not None:
        scored = [(r, s) for r, s in scored if s >= threshold]
    if not scale:
        scored.sort(key=lambda pair: -pair[1])
    return scored if limit is None else scored[:limit]


_MODEL_KWARGS = {
    "torch_dtype": "dtype",
    "dtype": "dtype",
    "attn_implementation": "attn_implementation",
    "revision": "revision",
}
_TOKENIZER_KWARGS = {"model_max_length": "max_length", "max_length": "max_length"}


def local_kwargs(
    model_kwargs: Mapping[str, Any] | None, tokenizer_kwargs: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Haystack's ``model_kwargs`` / ``tokenizer_kwargs`` as LocalReranker arguments."""
    out: dict[str, Any] = {}
    for field, given, table in (
        ("model_kwargs", model_kwargs, _MODEL_KWARGS),
        ("tokenizer_kwargs", tokenizer_kwargs, _TOKENIZER_KWARGS),
    ):
        for key, value in (optional_mapping(field, given) or {}).items():
            if key not in table:
                raise RerankInputError(
                    f"{field}[{key!r}]",
                    f"is not supported by the local backend (supported: {sorted(table)}); pass "
                    "other LocalReranker arguments in reranker_kwargs",
                )
            if key in ("torch_dtype", "dtype") and not isinstance(value, str):
                value = str(value).removeprefix("torch.")  # a torch.dtype object
            out[table[key]] = value
    return out
