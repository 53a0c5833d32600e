"""Writes the saved adapter configs in this folder (run once, with the version named in README).

``PYTHONPATH=<checkout>/src python tests/adapters/saved_configs/generate.py`` writes a LangChain
``dumps`` JSON, a LlamaIndex ``to_dict`` JSON and a Haystack pipeline YAML for each setting in
:data:`CASES`; ``test_saved_configs.py`` loads them with the current code.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
logger = logging.getLogger(__name__)

#: setting name -> the adapters' shared keyword arguments (the reranker case adds a FakeReranker).
CASES: dict[str, dict[str, Any]] = {
    "remote": {
        "backend": "remote",
        "model": "ctxl-rerank-v2-instruct-multilingual",
        "base_url": "https://rerank.example.com/v1",
        "api_format": "contextual",
        "score_threshold": 0.25,
        "instruction": "prefer the most recent source",
        "metadata_keys": ["title", "date"],
        "send_metadata": True,
    },
    "local": {
        "backend": "local",
        "model": "ContextualAI/ctxl-rerank-v2-instruct-multilingual-1b",
        "reranker_kwargs": {"batch_size": 4},
        "score_threshold": 0.0,
        "instruction": "",
        "send_metadata": False,
    },
    "reranker": {
        "score_threshold": None,
        "instruction": "recent first",
        "metadata_keys": ["source"],
    },
}


def _fake() -> Any:
    from rerank_integrations._testing import FakeReranker

    return FakeReranker({"a": 0.9, "b": 0.2}, default_score=0.1, model="fake-saved")


def langchain_kwargs(case: str) -> dict[str, Any]:
    kwargs = dict(CASES[case])
    if case == "remote":
        kwargs.update(api_key="sk-saved-not-a-real-key", top_n=5)
    elif case == "local":
        kwargs.update(model_format="ctxl-v2", device="cpu", top_n=None)
    else:
        kwargs.update(reranker=_fake(), top_n=2)
    return kwargs


def llama_index_kwargs(case: str) -> dict[str, Any]:
    kwargs = langchain_kwargs(case)
    if case == "local":
        kwargs.update(metadata_mode="all", keep_retrieval_score=True)
    return kwargs


def haystack_kwargs(case: str) -> dict[str, Any]:
    from haystack.utils import ComponentDevice, Secret

    kwargs = dict(CASES[case])
    if case == "remote":
        kwargs.update(api_key=Secret.from_env_var("CONTEXTUAL_API_KEY"), top_k=5)
    elif case == "local":
        kwargs.update(
            device=ComponentDevice.from_str("cpu"),
            model_kwargs={"torch_dtype": "float32"},
            tokenizer_kwargs={"model_max_length": 256},
            token=Secret.from_env_var("HF_TOKEN", strict=False),
            meta_fields_to_embed=["title"],
            embedding_separator=" | ",
            query_prefix="query: ",
            document_prefix="passage: ",
            scale_score=False,
            top_k=None,
        )
    else:
        kwargs.update(reranker=_fake(), top_k=2)
    return kwargs


def main() -> None:
    from haystack import Pipeline
    from langchain_core.load import dumps

    from rerank_integrations.haystack import RerankRanker
    from rerank_integrations.langchain import RerankCompressor
    from rerank_integrations.llama_index import RerankPostprocessor

    for case in CASES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            text = dumps(RerankCompressor(**langchain_kwargs(case)), pretty=True)
        (HERE / f"langchain_{case}.json").write_text(text + "\n")
        data = RerankPostprocessor(**llama_index_kwargs(case)).to_dict()
        (HERE / f"llama_index_{case}.json").write_text(json.dumps(data, indent=2) + "\n")
        pipeline = Pipeline()
        pipeline.add_component("ranker", RerankRanker(**haystack_kwargs(case)))
        (HERE / f"haystack_{case}.yaml").write_text(pipeline.dumps())
        logger.info("wrote the %s configs", case)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
