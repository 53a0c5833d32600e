"""Does a reranker help my retrieval? BM25 vs BM25 + reranker on a BEIR folder, in Python.

    python examples/evaluate_beir.py --model ContextualAI/ctxl-rerank-v2-instruct-multilingual-1b
    python examples/evaluate_beir.py --model ./my-model --data path/to/beir/scifact --out runs/

The same as ``rerank-integrations eval --data DIR --model M --plot eval.png`` (see
docs/evaluation.md), written with the library so each step can be changed: BM25 candidates
(bm25s), one rerank job per query, concurrent reranking into a resumable TREC run, metrics
through ir-measures, a paired t-test, a chart. Needs ``pip install
"rerank-integrations[local,eval]"``. The default data is the 8-query sample in
examples/data/beir-mini (too small to conclude anything; it shows the shape of the output).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rerank_integrations import RerankError
from rerank_integrations.ir.first_stage import bm25_run
from rerank_integrations.ir.formats import read_run, write_run
from rerank_integrations.ir.metrics import compare, evaluate
from rerank_integrations.ir.pipeline import load_dataset, make_jobs, rerank_model, select_queries
from rerank_integrations.ir.plot import plot_evaluation
from rerank_integrations.ir.report import coverage_warnings, render_table

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="hub id or local model directory")
    p.add_argument("--data", default=str(HERE / "data" / "beir-mini"), help="BEIR folder")
    p.add_argument("--split", default="test")
    p.add_argument("--k", type=int, default=100, help="BM25 candidates per query")
    p.add_argument("--out", default="eval-out", help="folder for the runs and the chart")
    p.add_argument("--device", default=None)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        dataset = load_dataset(data=args.data, split=args.split)
        assert dataset.qrels is not None, "the folder needs qrels/<split>.tsv"
        query_ids = select_queries(dataset)  # the judged queries, in the queries file's order
        first = bm25_run(dataset.corpus, [dataset.queries[q] for q in query_ids], args.k)
        write_run(out / "bm25.trec", first, "bm25", order=query_ids)
        jobs = make_jobs(dataset, query_ids, first)  # title + text, no instruction
        config = {"backend": "local", "model": args.model}
        if args.device:
            config["device"] = args.device
        summary = rerank_model(
            config,
            jobs,
            out / "reranked.trec",
            tag="reranked",
            concurrency=16,
            resume=True,
            progress=None,
        )
        print(f"reranked {summary.documents} documents in {summary.seconds:.2f} s")
        runs = {"bm25": first, "reranked": read_run(out / "reranked.trec")}
        evaluation = evaluate(dataset.qrels, runs, ["nDCG@10", "MRR@10", "Recall@100"])
        comparisons = compare(evaluation, "bm25")
        print(render_table(evaluation, comparisons, baseline="bm25", alpha=0.05))
        for line in coverage_warnings(evaluation):
            print("note:", line)
        chart = plot_evaluation(evaluation, "bm25", out / "eval.png")
        print(f"runs and chart in {out}/ ({chart.name})")
    except RerankError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
