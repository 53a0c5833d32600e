"""The remote backend: :class:`RemoteReranker` and what a caller of it needs.

``from rerank_integrations.backends.remote import RemoteReranker`` (or simply
``from rerank_integrations import RemoteReranker``). Importing this package does not import
httpx; constructing a reranker does. The modules behind it are internal:

- ``reranker``: :class:`RemoteReranker` (the rerank flow: plan, send, merge, fail open);
- ``settings``: the constructor's arguments, checked once (``credentials``: URL, key, secrets);
- ``planning``: folding, token estimate, truncation, splitting, merging (``limits``: the
  limits a server states, a leaf module);
- ``clients``: the HTTP resources shared by calls; ``call``: one call's deadline and
  cancellation; ``sync_io`` / ``async_io``: the twin sending loops; ``outcomes``: what an
  attempt's answer means; ``reading``: the body under the size cap; ``netguard``: sync
  attempts' time bound and abort;
- ``formats``: the wire formats (request bodies, response parsers); ``retry``: retry and
  backoff decisions, fail-open placeholders; ``budgets``, ``scores``, ``redaction``.
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
