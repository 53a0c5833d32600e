"""What settings an adapter accepts, and from whom: framework-free, shared by all three adapters.

- **The argument rule** (:func:`check_adapter_settings`): the core's rule (wrong type ->
  :class:`RerankTypeError`, bad value -> :class:`RerankInputError`, naming the field) for every
  adapter setting, before the framework's own validation (which would quote the input).
- **Untrusted settings** (:func:`check_backend_allowed`, :func:`check_reranker_settings`): a
  ``"module:Class"`` backend is imported only when its module is this package's, is passed in
  code as ``allowed``, or is listed in the :data:`ALLOWED_BACKENDS_ENV` environment variable;
  settings (``reranker_kwargs``, a ``to_config()`` dict) never switch on ``trust_remote_code`` /
  ``allow_pickle`` nor carry an ``api_key``. There is no process-wide allow-list to mutate.
- **Pickling** (:func:`pydantic_adapter_state`, :func:`key_after_unpickle`): a pickle never
  holds the key or the loaded model.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rerank_integrations.base import Reranker
from rerank_integrations.errors import RerankError, RerankInputError, RerankTypeError
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

__all__ = [
    "ALLOWED_BACKENDS_ENV",
    "UNPICKLED_KEY_ENV",
    "UNSAFE_SETTINGS",
    "check_adapter_settings",
    "check_backend_allowed",
    "check_reranker_config",
    "check_reranker_settings",
    "key_after_unpickle",
    "pydantic_adapter_state",
    "sanitized_validation_error",
    "validate_metadata_keys",
]


def validate_metadata_keys(keys: object) -> tuple[str, ...] | None:
    """``None`` or a list/tuple/set of str (a bare str is a wrong type)."""
    if isinstance(keys, set | frozenset):
        keys = tuple(keys)
    return optional_str_sequence("metadata_keys", keys)


# --------------------------------------------------------------------------- trust policy

ALLOWED_BACKENDS_ENV = "RERANK_INTEGRATIONS_ALLOWED_BACKENDS"
"""Environment variable: comma-separated module prefixes a ``"module:Class"`` backend may use."""

_OWN_PACKAGE = "rerank_integrations"

UNSAFE_SETTINGS: tuple[str, ...] = ("trust_remote_code", "allow_pickle")
"""Reranker settings that may run code or unpickle data: never switched on from settings."""


def _module_allowed(module: str, extra: Iterable[str]) -> bool:
    env = [p.strip() for p in os.environ.get(ALLOWED_BACKENDS_ENV, "").split(",") if p.strip()]
    allowed = [_OWN_PACKAGE, *env, *extra]
    return any(module == p or module.startswith(p + ".") for p in allowed)


def check_backend_allowed(
    backend: object, *, field: str = "backend", allowed: Iterable[str] = ()
) -> None:
    """Check a backend name before anything is imported (typed error naming ``field``).

    ``"local"``/``"remote"`` are always allowed; a ``"module:Class"`` path must name a module
    of this package, one in ``allowed`` (given in code), or one listed in
    :data:`ALLOWED_BACKENDS_ENV`; it must then import and name a ``Reranker`` subclass
    (a missing module or class is a :class:`RerankInputError` here, not a late failure).
    """
    from rerank_integrations.config import BACKENDS, resolve_backend

    name = str_value(field, backend)
    if name in BACKENDS:
        return
    module, sep, qualname = name.partition(":")
    if not sep or not module or not qualname:
        raise RerankInputError(
            field, f"unknown backend {name!r}: use one of {sorted(BACKENDS)} or 'module:Class'"
        )
    if not _module_allowed(module, allowed):
        raise RerankInputError(
            field,
            f"module {module!r} is not allowed for a custom backend: list it in the "
            f"{ALLOWED_BACKENDS_ENV} environment variable (comma-separated module prefixes), "
            "or build the reranker in code and pass it as reranker=...",
        )
    try:
        resolve_backend(name)
    except RerankInputError as exc:
        raise RerankInputError(field, str(exc).removeprefix("backend: ")) from None
    except (ImportError, AttributeError) as exc:
        raise RerankInputError(field, f"cannot load {name!r}: {type(exc).__name__}") from None


def check_reranker_settings(settings: Mapping[str, Any], *, field: str) -> None:
    """Refuse settings that must not come from data: an API key, or an unsafe switch.

    ``settings`` is a ``reranker_kwargs`` mapping or a ``to_config()`` dict (``field`` names
    it). ``trust_remote_code`` / ``allow_pickle`` set to anything but ``False``/``None`` and
    any ``api_key`` raise :class:`RerankInputError` naming ``field[key]`` (never the value).
    """
    if settings.get("api_key") is not None:
        raise RerankInputError(
            f"{field}['api_key']",
            "an API key is never taken from reranker settings (they are serialised and shown "
            "in repr): pass it as the adapter's api_key=... (masked, never serialised), or "
            "let the backend read its environment variable",
        )
    for name in UNSAFE_SETTINGS:
        if settings.get(name) not in (None, False):
            raise RerankInputError(
                f"{field}[{name!r}]",
                f"{name} cannot be switched on from settings (a loaded config could run code "
                "or unpickle data): build the reranker in code, e.g. "
                f"LocalReranker(model, {name}=True), and pass it as reranker=...",
            )


def check_reranker_config(config: Mapping[str, Any], *, field: str = "reranker") -> None:
    """:func:`check_reranker_settings` and :func:`check_backend_allowed` for a
    ``to_config()`` dict given as an adapter's ``reranker`` (what a deserialiser passes)."""
    check_reranker_settings(config, field=field)
    check_backend_allowed(config.get("backend"), field=f"{field}['backend']")


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
    if value is not None and not isinstance(value, Reranker | Mapping):
        raise RerankTypeError(
            field,
            f"must be a Reranker, a Reranker.to_config() dict or None, got {type(value).__name__}",
        )
    if isinstance(value, Mapping):
        check_reranker_config(mapping_value(field, value), field=field)


def _check_reranker_kwargs(field: str, value: object) -> None:
    check_reranker_settings(mapping_value(field, value), field=field)


def _check_backend(field: str, value: object) -> None:
    check_backend_allowed(value, field=field)


def _check_api_key(field: str, value: object) -> None:
    # A str or a pydantic SecretStr (anything with get_secret_value); the value is never echoed.
    if value is not None and not isinstance(value, str) and not hasattr(value, "get_secret_value"):
        raise RerankTypeError(
            field, f"must be a str, a SecretStr or None, got {type(value).__name__}"
        )


def _check_optional_bool(field: str, value: object) -> None:
    if value is not None:
        bool_value(field, value)


_SETTING_CHECKS: dict[str, Callable[[str, object], object]] = {
    "reranker": _check_reranker_arg,
    "backend": _check_backend,
    "model": optional_str,
    "base_url": optional_str,
    "api_format": optional_str,
    "model_format": optional_str,
    "device": optional_str,
    "api_key": _check_api_key,
    "reranker_kwargs": _check_reranker_kwargs,
    "top_n": lambda f, v: validate_top_n(v, field=f),
    "score_threshold": lambda f, v: validate_score_threshold(v, field=f),
    "instruction": lambda f, v: validate_instruction(v, field=f),
    "instruction_fn": optional_callable,
    "metadata_keys": lambda f, v: validate_metadata_keys(v),
    "metadata_formatter": optional_callable,
    "send_metadata": _check_optional_bool,
}


def check_adapter_settings(values: Mapping[str, Any]) -> None:
    """Check an adapter's settings with the core rule, before its framework's own validation.

    The pydantic adapters (LangChain, LlamaIndex) call this from ``__init__`` and on every
    attribute assignment, so a wrong type raises :class:`RerankTypeError` and a bad value
    :class:`RerankInputError` naming the field — never a pydantic error that quotes the input
    (which may hold the API key), and never an accepted ``top_n = 0`` that fails later calls.
    Unknown names are left to the framework (which rejects them); ``None`` is always allowed.
    """
    for name, value in values.items():
        check = _SETTING_CHECKS.get(name)
        if check is not None and value is not None:
            check(name, value)


# --------------------------------------------------------------------------- pickling

UNPICKLED_KEY_ENV = "RERANK_API_KEY"
"""Where an unpickled adapter reads its API key (a pickle never holds the key)."""


def pydantic_adapter_state(state: dict[str, Any], *, keep_key: bool) -> dict[str, Any]:
    """The pickle / deepcopy state of a pydantic adapter (LangChain, LlamaIndex).

    The lazy holder (locks, threads, a loaded model) is never copied: the copy rebuilds from
    its settings on first use, and a ``reranker`` object travels as its ``to_config()``. With
    ``keep_key=False`` (pickle) the API key is dropped and :func:`key_after_unpickle` supplies
    it again; ``deepcopy`` (in-process) keeps it.
    """
    fields = dict(state.get("__dict__", {}))
    private = dict(state.get("__pydantic_private__") or {})
    dropped = bool(private.get("_key_dropped", False))
    if not keep_key and fields.get("api_key") is not None:
        fields["api_key"] = None
        dropped = True
    if isinstance(fields.get("reranker"), Reranker):
        fields["reranker"] = fields["reranker"].to_config()
    private["_holder"] = None
    private["_key_dropped"] = dropped
    return {**state, "__dict__": fields, "__pydantic_private__": private}


def key_after_unpickle(base_url: str | None) -> str | None:
    """The API key of an adapter whose key was dropped by pickling.

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
