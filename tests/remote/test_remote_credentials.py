"""Key/URL resolution (``credentials.resolve_endpoint``): a pure function of the arguments and
an environment mapping. An environment key goes only to the format's public host; no message
ever carries a key."""

from __future__ import annotations

from typing import Any

import pytest

from rerank_integrations.backends.remote.credentials import (
    Endpoint,
    reads_by_itself,
    resolve_endpoint,
)
from rerank_integrations.errors import RerankInputError, RerankTypeError

SECRET = "sk-test-3f9a1c0d5e7b42"
OTHER = "sk-other-77aa01"
CUSTOM = "http://127.0.0.1:8000/v1"


def resolve(
    api_format: Any = "contextual",
    base_url: Any = None,
    api_key: Any = None,
    api_key_env: Any = None,
    environ: dict[str, str] | None = None,
) -> Endpoint:
    return resolve_endpoint(api_format, base_url, api_key, api_key_env, environ or {})


@pytest.mark.parametrize(
    ("api_format", "env", "url"),
    [
        ("contextual", {"CONTEXTUAL_API_KEY": SECRET}, "https://api.contextual.ai/v1/rerank"),
        ("jina", {"JINA_API_KEY": SECRET}, "https://api.jina.ai/v1/rerank"),
        ("cohere", {"COHERE_API_KEY": SECRET}, "https://api.cohere.com/v2/rerank"),
        ("cohere", {"CO_API_KEY": SECRET}, "https://api.cohere.com/v2/rerank"),
        (
            "cohere",
            {"COHERE_API_KEY": SECRET, "CO_API_KEY": OTHER},
            "https://api.cohere.com/v2/rerank",
        ),
    ],
)
def test_public_host_reads_the_formats_variable(
    api_format: str, env: dict[str, str], url: str
) -> None:
    endpoint = resolve(api_format, environ=env)
    assert endpoint.url == url
    assert endpoint.base_url == url.removesuffix("/rerank")
    assert endpoint.api_key == SECRET
    assert endpoint.format.name == api_format


@pytest.mark.parametrize(
    "base_url",
    [
        "https://api.contextual.ai/v1",
        "https://api.contextual.ai/v1/",
        "https://api.contextual.ai/v1//",
    ],
)
def test_the_public_host_spelled_out_is_still_the_public_host(base_url: str) -> None:
    endpoint = resolve(base_url=base_url, environ={"CONTEXTUAL_API_KEY": SECRET})
    assert endpoint.api_key == SECRET
    assert endpoint.url == "https://api.contextual.ai/v1/rerank"


@pytest.mark.parametrize(
    "base_url",
    [
        CUSTOM,
        "https://gigarouter.ai/v1",
        "http://api.contextual.ai/v1",  # not the https public host
        "https://api.contextual.ai.example.com/v1",
        "https://api.contextual.ai/v2",
    ],
)
def test_env_key_never_goes_to_a_custom_base_url(base_url: str) -> None:
    env = {"CONTEXTUAL_API_KEY": SECRET, "JINA_API_KEY": SECRET, "COHERE_API_KEY": SECRET}
    for api_format in ("contextual", "jina", "cohere", "vllm", "tei"):
        endpoint = resolve(api_format, base_url=base_url, environ=env)
        assert endpoint.api_key is None  # and a custom host needs no key: no error
        assert endpoint.url == base_url.rstrip("/") + "/rerank"


def test_api_key_env_names_the_variable_for_any_host() -> None:
    env = {"CONTEXTUAL_API_KEY": OTHER, "MY_ROUTER_KEY": f"  {SECRET}\n"}
    assert resolve(base_url=CUSTOM, api_key_env="MY_ROUTER_KEY", environ=env).api_key == SECRET
    # on the public host too, and then instead of the format's own variable
    assert resolve(api_key_env="MY_ROUTER_KEY", environ=env).api_key == SECRET
    assert resolve("vllm", base_url=CUSTOM, api_key_env="MY_ROUTER_KEY", environ=env).api_key == (
        SECRET
    )


@pytest.mark.parametrize(
    ("api_format", "base_url", "name", "expected"),
    [
        (None, None, "CONTEXTUAL_API_KEY", True),  # None: the default format, contextual
        ("contextual", "https://api.contextual.ai/v1/", "CONTEXTUAL_API_KEY", True),
        ("contextual", "https://api.contextual.ai/v1/rerank", "CONTEXTUAL_API_KEY", True),
        ("cohere", None, "CO_API_KEY", True),
        ("jina", None, "JINA_API_KEY", True),
        ("contextual", CUSTOM, "CONTEXTUAL_API_KEY", False),  # another host
        ("contextual", "http://api.contextual.ai/v1", "CONTEXTUAL_API_KEY", False),
        ("contextual", "https://u:p@api.contextual.ai/v1", "CONTEXTUAL_API_KEY", False),
        ("contextual", "https://api.contextual.ai/v1?x=1", "CONTEXTUAL_API_KEY", False),
        ("contextual", None, "JINA_API_KEY", False),  # another format's variable
        ("contextual", None, "AWS_SECRET_ACCESS_KEY", False),
        ("vllm", CUSTOM, "VLLM_API_KEY", False),  # no public host, no own variable
        ("voyage", None, "CONTEXTUAL_API_KEY", False),  # bad values are False, not errors
        ("contextual", "not a url", "CONTEXTUAL_API_KEY", False),
        (3, None, "CONTEXTUAL_API_KEY", False),
    ],
)
def test_reads_by_itself_only_the_formats_own_variable_for_its_public_host(
    api_format: Any, base_url: Any, name: str, expected: bool
) -> None:
    """The one api_key_env a config from data may hold (rerank_integrations.trust): the
    variable the backend would read for this URL without being told."""
    assert reads_by_itself(api_format, base_url, name) is expected


def test_explicit_key_wins_and_is_stripped() -> None:
    env = {"CONTEXTUAL_API_KEY": OTHER, "MINE": OTHER}
    assert resolve(api_key=f" {SECRET} ", environ=env).api_key == SECRET
    assert resolve(api_key=SECRET, api_key_env="MINE", environ=env).api_key == SECRET
    assert resolve(base_url=CUSTOM, api_key=SECRET, environ=env).api_key == SECRET
    assert resolve("tei", base_url=CUSTOM, api_key=SECRET).api_key == SECRET


@pytest.mark.parametrize(
    ("api_format", "names"),
    [
        ("contextual", ["CONTEXTUAL_API_KEY"]),
        ("jina", ["JINA_API_KEY"]),
        ("cohere", ["COHERE_API_KEY", "CO_API_KEY"]),
    ],
)
def test_public_host_without_a_key_is_an_input_error(api_format: str, names: list[str]) -> None:
    # blank values count as unset; keys of OTHER formats are never borrowed
    env = {name: "   " for name in names} | {"UNRELATED_KEY": SECRET}
    env |= {"CONTEXTUAL_API_KEY": SECRET} if api_format != "contextual" else {}
    env |= {"JINA_API_KEY": SECRET} if api_format != "jina" else {}
    with pytest.raises(RerankInputError) as info:
        resolve(api_format, environ=env)
    assert info.value.field == "api_key"
    for name in names:
        assert name in str(info.value)
    assert SECRET not in str(info.value)


def test_unset_api_key_env_is_an_input_error() -> None:
    env = {"CONTEXTUAL_API_KEY": SECRET, "EMPTY_KEY": ""}
    for name in ("SURELY_UNSET_RERANK_VAR", "EMPTY_KEY"):
        with pytest.raises(RerankInputError) as info:
            resolve(base_url=CUSTOM, api_key_env=name, environ=env)
        assert info.value.field == "api_key"
        assert name in str(info.value) and SECRET not in str(info.value)


@pytest.mark.parametrize("api_format", ["vllm", "tei"])
def test_formats_without_a_public_host_need_a_base_url(api_format: str) -> None:
    with pytest.raises(RerankInputError) as info:
        resolve(api_format, api_key=SECRET)
    assert info.value.field == "base_url"
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "field", "error"),
    [
        ({"api_format": 1}, "api_format", RerankTypeError),
        ({"api_format": None}, "api_format", RerankTypeError),
        ({"api_format": "voyage"}, "api_format", RerankInputError),
        ({"base_url": 8000}, "base_url", RerankTypeError),
        ({"base_url": b"http://127.0.0.1"}, "base_url", RerankTypeError),
        ({"base_url": ""}, "base_url", RerankInputError),
        ({"base_url": "   "}, "base_url", RerankInputError),
        ({"base_url": "not a url"}, "base_url", RerankInputError),
        ({"base_url": "localhost:8000/v1"}, "base_url", RerankInputError),
        ({"base_url": "127.0.0.1:8000"}, "base_url", RerankInputError),
        ({"base_url": "ftp://example.com/v1"}, "base_url", RerankInputError),
        ({"base_url": "http://"}, "base_url", RerankInputError),
        ({"base_url": "https:///v1"}, "base_url", RerankInputError),
        ({"base_url": "http://127.0.0.1:port/v1"}, "base_url", RerankInputError),
        ({"base_url": "http://[::1/v1"}, "base_url", RerankInputError),
        ({"api_key": 123}, "api_key", RerankTypeError),
        ({"api_key": ["k"]}, "api_key", RerankTypeError),
        ({"api_key": ""}, "api_key", RerankInputError),
        ({"api_key": "  "}, "api_key", RerankInputError),
        ({"api_key_env": 1}, "api_key_env", RerankTypeError),
        ({"api_key_env": ""}, "api_key_env", RerankInputError),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], field: str, error: type[Exception]) -> None:
    args: dict[str, Any] = {"base_url": CUSTOM, "environ": {"CONTEXTUAL_API_KEY": SECRET}}
    args.update(kwargs)
    with pytest.raises(error) as info:
        resolve(**args)
    assert type(info.value) is error
    assert getattr(info.value, "field", None) == field
    assert SECRET not in str(info.value)


def test_a_url_with_credentials_is_not_repeated_in_the_error() -> None:
    with pytest.raises(RerankInputError) as info:
        resolve(base_url=f"ftp://user:{SECRET}@example.com/v1")
    assert SECRET not in str(info.value)


def test_key_is_not_in_the_endpoint_repr() -> None:
    endpoint = resolve(api_key=SECRET)
    assert SECRET not in repr(endpoint) and SECRET not in str(endpoint)


def test_pure_reads_only_the_mapping_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTEXTUAL_API_KEY", SECRET)
    with pytest.raises(RerankInputError):
        resolve(environ={})  # os.environ is not consulted
    env = {"CONTEXTUAL_API_KEY": OTHER}
    assert resolve(environ=env).api_key == OTHER
    assert env == {"CONTEXTUAL_API_KEY": OTHER}


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("http://localhost:8000/v1", "http://localhost:8000/v1/rerank"),
        ("http://localhost:8000/v1/rerank", "http://localhost:8000/v1/rerank"),
        ("http://localhost:8000/v1/rerank/", "http://localhost:8000/v1/rerank"),
    ],
)
def test_a_full_endpoint_is_cut_back_to_its_base(given: str, url: str) -> None:
    endpoint = resolve_endpoint("vllm", given, None, None, {})
    assert endpoint.url == url
    assert endpoint.base_url == "http://localhost:8000/v1"


def test_the_public_full_endpoint_counts_as_the_public_host() -> None:
    endpoint = resolve_endpoint(
        "jina", "https://api.jina.ai/v1/rerank", None, None, {"JINA_API_KEY": SECRET}
    )
    assert endpoint.url == "https://api.jina.ai/v1/rerank" and endpoint.api_key == SECRET
