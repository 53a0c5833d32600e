"""LocalReranker with untrusted model files and a model that scores NaN (docs/reliability.md
"Local backend": "Untrusted model files", "A model that scores NaN").

- A score that is not a finite number is never returned: a cross-encoder whose classifier bias
  is NaN (or +inf: sigmoid would give 1.0, the raw score is still refused), a ctxl-v2 model
  whose ``lm_head`` row is NaN, a qwen3 model whose yes and no logits are both +inf (``inf -
  inf``), sync and async, raise ``NonFiniteScoreError`` naming the model and the documents.
  Only the documents at fault are named; other callers of the same reranker are unaffected.
- Every failure to load is a ``ModelLoadError`` naming the file and the reason, raised by the
  constructor: a config nested 100,000 levels deep (json's ``RecursionError``), one nested over
  the cap, one that is not JSON or not an object, a config that does not match its weights
  (``num_labels: 3`` over a one-label head: transformers' ``RuntimeError``), truncated or garbage
  safetensors (``SafetensorError``), broken tokenizer files, a broken shard index, a truncated
  pickle checkpoint; for stock classifiers, jina checkpoints (converted here) and causal LMs.

Each case builds a corrupted copy of a tiny random model (tests/helpers/tiny_models.py).
"""

from __future__ import annotations

import asyncio
import json
import math
import pickle
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from rerank_integrations import LocalReranker  # noqa: E402
from rerank_integrations.backends.local.engine import EncodedInput  # noqa: E402
from rerank_integrations.backends.local.files import MAX_JSON_DEPTH, nesting_depth  # noqa: E402
from rerank_integrations.errors import ModelLoadError, NonFiniteScoreError  # noqa: E402

QUERY = "What is the capital of France?"
DOCS = [
    "Paris is the capital and largest city of France.",
    "Berlin is the capital of Germany!",
    "Green tea contains antioxidants called catechins.",
]
DEEP = 100_000


def deep_json(levels: int) -> str:
    return '{"a": ' + "[" * levels + "]" * levels + "}"


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_weights(model_dir: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(model_dir / "model.safetensors"))
    edit(state)
    save_file(state, str(model_dir / "model.safetensors"), metadata={"format": "pt"})


def edit_json(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data), encoding="utf-8")


def truncate(path: Path, size: int) -> None:
    path.write_bytes(path.read_bytes()[:size])


def by_index(results: Sequence[Any]) -> list[Any]:
    return sorted(results, key=lambda r: r.index)


# ---------------------------------------------------------------------------------------------
# scores that are not finite
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nan_cross_encoder(tiny_xlmr_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny XLM-R cross-encoder with a NaN classifier bias: every logit is NaN."""
    d = copy_model(tiny_xlmr_dir, tmp_path_factory.mktemp("nan") / "nan-cross-encoder")
    edit_weights(d, lambda s: s["classifier.out_proj.bias"].fill_(math.nan))
    return d


@pytest.fixture(scope="module")
def inf_cross_encoder(tiny_xlmr_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same with a +inf bias: every logit is +inf (sigmoid would make it 1.0)."""
    d = copy_model(tiny_xlmr_dir, tmp_path_factory.mktemp("inf") / "inf-cross-encoder")
    edit_weights(d, lambda s: s["classifier.out_proj.bias"].fill_(math.inf))
    return d


@pytest.fixture(scope="module")
def nan_ctxl(tiny_ctxl_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny ctxl-v2 model whose lm_head row 0 (the row ctxl-v2 reads) is NaN."""
    d = copy_model(tiny_ctxl_dir, tmp_path_factory.mktemp("nan") / "nan-ctxl-rerank-v2")
    edit_weights(d, lambda s: s["lm_head.weight"][0].fill_(math.nan))
    return d


def assert_refused(reranker: LocalReranker, model: Path, docs: Sequence[str]) -> None:
    """Sync and async calls raise NonFiniteScoreError naming the model and every document."""
    every = tuple(range(len(docs)))
    with pytest.raises(NonFiniteScoreError) as err:
        reranker.rerank(QUERY, docs)
    assert err.value.model == str(model) and err.value.indices == every
    assert repr(str(model)) in str(err.value) and f"{len(docs)} of {len(docs)}" in str(err.value)
    with pytest.raises(NonFiniteScoreError) as aerr:
        asyncio.run(reranker.arerank(QUERY, docs))
    assert aerr.value.indices == every
    assert not reranker.closed  # the model is broken, the reranker is not


def test_nan_cross_encoder_is_refused_sync_and_async(nan_cross_encoder: Path) -> None:
    with LocalReranker(str(nan_cross_encoder), device="cpu") as r:
        assert_refused(r, nan_cross_encoder, DOCS)
        assert_refused(r, nan_cross_encoder, [DOCS[0] + " " + "word " * 600])  # windows too


def test_infinite_logit_is_refused_although_sigmoid_is_finite(inf_cross_encoder: Path) -> None:
    with LocalReranker(str(inf_cross_encoder), device="cpu") as r:
        assert_refused(r, inf_cross_encoder, DOCS)


def test_nan_causal_model_is_refused_sync_and_async(nan_ctxl: Path) -> None:
    with LocalReranker(str(nan_ctxl), device="cpu") as r:
        assert r.model_format == "ctxl-v2"
        assert_refused(r, nan_ctxl, DOCS)


def test_error_is_typed_and_picklable(nan_cross_encoder: Path) -> None:
    with (
        LocalReranker(str(nan_cross_encoder), device="cpu") as r,
        pytest.raises(NonFiniteScoreError) as err,
    ):
        r.rerank(QUERY, DOCS)
    copy = pickle.loads(pickle.dumps(err.value))
    assert isinstance(copy, NonFiniteScoreError)
    assert (copy.model, copy.indices) == (err.value.model, err.value.indices)
    assert str(copy) == str(err.value)


@pytest.fixture
def healthy_xlmr(tiny_xlmr_dir: Path) -> Iterator[LocalReranker]:
    r = LocalReranker(str(tiny_xlmr_dir), device="cpu")
    yield r
    r.close()


def poison_long_inputs(
    monkeypatch: pytest.MonkeyPatch, reranker: LocalReranker, *, longer_than: int, row: float
) -> None:
    """The runner gives ``row`` for every value of the inputs longer than ``longer_than`` tokens
    (a model that overflows only on some documents)."""
    runner = reranker._engine._runner
    assert runner is not None
    real = runner.run

    def run(items: Sequence[EncodedInput], prefix: Any | None = None) -> list[tuple[float, ...]]:
        rows = real(items, prefix)
        return [
            tuple(row for _ in r) if len(x.input_ids) > longer_than else r
            for x, r in zip(items, rows, strict=True)
        ]

    monkeypatch.setattr(runner, "run", run)


def test_only_the_documents_at_fault_are_named_and_other_calls_are_unaffected(
    healthy_xlmr: LocalReranker, monkeypatch: pytest.MonkeyPatch
) -> None:
    long = "The quick brown fox jumps over the lazy dog. " * 4
    docs = [DOCS[0], long, DOCS[1], long + "again", DOCS[2]]
    poison_long_inputs(monkeypatch, healthy_xlmr, longer_than=30, row=math.nan)
    with pytest.raises(NonFiniteScoreError) as err:
        healthy_xlmr.rerank(QUERY, docs)
    assert err.value.indices == (1, 3)
    assert "2 of 5 documents" in str(err.value) and "indices 1, 3" in str(err.value)

    # concurrent callers share the worker's batches: a healthy call still gets finite scores
    outcomes: list[object] = []

    def call(documents: list[str]) -> None:
        try:
            outcomes.append(healthy_xlmr.rerank(QUERY, documents))
        except NonFiniteScoreError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=call, args=(d,)) for d in (docs, DOCS) * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(outcomes) == 8
    good = [o for o in outcomes if not isinstance(o, NonFiniteScoreError)]
    assert len(good) == 4
    for results in good:
        assert isinstance(results, list) and len(results) == len(DOCS)
        assert all(math.isfinite(x.raw_score) for x in results)


def test_inf_minus_inf_is_refused_not_a_value_error(
    tiny_qwen3_reranker_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """qwen3's raw score is logit(yes) - logit(no): both +inf used to make ``math.fsum`` raise
    a raw ``ValueError``; a +inf yes with a finite no used to return raw=inf."""
    with LocalReranker(str(tiny_qwen3_reranker_dir), device="cpu") as r:
        poison_long_inputs(monkeypatch, r, longer_than=0, row=math.inf)
        with pytest.raises(NonFiniteScoreError) as err:
            r.rerank(QUERY, DOCS)
        assert err.value.indices == (0, 1, 2)
        with pytest.raises(NonFiniteScoreError):
            asyncio.run(r.arerank(QUERY, DOCS))


# ---------------------------------------------------------------------------------------------
# model files that cannot be loaded
# ---------------------------------------------------------------------------------------------


def _config(d: Path) -> Path:
    return d / "config.json"


def mismatched_labels(d: Path) -> None:
    edit_json(
        _config(d),
        num_labels=3,
        id2label={"0": "a", "1": "b", "2": "c"},
        label2id={"a": 0, "b": 1, "c": 2},
    )


def unknown_tokenizer_model(d: Path) -> None:
    edit_json(d / "tokenizer.json", model={"type": "Unigram", "vocab": "not a list"})


def broken_shard_index(d: Path) -> None:
    (d / "model.safetensors").rename(d / "model-00001-of-00001.safetensors")
    (d / "model.safetensors.index.json").write_text('{"weight_map": {', encoding="utf-8")


#: (case, how the model directory is broken, the file(s) the message names, the reason in it).
CROSS_ENCODER_CASES: list[tuple[str, Callable[[Path], None], tuple[str, ...], str]] = [
    (
        "config nested 100,000 deep",
        lambda d: _config(d).write_text(deep_json(DEEP)),
        ("config.json",),
        "nested too deeply to parse",
    ),
    (
        "config nested over the cap",
        lambda d: edit_json(_config(d), extra=json.loads(deep_json(2 * MAX_JSON_DEPTH))),
        ("config.json",),
        f"nested more than {MAX_JSON_DEPTH} levels",
    ),
    (
        "config not JSON",
        lambda d: truncate(_config(d), 40),
        ("config.json",),
        "not valid JSON",
    ),
    (
        "config a JSON array",
        lambda d: _config(d).write_text("[1, 2]"),
        ("config.json",),
        "holds an array, not a JSON object",
    ),
    (
        "num_labels 3 over a one-label head",
        mismatched_labels,
        ("model.safetensors", "config.json"),
        "classifier.out_proj.weight is [1, 64] in the weights but [3, 64] in the network",
    ),
    (
        "hidden_size the weights do not have",
        lambda d: edit_json(_config(d), hidden_size=32),
        ("model.safetensors", "config.json"),
        "is [64] in the weights but [32] in the network",
    ),
    (
        "truncated safetensors",
        lambda d: truncate(d / "model.safetensors", 5000),
        ("model.safetensors",),
        "SafetensorError",
    ),
    (
        "safetensors cut inside its header length",
        lambda d: truncate(d / "model.safetensors", 5),
        ("model.safetensors",),
        "SafetensorError",
    ),
    (
        "tokenizer.json nested 100,000 deep",
        lambda d: (d / "tokenizer.json").write_text(deep_json(DEEP)),
        ("tokenizer.json",),
        "nested too deeply to parse",
    ),
    (
        "tokenizer.json not JSON",
        lambda d: truncate(d / "tokenizer.json", 3000),
        ("tokenizer.json",),
        "not valid JSON",
    ),
    (
        "tokenizer.json of another shape",
        lambda d: (d / "tokenizer.json").write_text("{}"),
        ("tokenizer.json",),
        "KeyError",
    ),
    (
        "tokenizer.json with a model tokenizers cannot build",
        unknown_tokenizer_model,
        ("tokenizer.json",),
        "Exception: invalid type",
    ),
    (
        "tokenizer_config.json a JSON array",
        lambda d: (d / "tokenizer_config.json").write_text("[1]"),
        ("tokenizer_config.json",),
        "holds an array, not a JSON object",
    ),
    (
        "shard index not JSON",
        broken_shard_index,
        ("model.safetensors.index.json",),
        "not valid JSON",
    ),
]


def assert_load_error(model_dir: Path, files: Sequence[str], reason: str, **kwargs: Any) -> None:
    with pytest.raises(ModelLoadError) as err:
        LocalReranker(str(model_dir), device="cpu", **kwargs)
    message = str(err.value)
    for name in files:
        assert str(model_dir / name) in message, message
    assert reason in message, message


@pytest.mark.parametrize(
    ("mutate", "files", "reason"),
    [case[1:] for case in CROSS_ENCODER_CASES],
    ids=[case[0] for case in CROSS_ENCODER_CASES],
)
def test_every_failure_to_load_names_the_file_and_the_reason(
    tiny_xlmr_dir: Path,
    tmp_path: Path,
    mutate: Callable[[Path], None],
    files: tuple[str, ...],
    reason: str,
) -> None:
    d = copy_model(tiny_xlmr_dir, tmp_path / "tiny-cross-encoder")
    mutate(d)
    assert_load_error(d, files, reason)


def test_a_jina_checkpoint_that_cannot_load(tiny_jina_dir: Path, tmp_path: Path) -> None:
    """jina checkpoints load through the converter (Checkpoint.state_dict, load_state_dict)."""
    truncated = copy_model(tiny_jina_dir, tmp_path / "truncated-jina-reranker-v2")
    truncate(truncated / "model.safetensors", 5000)
    assert_load_error(truncated, ("model.safetensors",), "SafetensorError")

    labels = copy_model(tiny_jina_dir, tmp_path / "labels-jina-reranker-v2")
    mismatched_labels(labels)
    assert_load_error(
        labels,
        ("model.safetensors", "config.json"),
        "classifier.out_proj.weight is [1, 64] in the weights but [3, 64] in the network",
    )

    bad_type = copy_model(tiny_jina_dir, tmp_path / "typed-jina-reranker-v2")
    edit_json(_config(bad_type), hidden_size="sixty-four")
    assert_load_error(bad_type, ("config.json",), "hidden_size")


def test_a_causal_model_that_cannot_load(tiny_ctxl_dir: Path, tmp_path: Path) -> None:
    truncated = copy_model(tiny_ctxl_dir, tmp_path / "truncated-ctxl-rerank-v2")
    truncate(truncated / "model.safetensors", 5000)
    assert_load_error(truncated, ("model.safetensors",), "SafetensorError")

    deep = copy_model(tiny_ctxl_dir, tmp_path / "deep-ctxl-rerank-v2")
    _config(deep).write_text(deep_json(DEEP))
    assert_load_error(deep, ("config.json",), "nested too deeply to parse")


def test_a_truncated_pickle_checkpoint(tiny_xlmr_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    d = copy_model(tiny_xlmr_dir, tmp_path / "pickled-cross-encoder")
    torch.save(load_file(str(d / "model.safetensors")), str(d / "pytorch_model.bin"))
    (d / "model.safetensors").unlink()
    truncate(d / "pytorch_model.bin", 4000)
    assert_load_error(d, ("pytorch_model.bin",), "Error", allow_pickle=True)


def test_architectures_that_are_not_a_list(tiny_xlmr_dir: Path, tmp_path: Path) -> None:
    """Detection reads ``architectures``: a number there used to raise a raw TypeError."""
    d = copy_model(tiny_xlmr_dir, tmp_path / "odd-architectures")
    edit_json(_config(d), architectures=5)
    with pytest.raises(ModelLoadError, match="cannot tell which scoring format"):
        LocalReranker(str(d), device="cpu")
    with LocalReranker(str(d), device="cpu", model_format="cross-encoder") as r:
        assert all(math.isfinite(x.raw_score) for x in by_index(r.rerank(QUERY, DOCS)))


def test_nesting_depth_counts_without_recursion() -> None:
    assert [nesting_depth(v) for v in (1, "x", {}, [], {"a": [1, {"b": []}]})] == [0, 0, 1, 1, 4]
    assert nesting_depth(json.loads(deep_json(500)), limit=10) == 11  # stops past the limit
