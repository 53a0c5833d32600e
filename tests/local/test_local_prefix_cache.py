"""The prefix cache of the causal formats on the installed transformers (CI pins the newest).

transformers 5 renamed the KV-cache keyword and output field ``past_key_values`` to ``cache``;
the old name warns (a FutureWarning on input, a transformers log line on output) until its
removal in 5.40. The default, prefix-caching path of every causal format must emit neither and
must score exactly like the no-cache path.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from rerank_integrations import LocalReranker  # noqa: E402
from rerank_integrations.backends.local.runners import CausalRunner, cache_kwarg  # noqa: E402

QUERY = "What is the capital of France?"
DOCS = [
    "Paris is the capital and largest city of France.",
    "Berlin is the capital of Germany!\n",
    "Why?",
    "The quick brown fox jumps over the lazy dog. " * 6,
    "¿Dónde está la biblioteca?",
]
TOL = 1e-5  # as tests/local/test_local_engine.py
CAUSAL = ["tiny_ctxl_dir", "tiny_mxbai_dir", "tiny_qwen3_reranker_dir"]


def _new_cache_api() -> bool:
    """Whether the installed transformers has the ``cache`` name (transformers 5.x)."""
    from transformers.modeling_outputs import BaseModelOutputWithPast

    return "cache" in getattr(BaseModelOutputWithPast, "__dataclass_fields__", {})


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def transformers_log() -> Iterator[_Records]:
    """transformers' own warning lines (its logger does not propagate; ``warning_once`` is
    cached per process, so the cache is cleared for the lines to show again)."""
    once = getattr(transformers.utils.logging, "warning_once", None)
    if once is not None and hasattr(once, "cache_clear"):
        once.cache_clear()
    handler = _Records()
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _scores(r: LocalReranker, instruction: str | None) -> dict[int, float]:
    return {x.index: x.raw_score for x in r.rerank(QUERY, DOCS, instruction=instruction)}


def _runner(r: LocalReranker) -> Any:
    return r._engine._runner


@pytest.mark.parametrize("model_dir", CAUSAL)
def test_prefix_path_emits_no_deprecation_and_matches_no_cache(
    request: pytest.FixtureRequest, model_dir: str, transformers_log: _Records
) -> None:
    path = str(request.getfixturevalue(model_dir))
    with (
        LocalReranker(path, dtype="float32") as cached,
        LocalReranker(path, dtype="float32", prefix_caching=False) as plain,
    ):
        runner = _runner(cached)
        assert isinstance(runner, CausalRunner)
        if _new_cache_api():
            assert runner.cache_name == "cache"
        for instruction in (None, "Prefer official sources."):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                a = _scores(cached, instruction)
            bad = [
                str(w.message)
                for w in caught
                if issubclass(w.category, (FutureWarning, DeprecationWarning))
            ]
            assert bad == []
            b = _scores(plain, instruction)
            assert a.keys() == b.keys()
            assert max(abs(a[i] - b[i]) for i in a) <= TOL
        assert cached._engine._prefixes and not plain._engine._prefixes  # both paths ran
    stale = [m for m in transformers_log.messages if "past_key_values" in m or "deprecat" in m]
    assert stale == []


@pytest.mark.parametrize("model_dir", CAUSAL)
def test_prefix_path_with_deprecations_as_errors(
    request: pytest.FixtureRequest, model_dir: str
) -> None:
    """The same, the way a user running ``-W error::FutureWarning`` would see it; one document
    per batch too (the cache is then not expanded)."""
    path = str(request.getfixturevalue(model_dir))
    with (
        LocalReranker(path, dtype="float32", batch_size=1) as cached,
        LocalReranker(path, dtype="float32", prefix_caching=False) as plain,
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            warnings.simplefilter("error", DeprecationWarning)
            a = _scores(cached, None)
        b = _scores(plain, None)
        assert max(abs(a[i] - b[i]) for i in a) <= TOL
        assert cached._engine._prefixes


class _NewStyle:
    def forward(self, input_ids: Any = None, cache: Any = None, **kwargs: Any) -> None: ...


class _OldStyle:
    def forward(self, input_ids: Any = None, past_key_values: Any = None) -> None: ...


class _Opaque:
    forward = print  # a builtin: no readable signature (or one without either name)


def test_cache_kwarg_follows_the_model_signature() -> None:
    assert cache_kwarg(_NewStyle()) == "cache"
    assert cache_kwarg(_OldStyle()) == "past_key_values"  # transformers 4, old remote code
    assert cache_kwarg(_Opaque()) == "past_key_values"
    from transformers import Qwen2Config, Qwen2Model

    config = Qwen2Config(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1,
    )  # fmt: skip
    expected = "cache" if _new_cache_api() else "past_key_values"
    assert cache_kwarg(Qwen2Model(config)) == expected
