"""Where a remote reranker sends its requests, and with which key: one pure function.

:func:`resolve_endpoint` takes the constructor's ``api_format``, ``base_url``, ``api_key`` and
``api_key_env`` plus an environment mapping (``os.environ`` in the reranker, a plain dict in
tests) and returns an :class:`Endpoint` or raises a typed error naming the field. The rules:

- ``base_url`` ``None`` means the format's public host; ``vllm`` and ``tei`` have none, so
  they need one. A given ``base_url`` must be an ``http://`` or ``https://`` URL with a host;
  trailing slashes are dropped before the format's path (``/rerank``) is appended.
- ``api_key`` wins. Otherwise ``api_key_env`` names the variable to read (for any host), or,
  only when the URL is the format's public host, the format's own variables are read
  (``CONTEXTUAL_API_KEY``, ``JINA_API_KEY``, ``COHERE_API_KEY``/``CO_API_KEY``). An
  environment key is thus never sent to a custom ``base_url`` unless the caller names it.
- The public host with no key found is an error, as is an ``api_key_env`` that is not set; a
  custom ``base_url`` never requires a key. Blank environment values count as unset.

No message ever contains a key (only the names of the variables it was looked for in).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from rerank_integrations.backends.remote.formats import WireFormat, get_format
from rerank_integrations.errors import RerankInputError
from rerank_integrations.validation import optional_str

__all__ = ["Endpoint", "resolve_endpoint"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A resolved destination. ``api_key`` is left out of ``repr``."""

    format: WireFormat
    base_url: str
    """The API root, without a trailing slash."""
    url: str
    """``base_url`` + the format's path: where requests are POSTed."""
    api_key: str | None = field(default=None, repr=False)


def _check_url(base_url: str) -> None:
    """An ``http(s)://host...`` URL, or RerankInputError naming ``base_url``.

    The message describes the problem without repeating the URL (it may carry credentials).
    """
    try:
        parts = urlsplit(base_url.strip())
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError as exc:
        raise RerankInputError("base_url", f"is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise RerankInputError(
            "base_url", "must start with http:// or https:// (e.g. 'http://localhost:8000/v1')"
        )
    if not parts.hostname:
        raise RerankInputError("base_url", "has no host name")


def resolve_endpoint(
    api_format: object,
    base_url: object,
    api_key: object,
    api_key_env: object,
    environ: Mapping[str, str],
) -> Endpoint:
    """The URL and key a reranker with these arguments uses (see the module docstring).

    Wrong types raise RerankTypeError, bad values RerankInputError, naming ``api_format``,
    ``base_url``, ``api_key`` or ``api_key_env``.
    """
    fmt = get_format(api_format)
    url_arg = optional_str("base_url", base_url)
    key_arg = optional_str("api_key", api_key)
    env_arg = optional_str("api_key_env", api_key_env)
    default_url = fmt.default_base_url
    if url_arg is None:
        if default_url is None:
            raise RerankInputError(
                "base_url",
                f"api_format={fmt.name!r} has no public host; pass the server's base_url "
                f"(e.g. 'http://localhost:8000/v1' for vLLM, 'http://localhost:8080' for TEI)",
            )
        root = default_url
    else:
        _check_url(url_arg)
        root = url_arg.strip().rstrip("/")
    public_host = root == default_url
    key = _find_key(fmt, key_arg, env_arg, public_host, environ)
    if key is None and public_host and fmt.api_key_env:
        raise RerankInputError(
            "api_key",
            f"no API key for {root}: set {' or '.join(fmt.api_key_env)} or pass api_key=...",
        )
    if key is None and env_arg is not None:
        raise RerankInputError("api_key", f"the environment variable {env_arg} is not set")
    return Endpoint(fmt, root, root + fmt.path, key)


def _find_key(
    fmt: WireFormat,
    api_key: str | None,
    api_key_env: str | None,
    public_host: bool,
    environ: Mapping[str, str],
) -> str | None:
    if api_key is not None:
        return api_key.strip()
    if api_key_env is not None:
        names: tuple[str, ...] = (api_key_env,)
    else:
        names = fmt.api_key_env if public_host else ()
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return value
    return None
