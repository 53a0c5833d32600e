from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rerank_integrations import MissingExtraError, Reranker, RerankInputError, RerankTypeError
from rerank_integrations._testing import FakeReranker
from rerank_integrations.extras import import_extra


def test_config_round_trip() -> None:
    original = FakeReranker({"a": 0.3, "b": 0.8}, default_score=0.1, model="m")
    config = original.to_config()
    json.dumps(config)  # JSON-serialisable
    rebuilt = Reranker.from_config(config)
    assert type(rebuilt) is FakeReranker
    assert rebuilt.to_config() == config
    assert rebuilt.rerank("q", ["a", "b", "c"]) == original.rerank("q", ["a", "b", "c"])
    assert config == original.to_config(), "from_config must not modify the config"


@pytest.mark.parametrize(
    ("config", "exc"),
    [
        ({}, RerankInputError),
        ({"backend": 3}, RerankTypeError),
        ({"backend": "no-such-backend"}, RerankInputError),
        ({"backend": "json:dumps"}, RerankInputError),
        (["backend", "local"], RerankTypeError),
    ],
)
def test_bad_config(config: object, exc: type[Exception]) -> None:
    with pytest.raises(exc) as info:
        Reranker.from_config(config)  # type: ignore[arg-type]
    assert type(info.value) is exc


def test_context_managers_close() -> None:
    with FakeReranker() as r:
        assert not r.closed
    assert r.closed


async def test_async_context_manager_closes() -> None:
    async with FakeReranker() as r:
        assert await r.arerank("q", ["x"]) != []
    assert r.closed


def test_missing_extra_names_the_install_command() -> None:
    with pytest.raises(MissingExtraError) as info:
        import_extra("definitely_not_installed_pkg", extra="remote", feature="RemoteReranker")
    assert isinstance(info.value, ImportError)
    assert 'pip install "rerank-integrations[remote]"' in str(info.value)
    assert "definitely_not_installed_pkg" in str(info.value)


HEAVY = ["torch", "transformers", "httpx", "langchain_core", "llama_index", "haystack", "numpy"]


def test_import_is_light() -> None:
    code = (
        "import sys, json, rerank_integrations, rerank_integrations.cli;"
        "from rerank_integrations import Reranker, RerankResult, format_metadata;"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_missing_extras_in_a_bare_environment(tmp_path: object) -> None:
    """With torch/httpx/frameworks made unimportable, each class names its pip command."""
    code = r"""
import sys
for name in ["torch", "transformers", "httpx", "langchain_core", "llama_index", "haystack"]:
    sys.modules[name] = None  # makes `import name` raise ImportError
import rerank_integrations
from rerank_integrations import MissingExtraError
checks = {
    "local": lambda: rerank_integrations.LocalReranker("some/model"),
    "remote": lambda: rerank_integrations.RemoteReranker(base_url="http://127.0.0.1:9"),
    "langchain": lambda: __import__("rerank_integrations.langchain"),
    "llamaindex": lambda: __import__("rerank_integrations.llama_index"),
    "haystack": lambda: __import__("rerank_integrations.haystack"),
}
for extra, make in checks.items():
    try:
        make()
    except MissingExtraError as exc:
        assert f'pip install "rerank-integrations[{extra}]"' in str(exc), (extra, str(exc))
        print(extra, "ok")
    else:
        raise SystemExit(f"{extra}: no MissingExtraError")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr + out.stdout
    assert out.stdout.split() == [
        "local", "ok", "remote", "ok", "langchain", "ok", "llamaindex", "ok", "haystack", "ok"
    ]
