"""Shared pytest configuration.

Kept import-light: nothing heavy (torch, transformers, frameworks) is imported at module level;
model fixtures import ``tiny_models`` (which imports torch lazily) inside the fixture body.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No test touches the internet: every model / tokenizer is built locally
# (tests/helpers/tiny_models.py).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"  # haystack posts usage stats otherwise
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# ---------------------------------------------------------------------------------------------
# Tiny random-weight models (built once per session, a few seconds in all). The directory names
# carry the format hints a user's hub id would (mxbai-rerank, ctxl-rerank, Qwen3-Reranker, jina).
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny_models")


@pytest.fixture(scope="session")
def tiny_mxbai_dir(tiny_models_root: Path) -> Path:
    """Qwen2 causal LM for the ``mxbai-v2`` format."""
    from helpers.tiny_models import make_tiny_qwen2

    return make_tiny_qwen2(tiny_models_root / "tiny-mxbai-rerank-v2")


@pytest.fixture(scope="session")
def tiny_ctxl_dir(tiny_models_root: Path) -> Path:
    """Qwen3 causal LM for the ``ctxl-v2`` format."""
    from helpers.tiny_models import make_tiny_qwen3

    return make_tiny_qwen3(tiny_models_root / "tiny-ctxl-rerank-v2-instruct-multilingual", seed=1)


@pytest.fixture(scope="session")
def tiny_qwen3_reranker_dir(tiny_models_root: Path) -> Path:
    """Qwen3 causal LM for the ``qwen3`` (Qwen3-Reranker) format."""
    from helpers.tiny_models import make_tiny_qwen3

    return make_tiny_qwen3(tiny_models_root / "tiny-Qwen3-Reranker", seed=3)


@pytest.fixture(scope="session")
def tiny_xlmr_dir(tiny_models_root: Path) -> Path:
    """XLMRobertaForSequenceClassification (one label) for the ``cross-encoder`` format."""
    from helpers.tiny_models import make_tiny_xlmr

    return make_tiny_xlmr(tiny_models_root / "tiny-xlm-roberta-cross-encoder")


@pytest.fixture(scope="session")
def tiny_jina_dir(tiny_models_root: Path) -> Path:
    """The same weights as ``tiny_xlmr_dir`` in jina-reranker-v2's checkpoint naming."""
    from helpers.tiny_models import make_tiny_jina

    return make_tiny_jina(tiny_models_root / "tiny-jina-reranker-v2-base-multilingual")
