"""Framework-free behaviour shared by the LangChain, LlamaIndex and Haystack adapters.

Every adapter converts its framework's objects into plain texts and metadata mappings,
calls :func:`rerank_texts` / :func:`arerank_texts`, and turns the returned
:class:`~rerank_integrations.results.RerankResult` list back into framework objects with
:func:`pair_results` and :func:`score_metadata`. No adapter re-implements a rule below.

Decisions (the adapters' docs repeat them for users):

- **Options** (:class:`RerankOptions`) are validated once, at construction, with the core
  validators; a bad value raises a typed error naming the field.
- **top_n**: ``None`` keeps every result; an int ``>= 1`` keeps at most that many; a
  ``top_n`` equal to or larger than the input keeps all. ``0`` (and negatives, and
  ``bool``) are rejected with :class:`~rerank_integrations.errors.RerankInputError`
  (a ``ValueError``) — at construction and per call — exactly like the core's
  :func:`~rerank_integrations.validation.validate_top_n`. "Return nothing" is not a rerank
  setting; an adapter that silently returned ``[]`` for ``top_n=0`` would hide a bug.
- **score_threshold**: keep results with ``relevance_score >= score_threshold``;
  ``0`` and ``0.0`` are real thresholds (they drop nothing below zero and keep a 0.0).
  The threshold is applied *before* ``top_n`` (so ``top_n`` counts survivors).
- **Per-call values**: a per-call ``None`` means "use the configured value"; any other
  value (``0.0``, ``""``) is used as given (never ``x or configured``).
- **Instruction precedence** (:func:`resolve_instruction`): a per-call instruction that is
  not ``None`` wins; else ``instruction_fn(query)`` when set and it returns non-``None``;
  else the configured ``instruction``. An empty/whitespace string at any level means
  "no instruction" and stops the search — so ``instruction=""`` per call switches a
  configured instruction off for that call, and an ``instruction_fn`` returning ``""``
  switches it off for that query (return ``None`` to fall through to the configured one).
- **Metadata** (:func:`render_metadata`, :func:`metadata_enabled`, :func:`has_metadata_slot`):
  by default the text a plain model scores is exactly the text the framework's own reranker
  would score, so the adapters are drop-in replacements (docs/migrating.md). Only a reranker
  with a real metadata slot (:func:`has_metadata_slot`: the ``ctxl-v2`` local format, the
  Contextual API, a custom reranker that accepts metadata) receives the metadata, through that
  slot and never also in the text. ``send_metadata=None`` (the default) therefore sends
  metadata to a slot reranker, and otherwise only when ``metadata_keys`` is given (an opt-in)
  and the reranker accepts metadata (a backend that folds it into the text); ``True`` always
  sends it (a reranker without a metadata field then raises ``UnsupportedFeatureError``);
  ``False`` never sends it.
  When sent, each document's mapping is rendered by ``metadata_formatter`` when given,
  else by :func:`~rerank_integrations.metadata.format_metadata` (which drops ``_private``
  keys, ``None``, embedding vectors, nested dicts and other objects).
  ``metadata_keys`` selects and orders the fields *before* rendering — it also applies to a
  custom formatter, which receives only the selected keys. The score keys this package
  writes back (:data:`RELEVANCE_SCORE_KEY`, :data:`RAW_SCORE_KEY`) are never sent unless
  listed in ``metadata_keys`` (so reranking an already-reranked document does not leak the
  old score into the model input). When every rendered string is empty, ``None`` is sent
  (the reranker's "no metadata"), so backends without a metadata slot are not bothered.
- **One backend call**: the reranker is called once per adapter call with every document.
  When no threshold is in force, ``top_n`` is passed to the backend as a hint (a remote API
  can return fewer results); with a threshold the backend is asked for all results, because
  the threshold must be applied before ``top_n``. Either way the final selection is
  :func:`~rerank_integrations.ranking.select_results`.
- **Empty input** returns ``[]`` without calling the reranker and without calling
  ``instruction_fn``; per-call arguments are still validated first, so a bad ``top_n`` is
  never hidden by an empty list.
- **Scores written back**: ``relevance_score`` (in ``[0, 1]``) is what a framework sees as
  *the* score; the backend's native number is kept under :data:`RAW_SCORE_KEY`.
- **Construction from settings** (:func:`build_reranker`, :class:`LazyReranker`): an adapter
  holds either a ready :class:`~rerank_integrations.base.Reranker` or plain settings (so it
  serialises); settings build the backend lazily on first use — from async entry points in a
  worker thread (:meth:`LazyReranker.aget`), never on the event loop. ``None`` settings are
  left out so the backend's own defaults apply. A ``base_url`` given as a full endpoint
  (ending in ``/rerank``, as Haystack's ``JinaRanker`` takes it) works: the remote backend
  cuts it back to the base URL (``backends.remote.credentials.resolve_endpoint``).
- **Untrusted settings** (:func:`check_backend_allowed`, :func:`check_reranker_settings`): a
  ``"module:Class"`` backend is imported only when its module is this package's or is listed
  in the environment variable :data:`ALLOWED_BACKENDS_ENV`; settings (``reranker_kwargs``, a
  ``to_config()`` dict) can never switch on ``trust_remote_code`` / ``allow_pickle`` (build the
  reranker in code and pass it as ``reranker=``), nor carry an ``api_key`` (the adapters'
  ``api_key`` field is masked and never serialised). Checked at construction, before any import
  or model work. The rules live in :mod:`rerank_integrations.adapter_policy`.
- **Replaced rerankers** (:func:`refresh_reranker`): when an adapter's settings change, the
  holder built from the old ones is retired: closed as soon as no call is using it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rerank_integrations.adapter_holder import (
    RERANKER_SETTING_FIELDS,
    LazyReranker,
    build_reranker,
    refresh_from_fields,
    refresh_reranker,
)
from rerank_integrations.adapter_policy import (
    ALLOWED_BACKENDS_ENV,
    UNPICKLED_KEY_ENV,
    UNSAFE_SETTINGS,
    check_adapter_settings,
    check_backend_allowed,
    check_reranker_config,
    check_reranker_settings,
    key_after_unpickle,
    pydantic_adapter_state,
    sanitized_validation_error,
    validate_metadata_keys,
)
from rerank_integrations.base import Reranker
from rerank_integrations.errors import RerankInputError, RerankTypeError
from rerank_integrations.metadata import MetadataFormatter, format_metadata
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

__all__ = [
    "ALLOWED_BACKENDS_ENV",
    "UNPICKLED_KEY_ENV",
    "UNSAFE_SETTINGS",
    "RAW_SCORE_KEY",
    "RELEVANCE_SCORE_KEY",
    "SCORE_KEYS",
    "InstructionFn",
    "LazyReranker",
    "PreparedCall",
    "RERANKER_SETTING_FIELDS",
    "RerankOptions",
    "arerank_texts",
    "build_reranker",
    "check_adapter_settings",
    "check_backend_allowed",
    "check_reranker_config",
    "check_reranker_settings",
    "dedupe_best",
    "finish_call",
    "has_metadata_slot",
    "metadata_enabled",
    "key_after_unpickle",
    "pair_results",
    "pydantic_adapter_state",
    "prepare_call",
    "render_metadata",
    "refresh_from_fields",
    "refresh_reranker",
    "rerank_texts",
    "resolve_instruction",
    "resolve_score_threshold",
    "resolve_top_n",
    "sanitized_validation_error",
    "score_metadata",
]

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

    ``metadata_keys`` is normalised to a tuple; ``instruction`` to ``None`` when empty.
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
    def from_object(cls, obj: object) -> RerankOptions:
        """Options read from ``obj``'s attributes of the same names (an adapter's fields).

        Adapters call this on every use, so a reassigned field is never shadowed by a cached
        value; a missing attribute uses the default.
        """
        defaults = cls()
        return cls(
            top_n=getattr(obj, "top_n", defaults.top_n),
            score_threshold=getattr(obj, "score_threshold", defaults.score_threshold),
            instruction=getattr(obj, "instruction", defaults.instruction),
            instruction_fn=getattr(obj, "instruction_fn", defaults.instruction_fn),
            metadata_keys=getattr(obj, "metadata_keys", defaults.metadata_keys),
            metadata_formatter=getattr(obj, "metadata_formatter", defaults.metadata_formatter),
            send_metadata=getattr(obj, "send_metadata", defaults.send_metadata),
        )


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
    if keys is None:
        if SCORE_KEYS.isdisjoint(meta):
            return meta
        return {k: v for k, v in meta.items() if k not in SCORE_KEYS}
    return {k: meta[k] for k in keys if k in meta}


#: local formats whose prompt has a real metadata slot (the rest fold metadata into the text).
METADATA_SLOT_LOCAL_FORMATS: frozenset[str] = frozenset({"ctxl-v2"})


def has_metadata_slot(reranker: Reranker) -> bool:
    """Whether ``reranker`` takes metadata in a field of its own (not folded into the text).

    True for the local ``ctxl-v2`` format (:data:`METADATA_SLOT_LOCAL_FORMATS`) and a remote
    API with a metadata field (the Contextual API); False for every other local format and
    remote API (they can only fold metadata into the document text). A custom reranker has a
    slot when it accepts metadata (:attr:`Reranker.accepts_metadata`), unless it defines a
    ``has_metadata_slot`` attribute of its own.
    """
    own = getattr(type(reranker), "has_metadata_slot", None)
    if own is not None:
        return bool(own.__get__(reranker) if hasattr(own, "__get__") else own)
    if reranker.backend_name == "local":
        return getattr(reranker, "model_format", None) in METADATA_SLOT_LOCAL_FORMATS
    if reranker.backend_name == "remote":
        from rerank_integrations.backends.remote.formats import get_format

        return bool(get_format(getattr(reranker, "api_format", None)).supports_metadata)
    return reranker.accepts_metadata


def metadata_enabled(options: RerankOptions, reranker: Reranker) -> bool:
    """Whether metadata goes to ``reranker`` (through its metadata argument).

    ``send_metadata`` when set; when ``None``: a reranker with a metadata slot
    (:func:`has_metadata_slot`) gets it; another one only when ``metadata_keys`` asks for it
    (an opt-in) and it accepts metadata (folds it into the text).
    """
    if options.send_metadata is not None:
        return options.send_metadata
    if has_metadata_slot(reranker):
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
            continue
        if formatter is None:
            # format_metadata does the key selection itself; only strip the score keys.
            selected = meta if options.metadata_keys is not None else _select_keys(meta, None)
            rendered.append(format_metadata(selected, keys=options.metadata_keys))
            continue
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
    """Everything one backend call needs; built by :func:`prepare_call`.

    ``empty`` is true when there is nothing to rerank (the reranker must not be called).
    ``hint_top_n`` is what to pass to the backend; ``top_n``/``score_threshold`` are the
    effective selection applied by :func:`finish_call`.
    """

    query: str
    texts: tuple[str, ...]
    instruction: str | None
    metadata: list[str] | None
    top_n: int | None
    score_threshold: float | None
    hint_top_n: int | None
    empty: bool = field(default=False)


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

    The query is checked here (a blank query is a :class:`RerankInputError` naming ``query``)
    so it fails before a lazy reranker is built, even for an empty document list.
    """
    validate_query(query)
    eff_top_n = resolve_top_n(options, top_n)
    eff_threshold = resolve_score_threshold(options, score_threshold)
    validate_instruction(instruction)  # type check even when there is nothing to rerank
    if metas is not None and len(metas) != len(texts):
        raise RerankInputError(
            "metadata", f"has {len(metas)} entries but there are {len(texts)} documents"
        )
    if not texts:
        return PreparedCall(query, (), None, None, eff_top_n, eff_threshold, None, empty=True)
    return PreparedCall(
        query=query,
        texts=tuple(texts),
        instruction=resolve_instruction(query, options, per_call=instruction),
        metadata=render_metadata(metas, options),
        top_n=eff_top_n,
        score_threshold=eff_threshold,
        hint_top_n=eff_top_n if eff_threshold is None else None,
    )


def finish_call(call: PreparedCall, results: Sequence[RerankResult]) -> list[RerankResult]:
    """Apply the threshold then ``top_n`` to the backend's results (best first)."""
    return select_results(results, top_n=call.top_n, score_threshold=call.score_threshold)


def _call_kwargs(backend: Reranker, call: PreparedCall, options: RerankOptions) -> dict[str, Any]:
    return {
        "instruction": call.instruction,
        "metadata": call.metadata if metadata_enabled(options, backend) else None,
        "top_n": call.hint_top_n,
    }


def rerank_texts(
    reranker: Reranker | LazyReranker,
    query: str,
    texts: Sequence[str],
    metas: Sequence[Mapping[str, Any] | None] | None,
    options: RerankOptions,
    *,
    instruction: object = None,
    top_n: object = None,
    score_threshold: object = None,
) -> list[RerankResult]:
    """Rerank ``texts`` (with their metadata mappings) for ``query``; results best first.

    Per-call ``instruction``/``top_n``/``score_threshold`` override the options when not
    ``None``. ``metas`` is ``None`` or one mapping (or ``None``) per text. ``reranker`` may be a
    :class:`LazyReranker`: it is built only when there is something to rerank.
    """
    call = prepare_call(
        query, texts, metas, options,
        instruction=instruction, top_n=top_n, score_threshold=score_threshold,
    )  # fmt: skip
    if call.empty:
        return []
    if isinstance(reranker, LazyReranker):
        with reranker.using() as backend:
            results = backend.rerank(call.query, call.texts, **_call_kwargs(backend, call, options))
        return finish_call(call, results)
    kwargs = _call_kwargs(reranker, call, options)
    return finish_call(call, reranker.rerank(call.query, call.texts, **kwargs))


async def arerank_texts(
    reranker: Reranker | LazyReranker,
    query: str,
    texts: Sequence[str],
    metas: Sequence[Mapping[str, Any] | None] | None,
    options: RerankOptions,
    *,
    instruction: object = None,
    top_n: object = None,
    score_threshold: object = None,
) -> list[RerankResult]:
    """Async :func:`rerank_texts` (calls ``reranker.arerank``); same arguments, same results."""
    call = prepare_call(
        query, texts, metas, options,
        instruction=instruction, top_n=top_n, score_threshold=score_threshold,
    )  # fmt: skip
    if call.empty:
        return []
    if isinstance(reranker, LazyReranker):
        async with reranker.ausing() as backend:
            kwargs = _call_kwargs(backend, call, options)
            results = await backend.arerank(call.query, call.texts, **kwargs)
        return finish_call(call, results)
    kwargs = _call_kwargs(reranker, call, options)
    return finish_call(call, await reranker.arerank(call.query, call.texts, **kwargs))


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
            continue
        if k not in best:
            best[k] = len(slots)
            slots.append(i)
            continue
        current = items[slots[best[k]]]
        new_score, old_score = score(item), score(current)
        if new_score is not None and (old_score is None or new_score > old_score):
            slots[best[k]] = i
    return [items[i] for i in slots]
