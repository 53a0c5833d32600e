"""The remote backend: :class:`RemoteReranker` and what a caller of it needs.

``from rerank_integrations.backends.remote import RemoteReranker`` (or simply
``from rerank_integrations import RemoteReranker``). Importing this package does not import
httpx; constructing a reranker does. The modules behind it are internal:

- ``reranker``: :class:`RemoteReranker` (arguments, the rerank flow, fail-open);
- ``credentials``: where requests go and with which key (a pure function);
- ``planning``: folding, token estimate, truncation, splitting, learnt limits, merging;
- ``transport``: httpx clients, sync and async sending, the retry loop;
- ``formats``: the wire formats (request bodies, response parsers);
- ``retry``: retry / backoff / "too long" decisions and the fail-open placeholders.
"""

from __future__ import annotations

from rerank_integrations.backends.remote.formats import API_FORMATS
from rerank_integrations.backends.remote.planning import Limits
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
