"""Configs that users saved with an earlier version still load, unchanged, with this one.

The files in ``saved_configs/`` were written by that folder's ``generate.py`` with the code of
the commit its README names: a LangChain ``dumps``, a LlamaIndex ``to_dict`` and a Haystack
pipeline YAML per setting (a remote backend with a key, a local backend, a ``reranker=`` object
saved as its ``to_config()``). Each must load, hold exactly the saved settings, and serialise
again to the same data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from haystack import Document, Pipeline
from langchain_core.documents import Document as LcDocument
from langchain_core.load import dumps, loads
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from rerank_integrations._testing import FakeReranker
from rerank_integrations.haystack import RerankRanker
from rerank_integrations.langchain import RerankCompressor
from rerank_integrations.llama_index import RerankPostprocessor

SAVED = Path(__file__).parent / "saved_configs"
CASES = ["remote", "local", "reranker"]
FAKE_CONFIG = FakeReranker({"a": 0.9, "b": 0.2}, default_score=0.1, model="fake-saved").to_config()
TEXTS = ["c", "b", "a"]  # the saved FakeReranker scores a > b > c (the default 0.1)

pytestmark = pytest.mark.filterwarnings(
    "ignore::langchain_core._api.beta_decorator.LangChainBetaWarning"
)


@pytest.mark.parametrize("case", CASES)
def test_langchain_dumps_of_the_earlier_version_loads(case: str) -> None:
    text = (SAVED / f"langchain_{case}.json").read_text()
    saved = json.loads(text)["kwargs"]
    revived = loads(
        text,
        valid_namespaces=["rerank_integrations"],
        allowed_objects=[RerankCompressor],
        secrets_map={"RERANK_API_KEY": "sk-other"},
    )
    assert isinstance(revived, RerankCompressor)
    for name, value in saved.items():
        if name != "api_key":
            assert getattr(revived, name) == value, name
    if case == "remote":
        assert revived.api_key is not None and revived.api_key.get_secret_value() == "sk-other"
    else:
        assert revived.api_key is None
    if case == "reranker":
        assert saved["reranker"] == FAKE_CONFIG
        docs = [LcDocument(page_content=t) for t in TEXTS]
        assert [d.page_content for d in revived.compress_documents(docs, "q")] == ["a", "b"]
    assert json.loads(dumps(revived)) == json.loads(text)


@pytest.mark.parametrize("case", CASES)
def test_llama_index_to_dict_of_the_earlier_version_loads(case: str) -> None:
    saved = json.loads((SAVED / f"llama_index_{case}.json").read_text())
    key = {"api_key": "sk-other"} if case == "remote" else {}
    loaded = RerankPostprocessor.from_dict(dict(saved), **key)
    for name, value in saved.items():
        if name != "class_name":
            assert getattr(loaded, name) == value, name
    if case == "remote":
        assert loaded.api_key is not None and loaded.api_key.get_secret_value() == "sk-other"
    if case == "reranker":
        assert saved["reranker"] == FAKE_CONFIG
        nodes = [NodeWithScore(node=TextNode(text=t)) for t in TEXTS]
        out = loaded.postprocess_nodes(nodes, QueryBundle("q"))
        assert [n.node.get_content() for n in out] == ["a", "b"]
    assert loaded.to_dict() == saved


def _ranker_settings(ranker: RerankRanker) -> dict[str, Any]:
    """The ranker's public settings, in the form its YAML holds them."""
    names = [
        "backend", "model", "base_url", "api_format", "reranker_kwargs", "top_k",
        "score_threshold", "instruction", "meta_fields_to_embed", "embedding_separator",
        "query_prefix", "query_suffix", "document_prefix", "document_suffix", "scale_score",
        "metadata_keys", "send_metadata", "model_kwargs", "tokenizer_kwargs",
    ]  # fmt: skip
    settings = {name: getattr(ranker, name) for name in names}
    for name in ("api_key", "token", "device"):
        value = getattr(ranker, name)
        settings[name] = None if value is None else value.to_dict()
    return settings


@pytest.mark.parametrize("case", CASES)
def test_haystack_yaml_of_the_earlier_version_loads(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HAYSTACK_DESERIALIZATION_ALLOWLIST", raising=False)
    text = (SAVED / f"haystack_{case}.yaml").read_text()
    params = yaml.safe_load(text)["components"]["ranker"]["init_parameters"]
    loaded = Pipeline.loads(text, allowed_modules=["rerank_integrations"])
    ranker = loaded.get_component("ranker")
    assert isinstance(ranker, RerankRanker)
    settings = _ranker_settings(ranker)
    assert settings == {name: params[name] for name in settings}
    assert params["instruction_fn"] is None and params["metadata_formatter"] is None
    if case == "reranker":
        assert params["reranker"] == FAKE_CONFIG
        docs = [Document(content=t) for t in TEXTS]
        out = loaded.run({"ranker": {"query": "q", "documents": docs}})["ranker"]["documents"]
        assert [d.content for d in out] == ["a", "b"]
    assert ranker.to_dict()["init_parameters"] == params
    assert yaml.safe_load(loaded.dumps()) == yaml.safe_load(text)
