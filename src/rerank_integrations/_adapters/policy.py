"""Which settings an adapter accepts and from whom: the argument rule, untrusted configs, pickles.

- **The argument rule** (:func:`check_adapter_settings`): the core's rule (wrong type ->
  :class:`RerankTypeError`, bad value -> :class:`RerankInputError`, naming the field) for every
  adapter setting, before the framework's own validation (which would quote the input).
- **Untrusted settings** (:func:`check_backend_allowed`, and
  :func:`rerank_integrations.trust.check_untrusted_settings`, the rule ``Reranker.from_config``
  applies too): a ``"module:Class"`` backend (:func:`backend_path`) is imported only when its
  module is this package's or is listed in the :data:`ALLOWED_BACKENDS_ENV` environment
  variable; settings (``reranker_kwargs``, a ``to_config()`` dict) never switch on
  ``trust_remote_code`` / ``allow_pickle``, carry an ``api_key`` nor choose the key's variable
  (``api_key_env`` only as the format's own for its public host). Settings an adapter holds
  serialise, so the rule holds for them whoever set them: code that needs more passes a
  reranker built in code as ``reranker=``.
- **Pickling** (:func:`portable_state`, :func:`key_after_unpickle`): a pickle never holds the key
  or the loaded model.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from rerank_integrations._adapters.holder import load_backend, reranker_source
from rerank_integrations.base import Reranker, backend_path
from rerank_integrations.errors import RerankError, RerankInputError, RerankTypeError
from rerank_integrations.trust import check_untrusted_settings
from rerank_integrations.validation import (
    bool_value,
    mapping_value,
    optional_callable,
    optional_str,
    optional_str_sequence,
    str_value,
    validate_instruction,
    validate_score_threshold,
    validate_top_n,
)


def validate_metadata_keys(keys: object) -> tuple[str, ...] | None:
    """``None`` or an ordered list/tuple of str: a set (random order on the wire, so scores
    would change between runs) or a bare str is a :class:`RerankTypeError` naming the field."""
    return optional_str_sequence("metadata_keys", keys)


# --------------------------------------------------------------------------- backends

ALLOWED_BACKENDS_ENV = "RERANK_INTEGRATIONS_ALLOWED_BACKENDS"
"""Environment variable: comma-separated module prefixes a ``"module:Class"`` backend may use."""


def check_backend_allowed(backend: object, *, field: str = "backend") -> None:
    """Check a backend name before anything is imported (typed error naming ``field``).

    ``"local"``/``"remote"`` are always allowed; a ``"module:Class"`` path must name a module
    of this package or one listed in :data:`ALLOWED_BACKENDS_ENV`; it is then imported and must
    name a ``Reranker`` subclass.
    """
    name = str_value(field, backend)
    path = backend_path(name, field=field)
    if path is None:
        return
    env = [p.strip() for p in os.environ.get(ALLOWED_BACKENDS_ENV, "").split(",") if p.strip()]
    if not any(path[0] == p or path[0].startswith(p + ".") for p in ["rerank_integrations", *env]):
        raise RerankInputError(
            field,
            f"module {path[0]!r} is not allowed for a custom backend: list it in the "
            f"{ALLOWED_BACKENDS_ENV} environment variable (comma-separated module prefixes), "
            "or build the reranker in code and pass it as reranker=...",
        )
    load_backend(name, field=field)


# --------------------------------------------------------------------------- the argument rule


def sanitized_validation_error(exc: Any) -> RerankError:
    """A pydantic ``ValidationError`` as this package's typed error, without any input value.

    Pydantic quotes the offending input (for a model-level error: the whole input dict, which
    may hold the API key). The result names the field(s) and pydantic's message only.
    """
    for error in exc.errors(include_url=False, include_input=False, include_context=True):
        raised = (error.get("ctx") or {}).get("error")
        if isinstance(raised, RerankError):  # our own typed error, raised inside a validator
            return raised
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    fields = [".".join(str(p) for p in e.get("loc", ())) or "input" for e in errors]
    msgs = [
        f"{f}: {'unknown field' if e.get('type') == 'extra_forbidden' else e.get('msg', '')}"
        for f, e in zip(fields, errors, strict=True)
    ]
    is_type = bool(errors) and all(
        str(e.get("type", "")).endswith("_type") or e.get("type") == "is_instance_of"
        for e in errors
    )
    cls = RerankTypeError if is_type else RerankInputError
    return cls(fields[0] if fields else "input", "; ".join(msgs) or "invalid input")


def _check_reranker_arg(field: str, value: object) -> None:
    """A reranker, or a ``to_config()`` dict (what a deserialiser passes): checked like other
    settings from data, and its backend allowed, before anything is imported."""
    if isinstance(reranker_source(value, {}, field=field), dict):
        config = mapping_value(field, value)
        check_untrusted_settings(config, field=field)
        check_backend_allowed(config.get("backend"), field=f"{field}['backend']")


def _check_api_key(field: str, value: object) -> None:
    # A str or a pydantic SecretStr (anything with get_secret_value); the value is never echoed.
    if not isinstance(value, str) and not hasattr(value, "get_secret_value"):
        raise RerankTypeError(
            field, f"must be a str, a SecretStr or None, got {type(value).__name__}"
        )


_SETTING_CHECKS: dict[str, Callable[[str, object], object]] = {
    "reranker": _check_reranker_arg,
    "backend": lambda f, v: check_backend_allowed(v, field=f),
    "model": optional_str,
    "base_url": optional_str,
    "api_format": optional_str,
    "model_format": optional_str,
    "device": optional_str,
    "api_key": _check_api_key,
    "reranker_kwargs": lambda f, v: check_untrusted_settings(mapping_value(f, v), field=f),
    "top_n": lambda f, v: validate_top_n(v, field=f),
    "score_threshold": lambda f, v: validate_score_threshold(v, field=f),
    "instruction": lambda f, v: validate_instruction(v, field=f),
    "instruction_fn": optional_callable,
    "metadata_keys": lambda f, v: validate_metadata_keys(v),
    "metadata_formatter": optional_callable,
    "send_metadata": bool_value,
}


def check_adapter_settings(values: Mapping[str, Any]) -> None:
    """Check an adapter's settings with the core rule, before its framework's own validation.

    The pydantic adapters (LangChain, LlamaIndex) call this from ``__init__``, after
    validation and on every attribute assignment, so a wrong type raises
    :class:`RerankTypeError` and a bad value :class:`RerankInputError` naming the field — never
    a pydantic error that quotes the input (which may hold the API key), and never an accepted
    ``top_n = 0`` that fails later calls. Unknown names are left to the framework (which rejects
    them); ``None`` is always allowed.
    """
    for name, value in values.items():
        check = _SETTING_CHECKS.get(name)
        if check is not None and value is not None:
            check(name, value)


# --------------------------------------------------------------------------- pickling

UNPICKLED_KEY_ENV = "RERANK_API_KEY"
"""Where an unpickled pydantic adapter reads its API key (a pickle never holds the key)."""


def portable_state(state: Mapping[str, Any], *, drop_key: bool) -> dict[str, Any]:
    """An adapter's attributes as a pickle / deepcopy carries them (``state`` is not modified).

    The lazy holder (locks, threads, a loaded model) is never copied: the copy rebuilds from
    its settings on first use, and a ``reranker`` object travels as its ``to_config()``. With
    ``drop_key`` the API key is left out and ``_key_dropped`` set (the unpickled adapter asks
    for the key again).
    """
    out = {**state, "_holder": None}
    if isinstance(out.get("reranker"), Reranker):
        out["reranker"] = out["reranker"].to_config()
    if drop_key and out.get("api_key") is not None:
        out["api_key"] = None
        out["_key_dropped"] = True
    return out


def key_after_unpickle(base_url: str | None) -> str | None:
    """The API key of a pydantic adapter whose key was dropped by pickling.

    :data:`UNPICKLED_KEY_ENV` when set; else ``None`` for the provider's public host (the
    remote backend reads the provider's own variable, e.g. ``CONTEXTUAL_API_KEY``); for a
    custom ``base_url`` a :class:`RerankInputError` naming ``api_key`` (before any request).
    """
    value = os.environ.get(UNPICKLED_KEY_ENV, "").strip()
    if value:
        return value
    if base_url is None:
        return None
    raise RerankInputError(
        "api_key",
        f"was not pickled (a pickle never holds the key): set {UNPICKLED_KEY_ENV} in this "
        "process or assign the adapter's api_key again",
    )
