"""Haystack 3 ranker component: :class:`RerankRanker`.

One import and one line in the pipeline you already have::

    from rerank_integrations.haystack import RerankRanker

    ranker = RerankRanker(backend="remote", model="ctxl-rerank-v2-instruct-multilingual")
    pipeline.add_component("ranker", ranker)

This module maps Haystack ``Document`` objects to texts/metadata and back and holds the
component's lifecycle (``warm_up``/``close``, ``to_dict``/``from_dict``, pickling). The ranking
rules are :mod:`rerank_integrations._adapters.calls`'s, the lazy reranker
:mod:`rerank_integrations._adapters.holder`'s (the same as the LangChain and LlamaIndex
adapters'), Haystack's own decisions :mod:`rerank_integrations._adapters.haystack_rules`'s.
Behaviour is documented in ``docs/haystack.md``.
"""

import asyncio
import copy
import inspect
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, NamedTuple, Self

from rerank_integrations.extras import import_extra

import_extra("haystack", extra="haystack", feature="rerank_integrations.haystack.RerankRanker")

from haystack import Document, component, default_from_dict, default_to_dict  # noqa: E402
from haystack.core.serialization import import_class_by_name  # noqa: E402
from haystack.utils import (  # noqa: E402
    ComponentDevice,
    Secret,
    deserialize_callable,
    deserialize_secrets_inplace,
    serialize_callable,
)
from haystack.utils.auth import SecretType  # noqa: E402

from rerank_integrations._adapters.calls import (  # noqa: E402
    RAW_SCORE_KEY,
    InstructionFn,
    RerankOptions,
    arerank_texts,
    dedupe_best,
    metadata_enabled,
    rerank_texts,
    resolve_score_threshold,
    resolve_top_n,
)
from rerank_integrations._adapters.haystack_rules import (  # noqa: E402
    document_text,
    local_kwargs,
    select_scored,
)
from rerank_integrations._adapters.holder import (  # noqa: E402
    LazyReranker,
    check_backend_arguments,
    load_backend,
    refresh_holder,
    reranker_source,
)
from rerank_integrations._adapters.policy import (  # noqa: E402
    portable_state,
    validate_metadata_keys,
)
from rerank_integrations.base import Reranker, backend_path  # noqa: E402
from rerank_integrations.errors import RerankInputError, RerankTypeError  # noqa: E402
from rerank_integrations.metadata import MetadataFormatter  # noqa: E402
from rerank_integrations.results import RerankResult  # noqa: E402
from rerank_integrations.trust import check_untrusted_settings  # noqa: E402
from rerank_integrations.validation import (  # noqa: E402
    bool_value,
    checked_keywords,
    optional_mapping,
    optional_str_sequence,
    sequence_of,
    str_value,
    text_value,
    validate_instruction,
    validate_query,
    validate_top_n,
)

__all__ = ["RAW_SCORE_KEY", "RerankRanker"]

logger = logging.getLogger(__name__)


def _check_allowlisted(backend: object, field: str) -> None:
    """Gate a ``module:Class`` backend path through Haystack's deserialization allowlist.

    Loading a pipeline must not import a module the user has not allow-listed just because the
    YAML names it as a custom backend; ``"local"``/``"remote"`` are this package's own.
    """
    path = backend_path(backend, field=field) if isinstance(backend, str) else None
    if path is not None:
        import_class_by_name(".".join(path))  # DeserializationError when not allow-listed


def _check_token(token: Secret | None) -> None:
    """The local backend downloads with huggingface_hub, which reads ``HF_TOKEN`` itself."""
    value = None if token is None else token.resolve_value()
    if value and value != os.environ.get("HF_TOKEN"):
        raise RerankInputError(
            "token",
            "the local backend downloads through huggingface_hub, which reads HF_TOKEN: set the "
            "token there (or log in with `hf auth login`) instead of passing a different one",
        )


class _Call(NamedTuple):
    """One run's documents (deduplicated), query (with prefix/suffix) and selection."""

    docs: list[Document]
    query: str
    limit: int | None
    threshold: float | None
    scale: bool


@component
class RerankRanker:
    """Reorders Haystack ``Document`` objects by a modern reranker's relevance score.

    Construct it from a ready :class:`~rerank_integrations.base.Reranker`
    (``RerankRanker(my_reranker)``) or from plain settings (``backend="local"``/``"remote"``,
    ``model``, ...) so that it serialises. The reranker is built in :meth:`warm_up` (which
    :meth:`run` calls itself when needed), never in ``__init__``.

    Output documents are copies: ``score`` is the relevance score in ``[0, 1]`` and
    ``meta[RAW_SCORE_KEY]`` (``"rerank_raw_score"``) the backend's native score.
    """

    @checked_keywords
    def __init__(
        self,
        reranker: Reranker | Mapping[str, Any] | None = None,
        *,
        backend: str | None = None,
        model: str | None = None,
        base_url: str | None = None,
        api_format: str | None = None,
        api_key: Secret | None = None,
        device: ComponentDevice | None = None,
        reranker_kwargs: Mapping[str, Any] | None = None,
        top_k: int | None = 10,
        score_threshold: float | None = None,
        instruction: str | None = None,
        instruction_fn: InstructionFn | None = None,
        meta_fields_to_embed: Sequence[str] | None = None,
        embedding_separator: str = "\n",
        query_prefix: str = "",
        query_suffix: str = "",
        document_prefix: str = "",
        document_suffix: str = "",
        scale_score: bool = True,
        metadata_keys: Sequence[str] | None = None,
        metadata_formatter: MetadataFormatter | None = None,
        send_metadata: bool | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
        tokenizer_kwargs: Mapping[str, Any] | None = None,
        token: Secret | None = None,
    ) -> None:
        """Configure the ranker (no model loading or network work happens here).

        docs/haystack.md describes every parameter (with the table first-party -> ours;
        docs/migrating.md the switch): those shared with Haystack's own rankers (``top_k``,
        ``meta_fields_to_embed``, ``embedding_separator``, the prefixes and suffixes,
        ``scale_score``, ``model_kwargs``, ``tokenizer_kwargs``, ``token``) mean what they mean
        there, the rerank options what they mean in the LangChain and LlamaIndex adapters.

        :param reranker: a :class:`Reranker`, or a ``to_config()`` dict of one (built in
            ``warm_up``); mutually exclusive with the backend settings.
        :param backend: ``"local"`` (the default when no ``reranker`` is given), ``"remote"`` or
            a ``"package.module:Class"`` path (imported in ``warm_up``).
        :param api_key: a Haystack ``Secret``, remote only, resolved in ``warm_up``; serialised
            as the env var's name, never the value. ``None`` leaves the key to the remote
            backend (the format's env var for its public host, no key for a custom ``base_url``).
        :param device: a ``ComponentDevice``, local only.
        :param score_threshold: compared with the score as returned (scaled or not).
        :param meta_fields_to_embed: these ``meta`` values are joined with the content into the
            text a plain model scores; a reranker with a metadata slot gets them in the slot.
        :param metadata_keys: an ordered list (a set is a ``RerankTypeError``): opt in to
            sending these fields through the reranker's metadata argument.
        :param model_kwargs: / :param tokenizer_kwargs: mapped onto the local backend's
            arguments; other keys raise ``RerankInputError``.
        :param token: a Hugging Face token ``Secret``; it must equal ``HF_TOKEN`` (which the hub
            client reads), else ``warm_up`` raises ``RerankInputError``.
        """
        fields_to_embed = optional_str_sequence("meta_fields_to_embed", meta_fields_to_embed)
        selected = validate_metadata_keys(metadata_keys)
        for name, text in (
            ("embedding_separator", embedding_separator),
            ("query_prefix", query_prefix),
            ("query_suffix", query_suffix),
            ("document_prefix", document_prefix),
            ("document_suffix", document_suffix),
        ):
            text_value(name, text)
        bool_value("scale_score", scale_score)
        for name, value, kind in (
            ("api_key", api_key, Secret),
            ("token", token, Secret),
            ("device", device, ComponentDevice),
        ):
            if value is not None and not isinstance(value, kind):
                raise RerankTypeError(name, f"must be a haystack.utils.{kind.__name__} or None")
        effective_backend = backend if backend is not None or reranker is not None else "local"
        for name, setting, only in (
            ("device", device, "local"),
            ("api_key", api_key, "remote"),
            ("model_kwargs", model_kwargs, "local"),
            ("tokenizer_kwargs", tokenizer_kwargs, "local"),
        ):
            if setting is not None and effective_backend not in (None, only):
                raise RerankInputError(name, f"is only used by the {only} backend")
        if (given_kwargs := optional_mapping("reranker_kwargs", reranker_kwargs)) is not None:
            check_untrusted_settings(
                given_kwargs,
                field="reranker_kwargs",
                defaults={"base_url": base_url, "api_format": api_format},
            )
        local_settings = local_kwargs(model_kwargs, tokenizer_kwargs)  # validate the keys now
        if backend is not None:
            backend_path(str_value("backend", backend))  # imported in warm_up, after the allowlist
        plain = {
            "backend": backend, "model": model, "base_url": base_url, "api_format": api_format,
            "device": device, "reranker_kwargs": reranker_kwargs, "api_key": api_key,
            "model_kwargs": model_kwargs, "tokenizer_kwargs": tokenizer_kwargs,
        }  # fmt: skip
        source = reranker_source(reranker, plain)
        if isinstance(source, dict):
            check_untrusted_settings(source, field="reranker")

        self.reranker = source  # a Reranker (the caller's: never closed here) or a config dict
        self.backend = effective_backend
        self.model = model
        self.base_url = base_url
        self.api_format = api_format
        self.api_key = api_key
        self.device = device
        self.reranker_kwargs = None if reranker_kwargs is None else dict(reranker_kwargs)
        self.top_k = top_k
        self.score_threshold = score_threshold
        self.instruction = instruction
        self.instruction_fn = instruction_fn
        self.meta_fields_to_embed = None if fields_to_embed is None else list(fields_to_embed)
        self.embedding_separator = embedding_separator
        self.query_prefix = query_prefix
        self.query_suffix = query_suffix
        self.document_prefix = document_prefix
        self.document_suffix = document_suffix
        self.scale_score = scale_score
        self.metadata_keys = None if selected is None else list(selected)
        self.metadata_formatter = metadata_formatter
        self.send_metadata = send_metadata
        self.model_kwargs = None if model_kwargs is None else dict(model_kwargs)
        self.tokenizer_kwargs = None if tokenizer_kwargs is None else dict(tokenizer_kwargs)
        self.token = token
        self._holder: LazyReranker | None = None  # the same lazy holder as the other adapters
        self._key_dropped = False
        self._options()  # validate now: a bad top_k/threshold/... fails at construction
        if source is None and effective_backend in ("local", "remote"):  # a typo fails now
            given = {"model": model, "base_url": base_url, "api_format": api_format}
            given |= {"device": device, "api_key": api_key} | dict(reranker_kwargs or {})
            if effective_backend == "local":
                given |= local_settings
            check_backend_arguments(
                effective_backend, [k for k, v in given.items() if v is not None]
            )

    def _options(self) -> RerankOptions:
        """The rerank options, read from the attributes on every call (so a reassigned
        attribute, ``ranker.top_k = 3``, is never shadowed by a cached value)."""
        return RerankOptions.from_object(self, top_n=validate_top_n(self.top_k, field="top_k"))

    # -- lifecycle -------------------------------------------------------------------------

    def _settings(self) -> dict[str, Any]:
        """Constructor settings for the backend (``None`` values are dropped when building)."""
        settings = {name: getattr(self, name) for name in ("model", "base_url", "api_format")}
        if self.device is not None:
            settings["device"] = self.device.to_torch_str()
        if self.backend == "remote" and self.api_key is not None:
            settings["api_key"] = self.api_key.resolve_value()
        if self.backend == "local":
            settings.update(local_kwargs(self.model_kwargs, self.tokenizer_kwargs))
            _check_token(self.token)
        settings.update(self.reranker_kwargs or {})
        return settings

    def _lazy(self) -> LazyReranker:
        """The lazy holder for the current source; a reassigned setting gets a new holder
        (:func:`~rerank_integrations._adapters.holder.refresh_holder`, as in the other
        adapters: the replaced one is closed once idle)."""
        if self._key_dropped and self.api_key is None:
            raise RerankInputError(
                "api_key",
                "a Secret.from_token key is never pickled: give api_key again "
                "(use Secret.from_env_var(...) for a component you pickle or save)",
            )
        settings = {"backend": self.backend, **self._settings()}
        self._holder = refresh_holder(self._holder, self, self.reranker, settings)
        return self._holder

    def warm_up(self) -> None:
        """Build the reranker (model load / HTTP client). Idempotent; :meth:`run` calls it.

        If a backend setting (``model``, ``base_url``, ...) was reassigned since the last
        warm-up, a new reranker is built from the new settings (the old one is closed once no
        run uses it). A custom ``module:Class`` backend that cannot be imported raises
        ``RerankInputError`` naming ``backend`` here, before anything is built.
        """
        holder = self._lazy()
        if not holder.built and self.backend is not None and backend_path(self.backend):
            load_backend(self.backend)
        logger.debug("RerankRanker uses a reranker for model %s", holder.get().model_name)

    async def warm_up_async(self) -> None:
        """Async :meth:`warm_up`: the build (a model load can take seconds) runs in a worker
        thread, so the event loop keeps serving other tasks."""
        await asyncio.to_thread(self.warm_up)

    def close(self) -> None:
        """Close a reranker this component built; a later run builds a fresh one.

        A :class:`Reranker` passed to the constructor belongs to the caller and is left open.
        """
        if self._holder is not None:
            self._holder.close()

    async def close_async(self) -> None:
        """Async :meth:`close` (uses the reranker's ``aclose``)."""
        if self._holder is not None:
            await self._holder.aclose()

    # -- serialisation, pickling, copying -----------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Serialise to Haystack's ``{"type", "init_parameters"}`` dict; never contains a secret
        (``api_key``/``token`` as env var names; Haystack refuses a token secret)."""
        params = {name: getattr(self, name) for name in _INIT_PARAMETERS}
        given = self.reranker
        params["reranker"] = (
            given.to_config() if isinstance(given, Reranker) else given and {**given}
        )
        for name in ("instruction_fn", "metadata_formatter"):
            params[name] = serialize_callable(params[name]) if params[name] else None
        return default_to_dict(self, **params)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Rebuild from :meth:`to_dict` output (``data`` is not modified).

        Callables and custom ``module:Class`` backends are resolved through Haystack's
        deserialization allowlist (see docs/haystack.md).
        """
        params = dict(data.get("init_parameters", {}))
        deserialize_secrets_inplace(params, keys=["api_key", "token"])
        for name in ("instruction_fn", "metadata_formatter"):
            if isinstance(params.get(name), str):
                params[name] = deserialize_callable(params[name])
        config = params.get("reranker")
        if isinstance(config, Mapping):
            _check_allowlisted(config.get("backend"), "reranker['backend']")
        _check_allowlisted(params.get("backend"), "backend")
        return default_from_dict(cls, {**data, "init_parameters": params})

    def __getstate__(self) -> dict[str, Any]:
        """Settings only: the built reranker is never pickled (rebuilt on first use), a passed
        reranker travels as its ``to_config()``, and a ``Secret.from_token`` key is dropped."""
        key = self.api_key
        drop = isinstance(key, Secret) and key.type != SecretType.ENV_VAR
        return portable_state(self.__dict__, drop_key=drop)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        """A copy with its own reranker (rebuilt from the settings on first use)."""
        new = type(self).__new__(type(self))
        new.__setstate__(copy.deepcopy(portable_state(self.__dict__, drop_key=False), memo))
        return new

    # -- running ---------------------------------------------------------------------------

    def _begin(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None,
        instruction: str | None,
        score_threshold: float | None,
        scale_score: bool | None,
    ) -> _Call:
        """Validate the call (before any model or network work), drop duplicate ids and settle
        the selection: threshold then ``top_k``, on the score as returned (scaled or raw)."""
        options = self._options()
        validate_query(query)
        documents = sequence_of("documents", documents, Document, "haystack Document")
        validate_instruction(instruction)
        if scale_score is not None:
            bool_value("scale_score", scale_score)
        return _Call(
            docs=dedupe_best(documents, key=lambda d: d.id, score=lambda d: d.score),
            query=self.query_prefix + query + self.query_suffix,
            limit=resolve_top_n(options, validate_top_n(top_k, field="top_k")),
            threshold=resolve_score_threshold(options, score_threshold),
            scale=self.scale_score if scale_score is None else scale_score,
        )

    def _inputs(
        self, call: _Call, reranker: Reranker
    ) -> tuple[str, list[str], list[dict[str, Any]] | None, RerankOptions]:
        """The query, texts, metadata mappings and options of the backend call
        (docs/haystack.md's table).

        A plain model scores Haystack's own text: ``document_prefix +
        embedding_separator.join([*meta values of meta_fields_to_embed, content]) +
        document_suffix``. When the metadata argument is used (a reranker with a metadata slot,
        or ``metadata_keys`` / ``send_metadata=True``) the fields go there instead and the text is
        ``document_prefix + content + document_suffix``.
        """
        options = self._options()
        keys = self.metadata_keys if self.metadata_keys is not None else self.meta_fields_to_embed
        channel = metadata_enabled(options, reranker)  # the one default of all three adapters
        fields = () if channel else (self.meta_fields_to_embed or ())
        affixes = (self.embedding_separator, self.document_prefix, self.document_suffix)
        texts = [document_text(d.content, d.meta, fields, *affixes) for d in call.docs]
        metas = [d.meta for d in call.docs] if channel else None
        # the backend is asked for top_k as a hint only when selecting on the relevance without
        # a threshold; otherwise for every result (_outputs selects on the returned score)
        hint = call.limit if call.scale and call.threshold is None else None
        send = options.send_metadata if channel else False
        options = replace(
            options, top_n=hint, score_threshold=None, metadata_keys=keys, send_metadata=send
        )
        return call.query, texts, metas, options

    @staticmethod
    def _outputs(call: _Call, results: list[RerankResult]) -> dict[str, list[Document]]:
        """Copies of the selected documents with ``score`` set and the raw score in ``meta``."""
        out = []
        for r, score in select_scored(results, call.scale, call.threshold, call.limit):
            doc = call.docs[r.index]
            out.append(replace(doc, score=score, meta={**doc.meta, RAW_SCORE_KEY: r.raw_score}))
        return {"documents": out}

    @component.output_types(documents=list[Document])
    @checked_keywords
    def run(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        instruction: str | None = None,
        score_threshold: float | None = None,
        scale_score: bool | None = None,
    ) -> dict[str, list[Document]]:
        """Rerank ``documents`` for ``query``; best first.

        :param query: the search query (non-empty).
        :param documents: candidates; duplicates by ``Document.id`` keep the one with the best
            incoming score before reranking. Not modified.
        :param top_k: overrides the configured ``top_k`` when not ``None`` (``0`` is rejected).
        :param instruction: overrides the configured instruction / ``instruction_fn`` when not
            ``None``; ``""`` switches the instruction off for this call.
        :param score_threshold: overrides the configured threshold when not ``None``.
        :param scale_score: overrides the configured ``scale_score`` when not ``None``.
        :returns: ``{"documents": [...]}`` — copies with ``score`` set and the raw score in meta.
        """
        call = self._begin(query, documents, top_k, instruction, score_threshold, scale_score)
        if not call.docs:
            return {"documents": []}
        self.warm_up()
        with self._lazy().using() as reranker:
            results = rerank_texts(reranker, *self._inputs(call, reranker), instruction=instruction)
        return self._outputs(call, results)

    @component.output_types(documents=list[Document])
    @checked_keywords
    async def run_async(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        instruction: str | None = None,
        score_threshold: float | None = None,
        scale_score: bool | None = None,
    ) -> dict[str, list[Document]]:
        """Async :meth:`run`: same parameters, same result; uses the reranker's ``arerank``
        (a model load runs in a worker thread, never on the event loop)."""
        call = self._begin(query, documents, top_k, instruction, score_threshold, scale_score)
        if not call.docs:
            return {"documents": []}
        await self.warm_up_async()
        async with self._lazy().ausing() as reranker:
            args = self._inputs(call, reranker)
            results = await arerank_texts(reranker, *args, instruction=instruction)
        return self._outputs(call, results)


_INIT_PARAMETERS = [name for name in inspect.signature(RerankRanker.__init__).parameters][1:]
"""What :meth:`RerankRanker.to_dict` writes: every ``__init__`` parameter, from its attribute."""
