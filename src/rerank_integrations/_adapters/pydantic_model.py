"""The fields and plumbing the two pydantic adapters (LangChain, LlamaIndex) share.

:class:`PydanticAdapter` goes first in the adapter's bases. It imports pydantic, no framework;
only :mod:`rerank_integrations.langchain` and ``.llama_index`` import it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_serializer,
)

from rerank_integrations._adapters.calls import RerankOptions
from rerank_integrations._adapters.holder import LazyReranker, refresh_holder
from rerank_integrations._adapters.policy import (
    check_adapter_settings,
    key_after_unpickle,
    portable_state,
    sanitized_validation_error,
)
from rerank_integrations.base import Reranker
from rerank_integrations.validation import unknown_name

ADAPTER_CONFIG = ConfigDict(extra="forbid", arbitrary_types_allowed=True, validate_assignment=True)
"""Each adapter sets this again (pydantic lets the framework's later base override it)."""

_SETTING_FIELDS = ("backend", "model", "base_url", "api_format", "model_format", "device")


class PydanticAdapter(BaseModel):
    """Settings, options, reranker holder, safe errors and pickling of a pydantic adapter.

    Give either ``reranker`` (a ready reranker, or its ``to_config()`` dict) or plain settings:
    ``backend`` (``"local"`` — the default —, ``"remote"`` or ``"module:Class"``), ``model``,
    ``base_url``, ``api_key``, ``api_format``, ``model_format``, ``device`` and any other
    constructor argument in ``reranker_kwargs`` (unset: the backend's defaults); both raise
    ``ValueError``. The reranker is built on first use. The core's argument rule applies before
    pydantic sees the input (typed errors that never quote an input, which may hold the key); a
    pickle / deepcopy carries the settings only (never the key when pickled, nor the model).
    """

    model_config = ADAPTER_CONFIG

    reranker: Reranker | dict[str, Any] | None = None
    """A ready reranker (serialised as its ``to_config()``; never holds a secret), or such a
    ``to_config()`` dict (what deserialising gives back; built lazily on first use)."""
    backend: str | None = None
    model: str | None = None
    base_url: str | None = None
    api_key: SecretStr | None = None
    api_format: str | None = None
    model_format: str | None = None
    device: str | None = None
    reranker_kwargs: dict[str, Any] = Field(default_factory=dict)

    score_threshold: float | None = None
    """Keep documents with ``relevance_score >= score_threshold`` (``0.0`` is a real value)."""
    instruction: str | None = None
    instruction_fn: Callable[[str], str | None] | None = Field(default=None, exclude=True)
    metadata_keys: list[str] | None = None
    metadata_formatter: Callable[[Mapping[str, Any]], str] | None = Field(
        default=None, exclude=True
    )
    send_metadata: bool | None = None

    _holder: LazyReranker | None = PrivateAttr(default=None)
    _key_dropped: bool = PrivateAttr(default=False)

    def __init__(self, **data: Any) -> None:
        for name in data:  # "top_k" -> "did you mean 'top_n'?", before pydantic's own error
            if name not in type(self).model_fields:
                raise unknown_name(name, type(self).model_fields, of=type(self).__name__)
        check_adapter_settings(data)  # the core's typed errors, before pydantic sees the input
        try:
            super().__init__(**data)
        except ValidationError as exc:  # pydantic quotes inputs (the key): never shown
            raise sanitized_validation_error(exc) from None

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_") and name not in type(self).model_fields:
            raise unknown_name(name, type(self).model_fields, of=type(self).__name__)
        check_adapter_settings({name: value})  # ``c.top_n = 0`` fails here, not on later calls
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            raise sanitized_validation_error(exc) from None
        if name == "api_key":
            self._key_dropped = False

    def model_post_init(self, context: Any, /) -> None:
        # again after validation: model_validate / model_validate_json bypass __init__
        check_adapter_settings({name: getattr(self, name) for name in type(self).model_fields})
        RerankOptions.from_object(self)  # validate top_n, threshold, instruction, metadata now
        self._lazy()  # validate reranker XOR settings now (builds nothing)

    @field_serializer("reranker")
    def _reranker_to_config(self, value: Reranker | dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        return dict(value) if isinstance(value, dict) else value.to_config()

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        """pydantic's ``model_validate``; errors never quote the input (the key)."""
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as exc:
            raise sanitized_validation_error(exc) from None

    @classmethod
    def model_validate_json(cls, json_data: Any, *args: Any, **kwargs: Any) -> Self:
        """pydantic's ``model_validate_json``; errors never quote the input (the key)."""
        try:
            return super().model_validate_json(json_data, *args, **kwargs)
        except ValidationError as exc:
            raise sanitized_validation_error(exc) from None

    # --- the reranker ------------------------------------------------------------------

    def _lazy(self) -> LazyReranker:
        """The holder for the current settings (a reassigned one gets a new holder)."""
        if self.api_key is not None:
            key: str | None = self.api_key.get_secret_value()
        else:
            key = key_after_unpickle(self.base_url) if self._key_dropped else None
        settings = {name: getattr(self, name) for name in _SETTING_FIELDS}
        settings.update(self.reranker_kwargs)
        self._holder = refresh_holder(self._holder, self, self.reranker, settings, key=key)
        return self._holder

    def get_reranker(self) -> Reranker:
        """The reranker in use (built from the settings on first use)."""
        return self._lazy().get()

    def close(self) -> None:
        """Close a reranker built from settings (a passed-in one is yours); the next call
        builds a fresh one."""
        if self._holder is not None:
            self._holder.close()

    # --- pickling / copying ------------------------------------------------------------

    def _portable(self, *, drop_key: bool) -> dict[Any, Any]:
        state = BaseModel.__getstate__(self)
        fields, private = state["__dict__"], state.get("__pydantic_private__") or {}
        out = portable_state({**fields, **private}, drop_key=drop_key)
        return {
            **state,
            "__dict__": {k: out[k] for k in fields},
            "__pydantic_private__": {k: out[k] for k in private},
        }

    def __getstate__(self) -> dict[Any, Any]:
        """Pickle state: settings only (a ``reranker`` as its ``to_config()``), never the key
        (re-read from ``RERANK_API_KEY`` on unpickling) nor the built reranker."""
        return self._portable(drop_key=True)

    def __setstate__(self, state: dict[Any, Any]) -> None:
        BaseModel.__setstate__(self, state)

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        """A copy with its own reranker, rebuilt from the settings on first use."""
        new = type(self).__new__(type(self))
        new.__setstate__(copy.deepcopy(self._portable(drop_key=False), memo))
        return new
