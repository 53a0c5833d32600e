"""One adapter call: options, instruction precedence, metadata, selection, scores written back.

Every adapter turns its framework's objects into texts and metadata mappings, calls
:func:`rerank_texts` / :func:`arerank_texts`, and maps the results back with
:func:`pair_results` / :func:`score_metadata`; no adapter re-implements a rule below. The user's
view of these rules is in docs/langchain.md, docs/llamaindex.md and docs/haystack.md.

- **Options** (:class:`RerankOptions`) are checked once, at construction, with the core
  validators (typed errors naming the field). ``top_n``: ``None`` keeps all, ``>= 1`` at most
  that many, ``0``/negatives/``bool`` are rejected (``RerankInputError``/``RerankTypeError``) at
  construction and per call. ``score_threshold`` keeps ``relevance_score >= threshold`` (``0.0``
  is a real threshold) and applies *before* ``top_n``. A per-call ``None`` means "the configured
  value"; any other value is used as given (never ``x or configured``).
- **Instruction precedence** (:func:`resolve_instruction`): a per-call instruction that is not
  ``None``; else ``instruction_fn(query)`` when it returns non-``None``; else the configured one.
  An empty string at any level means "no instruction" and stops the search.
- **Metadata** (:func:`metadata_enabled`, :func:`render_metadata`): by default the text a plain
  model scores is the framework's own (docs/migrating.md). Metadata goes, through the reranker's
  metadata argument and never also in the text, to a reranker with a metadata slot
  (:attr:`Reranker.has_metadata_slot`); to another one only when ``metadata_keys`` opts in and it
  accepts metadata; ``send_metadata`` ``True``/``False`` forces it on/off. ``metadata_keys`` (an
  ordered list) selects and orders the fields before rendering, also for a custom
  ``metadata_formatter``; the score keys this package writes (:data:`SCORE_KEYS`) are sent only
  when listed. When every rendered string is empty, ``None`` is sent.
- **One backend call** per adapter call, with every document. Without a threshold ``top_n`` is
  passed as a hint; with one, all results are asked for (the threshold comes first). Empty input
  returns ``[]`` without building or calling the reranker or ``instruction_fn``, after the
  per-call arguments are checked.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from rerank_integrations._adapters.holder import LazyReranker
from rerank_integrations._adapters.policy import validate_metadata_keys
from rerank_integrations.base import Reranker
from rerank_integrations.errors import RerankInputError, RerankTypeError
from rerank_integrations.metadata import MetadataFormatter, format_metadata, without_loader_noise
from rerank_integrations.ranking import select_results
from rerank_integrations.results import RerankResult
from rerank_integrations.validation import (
    bool_value,
    optional_callable,
    validate_instruction,
    validate_query,
    validate_score_threshold,
    validate_top_n,
)

RELEVANCE_SCORE_KEY = "relevance_score"
"""Metadata key of the ``[0, 1]`` relevance score (the LangChain convention)."""

RAW_SCORE_KEY = "rerank_raw_score"
"""Metadata key of the backend's native score (logit, API score...)."""

SCORE_KEYS: frozenset[str] = frozenset({RELEVANCE_SCORE_KEY, RAW_SCORE_KEY})
"""Keys this package writes; never sent as metadata unless listed in ``metadata_keys``."""

InstructionFn = Callable[[str], "str | None"]
"""``instruction_fn(query) -> instruction`` (``None``: fall through to the configured one)."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RerankOptions:
    """An adapter's configured rerank behaviour, validated on construction.

    ``metadata_keys`` is normalised to a tuple (a set is a ``RerankTypeError``: its order is
    random); ``instruction`` to ``None`` when empty.
    """

    top_n: int | None = None
    score_threshold: float | None = None
    instruction: str | None = None
    instruction_fn: InstructionFn | None = None
    metadata_keys: Sequence[str] | None = None
    metadata_formatter: MetadataFormatter | None = None
    send_metadata: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "top_n", validate_top_n(self.top_n))
        object.__setattr__(self, "score_threshold", validate_score_threshold(self.score_threshold))
        object.__setattr__(self, "instruction", validate_instruction(self.instruction))
        optional_callable("instruction_fn", self.instruction_fn)
        object.__setattr__(self, "metadata_keys", validate_metadata_keys(self.metadata_keys))
        optional_callable("metadata_formatter", self.metadata_formatter)
        if self.send_metadata is not None:
            bool_value("send_metadata", self.send_metadata)

    @classmethod
    def from_object(cls, obj: object, **given: Any) -> RerankOptions:
        """Options read from ``obj``'s attributes of the same names (an adapter's fields), or
        ``given``. Adapters call this on every use, so a reassigned field is never shadowed by
        a cached value; a missing attribute uses the default."""
        names = [f.name for f in fields(cls)]
        found = {name: getattr(obj, name) for name in names if hasattr(obj, name)}
        return cls(**{**found, **given})


def resolve_top_n(options: RerankOptions, top_n: object = None) -> int | None:
    """The effective ``top_n``: the per-call value when not ``None``, else the configured one."""
    return options.top_n if top_n is None else validate_top_n(top_n)


def resolve_score_threshold(options: RerankOptions, score_threshold: object = None) -> float | None:
    """The effective threshold: the per-call value when not ``None``, else the configured one."""
    if score_threshold is None:
        return options.score_threshold
    return validate_score_threshold(score_threshold)


def resolve_instruction(
    query: str, options: RerankOptions, *, per_call: object = None
) -> str | None:
    """The instruction for one call; see the module docstring for the precedence."""
    if per_call is not None:
        return validate_instruction(per_call)
    if options.instruction_fn is not None:
        from_fn = options.instruction_fn(query)
        if from_fn is not None:
            return validate_instruction(from_fn, field="instruction_fn")
    return options.instruction


def _select_keys(meta: Mapping[str, Any], keys: Sequence[str] | None) -> Mapping[str, Any]:
    if keys is None:  # the default: everything but our scores and loader bookkeeping
        return {k: v for k, v in without_loader_noise(meta).items() if k not in SCORE_KEYS}
    return {k: meta[k] for k in keys if k in meta}


def metadata_enabled(options: RerankOptions, reranker: Reranker) -> bool:
    """Whether metadata goes to ``reranker`` (through its metadata argument).

    ``send_metadata`` when set; when ``None``: a reranker with a metadata slot gets it; another
    one only when ``metadata_keys`` asks for it (an opt-in) and it accepts metadata.
    """
    if options.send_metadata is not None:
        return options.send_metadata
    if reranker.has_metadata_slot:
        return True
    return options.metadata_keys is not None and reranker.accepts_metadata


def render_metadata(
    metas: Sequence[Mapping[str, Any] | None] | None, options: RerankOptions
) -> list[str] | None:
    """One metadata string per document, or ``None`` when nothing is to be sent."""
    if metas is None or options.send_metadata is False:
        return None
    formatter = options.metadata_formatter
    rendered: list[str] = []
    for i, meta in enumerate(metas):
        if not meta:
            rendered.append("")
        elif formatter is None:
            # format_metadata selects named keys itself; by default drop scores and loader noise
            selected = meta if options.metadata_keys is not None else _select_keys(meta, None)
            rendered.append(format_metadata(selected, keys=options.metadata_keys))
        else:
            text = formatter(_select_keys(meta, options.metadata_keys))
            if not isinstance(text, str):
                raise RerankTypeError(
                    f"metadata_formatter(metadata[{i}])",
                    f"must return a str, got {type(text).__name__}",
                )
            rendered.append(text)
    return rendered if any(rendered) else None


@dataclass(frozen=True, slots=True)
class PreparedCall:
    """One backend call, checked and computed by :func:`prepare_call` (no ``texts``: nothing to
    rerank, the reranker must not be called); ``top_n``/``score_threshold`` are the effective
    selection."""

    query: str
    texts: tuple[str, ...]
    instruction: str | None
    metadata: list[str] | None
    top_n: int | None
    score_threshold: float | None

    def kwargs(self, reranker: Reranker, options: RerankOptions) -> dict[str, Any]:
        """The backend call's keyword arguments: ``top_n`` only as a hint without a threshold."""
        return {
            "instruction": self.instruction,
            "metadata": self.metadata if metadata_enabled(options, reranker) else None,
            "top_n": self.top_n if self.score_threshold is None else None,
        }

    def finish(self, results: Sequence[RerankResult]) -> list[RerankResult]:
        """Apply the threshold then ``top_n`` to the backend's results (best first)."""
        return select_results(results, top_n=self.top_n, score_threshold=self.score_threshold)


def prepare_call(
    query: str,
    texts: Sequence[str],
    metas: Sequence[Mapping[str, Any] | None] | None,
    options: RerankOptions,
    *,
    instruction: object = None,
    top_n: object = None,
    score_threshold: object = None,
) -> PreparedCall:
    """Validate the per-call arguments and compute the backend call (no I/O).

    Everything is checked even when there is nothing to rerank (a blank query is a
    :class:`RerankInputError` naming ``query``), before a lazy reranker is built.
    """
    validate_query(query)
    eff_top_n = resolve_top_n(options, top_n)
    eff_threshold = resolve_score_threshold(options, score_threshold)
    validate_instruction(instruction)
    if metas is not None and len(metas) != len(texts):
        raise RerankInputError(
            "metadata", f"has {len(metas)} entries but there are {len(texts)} documents"
        )
    if not texts:
        return PreparedCall(query, (), None, None, eff_top_n, eff_threshold)
    return PreparedCall(
        query,
        tuple(texts),
        resolve_instruction(query, options, per_call=instruction),
        render_metadata(metas, options),
        eff_top_n,
        eff_threshold,
    )


def rerank_texts(
    reranker: Reranker | LazyReranker,
    query: str,
    texts: Sequence[str],
    metas: Sequence[Mapping[str, Any] | None] | None,
    options: RerankOptions,
    **per_call: object,
) -> list[RerankResult]:
    """Rerank ``texts`` (with their metadata mappings) for ``query``; results best first.

    Per-call ``instruction``/``top_n``/``score_threshold`` override the options when not
    ``None``. ``metas`` is ``None`` or one mapping (or ``None``) per text. ``reranker`` may be a
    :class:`LazyReranker`: it is built only when there is something to rerank.
    """
    call = prepare_call(query, texts, metas, options, **per_call)
    if not call.texts:
        return []
    held = reranker.using() if isinstance(reranker, LazyReranker) else nullcontext(reranker)
    with held as r:
        return call.finish(r.rerank(call.query, call.texts, **call.kwargs(r, options)))


async def arerank_texts(
    reranker: Reranker | LazyReranker,
    query: str,
    texts: Sequence[str],
    metas: Sequence[Mapping[str, Any] | None] | None,
    options: RerankOptions,
    **per_call: object,
) -> list[RerankResult]:
    """Async :func:`rerank_texts` (awaits ``reranker.arerank``; a lazy build runs in a worker
    thread); same arguments, same results."""
    call = prepare_call(query, texts, metas, options, **per_call)
    if not call.texts:
        return []
    held = reranker.ausing() if isinstance(reranker, LazyReranker) else nullcontext(reranker)
    async with held as r:
        return call.finish(await r.arerank(call.query, call.texts, **call.kwargs(r, options)))


def pair_results(
    items: Sequence[T], results: Sequence[RerankResult]
) -> list[tuple[T, RerankResult]]:
    """``(item, result)`` pairs in the results' order (``result.index`` indexes ``items``)."""
    return [(items[r.index], r) for r in results]


def score_metadata(result: RerankResult) -> dict[str, float]:
    """The two score entries written back into a document's metadata."""
    return {RELEVANCE_SCORE_KEY: result.relevance_score, RAW_SCORE_KEY: result.raw_score}


def dedupe_best(
    items: Sequence[T],
    key: Callable[[T], Hashable | None],
    score: Callable[[T], float | None],
) -> list[T]:
    """Drop duplicates by ``key``, keeping the item with the highest ``score``.

    The survivor takes the position of the key's first occurrence; a ``None`` score ranks
    below any number; on equal scores the first occurrence wins. Items whose key is ``None``
    are never deduplicated. The input is not modified.
    """
    best: dict[Hashable, int] = {}
    slots: list[int] = []  # positions into items, in output order
    for i, item in enumerate(items):
        k = key(item)
        if k is None:
            slots.append(i)
        elif k not in best:
            best[k] = len(slots)
            slots.append(i)
        else:
            new_score, old_score = score(item), score(items[slots[best[k]]])
            if new_score is not None and (old_score is None or new_score > old_score):
                slots[best[k]] = i
    return [items[i] for i in slots]
