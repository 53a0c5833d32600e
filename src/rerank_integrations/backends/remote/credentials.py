"""Where a remote reranker sends its requests, and with which key: one pure function.

:func:`resolve_endpoint` takes the constructor's ``api_format``, ``base_url``, ``api_key`` and
``api_key_env`` plus an environment mapping (``os.environ`` in the reranker, a plain dict in
tests) and returns an :class:`Endpoint` or raises a typed error naming the field. The rules:

- ``base_url`` ``None`` means the format's public host; ``vllm`` and ``tei`` have none, so
  they need one. A given ``base_url`` must be an ``http://`` or ``https://`` URL with a host;
  trailing slashes are dropped before the format's path (``/rerank``) is appended, and a full
  endpoint (a URL already ending in that path, as Haystack's ``JinaRanker`` takes it) is cut
  back to its base, so it never becomes ``.../rerank/rerank``.
- ``api_key`` wins. Otherwise ``api_key_env`` names the variable to read (for any host), or,
  only when the URL is the format's public host, the format's own variables are read
  (``CONTEXTUAL_API_KEY``, ``JINA_API_KEY``, ``COHERE_API_KEY``/``CO_API_KEY``). An
  environment key is thus never sent to a custom ``base_url`` unless the caller names it.
- The public host with no key found is an error, as is an ``api_key_env`` that is not set; a
  custom ``base_url`` never requires a key. Blank environment values count as unset.
- A key (given or read, after stripping surrounding whitespace) must be visible ASCII
  (``!`` to ``~``): whitespace, control or non-ASCII characters cannot travel in an HTTP
  header, so such a key is a RerankInputError naming ``api_key`` that does not repeat it.
- Credentials in ``base_url`` (``http://user:pass@host/v1``) are taken out of the URL: requests
  go to the URL without them and carry them as HTTP basic auth (what httpx would do with
  them; it then replaces a bearer key), ``display_url`` / ``display_base_url`` show ``***@`` in
  their place, and every form in which they travel (``user:pass``, the password raw and
  decoded, the base64 token of the ``Authorization`` header) joins the key in ``secrets``
  (what every message of the backend is redacted of, before any cut).
- A query string (``.../v1?api-version=2024-01-01``, as Azure-style gateways need) is kept:
  the format's path is appended to the PATH (``/v1/rerank?api-version=...``). Values of
  parameters whose name says they hold a credential (``key``, ``token``, ``sig``, ``code``...)
  are shown as ``***`` and redacted like the key.

No message ever contains a key or URL credentials (only the names of the variables a key was
looked for in).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit

from rerank_integrations.backends.remote.formats import DEFAULT_API_FORMAT, WireFormat, get_format
from rerank_integrations.errors import RerankError, RerankInputError
from rerank_integrations.validation import optional_str

__all__ = ["Endpoint", "reads_by_itself", "resolve_endpoint", "without_userinfo"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A resolved destination. ``authorization`` and ``secrets`` are left out of ``repr``."""

    format: WireFormat
    base_url: str
    """The API root, without a trailing slash, URL credentials or query."""
    url: str
    """Where requests are POSTed: ``base_url`` + the format's path, then the query kept."""
    api_key: str | None = field(default=None, repr=False)
    authorization: str | None = field(default=None, repr=False)
    """The ``Authorization`` header sent: ``Basic <token>`` for URL credentials (as httpx
    would send them), else ``Bearer <key>``, else ``None``."""
    display_base_url: str = ""
    """``base_url`` for messages: ``***@`` where the URL had credentials."""
    display_url: str = ""
    """``url`` for messages and ``repr``: ``***@`` for credentials, ``***`` for the values of
    query parameters whose name says they hold a credential (``key``, ``token``, ``sig``...)."""
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """Every credential sent, in every form it is sent (the key, ``user:password``, the
    password raw and decoded, the basic-auth token, secret query values): redacted."""

    @property
    def has_url_credentials(self) -> bool:
        return self.authorization is not None and self.authorization.startswith("Basic ")


def without_userinfo(url: str) -> str:
    """``url`` with any ``user:password@`` removed (what ``to_config()`` keeps); a URL
    without one is kept exactly as given."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _url_secrets(userinfo: str) -> tuple[str, tuple[str, ...]]:
    """The basic-auth token of URL credentials (base64 of ``user:password``, exactly as httpx
    builds it) and every form of them to redact: the whole ``user:password``, the password
    (raw and decoded) or the user when there is no password (``https://TOKEN@host``), and the
    token itself (a server may echo the ``Authorization`` header)."""
    user, colon, password = userinfo.partition(":")
    plain = f"{unquote(user)}:{unquote(password)}"
    token = base64.b64encode(plain.encode("utf-8")).decode("ascii")
    forms = (userinfo, password, unquote(password)) if colon else (userinfo, unquote(user))
    return token, tuple(s for s in (*forms, plain, token) if s and s != ":")


_SECRET_PARAM = re.compile(r"key|token|secret|sig|code|password|passwd|auth|credential", re.I)


def _query_secrets(query: str) -> tuple[str, tuple[str, ...]]:
    """The query for display (values of credential-like parameters as ``***``) and those
    values (raw and decoded), to redact."""
    shown: list[str] = []
    secrets: list[str] = []
    for pair in query.split("&") if query else []:
        name, eq, value = pair.partition("=")
        if eq and value and _SECRET_PARAM.search(unquote(name)):
            secrets += [value, unquote(value)]
            pair = f"{name}=***"
        shown.append(pair)
    return "&".join(shown), tuple(secrets)


def _check_key(key: str, source: str) -> str:
    """A key that can travel in an HTTP header: visible ASCII only. The message never
    repeats the key (only where it came from and the position of the first bad character)."""
    for position, char in enumerate(key):
        if not "!" <= char <= "~":
            raise RerankInputError(
                "api_key",
                f"{source} contains a whitespace, control or non-ASCII character (at "
                f"position {position}); an HTTP header cannot carry it (the key is not shown)",
            )
    return key


def _check_url(base_url: str) -> None:
    """An ``http(s)://host...`` URL, or RerankInputError naming ``base_url``.

    The message describes the problem without repeating the URL (it may carry credentials).
    """
    try:
        parts = urlsplit(base_url.strip())
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        # The parser's message can quote part of the URL: it is not repeated.
        raise RerankInputError("base_url", "is not a valid URL (bad host or port)") from None
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
    if url_arg is None and default_url is None:
        raise RerankInputError(
            "base_url",
            f"api_format={fmt.name!r} has no public host; pass the server's base_url "
            f"(e.g. 'http://localhost:8000/v1' for vLLM, 'http://localhost:8080' for TEI)",
        )
    if url_arg is not None:
        _check_url(url_arg)
    parts = urlsplit((url_arg or default_url or "").strip())
    path = parts.path.rstrip("/")
    if fmt.path and path.endswith(fmt.path):  # a full endpoint: cut back to its root
        path = path.removesuffix(fmt.path).rstrip("/")
    userinfo, at, host = parts.netloc.rpartition("@")
    root = urlunsplit((parts.scheme, host, path, "", ""))
    public_host = root == default_url and not at and not parts.query
    token, url_secrets = _url_secrets(userinfo) if at else (None, ())
    shown_query, query_secrets = _query_secrets(parts.query)
    key = _find_key(fmt, key_arg, env_arg, public_host, environ)
    if key is None and public_host and fmt.api_key_env:
        raise RerankInputError(
            "api_key",
            f"no API key for {root}: set {' or '.join(fmt.api_key_env)} or pass api_key=...",
        )
    if key is None and env_arg is not None:
        raise RerankInputError("api_key", f"the environment variable {env_arg} is not set")
    shown_host = f"***@{host}" if at else host
    display_root = urlunsplit((parts.scheme, shown_host, path, "", ""))
    if token is not None:
        authorization: str | None = f"Basic {token}"
    else:
        authorization = None if key is None else f"Bearer {key}"
    return Endpoint(
        fmt,
        root,
        urlunsplit((parts.scheme, host, path + fmt.path, parts.query, "")),
        key,
        authorization=authorization,
        display_base_url=display_root,
        display_url=urlunsplit((parts.scheme, shown_host, path + fmt.path, shown_query, "")),
        secrets=tuple(s for s in (key, *url_secrets, *query_secrets) if s),
    )


def reads_by_itself(api_format: object, base_url: object, name: str) -> bool:
    """Whether a reranker with this ``api_format`` (``None``: the default) and ``base_url``,
    given neither ``api_key`` nor ``api_key_env``, reads the variable ``name`` by itself: ``name``
    is one of the format's own variables and the URL is its public host, as
    :func:`resolve_endpoint` decides it. A bad format or URL is ``False`` (never an error).

    The one ``api_key_env`` a config from data may hold (:mod:`rerank_integrations.trust`): it
    changes nothing the backend would not do anyway."""
    fmt = DEFAULT_API_FORMAT if api_format is None else api_format
    try:  # a pure resolution: the placeholder value is never sent anywhere
        endpoint = resolve_endpoint(fmt, base_url, None, None, {name: "placeholder"})
    except RerankError:
        return False
    return endpoint.api_key is not None


def _find_key(
    fmt: WireFormat,
    api_key: str | None,
    api_key_env: str | None,
    public_host: bool,
    environ: Mapping[str, str],
) -> str | None:
    if api_key is not None:
        return _check_key(api_key.strip(), "the key")
    if api_key_env is not None:
        names: tuple[str, ...] = (api_key_env,)
    else:
        names = fmt.api_key_env if public_host else ()
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return _check_key(value, f"the value of {name}")
    return None
