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
  them), ``display_url`` / ``display_base_url`` show ``***@`` in their place, and they join
  the key in ``secrets`` (what every message of the backend is redacted of).

No message ever contains a key or URL credentials (only the names of the variables a key was
looked for in).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit

from rerank_integrations.backends.remote.formats import WireFormat, get_format
from rerank_integrations.errors import RerankInputError
from rerank_integrations.validation import optional_str

__all__ = ["Endpoint", "resolve_endpoint", "split_userinfo", "without_userinfo"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A resolved destination. ``api_key``, ``auth`` and ``secrets`` are left out of ``repr``."""

    format: WireFormat
    base_url: str
    """The API root, without a trailing slash (and without URL credentials)."""
    url: str
    """``base_url`` + the format's path: where requests are POSTed."""
    api_key: str | None = field(default=None, repr=False)
    auth: tuple[str, str] | None = field(default=None, repr=False)
    """``(user, password)`` from URL credentials (percent-decoded), sent as basic auth."""
    display_base_url: str = ""
    """``base_url`` for messages: ``***@`` where the URL had credentials."""
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """Every secret of this endpoint (the key, URL credentials), for redaction."""

    @property
    def display_url(self) -> str:
        """``url`` for messages and ``repr`` (never credentials)."""
        return (self.display_base_url or self.base_url) + self.format.path

    @property
    def has_url_credentials(self) -> bool:
        return self.auth is not None


def split_userinfo(url: str) -> tuple[str, str | None]:
    """``url`` without its ``user:password@`` part, and that part (``None`` when absent)."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url, None
    return urlunsplit(parts._replace(netloc=host)), userinfo


def without_userinfo(url: str) -> str:
    """``url`` with any ``user:password@`` removed (what ``to_config()`` keeps)."""
    return split_userinfo(url)[0]


def _display(url: str) -> str:
    """``url`` with ``***@`` in place of its credentials, if any."""
    bare, userinfo = split_userinfo(url)
    if userinfo is None:
        return url
    parts = urlsplit(bare)
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc))


def _url_secrets(userinfo: str) -> tuple[tuple[str, str], tuple[str, ...]]:
    """Basic-auth ``(user, password)`` of URL credentials, and the strings to redact: the whole
    ``user:password``, the password (raw and decoded), or the user when there is no password
    (``https://TOKEN@host``)."""
    user, colon, password = userinfo.partition(":")
    auth = (unquote(user), unquote(password))
    secrets = (userinfo, password, auth[1]) if colon else (userinfo, auth[0])
    return auth, tuple(s for s in secrets if s)


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
        if fmt.path and root.endswith(fmt.path):
            root = root.removesuffix(fmt.path)
    given_root = root
    public_host = root == default_url
    root, userinfo = split_userinfo(root)
    auth, url_secrets = _url_secrets(userinfo) if userinfo is not None else (None, ())
    key = _find_key(fmt, key_arg, env_arg, public_host, environ)
    if key is None and public_host and fmt.api_key_env:
        raise RerankInputError(
            "api_key",
            f"no API key for {root}: set {' or '.join(fmt.api_key_env)} or pass api_key=...",
        )
    if key is None and env_arg is not None:
        raise RerankInputError("api_key", f"the environment variable {env_arg} is not set")
    display = _display(given_root) if userinfo is not None else root
    return Endpoint(
        fmt,
        root,
        root + fmt.path,
        key,
        auth=auth,
        display_base_url=display,
        secrets=(key, *url_secrets) if key else url_secrets,
    )


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
