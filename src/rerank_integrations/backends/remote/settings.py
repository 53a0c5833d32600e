"""A remote reranker's settings, built ONCE from its constructor's arguments and handed whole to
everything that needs them: checked with the package's one rule (wrong type ->
RerankTypeError, bad value -> RerankInputError, both naming the argument), with what derives
from them (endpoint, headers, redactor, retry policy, deadline, limits).

:class:`Settings` is immutable. A reranker is built from one, so a copy is a new reranker from
the same settings; :meth:`Settings.to_config` gives the constructor's JSON keyword arguments
and :meth:`Settings.pickle_kwargs` the ones a pickle carries. Neither ever holds a secret:

- an explicit ``api_key`` is never pickled (pickling raises UnpicklableRerankerError: use
  ``api_key_env``); a key read from the environment is read again where it is unpickled;
- credentials in ``base_url`` are left out of ``to_config()`` and make pickling raise;
- the caller's own HTTP clients cannot be pickled (they hold sockets): pickling raises;
- the test hooks are not carried.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from rerank_integrations import __version__
from rerank_integrations.backends.remote.budgets import MAX_SECONDS, default_deadline
from rerank_integrations.backends.remote.credentials import (
    Endpoint,
    resolve_endpoint,
    without_userinfo,
)
from rerank_integrations.backends.remote.limits import Limits
from rerank_integrations.backends.remote.redaction import Redactor
from rerank_integrations.backends.remote.retry import RetryPolicy
from rerank_integrations.errors import RerankTypeError, UnpicklableRerankerError
from rerank_integrations.validation import (
    bool_value,
    choice_value,
    int_value,
    number_value,
    optional_callable,
    optional_int,
    optional_number,
    text_value,
)

__all__ = ["USER_AGENT", "Hooks", "Settings", "parse_settings"]

USER_AGENT = f"rerank-integrations/{__version__} (python-httpx)"

ACCEPT_ENCODING = "gzip, deflate"
"""The only encodings an answer may use: they are inflated incrementally under
``max_response_bytes`` (:mod:`~rerank_integrations.backends.remote.reading`), so the cap bounds
memory. Brotli and zstd are not asked for (their decoders cannot bound one chunk's output)."""

_ON_ERROR = ("raise", "passthrough")
_ON_OVERSIZE = ("truncate", "error")


@dataclass(frozen=True, slots=True)
class Hooks:
    """Test hooks (``None``: the real thing). Never serialised."""

    sleep: Callable[[float], None] | None = None
    async_sleep: Callable[[float], Awaitable[None]] | None = None
    random: Callable[[], float] | None = None
    now: Callable[[], float] | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated constructor arguments of a RemoteReranker (see the module docstring)."""

    model: str
    endpoint: Endpoint
    base_url_arg: str | None
    api_key_env: str | None
    explicit_key: bool
    timeout: float
    connect_timeout: float
    deadline_arg: float | None
    max_retries: int
    max_concurrency: int
    limit_args: tuple[int | None, int | None, int | None]
    max_response_bytes: int
    on_error: str
    on_oversize: str
    fold: bool
    http_client: Any = field(default=None, repr=False)
    async_http_client: Any = field(default=None, repr=False)
    hooks: Hooks = field(default_factory=Hooks, repr=False)

    @property
    def policy(self) -> RetryPolicy:
        return RetryPolicy(max_retries=self.max_retries)

    @property
    def deadline(self) -> float:
        """The call deadline in force: the given one, or the retry policy's worst case
        (at most :data:`~rerank_integrations.backends.remote.budgets.MAX_SECONDS`)."""
        if self.deadline_arg is not None:
            return self.deadline_arg
        policy = self.policy
        return default_deadline(self.timeout, self.max_retries, policy.max_retry_after)

    @property
    def redactor(self) -> Redactor:
        """Redacts every credential this reranker sends from any text it shows."""
        return Redactor(self.endpoint.secrets)

    @property
    def headers(self) -> dict[str, str]:
        """The headers of every request (a new dict: the caller may not change ours)."""
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Accept-Encoding": ACCEPT_ENCODING,
            "User-Agent": USER_AGENT,
        }
        if self.endpoint.authorization is not None:
            headers["Authorization"] = self.endpoint.authorization
        return headers

    @property
    def server_truncates(self) -> bool:
        """Whether a format with a "truncate" field asks the server to cut long inputs."""
        return self.on_oversize == "truncate"

    @property
    def configured_limits(self) -> Limits:
        """The limits given, or the format's published ones where ``None``."""
        fmt = self.endpoint.format
        docs, tokens, per_doc = self.limit_args
        return Limits(
            max_documents_per_request=fmt.max_documents_per_request if docs is None else docs,
            max_tokens_per_request=fmt.max_tokens_per_request if tokens is None else tokens,
            max_tokens_per_document=fmt.max_tokens_per_document if per_doc is None else per_doc,
        )

    def to_config(self) -> dict[str, Any]:
        """Constructor kwargs as JSON: never the key, the clients, URL credentials or hooks."""
        docs, tokens, per_doc = self.limit_args
        base_url = None if self.base_url_arg is None else without_userinfo(self.base_url_arg)
        return {
            "model": self.model,
            "api_format": self.endpoint.format.name,
            "base_url": base_url,
            "api_key_env": self.api_key_env,
            "timeout": self.timeout,
            "connect_timeout": self.connect_timeout,
            "deadline": self.deadline_arg,
            "max_retries": self.max_retries,
            "max_concurrency": self.max_concurrency,
            "max_documents_per_request": docs,
            "max_tokens_per_request": tokens,
            "max_tokens_per_document": per_doc,
            "max_response_bytes": self.max_response_bytes,
            "on_error": self.on_error,
            "on_oversize": self.on_oversize,
            "fold_unsupported": self.fold,
        }

    def pickle_kwargs(self) -> dict[str, Any]:
        """What a pickle carries (:meth:`to_config`), or UnpicklableRerankerError saying why
        this reranker cannot be pickled without carrying a secret or a socket."""
        if self.explicit_key:
            raise UnpicklableRerankerError(
                "this RemoteReranker was given api_key=..., and a key is never pickled: pass "
                "api_key_env='NAME' instead (the key is then read from $NAME where the "
                "reranker is unpickled), or build the reranker in the receiving process"
            )
        if self.endpoint.has_url_credentials:
            raise UnpicklableRerankerError(
                "this RemoteReranker's base_url carries credentials (user:password@), which "
                "are never pickled; put the credential in an environment variable and pass "
                "api_key_env='NAME', or build the reranker in the receiving process"
            )
        if self.http_client is not None or self.async_http_client is not None:
            raise UnpicklableRerankerError(
                "this RemoteReranker uses your own http_client/async_http_client, which "
                "cannot be pickled; build the reranker (and its clients) in the receiving "
                "process"
            )
        return self.to_config()


def _client(field_name: str, value: object, kind: type) -> Any:
    """``None`` or an instance of ``kind`` (an httpx client class)."""
    if value is not None and not isinstance(value, kind):
        raise RerankTypeError(
            field_name, f"must be an httpx.{kind.__name__} or None, got {type(value).__name__}"
        )
    return value


def parse_settings(httpx_module: Any, **a: Any) -> Settings:
    """Check every constructor argument (by name, as ``RemoteReranker.__init__`` takes
    them) and resolve the endpoint from them and ``os.environ``."""
    model = text_value("model", a["model"], blank_ok=False)
    endpoint = resolve_endpoint(
        a["api_format"], a["base_url"], a["api_key"], a["api_key_env"], os.environ
    )
    return Settings(
        model=model,
        endpoint=endpoint,
        base_url_arg=a["base_url"],
        api_key_env=a["api_key_env"],
        explicit_key=a["api_key"] is not None,
        timeout=number_value("timeout", a["timeout"], positive=True, maximum=MAX_SECONDS),
        connect_timeout=number_value(
            "connect_timeout", a["connect_timeout"], positive=True, maximum=MAX_SECONDS
        ),
        deadline_arg=optional_number("deadline", a["deadline"], positive=True, maximum=MAX_SECONDS),
        max_retries=int_value("max_retries", a["max_retries"], minimum=0),
        max_concurrency=int_value("max_concurrency", a["max_concurrency"], minimum=1),
        limit_args=(
            optional_int("max_documents_per_request", a["max_documents_per_request"], minimum=1),
            optional_int("max_tokens_per_request", a["max_tokens_per_request"], minimum=1),
            optional_int("max_tokens_per_document", a["max_tokens_per_document"], minimum=1),
        ),
        max_response_bytes=int_value("max_response_bytes", a["max_response_bytes"], minimum=1),
        on_error=choice_value("on_error", a["on_error"], _ON_ERROR),
        on_oversize=choice_value("on_oversize", a["on_oversize"], _ON_OVERSIZE),
        fold=bool_value("fold_unsupported", a["fold_unsupported"]),
        http_client=_client("http_client", a["http_client"], httpx_module.Client),
        async_http_client=_client(
            "async_http_client", a["async_http_client"], httpx_module.AsyncClient
        ),
        hooks=Hooks(
            sleep=optional_callable("_sleep", a["_sleep"]),
            async_sleep=optional_callable("_async_sleep", a["_async_sleep"]),
            random=optional_callable("_random", a["_random"]),
            now=optional_callable("_now", a["_now"]),
        ),
    )
