"""LocalReranker end to end on tiny random-weight models (built by tests/helpers/tiny_models.py).

Covers: loading + detection for every format, batch invariance, order restoration, shared-prefix
reuse, thread safety, arerank concurrency (shared batches, loop never blocked), the truncation
warning, instruction handling, safe loading (safetensors only, no remote code), OOM back-off
through the real batch runner, lifecycle and config round trip. Parity with the reference
implementations lives in the parity tests (tests/parity/).
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from rerank_integrations import LocalReranker, Reranker  # noqa: E402
from rerank_integrations.backends.local.engine import (  # noqa: E402
    EncodedInput,
    EngineSettings,
    LocalEngine,
)
from rerank_integrations.errors import (  # noqa: E402
    ModelLoadError,
    OutOfMemoryError,
    RemoteError,
    RerankerClosedError,
    RerankInputError,
    UnsupportedFeatureError,
)
from rerank_integrations.validation import validate_request  # noqa: E402

QUERY = "What is the capital of France?"
DOCS = [
    "Paris is the capital and largest city of France.",
    "Berlin is the capital of Germany!\n",
    "Why?",
    "The quick brown fox jumps over the lazy dog. " * 6,
    "¿Dónde está la biblioteca?",
    "Green tea contains antioxidants called catechins.",
    "yes no 0 1.",
]
TOL = 1e-5


@pytest.fixture(scope="module")
def ctxl(tiny_ctxl_dir: Path) -> Iterator[LocalReranker]:
    r = LocalReranker(str(tiny_ctxl_dir), dtype="float32")
    yield r
    r.close()


@pytest.fixture(scope="module")
def mxbai(tiny_mxbai_dir: Path) -> Iterator[LocalReranker]:
    r = LocalReranker(str(tiny_mxbai_dir), dtype="float32")
    yield r
    r.close()


@pytest.fixture(scope="module")
def qwen3(tiny_qwen3_reranker_dir: Path) -> Iterator[LocalReranker]:
    r = LocalReranker(str(tiny_qwen3_reranker_dir), dtype="float32")
    yield r
    r.close()


@pytest.fixture(scope="module")
def xlmr(tiny_xlmr_dir: Path) -> Iterator[LocalReranker]:
    r = LocalReranker(str(tiny_xlmr_dir), dtype="float32")
    yield r
    r.close()


@pytest.fixture(params=["ctxl", "mxbai", "qwen3", "xlmr"])
def any_reranker(request: pytest.FixtureRequest) -> LocalReranker:
    r: LocalReranker = request.getfixturevalue(request.param)
    return r


def by_index(results: Sequence[Any]) -> dict[int, float]:
    return {r.index: r.raw_score for r in results}


def max_diff(a: dict[int, float], b: dict[int, float]) -> float:
    assert a.keys() == b.keys()
    return max(abs(a[i] - b[i]) for i in a)


# ---------------------------------------------------------------------------------------------
# loading, detection, config
# ---------------------------------------------------------------------------------------------


def test_formats_detected_from_the_model(
    ctxl: LocalReranker, mxbai: LocalReranker, qwen3: LocalReranker, xlmr: LocalReranker
) -> None:
    assert (ctxl.model_format, mxbai.model_format, qwen3.model_format, xlmr.model_format) == (
        "ctxl-v2", "mxbai-v2", "qwen3", "cross-encoder",
    )
    assert ctxl.device == "cpu" and ctxl.torch_dtype == "float32"
    assert xlmr.max_length == 256  # the tokenizer / model window


def test_jina_checkpoint_loads_without_remote_code(tiny_jina_dir: Path) -> None:
    with LocalReranker(str(tiny_jina_dir)) as r:
        assert r.model_format == "cross-encoder"
        results = r.rerank(QUERY, DOCS[:3])
        assert len(results) == 3 and all(0 < x.relevance_score < 1 for x in results)


def test_undetectable_model_lists_formats(tmp_path: Path, tiny_mxbai_dir: Path) -> None:
    plain = tmp_path / "some-qwen2"
    shutil.copytree(tiny_mxbai_dir, plain)
    with pytest.raises(ModelLoadError) as err:
        LocalReranker(str(plain))
    assert "'ctxl-v2'" in str(err.value) and "cross-encoder" in str(err.value)
    with LocalReranker(str(plain), model_format="mxbai-v2") as r:  # explicit format works
        assert r.model_format == "mxbai-v2"


def test_to_config_round_trip(mxbai: LocalReranker, tiny_mxbai_dir: Path) -> None:
    cfg = mxbai.to_config()
    assert json.loads(json.dumps(cfg)) == cfg
    assert cfg["backend"] == "local" and cfg["model"] == str(tiny_mxbai_dir)
    assert cfg["dtype"] == "float32" and cfg["instruction_mode"] == "error"
    rebuilt = Reranker.from_config(cfg)
    try:
        assert isinstance(rebuilt, LocalReranker)
        assert rebuilt.to_config() == cfg
        again = by_index(rebuilt.rerank(QUERY, DOCS))
        assert max_diff(again, by_index(mxbai.rerank(QUERY, DOCS))) < TOL
    finally:
        rebuilt.close()


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"model_format": "bogus"}, "model_format"),
        ({"batch_size": 0}, "batch_size"),
        ({"token_budget": -1}, "token_budget"),
        ({"max_length": 0}, "max_length"),
        ({"instruction_mode": "ignore"}, "instruction_mode"),
        ({"dtype": "int4"}, "dtype"),
        ({"max_length": 10**6}, "max_length"),
    ],
)
def test_bad_constructor_arguments(tiny_xlmr_dir: Path, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(RerankInputError) as err:
        LocalReranker(str(tiny_xlmr_dir), **kwargs)
    assert err.value.field == field


def test_package_import_stays_light() -> None:
    code = (
        "import sys, rerank_integrations, rerank_integrations.backends.local, "
        "rerank_integrations.backends.local.formats, rerank_integrations.backends.local.engine, "
        "rerank_integrations.backends.local.loading, rerank_integrations.backends.local.runners, "
        "rerank_integrations.backends.local.reranker, rerank_integrations.backends.local.jina, "
        "rerank_integrations.backends.local.tokenizer, "
        "rerank_integrations.backends.local.checkpoint\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------
# invariance, order, prefix reuse
# ---------------------------------------------------------------------------------------------


def test_batch_invariance_and_order(any_reranker: LocalReranker) -> None:
    full = by_index(any_reranker.rerank(QUERY, DOCS))
    singles = {i: any_reranker.rerank(QUERY, [d])[0].raw_score for i, d in enumerate(DOCS)}
    assert max_diff(full, singles) <= TOL  # order restored; independent of the other docs
    reversed_docs = list(reversed(DOCS))
    rev = by_index(any_reranker.rerank(QUERY, reversed_docs))
    assert max_diff(full, {len(DOCS) - 1 - i: s for i, s in rev.items()}) <= TOL


@pytest.mark.parametrize("batch_size,token_budget", [(1, None), (2, None), (64, 64)])
def test_batch_size_and_budget_do_not_change_scores(
    tiny_qwen3_reranker_dir: Path, qwen3: LocalReranker, batch_size: int, token_budget: int | None
) -> None:
    with LocalReranker(
        str(tiny_qwen3_reranker_dir), batch_size=batch_size, token_budget=token_budget
    ) as r:
        assert max_diff(by_index(r.rerank(QUERY, DOCS)), by_index(qwen3.rerank(QUERY, DOCS))) <= TOL


def test_prefix_caching_matches_full_forward(tiny_mxbai_dir: Path, mxbai: LocalReranker) -> None:
    with LocalReranker(str(tiny_mxbai_dir), prefix_caching=False) as plain:
        for instruction in (None, "Prefer official sources."):
            a = by_index(mxbai.rerank(QUERY, DOCS, instruction=instruction))
            b = by_index(plain.rerank(QUERY, DOCS, instruction=instruction))
            assert max_diff(a, b) <= TOL
        assert mxbai._engine._prefixes and not plain._engine._prefixes  # both paths really ran


def test_scores_follow_the_formula_shape(
    ctxl: LocalReranker, mxbai: LocalReranker, qwen3: LocalReranker, xlmr: LocalReranker
) -> None:
    import math

    for x in ctxl.rerank(QUERY, DOCS):
        assert x.raw_score == torch.tensor(x.raw_score).to(torch.bfloat16).float().item()
        assert x.relevance_score == pytest.approx(1 / (1 + math.exp(-x.raw_score)))
    for x in mxbai.rerank(QUERY, DOCS):
        assert x.relevance_score == pytest.approx(1 / (1 + math.exp(-(x.raw_score - 6.0))))
    for r in (qwen3, xlmr):
        for x in r.rerank(QUERY, DOCS):
            assert x.relevance_score == pytest.approx(1 / (1 + math.exp(-x.raw_score)))


def test_instruction_and_metadata_change_the_prompt(ctxl: LocalReranker) -> None:
    base = by_index(ctxl.rerank(QUERY, DOCS))
    with_instruction = by_index(ctxl.rerank(QUERY, DOCS, instruction="Prefer recent documents."))
    with_meta = by_index(ctxl.rerank(QUERY, DOCS, metadata=["date: 2024-01-01"] * len(DOCS)))
    assert max_diff(base, with_instruction) > 1e-3
    assert max_diff(base, with_meta) > 1e-3
    # empty metadata strings are the same as no metadata
    assert max_diff(base, by_index(ctxl.rerank(QUERY, DOCS, metadata=[""] * len(DOCS)))) == 0


# ---------------------------------------------------------------------------------------------
# instructions on cross-encoders, truncation warning
# ---------------------------------------------------------------------------------------------


def test_cross_encoder_instruction_error_or_prepend(
    xlmr: LocalReranker, tiny_xlmr_dir: Path
) -> None:
    with pytest.raises(UnsupportedFeatureError) as err:
        xlmr.rerank(QUERY, DOCS, instruction="Prefer recent")
    assert "instruction_mode='prepend'" in str(err.value)
    with LocalReranker(str(tiny_xlmr_dir), instruction_mode="prepend") as r:
        prepended = by_index(r.rerank(QUERY, DOCS, instruction="Prefer recent"))
        manual = by_index(r.rerank(f"Prefer recent {QUERY}", DOCS))
        assert max_diff(prepended, manual) == 0
        assert max_diff(prepended, by_index(r.rerank(QUERY, DOCS))) > 1e-6


async def test_cross_encoder_instruction_error_async(xlmr: LocalReranker) -> None:
    with pytest.raises(UnsupportedFeatureError):
        await xlmr.arerank(QUERY, DOCS, instruction="Prefer recent")


def test_one_truncation_warning_per_call(
    tiny_ctxl_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    long_doc = "The quick brown fox jumps over the lazy dog. " * 60
    with LocalReranker(str(tiny_ctxl_dir), max_length=96) as r:
        with caplog.at_level(logging.WARNING, logger="rerank_integrations"):
            results = r.rerank(QUERY, [long_doc, "short", long_doc, long_doc])
        warnings = [rec for rec in caplog.records if rec.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "3 of 4 documents were truncated" in warnings[0].getMessage()
        assert len(results) == 4
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="rerank_integrations"):
            r.rerank(QUERY, ["short"])
        assert not [rec for rec in caplog.records if rec.levelno == logging.WARNING]


def test_cross_encoder_long_documents_use_max_over_windows(tiny_xlmr_dir: Path) -> None:
    with LocalReranker(str(tiny_xlmr_dir), max_length=48) as r:
        doc = " ".join(DOCS * 4)
        encoded = r._encode(validate_request(QUERY, [doc]))
        assert len(encoded.documents[0].inputs) > 1
        windows = [r._engine.score([w])[0][0] for w in encoded.documents[0].inputs]
        assert r.rerank(QUERY, [doc])[0].raw_score == pytest.approx(max(windows), abs=TOL)


# ---------------------------------------------------------------------------------------------
# concurrency
# ---------------------------------------------------------------------------------------------


def test_threads_share_one_reranker(mxbai: LocalReranker) -> None:
    expected = by_index(mxbai.rerank(QUERY, DOCS))
    queries = [(QUERY, DOCS), ("Where is Berlin?", DOCS[::-1])]
    expected2 = by_index(mxbai.rerank(*queries[1]))
    errors: list[BaseException] = []
    results: list[tuple[int, dict[int, float]]] = []

    def work(k: int) -> None:
        try:
            for _ in range(3):
                q, d = queries[k % 2]
                results.append((k % 2, by_index(mxbai.rerank(q, d))))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 18
    for which, scores in results:
        assert max_diff(scores, expected if which == 0 else expected2) <= TOL


async def test_arerank_concurrent_callers_match_sequential(qwen3: LocalReranker) -> None:
    expected = by_index(qwen3.rerank(QUERY, DOCS))
    ticks = 0
    stop = False

    async def ticker() -> None:
        nonlocal ticks
        while not stop:
            ticks += 1
            await asyncio.sleep(0.001)

    tick_task = asyncio.create_task(ticker())
    outs = await asyncio.gather(*(qwen3.arerank(QUERY, DOCS) for _ in range(8)))
    stop = True
    await tick_task
    for out in outs:
        assert max_diff(by_index(out), expected) <= TOL
    assert ticks > 1  # the event loop kept running while the model worked


class _GatedRunner:
    """A fake batch runner: the first run blocks until released, so later jobs queue up."""

    supports_prefix = False

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()
        self.batches: list[int] = []

    def run(self, items: Sequence[EncodedInput], prefix: Any = None) -> list[tuple[float, ...]]:
        self.started.set()
        self.gate.wait(10)
        self.batches.append(len(items))
        return [(float(sum(x.input_ids)),) for x in items]

    def prepare_prefix(self, prefix_ids: Sequence[int]) -> Any:
        raise NotImplementedError

    def is_oom(self, exc: BaseException) -> bool:
        return False

    def clear_cache(self) -> None:
        pass

    def release(self) -> None:
        pass


def test_pending_jobs_are_merged_into_shared_batches() -> None:
    runner = _GatedRunner()
    engine = LocalEngine(runner, EngineSettings(token_budget=10_000, max_batch_size=64))
    first = engine.submit([EncodedInput((1, 2))])
    assert runner.started.wait(5)
    later = [engine.submit([EncodedInput((i,)), EncodedInput((i, i))]) for i in range(5)]
    runner.gate.set()
    assert first.result(5) == [(3.0,)]
    for i, fut in enumerate(later):
        assert fut.result(5) == [(float(i),), (float(2 * i),)]
    assert engine.stats["jobs"] == 6 and engine.stats["cycles"] == 2
    assert runner.batches[1:] == [10]  # the 5 queued jobs ran as ONE batch
    engine.close()
    with pytest.raises(RerankerClosedError):
        engine.submit([EncodedInput((1,))])


async def test_arerank_callers_are_batched_together(tiny_mxbai_dir: Path) -> None:
    with LocalReranker(str(tiny_mxbai_dir)) as r:
        expected = by_index(r.rerank(QUERY, DOCS))
        before = dict(r._engine.stats)
        outs = await asyncio.gather(*(r.arerank(QUERY, DOCS) for _ in range(12)))
        for out in outs:
            assert max_diff(by_index(out), expected) <= TOL
        jobs = r._engine.stats["jobs"] - before["jobs"]
        cycles = r._engine.stats["cycles"] - before["cycles"]
        assert jobs == 12 and cycles <= jobs


# ---------------------------------------------------------------------------------------------
# OOM back-off through the real runner
# ---------------------------------------------------------------------------------------------


def _oom() -> BaseException:
    oom_type = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return oom_type("CUDA out of memory (injected)")


def test_oom_halves_the_batch_and_keeps_scores(tiny_ctxl_dir: Path, ctxl: LocalReranker) -> None:
    expected = by_index(ctxl.rerank(QUERY, DOCS))
    with LocalReranker(str(tiny_ctxl_dir), prefix_caching=False) as r:
        runner = r._engine._runner
        assert runner is not None
        real_run = runner.run
        sizes: list[int] = []

        def flaky(items: Sequence[EncodedInput], prefix: Any = None) -> list[tuple[float, ...]]:
            sizes.append(len(items))
            if len(items) > 2:
                raise _oom()
            return real_run(items, prefix)

        runner.run = flaky  # type: ignore[method-assign]
        got = by_index(r.rerank(QUERY, DOCS))
        assert max_diff(got, expected) <= TOL
        assert sizes[0] == len(DOCS) and max(s for s in sizes[1:]) < len(DOCS)

        def always(items: Sequence[EncodedInput], prefix: Any = None) -> list[tuple[float, ...]]:
            raise _oom()

        runner.run = always  # type: ignore[method-assign]
        with pytest.raises(OutOfMemoryError):
            r.rerank(QUERY, DOCS)
        runner.run = real_run  # type: ignore[method-assign]
        assert max_diff(by_index(r.rerank(QUERY, DOCS)), expected) <= TOL  # still usable


# ---------------------------------------------------------------------------------------------
# safe loading
# ---------------------------------------------------------------------------------------------


def test_pickle_weights_refused_unless_allowed(tmp_path: Path, tiny_xlmr_dir: Path) -> None:
    from safetensors.torch import load_file

    d = tmp_path / "pickled-cross-encoder"
    shutil.copytree(tiny_xlmr_dir, d)
    state = load_file(str(d / "model.safetensors"))
    torch.save(state, str(d / "pytorch_model.bin"))
    (d / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError) as err:
        LocalReranker(str(d))
    assert "allow_pickle=True" in str(err.value)
    with LocalReranker(str(d), allow_pickle=True) as r, LocalReranker(str(tiny_xlmr_dir)) as ref:
        assert max_diff(by_index(r.rerank(QUERY, DOCS)), by_index(ref.rerank(QUERY, DOCS))) < TOL


def test_remote_code_refused_by_default(tmp_path: Path, tiny_xlmr_dir: Path) -> None:
    d = tmp_path / "custom-code-reranker"
    shutil.copytree(tiny_xlmr_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["model_type"] = "my-custom-reranker"
    cfg["auto_map"] = {"AutoModelForSequenceClassification": "modeling_custom.CustomModel"}
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError) as err:
        LocalReranker(str(d), model_format="cross-encoder")
    assert "trust_remote_code=True" in str(err.value)


def test_missing_model_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError):
        LocalReranker(str(tmp_path / "does-not-exist-mxbai-rerank-v2"))


# ---------------------------------------------------------------------------------------------
# lifecycle
# ---------------------------------------------------------------------------------------------


def test_close_is_idempotent_and_final(tiny_xlmr_dir: Path) -> None:
    r = LocalReranker(str(tiny_xlmr_dir))
    assert r.rerank(QUERY, DOCS[:2])
    r.close()
    r.close()
    assert r._engine._runner is None  # model released
    assert r.closed
    for documents in (DOCS[:2], []):  # close() is final, even for an empty call
        with pytest.raises(RerankerClosedError) as info:
            r.rerank(QUERY, documents)
        assert not isinstance(info.value, RemoteError)


def test_top_n_and_sorting(mxbai: LocalReranker) -> None:
    results = mxbai.rerank(QUERY, DOCS, top_n=3)
    assert len(results) == 3
    scores = [x.relevance_score for x in results]
    assert scores == sorted(scores, reverse=True)


# ---------------------------------------------------------------------------------------------
# GPU
# ---------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("attn", [None, "sdpa", "eager"])
def test_gpu_bf16_matches_cpu_fp32(
    tiny_qwen3_reranker_dir: Path, qwen3: LocalReranker, attn: str | None
) -> None:
    with LocalReranker(str(tiny_qwen3_reranker_dir), attn_implementation=attn) as gpu:
        assert gpu.device.startswith("cuda") and gpu.torch_dtype in ("bfloat16", "float16")
        got = by_index(gpu.rerank(QUERY, DOCS))
        assert max_diff(got, by_index(qwen3.rerank(QUERY, DOCS))) < 0.1
        singles = {i: gpu.rerank(QUERY, [d])[0].raw_score for i, d in enumerate(DOCS)}
        assert max_diff(got, singles) < 0.05


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_fp32_matches_cpu(tiny_mxbai_dir: Path, mxbai: LocalReranker) -> None:
    with LocalReranker(str(tiny_mxbai_dir), dtype="float32", attn_implementation="sdpa") as gpu:
        t0 = time.perf_counter()
        got = by_index(gpu.rerank(QUERY, DOCS))
        assert time.perf_counter() - t0 < 60
        assert max_diff(got, by_index(mxbai.rerank(QUERY, DOCS))) < 1e-3


# ---------------------------------------------------------------------------------------------
# the example
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["tiny_mxbai_dir", "tiny_jina_dir"])
def test_example_runs_with_a_local_directory(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    import os

    model_dir: Path = request.getfixturevalue(fixture)
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "examples/local_rerank.py", "--model", str(model_dir), "--top-n", "3"],
        capture_output=True, text=True, timeout=300, cwd=root,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stderr
    assert "format: " in out.stdout and "device: cpu" in out.stdout
    ranks = [line.split()[0] for line in out.stdout.splitlines() if line[:4].strip().isdigit()]
    assert ranks == ["1", "2", "3"]
    assert "4 concurrent arerank calls, 24 documents" in out.stdout
