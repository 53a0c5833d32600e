"""The remote backend: :class:`RemoteReranker` and what a caller of it needs.

``from rerank_integrations.backends.remote import RemoteReranker`` (or simply
``from rerank_integrations import RemoteReranker``). Importing this package does not import
httpx; constructing a reranker does. The modules behind it are internal; docs/design.md maps
them (one line each) and docs/reliability.md "Who owns what" says who owns what.
"""

from __future__ import annotations

from rerank_integrations.backends.remote.formats import API_FORMATS
from rerank_integrations.backends.remote.limits import Limits
from rerank_integrations.backends.remote.reranker import (
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MODEL,
    RemoteReranker,
)
from rerank_integrations.backends.remote.retry import (
    PASSTHROUGH_RAW_SCORE,
    PASSTHROUGH_RELEVANCE,
    is_passthrough,
)

__all__ = [
    "API_FORMATS",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MODEL",
    "PASSTHROUGH_RAW_SCORE",
    "PASSTHROUGH_RELEVANCE",
    "Limits",
    "RemoteReranker",
    "is_passthrough",
]
