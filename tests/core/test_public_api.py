"""The public API is pinned: a name added to or dropped from it must be a deliberate change."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

import rerank_integrations

ROOT = Path(__file__).resolve().parents[2]

PACKAGE_API = [
    "LocalReranker",
    "MetadataFormatter",
    "MissingExtraError",
    "ModelLoadError",
    "NonFiniteScoreError",
    "OutOfMemoryError",
    "RemoteConnectionError",
    "RemoteError",
    "RemoteReranker",
    "RemoteResponseError",
    "RemoteResponseTooLargeError",
    "RemoteStatusError",
    "RemoteTimeoutError",
    "RerankError",
    "RerankInputError",
    "RerankRequest",
    "RerankResult",
    "RerankTypeError",
    "Reranker",
    "RerankerClosedError",
    "UnpicklableRerankerError",
    "UnsupportedFeatureError",
    "__version__",
    "format_metadata",
    "select_results",
    "sort_results",
]

ADAPTER_API = {
    "rerank_integrations.langchain": ["RerankCompressor"],
    "rerank_integrations.llama_index": ["RerankPostprocessor"],
    "rerank_integrations.haystack": ["RAW_SCORE_KEY", "RerankRanker"],
}


def test_package_all_is_pinned_and_every_name_resolves() -> None:
    assert sorted(rerank_integrations.__all__) == PACKAGE_API
    for name in PACKAGE_API:
        assert getattr(rerank_integrations, name) is not None


def test_backends_are_the_classes_of_their_subpackages() -> None:
    from rerank_integrations.backends.local import LocalReranker
    from rerank_integrations.backends.remote import RemoteReranker

    assert rerank_integrations.LocalReranker is LocalReranker
    assert rerank_integrations.RemoteReranker is RemoteReranker
    assert issubclass(LocalReranker, rerank_integrations.Reranker)
    assert issubclass(RemoteReranker, rerank_integrations.Reranker)


@pytest.mark.parametrize("module", sorted(ADAPTER_API))
def test_adapter_all_is_pinned(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == ADAPTER_API[module]


def test_version_has_one_source() -> None:
    with open(ROOT / "pyproject.toml", "rb") as f:
        declared = tomllib.load(f)["project"]["version"]
    assert rerank_integrations.__version__ == metadata.version("rerank-integrations") == declared


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        rerank_integrations.no_such_name  # noqa: B018


def test_importing_the_package_stays_light() -> None:
    code = (
        "import sys, rerank_integrations; "
        "heavy = {'torch', 'transformers', 'httpx', 'numpy'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
