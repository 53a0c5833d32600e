"""Every exception the package raises on purpose.

The hierarchy is small on purpose::

    RerankError
    ├── RerankInputError (ValueError)        bad value; ``field`` names the argument
    ├── RerankTypeError (TypeError)          wrong type; ``field`` names the argument
    ├── MissingExtraError (ImportError)      an optional dependency is not installed
    ├── UnsupportedFeatureError (ValueError) e.g. an instruction for a model that cannot follow one
    ├── ModelLoadError                       a local model could not be loaded / detected
    ├── OutOfMemoryError                     out of accelerator memory even at batch size 1
    ├── NonFiniteScoreError                  a local model scored documents NaN or infinite
    ├── UnpicklableRerankerError (PicklingError) holds a secret or client that is never pickled
    ├── RerankerClosedError                  the reranker was closed (before or during the call)
    └── RemoteError                          anything that went wrong talking to a rerank service
        ├── RemoteStatusError                the server answered with an error status
        ├── RemoteTimeoutError               the request timed out (after retries)
        ├── RemoteConnectionError            connection failed / dropped (after retries)
        └── RemoteResponseError              the server's answer is malformed
            └── RemoteResponseTooLargeError  the answer is over ``max_response_bytes``

Input errors subclass the builtin ``ValueError``/``TypeError`` so that code written
against the builtins keeps working.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any


class RerankError(Exception):
    """Base class of every error raised by rerank_integrations.

    Every one pickles and unpickles as itself, with its message and attributes (``field``,
    ``status``, ...), although most take other constructor arguments than their message: an
    error raised in a worker process (Ray, multiprocessing) reaches the caller as itself."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


def _rebuild(cls: type[RerankError], args: tuple[Any, ...], state: dict[str, Any]) -> RerankError:
    """An unpickled error: its class, args and attributes, without calling its ``__init__``."""
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class RerankInputError(RerankError, ValueError):
    """An argument has a bad value. ``field`` names the argument (e.g. ``"top_n"``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class RerankTypeError(RerankError, TypeError):
    """An argument has the wrong type. ``field`` names the argument (e.g. ``"documents[3]"``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class MissingExtraError(RerankError, ImportError):
    """An optional dependency is missing; the message names the ``pip install`` command."""

    def __init__(self, extra: str, feature: str, missing: str) -> None:
        self.extra = extra
        self.install_command = f'pip install "rerank-integrations[{extra}]"'
        super().__init__(
            f"{feature} needs the optional dependency {missing!r}, which is not installed. "
            f"Install it with: {self.install_command}"
        )


class UnsupportedFeatureError(RerankError, ValueError):
    """The chosen model or API cannot do what was asked (and no opt-in fallback was set)."""


class ModelLoadError(RerankError):
    """A local model could not be found, detected or loaded."""


class OutOfMemoryError(RerankError):
    """The local engine ran out of accelerator memory even with a batch of one document."""


class NonFiniteScoreError(RerankError):
    """A local model gave documents a score that is not a finite number (NaN or infinite): a
    corrupt checkpoint, or a half-precision overflow. Such a score is never returned (NaN cannot
    be sorted); the call raises. Holds ``model`` (the reranker's model) and ``indices`` (the
    positions of those documents in the caller's list)."""

    def __init__(self, message: str, model: str = "", indices: Sequence[int] = ()) -> None:
        super().__init__(message)
        self.model = model
        self.indices = tuple(indices)


class RemoteError(RerankError):
    """Base class for failures of a remote rerank service."""


class RemoteStatusError(RemoteError):
    """The server answered with an HTTP error status.

    Holds ``status`` (int), ``message`` (the server's own message) and ``request_id``
    (when the server sent one). Never holds the API key.
    """

    def __init__(self, status: int, message: str, request_id: str | None = None) -> None:
        self.status = status
        self.message = message
        self.request_id = request_id
        suffix = f" (request id {request_id})" if request_id else ""
        super().__init__(f"HTTP {status}: {message}{suffix}")


class RemoteTimeoutError(RemoteError):
    """The request timed out, after all retries."""


class RemoteConnectionError(RemoteError):
    """The connection failed or was dropped, after all retries."""


class RemoteResponseError(RemoteError):
    """The server's answer could not be understood (not JSON, bad indices or scores, ...)."""


class RemoteResponseTooLargeError(RemoteResponseError):
    """The server's answer is larger than the reranker's ``max_response_bytes``.

    Reading stopped at the cap (or before reading, when ``Content-Length`` declared more).
    Holds ``limit`` (the cap in bytes). Never retried.
    """

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class RerankerClosedError(RerankError):
    """The reranker was closed: ``close()``/``aclose()`` is final for every backend. A call made
    after it, and a call in flight when it happened (sending, waiting for an answer or to
    retry, queued on the local engine), raises this. Not a ``RemoteError``: closing is the
    caller's own decision, not an outage, so ``on_error="passthrough"`` never hides it."""


class UnpicklableRerankerError(RerankError, pickle.PicklingError):
    """A reranker holds something that is never pickled: an explicit API key, credentials in
    its URL, or the caller's own HTTP clients. The message says which (never the secret)."""
