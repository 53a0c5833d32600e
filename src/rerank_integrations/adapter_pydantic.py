"""What the two pydantic adapters (LangChain, LlamaIndex) share: one mixin, no framework import.

:class:`SafePydanticAdapter` goes first in the adapter's bases. It applies the core's
argument rule before pydantic sees the input (``adapter_policy.check_adapter_settings``),
turns pydantic's errors into this package's typed errors without quoting any input (an input
may hold the API key), and pickles / deep-copies an adapter from its settings only
(``adapter_policy.pydantic_adapter_state``: never the key when pickled, never the built
reranker).
"""

from __future__ import annotations

import copy
from typing import Any, Self

from pydantic import BaseModel, ValidationError

from rerank_integrations.adapter_policy import (
    check_adapter_settings,
    pydantic_adapter_state,
    sanitized_validation_error,
)

__all__ = ["SafePydanticAdapter"]


class SafePydanticAdapter:
    """Mixin for a pydantic adapter model that has ``api_key`` and a ``_key_dropped`` flag."""

    _key_dropped: bool

    def __init__(self, **data: Any) -> None:
        check_adapter_settings(data)  # the core's typed errors, before pydantic sees the input
        try:
            super().__init__(**data)
        except ValidationError as exc:  # pydantic quotes inputs (the key): never shown
            raise sanitized_validation_error(exc) from None

    def __setattr__(self, name: str, value: Any) -> None:
        check_adapter_settings({name: value})  # ``c.top_n = 0`` fails here, not on later calls
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            raise sanitized_validation_error(exc) from None
        if name == "api_key":
            self._key_dropped = False

    def __getstate__(self) -> dict[Any, Any]:
        """Pickle state: settings only (a ``reranker`` as its ``to_config()``), never the key
        (re-read from ``RERANK_API_KEY`` on unpickling) nor the built reranker."""
        assert isinstance(self, BaseModel)
        return pydantic_adapter_state(BaseModel.__getstate__(self), keep_key=False)

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        """A copy with its own reranker, rebuilt from the settings on first use."""
        assert isinstance(self, BaseModel)
        state = pydantic_adapter_state(BaseModel.__getstate__(self), keep_key=True)
        new = type(self).__new__(type(self))
        new.__setstate__(copy.deepcopy(state, memo))  # type: ignore[attr-defined]
        return new

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        """pydantic's ``model_validate``; errors never quote the input (the key)."""
        try:
            return super().model_validate(obj, *args, **kwargs)  # type: ignore[misc,no-any-return]
        except ValidationError as exc:
            raise sanitized_validation_error(exc) from None

    @classmethod
    def model_validate_json(cls, json_data: Any, *args: Any, **kwargs: Any) -> Self:
        """pydantic's ``model_validate_json``; errors never quote the input (the key)."""
        try:
            return super().model_validate_json(json_data, *args, **kwargs)  # type: ignore[misc,no-any-return]
        except ValidationError as exc:
            raise sanitized_validation_error(exc) from None
