"""rerank_integrations: modern rerankers for LangChain, LlamaIndex and Haystack pipelines.

Importing this package imports no torch, httpx or framework: :class:`LocalReranker` and
:class:`RemoteReranker` are loaded on first access, and each raises
:class:`~rerank_integrations.errors.MissingExtraError` naming the ``pip install`` command
when its extra is missing. (They are in ``__all__``, so ``from rerank_integrations import *``
loads both backends: import names explicitly to stay light.)

``__version__`` comes from the installed distribution's metadata (pyproject.toml is the one
source); the remote backend sends it in its User-Agent.
"""

from __future__ import annotations

import importlib
from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

from rerank_integrations.base import Reranker
from rerank_integrations.errors import (
    MissingExtraError,
    ModelLoadError,
    NonFiniteScoreError,
    OutOfMemoryError,
    RemoteConnectionError,
    RemoteError,
    RemoteResponseError,
    RemoteResponseTooLargeError,
    RemoteStatusError,
    RemoteTimeoutError,
    RerankerClosedError,
    RerankError,
    RerankInputError,
    RerankTypeError,
    UnpicklableRerankerError,
    UnsupportedFeatureError,
)
from rerank_integrations.metadata import MetadataFormatter, format_metadata
from rerank_integrations.ranking import select_results, sort_results
from rerank_integrations.results import RerankResult
from rerank_integrations.validation import RerankRequest

if TYPE_CHECKING:
    from rerank_integrations.backends.local import LocalReranker as LocalReranker
    from rerank_integrations.backends.remote import RemoteReranker as RemoteReranker

try:
    __version__ = _metadata.version("rerank-integrations")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a bare source tree
    __version__ = "0+unknown"

_LAZY = {
    "LocalReranker": "rerank_integrations.backends.local",
    "RemoteReranker": "rerank_integrations.backends.remote",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rerank_integrations' has no attribute {name!r}")


__all__ = [
    "LocalReranker",
    "MetadataFormatter",
    "MissingExtraError",
    "ModelLoadError",
    "NonFiniteScoreError",
    "OutOfMemoryError",
    "RemoteConnectionError",
    "RemoteError",
    "RemoteReranker",
    "RemoteResponseError",
    "RemoteResponseTooLargeError",
    "RemoteStatusError",
    "RemoteTimeoutError",
    "RerankError",
    "RerankInputError",
    "RerankRequest",
    "RerankResult",
    "RerankTypeError",
    "Reranker",
    "RerankerClosedError",
    "UnpicklableRerankerError",
    "UnsupportedFeatureError",
    "__version__",
    "format_metadata",
    "select_results",
    "sort_results",
]
