"""Haystack 3 ranker component: :class:`RerankRanker`.

One import and one line in the pipeline you already have::

    from rerank_integrations.haystack import RerankRanker

    ranker = RerankRanker(backend="remote", model="ctxl-rerank-v2-instruct-multilingual")
    pipeline.add_component("ranker", ranker)

This module only maps Haystack ``Document`` objects to texts/metadata and back; every ranking
rule (instruction precedence, metadata rendering, threshold then ``top_k``, duplicates) is
called from :mod:`rerank_integrations.adapter_support`. Behaviour is documented in
``docs/haystack.md``.
"""

import dataclasses
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from rerank_integrations.extras import import_extra

import_extra("haystack", extra="haystack", feature="rerank_integrations.haystack.RerankRanker")

from haystack import Document, component  # noqa: E402
from haystack.utils import (  # noqa: E402
    ComponentDevice,
    Secret,
)

from rerank_integrations.adapter_support import (  # noqa: E402
    RAW_SCORE_KEY,
    InstructionFn,
    LazyReranker,
    RerankOptions,
    arerank_texts,
    check_reranker_settings,
    dedupe_best,
    metadata_enabled,
    rerank_texts,
)
from rerank_integrations.base import Reranker  # noqa: E402
from rerank_integrations.errors import RerankInputError, RerankTypeError  # noqa: E402
from rerank_integrations.haystack_lifecycle import RankerLifecycle  # noqa: E402
from rerank_integrations.haystack_rules import (  # noqa: E402
    backend_options,
    check_backend_shape,
    document_text,
    local_kwargs,
    select_scored,
)
from rerank_integrations.metadata import MetadataFormatter  # noqa: E402
from rerank_integrations.results import RerankResult  # noqa: E402
from rerank_integrations.validation import (  # noqa: E402
    bool_value,
    optional_mapping,
    optional_str_sequence,
    sequence_of,
    str_value,
    text_value,
    validate_instruction,
    validate_query,
    validate_score_threshold,
    validate_top_n,
)

__all__ = ["RAW_SCORE_KEY", "RerankRanker"]

logger = logging.getLogger(__name__)


@component
class RerankRanker(RankerLifecycle):
    """Reorders Haystack ``Document`` objects by a modern reranker's relevance score.

    Construct it from a ready :class:`~rerank_integrations.base.Reranker`
    (``RerankRanker(my_reranker)``) or from plain settings (``backend="local"``/``"remote"``,
    ``model``, ...) so that it serialises.
    The reranker is built in :meth:`warm_up` (which :meth:`run` calls itself when needed), never in
    ``__init__``.

    Output documents are copies: ``score`` is the relevance score in ``[0, 1]`` and
    ``meta[RAW_SCORE_KEY]`` (``"rerank_raw_score"``) the backend's native score.
    """

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
        backend_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        """Configure the ranker (no model loading or network work happens here).

        The parameters shared with Haystack's own rankers (``SentenceTransformersSimilarityRanker``,
        ``JinaRanker``, ``CohereRanker``) mean exactly what they mean there; docs/haystack.md has
        the table first-party -> ours and docs/migrating.md the switch.

        :param reranker: a :class:`Reranker`, or a ``to_config()`` dict of one (built in
            ``warm_up``).
            Mutually exclusive with the backend settings below.
        :param backend: ``"local"`` (the default when no ``reranker`` is given), ``"remote"`` or a
            ``"package.module:Class"`` path.
        :param model: model id / path (local) or API model name (remote).
        :param base_url: remote API base URL (remote backend only); a full endpoint ending in
            ``/rerank`` (as ``JinaRanker`` takes it) is accepted as well.
        :param api_format: remote API dialect, e.g. ``"contextual"``, ``"jina"``, ``"cohere"``
            (remote backend only).
        :param api_key: a Haystack ``Secret`` (e.g. ``Secret.from_env_var("CONTEXTUAL_API_KEY")``),
            resolved in ``warm_up`` and passed to the remote backend; serialised as the env var
            name, never the value. ``None`` (default) leaves the key to the remote backend's own
            policy: the format's env var for its public host, no key for a custom ``base_url``.
        :param device: ``ComponentDevice`` for the local backend (passed as a torch device string).
        :param reranker_kwargs: further JSON-serialisable constructor arguments of the
            backend's Reranker (the same name as in the LangChain and LlamaIndex adapters).
        :param top_k: keep at most this many documents (``None``: all). ``0`` is rejected.
        :param score_threshold: keep documents with ``score >= score_threshold`` (``0.0`` is real),
            compared with the score as returned (scaled or not, see ``scale_score``).
        :param instruction: the reranker instruction, e.g. ``"prefer the most recent source"``.
        :param instruction_fn: ``query -> instruction | None``, used when no per-call
            instruction is given.
        :param meta_fields_to_embed: as in Haystack's rankers: these ``meta`` values are joined
            with the content by ``embedding_separator`` into the text a plain model scores
            (``None``: nothing). A reranker with a metadata slot (ctxl-v2, the Contextual API)
            receives these fields in that slot instead (as ``key: value`` lines), never in the text.
        :param embedding_separator: joins the embedded meta values and the content (``"\n"``).
        :param query_prefix: / :param query_suffix: added around the query (Haystack's meaning).
        :param document_prefix: / :param document_suffix: added around each document text.
        :param scale_score: ``True`` (default): ``Document.score`` is the relevance in ``[0, 1]``
            (the sigmoid of a cross-encoder's logit, as Haystack's ranker); ``False``: the
            backend's raw score (the logit).
        :param metadata_keys: opt in to sending these ``meta`` fields through the reranker's
            metadata argument (to any reranker that accepts metadata; the backend folds them
            into the text when it has no slot).
        :param metadata_formatter: ``meta -> str`` replacing the default formatter.
        :param send_metadata: ``None`` (default): the metadata argument is used for a reranker
            with a metadata slot, or when ``metadata_keys`` is given; ``True`` always (every field
            unless selected); ``False`` never.
        :param model_kwargs: Haystack's ``model_kwargs``, mapped onto the local backend
            (``torch_dtype``/``dtype``, ``attn_implementation``, ``revision``); other keys raise
            ``RerankInputError``.
        :param tokenizer_kwargs: Haystack's ``tokenizer_kwargs`` (``model_max_length`` /
            ``max_length`` -> ``max_length``); other keys raise ``RerankInputError``.
        :param token: a Haystack ``Secret`` with a Hugging Face token; the local backend downloads
            through ``huggingface_hub``, which reads ``HF_TOKEN``: a token that differs from it
            raises ``RerankInputError`` in ``warm_up`` (set ``HF_TOKEN`` instead).
        :param backend_kwargs: deprecated name of ``reranker_kwargs`` (a DeprecationWarning).
        """
        if backend_kwargs is not None:
            warnings.warn(
                "RerankRanker(backend_kwargs=...) is deprecated: use reranker_kwargs=...",
                DeprecationWarning,
                stacklevel=2,
            )
            if reranker_kwargs is not None:
                raise RerankInputError(
                    "backend_kwargs", "is the deprecated name of reranker_kwargs: give one"
                )
            reranker_kwargs = backend_kwargs
        fields_to_embed = optional_str_sequence("meta_fields_to_embed", meta_fields_to_embed)
        selected = optional_str_sequence("metadata_keys", metadata_keys)
        text_value("embedding_separator", embedding_separator)
        for name, value in (
            ("query_prefix", query_prefix),
            ("query_suffix", query_suffix),
            ("document_prefix", document_prefix),
            ("document_suffix", document_suffix),
        ):
            text_value(name, value)
        bool_value("scale_score", scale_score)
        if api_key is not None and not isinstance(api_key, Secret):
            raise RerankTypeError(
                "api_key", "must be a haystack.utils.Secret (e.g. Secret.from_env_var(...))"
            )
        if token is not None and not isinstance(token, Secret):
            raise RerankTypeError("token", "must be a haystack.utils.Secret or None")
        if device is not None and not isinstance(device, ComponentDevice):
            raise RerankTypeError("device", "must be a haystack.utils.ComponentDevice or None")
        effective_backend = backend if backend is not None or reranker is not None else "local"
        if device is not None and effective_backend not in (None, "local"):
            raise RerankInputError("device", "is only used by the local backend")
        if api_key is not None and effective_backend not in (None, "remote"):
            raise RerankInputError("api_key", "is only used by the remote backend")
        for kw_name, kw_value in (
            ("model_kwargs", model_kwargs),
            ("tokenizer_kwargs", tokenizer_kwargs),
        ):
            if kw_value is not None and effective_backend not in (None, "local"):
                raise RerankInputError(kw_name, "is only used by the local backend")
        optional_mapping("reranker_kwargs", reranker_kwargs)
        if reranker_kwargs is not None:
            check_reranker_settings(reranker_kwargs, field="reranker_kwargs")
        local_settings = local_kwargs(model_kwargs, tokenizer_kwargs)
        if backend is not None:
            check_backend_shape(str_value("backend", backend))

        self.backend = effective_backend
        self.model = model
        self.base_url = base_url
        self.api_format = api_format
        self.api_key = api_key
        self.device = device
        self.reranker_kwargs = dict(reranker_kwargs) if reranker_kwargs is not None else None
        self.top_k = top_k
        self.score_threshold = score_threshold
        self.instruction = instruction
        self.instruction_fn = instruction_fn
        self.meta_fields_to_embed = list(fields_to_embed) if fields_to_embed is not None else None
        self.embedding_separator = embedding_separator
        self.query_prefix = query_prefix
        self.query_suffix = query_suffix
        self.document_prefix = document_prefix
        self.document_suffix = document_suffix
        self.scale_score = scale_score
        self.metadata_keys = list(selected) if selected is not None else None
        self.metadata_formatter = metadata_formatter
        self.send_metadata = send_metadata
        self.model_kwargs = dict(model_kwargs) if model_kwargs is not None else None
        self.tokenizer_kwargs = dict(tokenizer_kwargs) if tokenizer_kwargs is not None else None
        self.token = token
        self._local_kwargs = local_settings
        self._options()  # validate now: a bad top_k/threshold/... fails at construction

        self._given: Reranker | None = None  # the caller's reranker: never closed here
        self._config: dict[str, Any] | None = None  # a to_config() dict: built in warm_up
        self._holder: LazyReranker | None = None  # the same lazy holder as the other adapters
        self._key_dropped = False
        plain = {
            "backend": backend,
            "model": model,
            "base_url": base_url,
            "api_format": api_format,
            "device": device,
            "reranker_kwargs": reranker_kwargs,
            "api_key": api_key,
            "model_kwargs": model_kwargs,
            "tokenizer_kwargs": tokenizer_kwargs,
        }
        if reranker is not None:
            given = sorted(k for k, v in plain.items() if v is not None)
            if given:
                raise RerankInputError(
                    "reranker", f"pass either a Reranker or plain settings, not both (got {given})"
                )
            if isinstance(reranker, Reranker):
                self._given = reranker
            elif isinstance(reranker, Mapping) and isinstance(reranker.get("backend"), str):
                check_reranker_settings(reranker, field="reranker")
                self._config = dict(reranker)
            else:
                raise RerankTypeError(
                    "reranker", "must be a Reranker, a Reranker.to_config() dict, or None"
                )

    def _options(self, *, metadata_keys: Sequence[str] | None = None) -> RerankOptions:
        """The rerank options, read from the public attributes on every call.

        So a reassigned attribute (``ranker.top_k = 3``) is never shadowed by a cached value.
        """
        return RerankOptions(
            top_n=validate_top_n(self.top_k, field="top_k"),
            score_threshold=self.score_threshold,
            instruction=self.instruction,
            instruction_fn=self.instruction_fn,
            metadata_keys=metadata_keys if metadata_keys is not None else self.metadata_keys,
            metadata_formatter=self.metadata_formatter,
            send_metadata=self.send_metadata,
        )

    # -- running ---------------------------------------------------------------------------

    def _prepared(
        self, docs: list[Document], reranker: Reranker
    ) -> tuple[list[str], list[dict[str, Any]] | None, RerankOptions]:
        """The texts, metadata mappings and options of one call (docs/haystack.md's table).

        A plain model scores Haystack's own text: ``document_prefix +
        embedding_separator.join([*meta values of meta_fields_to_embed, content]) +
        document_suffix``. When the metadata argument is used (a reranker with a metadata slot,
        or ``metadata_keys`` / ``send_metadata=True``) the fields go there instead and the text is
        ``document_prefix + content + document_suffix``.
        """
        keys = self.metadata_keys if self.metadata_keys is not None else self.meta_fields_to_embed
        options = self._options(metadata_keys=keys)
        # only metadata_keys is an opt-in to the metadata argument; meta_fields_to_embed is text
        channel = metadata_enabled(self._options(), reranker)
        if channel and keys is None and self.send_metadata is not True:
            channel = False  # Haystack's meta_fields_to_embed=None: no metadata at all
        fields = () if channel else (self.meta_fields_to_embed or ())
        texts = [
            document_text(
                d.content,
                d.meta,
                fields,
                self.embedding_separator,
                self.document_prefix,
                self.document_suffix,
            )
            for d in docs
        ]
        if channel:
            return texts, [d.meta for d in docs], options
        return texts, None, replace(options, send_metadata=False)

    def _unique_documents(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None,
        instruction: str | None,
        score_threshold: float | None,
        scale_score: bool | None,
    ) -> list[Document]:
        """Validate the call (before any model or network work) and drop duplicate ids."""
        validate_query(query)
        documents = sequence_of("documents", documents, Document, "haystack Document")
        validate_top_n(top_k, field="top_k")
        validate_score_threshold(score_threshold)
        validate_instruction(instruction)
        if scale_score is not None:
            bool_value("scale_score", scale_score)
        return dedupe_best(documents, key=lambda d: d.id, score=lambda d: d.score)

    def _select(
        self,
        docs: list[Document],
        results: list[RerankResult],
        options: RerankOptions,
        top_k: int | None,
        score_threshold: float | None,
        scale: bool,
    ) -> list[Document]:
        """Threshold then ``top_k``, on the score as returned (scaled or raw)."""
        threshold = options.score_threshold if score_threshold is None else score_threshold
        limit = options.top_n if top_k is None else top_k
        return [
            dataclasses.replace(
                docs[r.index], score=score, meta={**docs[r.index].meta, RAW_SCORE_KEY: r.raw_score}
            )
            for r, score in select_scored(results, scale=scale, threshold=threshold, limit=limit)
        ]

    @component.output_types(documents=list[Document])
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
        self._options()
        docs = self._unique_documents(
            query, documents, top_k, instruction, score_threshold, scale_score
        )
        if not docs:
            return {"documents": []}
        self.warm_up()
        scale = self.scale_score if scale_score is None else scale_score
        with self._lazy().using() as reranker:
            texts, metas, options = self._prepared(docs, reranker)
            results = rerank_texts(
                reranker, self.query_prefix + query + self.query_suffix, texts, metas,
                backend_options(options, top_k, score_threshold, scale), instruction=instruction,
            )  # fmt: skip
        return {"documents": self._select(docs, results, options, top_k, score_threshold, scale)}

    @component.output_types(documents=list[Document])
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
        self._options()
        docs = self._unique_documents(
            query, documents, top_k, instruction, score_threshold, scale_score
        )
        if not docs:
            return {"documents": []}
        await self.warm_up_async()
        scale = self.scale_score if scale_score is None else scale_score
        async with self._lazy().ausing() as reranker:
            texts, metas, options = self._prepared(docs, reranker)
            results = await arerank_texts(
                reranker, self.query_prefix + query + self.query_suffix, texts, metas,
                backend_options(options, top_k, score_threshold, scale), instruction=instruction,
            )  # fmt: skip
        return {"documents": self._select(docs, results, options, top_k, score_threshold, scale)}
