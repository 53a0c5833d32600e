"""The GPU benchmark profile cannot rot: ``bench --profile gpu --smoke`` runs its whole code path
on the CPU with tiny configs of the real architectures (benchmarks/bench.py, ``FakeCudaOps``).

Every format, ours and the reference, in bf16, MFU on every row, W4 for every format and the OOM
back-off step; only the torch.cuda calls without a CPU equivalent are stand-ins (and the test
checks that they were called, i.e. that the GPU branch ran, not the CPU one). The device script
benchmarks/gpu_run.sh calls the same ``main`` with the same flags minus ``--smoke``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("sentence_transformers")

FORMATS = ("ctxl-v2", "mxbai-v2", "qwen3", "cross-encoder")
SmokeResult = tuple[dict[str, Any], str]  # the result JSON and the rendered tables


@pytest.fixture(scope="module")
def smoke_result(tmp_path_factory: pytest.TempPathFactory) -> SmokeResult:
    from benchmarks.bench import main

    out = tmp_path_factory.mktemp("gpu_smoke_out")
    models = tmp_path_factory.mktemp("gpu_smoke_models")
    argv = [
        "--profile",
        "gpu",
        "--smoke",
        "--parts",
        "local",
        "--workloads",
        "W1,W2",
        "--max-docs",
        "4",
        "--out",
        str(out),
        "--model-dir",
        str(models),
    ]
    assert main(argv) == 0
    res = json.loads((out / "gpu-smoke.json").read_text(encoding="utf-8"))
    return res, (out / "gpu-smoke.md").read_text(encoding="utf-8")


def test_every_format_and_workload_ran_on_the_gpu_path(smoke_result: SmokeResult) -> None:
    res, _ = smoke_result
    cells = {(r["format"], r["workload"]) for r in res["local"]}
    assert cells == {(f, w) for f in FORMATS for w in ("W1", "W2")}
    for r in res["local"]:
        assert r["profile"] == "gpu-smoke" and r["dtype"] == "bfloat16"
        assert r["docs"] == 4 and r["ratio"] > 0
        for key in ("ours_mfu", "ref_mfu"):  # the MFU arithmetic
            assert math.isfinite(r[key]) and r[key] > 0
            side = "ours_s" if key == "ours_mfu" else "ref_s"
            assert r[key] == pytest.approx(r["model_tflop"] / r[side] / 790.0)
        assert "int8_s" not in r  # int8 is a CPU-profile column only
        # ours and the reference score alike (bf16: a few bf16 steps of the raw score)
        assert r["max_abs_delta"] <= 5e-3, r
    refs = {r["format"]: r["reference"] for r in res["local"]}
    assert refs["cross-encoder"] == "sentence-transformers CrossEncoder"
    # the GPU image has transformers 5 (no mxbai-rerank): the mxbai reference falls back
    assert refs["mxbai-v2"].startswith("plain recipe, mxbai token-id assembly")


def test_the_cuda_branch_ran_with_stand_ins(smoke_result: SmokeResult) -> None:
    res, table = smoke_result
    calls = res["smoke_cuda_calls"]
    n_cells = len(res["local"])
    assert calls["synchronize"] >= 2 * 2 * n_cells  # before and after every timed call
    assert calls["reset_peak"] >= 2 * n_cells and calls["max_allocated"] >= 2 * n_cells
    assert calls["memory_cap"] == 1
    assert res["machine"]["gpu"].startswith("none (--smoke")
    assert "MFU" in table and "OOM back-off" in table


def test_w4_runs_for_every_format(smoke_result: SmokeResult) -> None:
    res, _ = smoke_result
    assert {r["format"] for r in res["w4"]} == set(FORMATS)
    for r in res["w4"]:
        assert r["calls"] == 16 and r["same_order"] and r["max_abs_delta"] == 0.0


def test_oom_back_off_halves_and_scores_like_the_normal_run(
    smoke_result: SmokeResult,
) -> None:
    res, _ = smoke_result
    (row,) = res["oom"]
    assert row["format"] == "ctxl-v2" and row["ok"], row
    assert row["first_batch"] == row["docs"]  # one oversized batch first
    assert row["oom_batches"] >= 1 and row["largest_fitting_batch"] < row["docs"]
    assert row["max_abs_delta"] <= 5e-3


def test_smoke_is_refused_outside_the_gpu_profile() -> None:
    from benchmarks.bench import main

    with pytest.raises(SystemExit):
        main(["--profile", "cpu", "--smoke"])
