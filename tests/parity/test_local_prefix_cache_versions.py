"""The causal runner on both transformers majors the ``local`` extra allows.

transformers 5 (the test venv, CI's newest) takes the KV cache as ``cache``; transformers 4 (the
reference venv, ``$RERANK_REF_PYTHON``, constraints-ref.txt) only as ``past_key_values``. The
runner picks the name from the model's signature (runners.cache_kwarg). This runs OUR package in
the reference venv (tests/parity/reference/run_local_runner.py) on the SAME tiny models and
checks: the old name is used there, no deprecation warning on either side, prefix-cached scores
equal the no-cache ones, and equal the transformers 5 scores.

Without ``RERANK_REF_PYTHON`` the test is skipped, unless ``RERANK_REQUIRE_REF=1`` (``make test``
and CI set both), in which case it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from rerank_integrations import LocalReranker

TOL = 1e-5  # fp32, same kernels: the two majors agree to the bit on the tiny models today
SCRIPT = Path(__file__).parent / "reference" / "run_local_runner.py"
SRC = Path(__file__).resolve().parents[2] / "src"
QUERY = "What is the capital of France?"
DOCS = [
    "Paris is the capital and largest city of France.",
    "Berlin is the capital of Germany!\n",
    "Why?",
    "The quick brown fox jumps over the lazy dog. " * 6,
    "¿Dónde está la biblioteca?",
]


def _ref_python() -> str:
    ref = os.environ.get("RERANK_REF_PYTHON", "")
    if not ref:
        if os.environ.get("RERANK_REQUIRE_REF") == "1":
            pytest.fail("RERANK_REQUIRE_REF=1 but RERANK_REF_PYTHON is not set (run `make test`)")
        pytest.skip(
            "transformers 4 needs the reference venv: set RERANK_REF_PYTHON to "
            ".venv-ref/bin/python (`make ref-env`), as `make test` does"
        )
    if not Path(ref).exists():
        pytest.fail(f"RERANK_REF_PYTHON={ref!r} does not exist (run `make ref-env`)")
    return ref


def _ours(model: str) -> list[float]:
    with LocalReranker(model, dtype="float32") as r, warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        return [x.raw_score for x in sorted(r.rerank(QUERY, DOCS), key=lambda x: x.index)]


def test_prefix_cache_on_transformers_4_and_5(
    tiny_ctxl_dir: Path, tiny_mxbai_dir: Path, tiny_qwen3_reranker_dir: Path
) -> None:
    ref = _ref_python()
    models = [str(p) for p in (tiny_ctxl_dir, tiny_mxbai_dir, tiny_qwen3_reranker_dir)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env["PYTHONPATH"] = str(SRC)
    proc = subprocess.run(
        [ref, str(SCRIPT)],
        input=json.dumps({"models": models, "query": QUERY, "documents": DOCS}),
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"run_local_runner.py failed (rc={proc.returncode}):\n{proc.stderr[-4000:]}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["transformers"].startswith("4."), out["transformers"]
    for model in models:
        got = out[model]
        assert got["cache_name"] == "past_key_values"
        assert got["warnings"] == []
        assert got["prefixes"] >= 1  # the prefix path really ran
        assert max(abs(a - b) for a, b in zip(got["cached"], got["plain"], strict=True)) <= TOL
        ours = _ours(model)
        assert max(abs(a - b) for a, b in zip(got["cached"], ours, strict=True)) <= TOL
