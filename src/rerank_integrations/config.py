"""The command line's reranker settings as a ``to_config()`` dict (:func:`backend_settings`).

Rebuilding a reranker from a config (:data:`BACKENDS`, :func:`resolve_backend`,
:func:`reranker_from_config`) lives in :mod:`rerank_integrations.base`, beside
:meth:`Reranker.from_config <rerank_integrations.base.Reranker.from_config>`, so that the
dependency goes one way (this module imports base, never the reverse); those names are
re-exported here, where they always were importable.
"""

from __future__ import annotations

from typing import Any

from rerank_integrations.base import BACKENDS, reranker_from_config, resolve_backend

__all__ = ["BACKENDS", "backend_settings", "reranker_from_config", "resolve_backend"]


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
