"""The Ray engine against the in-process engine on the same work (``run --engine ray``).

    python -m benchmarks.scale_out            # CPU: 30 Medline queries x BM25 top 100, ~5 min
    python -m benchmarks.scale_out --formats cross-encoder,ctxl-v2 --queries 30 --k 100

Real text: the first ``--queries`` judged queries of ../shared/data/medline (``--data``), each
with its BM25 top ``--k`` (the default first stage), reranked by a benchmark model
(benchmarks/models.py: random weights, real architecture at CPU scale) through the code of
``rerank-integrations run`` (:func:`rerank_integrations.ir.pipeline.rerank_model`), one phase
after another in ONE process, phases alternated over ``--repeats`` rounds (best of N):

- ``in-process``: the default engine (one reranker, asyncio, this process);
- ``ray AxC``: the Ray engine with A actors of C CPUs each, on a local Ray cluster of
  ``--ray-cpus`` CPUs started once before the phases (its start-up is reported apart: a user
  pays it once per cluster, not per run).

Each phase's time is the whole rerank step: building the reranker (loading the model; on Ray,
starting the actors, each loading its own) and scoring every query into the run file.
Reported: seconds, documents/second, the ratio to in-process (time / in-process time; 1.20 =
20 % overhead) and whether the run file is byte-identical to the in-process one.
Writes ``benchmarks/results/scale-out-<device>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.environment import offline_logging

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "medline"
log = logging.getLogger("benchmarks.scale_out")


def _jobs(data: Path, queries: int, k: int) -> list[Any]:
    from rerank_integrations.ir.pipeline import (
        candidates_for,
        load_dataset,
        make_jobs,
        select_queries,
    )

    dataset = load_dataset(data=str(data))
    qids = select_queries(dataset, max_queries=queries)
    return make_jobs(dataset, qids, candidates_for(dataset, qids, candidates=None, k=k))


def _phase(config: dict[str, Any], jobs: list[Any], out: Path, ray: Any) -> float:
    from rerank_integrations.ir.pipeline import rerank_model

    t0 = time.perf_counter()
    rerank_model(
        config, jobs, out, tag="bench", concurrency=16, resume=False, progress=None, ray=ray
    )
    return time.perf_counter() - t0


def run_format(fmt: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from benchmarks import models
    from rerank_integrations.ir.ray_engine import RayOptions

    mdir = models.build_model(fmt, "cpu", Path(args.model_dir), device="cpu", dtype="float32")
    config = {"backend": "local", "model": str(mdir), "model_format": fmt, "device": "cpu"}
    jobs = _jobs(Path(args.data), args.queries, args.k)
    n_docs = sum(len(j.doc_ids) for j in jobs)
    phases: dict[str, Any] = {"in-process": None}
    for shape in args.shapes.split(","):
        actors, cpus = shape.split("x")
        phases[f"ray {shape}"] = RayOptions(actors=int(actors), cpus_per_actor=float(cpus))
    times: dict[str, list[float]] = {name: [] for name in phases}
    names = list(phases)
    for rnd in range(args.repeats):
        for name in names if rnd % 2 == 0 else names[::-1]:  # alternate against drift
            out = work / f"{fmt}-{name.replace(' ', '-')}.trec"
            times[name].append(_phase(config, jobs, out, phases[name]))
            log.info("%s %s round %d: %.2fs", fmt, name, rnd, times[name][-1])
    base_file = (work / f"{fmt}-in-process.trec").read_bytes()
    base = min(times["in-process"])
    rows = []
    for name in names:
        best = min(times[name])
        same = (work / f"{fmt}-{name.replace(' ', '-')}.trec").read_bytes() == base_file
        rows.append(
            {
                "phase": name,
                "seconds": best,
                "docs_s": n_docs / best,
                "ratio": best / base,
                "same_bytes": same,
                "all_seconds": times[name],
            }
        )
    return {"format": fmt, "queries": len(jobs), "docs_per_query": args.k, "rows": rows}


def render(results: list[dict[str, Any]], ray_start: float) -> str:
    lines = [
        "| format | queries x docs | engine | seconds | docs/s | time vs in-process "
        "| same bytes as in-process |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for row in r["rows"]:
            lines.append(
                f"| {r['format']} | {r['queries']} x {r['docs_per_query']} | {row['phase']} "
                f"| {row['seconds']:.1f} | {row['docs_s']:.1f} | **{row['ratio']:.2f}** "
                f"| {row['same_bytes']} |"
            )
    lines.append(f"\nLocal Ray cluster start-up (once, not in the phases): {ray_start:.1f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--formats", default="cross-encoder")
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--queries", type=int, default=30)
    p.add_argument("--k", type=int, default=100, help="BM25 candidates per query")
    p.add_argument("--shapes", default="1x2,1x1,2x1", help="Ray phases: ACTORSxCPUS, ...")
    p.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--model-dir", default=str(ROOT / ".cache" / "bench-models"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    if not Path(args.data, "corpus.jsonl").is_file():
        p.error(f"--data {args.data}: no corpus.jsonl (a BEIR folder, e.g. ../shared/data/medline)")
    offline_logging()
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=args.ray_cpus, include_dashboard=False, logging_level=logging.WARNING)
    ray_start = time.perf_counter() - t0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results = [run_format(f, args, Path(tmp)) for f in args.formats.split(",") if f]
    finally:
        ray.shutdown()
    table = render(results, ray_start)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "command": " ".join(["python -m benchmarks.scale_out", *(argv or sys.argv[1:])]),
        "cpus": os.cpu_count(),
        "ray_start_seconds": ray_start,
        "results": results,
        "seconds": time.perf_counter() - t0,
    }
    (out / "scale-out-cpu.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    (out / "scale-out-cpu.md").write_text(table + "\n", encoding="utf-8")
    sys.stdout.write(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
