"""Bulk reranking (``rerank-integrations run``): concurrent queries vs one query at a time.

    python -m benchmarks.bulk                      # CPU, ~2 minutes on 2 cores
    python -m benchmarks.bulk --formats ctxl-v2 --queries 32 --concurrency 4,16

A BEIR-shaped data set is generated (multilingual passages from the workload word list,
token lengths log-normal with median 120, clipped to [16, 512]; each query gets ``--k``
candidates from a synthetic first-stage run) and reranked with the benchmark models
(benchmarks/models.py, random weights, real architectures at CPU scale) through the same
code as the CLI (:mod:`rerank_integrations.ir`). Side by side, on ONE loaded reranker, in one
process, phases alternated over ``--repeats`` rounds (best of N per phase):

- ``loop``: ``for q in queries: reranker.rerank(q, docs)`` (what a user writes today);
- ``bulk cN``: :func:`~rerank_integrations.ir.bulk.rerank_to_file` with ``concurrency=N``
  (asyncio + ``arerank``), deterministic as ``run`` is: each query's documents are batched
  only among themselves;
- ``merged cN``: the same with ``deterministic=False``: the local engine merges the pending
  queries into shared batches (what ``run`` did before; the price of determinism is the gap
  between the two).

Reported: documents/second of each phase, the speedup over the loop, the largest score
difference of any phase from the loop with whether every query's ranking is the same, and
whether every query's run block is byte-identical to the loop's.
Writes ``benchmarks/results/bulk-<device>.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.environment import offline_logging

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("benchmarks.bulk")

PASSAGE_MEDIAN = 120
PASSAGE_SIGMA = 0.6
PASSAGE_MIN, PASSAGE_MAX = 16, 512


def passage_lengths(n: int, seed: int) -> list[int]:
    """Stratified log-normal token lengths (median 120), shuffled by the seed."""
    nd = statistics.NormalDist(math.log(PASSAGE_MEDIAN), PASSAGE_SIGMA)
    lengths = [
        int(min(PASSAGE_MAX, max(PASSAGE_MIN, round(math.exp(nd.inv_cdf((i + 0.5) / n))))))
        for i in range(n)
    ]
    random.Random(seed).shuffle(lengths)
    return lengths


def write_dataset(tokenizer: Any, out: Path, *, queries: int, k: int, seed: int) -> Path:
    """A BEIR folder (corpus, queries, qrels) plus ``candidates.trec``; returns ``out``."""
    from benchmarks.workloads import _query, text_with_tokens

    rng = random.Random(f"bulk:{seed}")
    n_docs = max(k * 4, queries * k // 2)
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as fh:
        for i, n in enumerate(passage_lengths(n_docs, seed)):
            text = text_with_tokens(tokenizer, rng, n)
            fh.write(json.dumps({"_id": f"d{i}", "title": "", "text": text}) + "\n")
    with (out / "queries.jsonl").open("w", encoding="utf-8") as fh:
        for q in range(queries):
            fh.write(json.dumps({"_id": f"q{q}", "text": _query(rng)}) + "\n")
    with (
        (out / "candidates.trec").open("w", encoding="utf-8") as run,
        (out / "qrels" / "test.tsv").open("w", encoding="utf-8") as qrels,
    ):
        qrels.write("query-id\tcorpus-id\tscore\n")
        for q in range(queries):
            docs = rng.sample(range(n_docs), k)
            for rank, d in enumerate(docs, start=1):
                run.write(f"q{q} Q0 d{d} {rank} {float(k - rank)} synthetic\n")
            for d in docs[:3]:
                qrels.write(f"q{q}\td{d}\t1\n")
    return out


def _jobs(folder: Path, k: int) -> list[Any]:
    from rerank_integrations.ir.formats import read_run
    from rerank_integrations.ir.pipeline import (
        candidates_for,
        load_dataset,
        make_jobs,
        select_queries,
    )

    candidates = read_run(folder / "candidates.trec")
    dataset = load_dataset(data=str(folder))
    qids = select_queries(dataset, candidates=candidates)
    first = candidates_for(dataset, qids, candidates=candidates, k=k)
    return make_jobs(dataset, qids, first)


def _loop(reranker: Any, jobs: list[Any]) -> dict[str, dict[str, float]]:
    from rerank_integrations.ir.bulk import result_scores

    return {j.query_id: result_scores(j, reranker.rerank(j.query, j.documents)) for j in jobs}


def _bulk(
    reranker: Any, jobs: list[Any], concurrency: int, out: Path, *, deterministic: bool = True
) -> dict[str, Any]:
    from rerank_integrations.ir.bulk import rerank_to_file
    from rerank_integrations.ir.formats import read_run

    rerank_to_file(
        reranker,
        jobs,
        out,
        tag="bench",
        concurrency=concurrency,
        resume=False,
        deterministic=deterministic,
    )
    return read_run(out)


def _same_bytes(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]]) -> bool:
    """Whether every query's run block would be written byte for byte the same."""
    from rerank_integrations.ir.formats import format_run_block

    return all(format_run_block(q, a[q], "t") == format_run_block(q, b[q], "t") for q in a)


def _compare(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]]) -> tuple[float, bool]:
    from rerank_integrations.ir.formats import ranked

    delta = max(abs(a[q][d] - b[q][d]) for q in a for d in a[q])
    same = all([d for d, _ in ranked(a[q])] == [d for d, _ in ranked(b[q])] for q in a)
    return delta, same


def run_format(fmt: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer

    from benchmarks import models
    from rerank_integrations import LocalReranker

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    profile = "gpu" if device.startswith("cuda") else "cpu"
    dtype = "bfloat16" if profile == "gpu" else "float32"
    mdir = models.build_model(fmt, profile, Path(args.model_dir), device=device, dtype=dtype)
    tok = AutoTokenizer.from_pretrained(mdir)
    folder = write_dataset(tok, work / fmt, queries=args.queries, k=args.k, seed=args.seed)
    jobs = _jobs(folder, args.k)
    n_docs = sum(len(j.doc_ids) for j in jobs)
    reranker = LocalReranker(str(mdir), model_format=fmt, device=device, dtype=dtype)
    try:
        _loop(reranker, jobs[:2])  # warm-up: kernels, allocator, tokenizer caches
        asyncio.run(reranker.arerank(jobs[0].query, jobs[0].documents[:4]))
        times: dict[str, list[float]] = {"loop": []}
        times.update({f"bulk c{c}": [] for c in args.concurrency})
        times.update({f"merged c{c}": [] for c in args.concurrency})
        results: dict[str, Any] = {}
        phases = list(times)
        for rnd in range(args.repeats):
            order = phases if rnd % 2 == 0 else phases[::-1]  # alternate against drift
            for phase in order:
                t0 = time.perf_counter()
                if phase == "loop":
                    res = _loop(reranker, jobs)
                else:
                    kind, c = phase.split(" c")
                    out = work / f"{fmt}-{kind}-{c}.trec"
                    res = _bulk(reranker, jobs, int(c), out, deterministic=kind == "bulk")
                times[phase].append(time.perf_counter() - t0)
                results.setdefault(phase, res)
                log.info("%s %s round %d: %.2fs", fmt, phase, rnd, times[phase][-1])
    finally:
        reranker.close()
    loop_s = min(times["loop"])
    rows = []
    for phase in phases:
        best = min(times[phase])
        delta, same = _compare(results["loop"], results[phase])
        rows.append(
            {
                "phase": phase,
                "seconds": best,
                "docs_s": n_docs / best,
                "speedup": loop_s / best,
                "max_abs_delta": delta,
                "same_ranking": same,
                "same_bytes": _same_bytes(results["loop"], results[phase]),
                "all_seconds": times[phase],
            }
        )
    return {
        "format": fmt,
        "profile": profile,
        "device": device,
        "dtype": dtype,
        "queries": len(jobs),
        "docs_per_query": args.k,
        "documents": n_docs,
        "rows": rows,
    }


def render(results: list[dict[str, Any]]) -> str:
    lines = [
        "| format | queries x docs | phase | docs/s | speedup vs loop | max abs d score "
        "vs loop | same ranking | same bytes as loop |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for row in r["rows"]:
            lines.append(
                f"| {r['format']} | {r['queries']} x {r['docs_per_query']} | {row['phase']} "
                f"| {row['docs_s']:.1f} | **{row['speedup']:.2f}x** "
                f"| {row['max_abs_delta']:.1e} | {row['same_ranking']} "
                f"| {row.get('same_bytes')} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--formats", default="ctxl-v2,cross-encoder")
    p.add_argument("--queries", type=int, default=16)
    p.add_argument("--k", type=int, default=30, help="candidates per query")
    p.add_argument("--concurrency", default="16", help="comma-separated, e.g. 4,16")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--model-dir", default=str(ROOT / ".cache" / "bench-models"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c]
    offline_logging(progress_bars=False)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        results = [run_format(f, args, Path(tmp)) for f in args.formats.split(",") if f]
    table = render(results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = results[0]["device"].split(":")[0] if results else "cpu"
    data = {
        "command": " ".join(["python -m benchmarks.bulk", *(argv or sys.argv[1:])]),
        "results": results,
        "seconds": time.perf_counter() - t0,
    }
    (out / f"bulk-{device}.json").write_text(json.dumps(data, indent=1), encoding="utf-8")
    (out / f"bulk-{device}.md").write_text(table + "\n", encoding="utf-8")
    print(table)
    log.info("done in %.0fs", data["seconds"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
