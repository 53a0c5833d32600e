"""Rebuilding a reranker from its ``to_config()`` dict.

A config is a JSON-serialisable dict with a ``backend`` key: ``"local"``, ``"remote"``, or a
``"package.module:ClassName"`` path to a :class:`~rerank_integrations.base.Reranker` subclass
(for custom backends). The rest of the dict is passed to the class's constructor as keyword
arguments.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rerank_integrations.errors import RerankInputError, RerankTypeError
from rerank_integrations.validation import str_value

if TYPE_CHECKING:
    from rerank_integrations.base import Reranker

BACKENDS: dict[str, str] = {
    "local": "rerank_integrations.backends.local:LocalReranker",
    "remote": "rerank_integrations.backends.remote:RemoteReranker",
}
"""Short backend names accepted in a config's ``backend`` key."""


def resolve_backend(backend: str) -> type[Reranker]:
    """The :class:`Reranker` class for a backend name or ``module:Class`` path."""
    from rerank_integrations.base import Reranker

    path = BACKENDS.get(backend, backend)
    module_name, sep, qualname = path.partition(":")
    if not sep or not module_name or not qualname:
        raise RerankInputError(
            "backend",
            f"unknown backend {backend!r}: use one of {sorted(BACKENDS)} or 'module:ClassName'",
        )
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, Reranker)):
        raise RerankInputError("backend", f"{path!r} is not a Reranker subclass")
    return obj


def reranker_from_config(config: dict[str, Any]) -> Reranker:
    """Build the reranker a ``to_config()`` dict describes (the dict is not modified)."""
    if not isinstance(config, dict):
        raise RerankTypeError("config", f"must be a dict, got {type(config).__name__}")
    if "backend" not in config:
        raise RerankInputError("config", "has no 'backend' key")
    str_value("config['backend']", config["backend"])
    settings = {k: v for k, v in config.items() if k != "backend"}
    return resolve_backend(config["backend"])(**settings)


def backend_settings(
    backend: str,
    model: str,
    *,
    model_format: str | None = None,
    device: str | None = None,
    api_format: str | None = None,
    base_url: str | None = None,
) -> dict[str, Any]:
    """A ``to_config()``-style dict from command-line settings (the ``rerank``, ``run`` and
    ``eval`` commands): the local backend takes ``model_format``/``device``, any other backend
    ``api_format``/``base_url``; unset (``None``) values are left to the backend's defaults."""
    settings: dict[str, Any] = {"backend": backend, "model": model}
    if backend == "local":
        optional = {"model_format": model_format, "device": device}
    else:
        optional = {"api_format": api_format, "base_url": base_url}
    settings.update({k: v for k, v in optional.items() if v is not None})
    return settings
