"""``rerank-integrations run`` and ``rerank-integrations eval`` (see docs/evaluation.md).

``run`` reranks a first stage (a TREC run given with ``--candidates``, or BM25 over the
corpus) for many queries into a TREC run file, resumable. ``eval`` scores run files and/or
models against qrels, side by side, with per-query deltas and a paired test.

Import-light: argparse only; the handlers load the rest. Errors of the input exit with code 2
and a one-line message naming the file and line; Ctrl-C exits 130 and keeps what is done.
Before anything is read or written, every path a command writes is compared with every path
it reads (:func:`.outputs.check_outputs`): an output that is an input exits 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from rerank_integrations.config import backend_settings
from rerank_integrations.errors import RerankError, RerankInputError
from rerank_integrations.validation import int_value, number_value, optional_int

logger = logging.getLogger(__name__)

__all__ = ["COMMANDS", "add_commands", "run_command", "settings_from_args"]

COMMANDS = ("run", "eval")


# --------------------------------------------------------------------------------- parser


def _add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv")
    g.add_argument("--split", default="test", help="qrels split (default: test)")
    g.add_argument("--corpus", help="corpus.jsonl (overrides the folder's)")
    g.add_argument("--queries", help="queries.jsonl (overrides the folder's)")
    g.add_argument("--qrels", help="qrels file, BEIR .tsv or TREC (overrides the folder's)")


def _add_rerank_args(p: argparse.ArgumentParser, *, many: bool) -> None:
    g = p.add_argument_group("first stage and queries")
    g.add_argument(
        "--candidates", help="TREC run with the candidates (default: BM25 over the corpus, bm25s)"
    )
    g.add_argument(
        "--first-stage-k",
        type=int,
        default=100,
        help="candidates per query: BM25 depth, or the top k of --candidates (default: 100)",
    )
    g.add_argument(
        "--bm25-stemmer",
        choices=["english", "none"],
        default="english",
        help="BM25 analyzer: Snowball English stemmer after English stop words (default), or "
        "none (the unstemmed analyzer of earlier versions)",
    )
    g.add_argument("--bm25-k1", type=float, default=1.2, help="BM25 k1 (default: 1.2, Lucene's)")
    g.add_argument("--bm25-b", type=float, default=0.75, help="BM25 b (default: 0.75, Lucene's)")
    g.add_argument("--max-queries", type=int, default=None, help="only the first N queries")
    g.add_argument("--instruction", default=None, help="one instruction for every query")
    g.add_argument(
        "--instruction-field",
        default=None,
        help="per-query instruction: this field of queries.jsonl",
    )
    g.add_argument(
        "--metadata-fields",
        default="",
        help="corpus fields sent as metadata, comma-separated (e.g. title,date)",
    )
    g.add_argument(
        "--concurrency", type=int, default=16, help="queries in flight at once (default: 16)"
    )
    g.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")
    e = p.add_argument_group("engine (docs/scale-out.md)")
    e.add_argument(
        "--engine",
        choices=["in-process", "ray"],
        default="in-process",
        help="in-process (default), or ray: Ray Data actors, each with one reranker "
        '(pip install "rerank-integrations[ray]"); the same output either way',
    )
    e.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster to join (ray start --head prints it; default: RAY_ADDRESS, else a "
        "local cluster for this run)",
    )
    e.add_argument(
        "--ray-actors",
        type=int,
        default=None,
        help="actors, one reranker each (default: one per GPU for a local model, else 1)",
    )
    e.add_argument(
        "--ray-cpus-per-actor",
        type=float,
        default=_RAY_DEFAULTS["ray_cpus_per_actor"],
        help="CPUs per actor (default: 1)",
    )
    e.add_argument(
        "--ray-gpus-per-actor",
        type=float,
        default=None,
        help="GPUs per actor (default: 1 for a local model on a cluster with GPUs, else 0)",
    )
    r = p.add_argument_group("reranker")
    action = "append" if many else "store"
    r.add_argument(
        "--model",
        action=action,
        default=[] if many else None,
        help="hub id, local directory or API model" + (" (repeatable)" if many else ""),
    )
    r.add_argument(
        "--config",
        action=action,
        default=[] if many else None,
        help="reranker config JSON (to_config() output)" + (" (repeatable)" if many else ""),
    )
    r.add_argument(
        "--trust-config",
        action="store_true",
        help="let --config files name any key variable (api_key_env) and switch on "
        "trust_remote_code / allow_pickle; only for files you wrote (docs/reliability.md)",
    )
    r.add_argument("--backend", choices=["local", "remote"], default="local")
    r.add_argument("--model-format", default=None, help="local: ctxl-v2, mxbai-v2, ...")
    r.add_argument("--device", default=None, help="local: cuda, cpu, mps")
    r.add_argument("--api-format", default=None, help="remote: contextual, jina, ...")
    r.add_argument("--base-url", default=None, help="remote: server base URL")


def add_commands(commands: Any) -> None:
    """Register ``run`` and ``eval`` on the CLI's subparsers object."""
    run = commands.add_parser("run", help="rerank a first stage for many queries -> TREC run")
    _add_data_args(run)
    _add_rerank_args(run, many=False)
    run.add_argument("--output", "-o", required=True, help="the TREC run file to write")
    run.add_argument("--tag", default=None, help="run tag (default: the model's name)")
    run.add_argument(
        "--overwrite", action="store_true", help="start over instead of resuming from --output"
    )
    run.add_argument(
        "--first-stage-output",
        default=None,
        help="also write the first-stage candidates as a TREC run",
    )

    ev = commands.add_parser("eval", help="nDCG/MRR/Recall of runs and models, side by side")
    ev.add_argument("runs", nargs="*", metavar="RUN", help="TREC run files, as PATH or NAME=PATH")
    _add_data_args(ev)
    _add_rerank_args(ev, many=True)
    ev.add_argument(
        "--metrics",
        default="nDCG@10,MRR@10,Recall@100",
        help="ir-measures names, comma-separated (default: nDCG@10,MRR@10,Recall@100)",
    )
    ev.add_argument(
        "--baseline", default=None, help="system the others are tested against (default: the first)"
    )
    ev.add_argument(
        "--test",
        choices=["ttest", "wilcoxon"],
        default="ttest",
        help="paired significance test (default: ttest)",
    )
    ev.add_argument("--alpha", type=float, default=0.05, help="significance level (0.05)")
    ev.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ev.add_argument("--plot", default=None, help="write a chart, e.g. out.png")
    ev.add_argument(
        "--runs-dir",
        default=None,
        help="keep the runs of --model/--config here (resumable; default: temp)",
    )


# --------------------------------------------------------------------------------- handlers


def run_command(args: argparse.Namespace) -> int:
    """Run ``args.command``; input errors exit 2 and I/O errors 1, each with one line;
    Ctrl-C exits 130."""
    from rerank_integrations.ir.progress import should_show

    handler = {"run": _run, "eval": _eval}[args.command]
    if not should_show(sys.stderr, quiet=args.quiet):
        # quiet means quiet: no download / weight-loading bars from the hub libraries either
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        return handler(args)
    except RerankError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except OSError as exc:  # a folder that cannot be written, a disk that is full, ...
        sys.stderr.write(f"error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(
            "\ninterrupted: finished queries are saved; run the same command again to resume\n"
        )
        return 130


def _fields(text: str) -> list[str]:
    return [f.strip() for f in text.split(",") if f.strip()]


def settings_from_args(args: argparse.Namespace, model: str) -> dict[str, object]:
    """The reranker settings the command-line options describe (``rerank``, ``run``, ``eval``)."""
    return backend_settings(
        args.backend, model, model_format=args.model_format, device=args.device,
        api_format=args.api_format, base_url=args.base_url,
    )  # fmt: skip


def _rerankers(args: argparse.Namespace) -> list[tuple[str, dict[str, Any], str]]:
    """``(name, config, source)`` for each ``--model`` and ``--config``, names made unique;
    the source (the model id or the config's path) is what reports show, never the config.
    A ``--config`` file is data: it is built untrusted unless ``--trust-config``."""
    from rerank_integrations.ir.pipeline import load_config, tag_for

    models = args.model if isinstance(args.model, list) else [args.model] * (args.model is not None)
    configs = args.config if isinstance(args.config, list) else [args.config] * bool(args.config)
    out = [(tag_for(m), settings_from_args(args, m), m) for m in models]
    for path in configs:
        config = load_config(path)
        name = config.get("model")
        out.append((tag_for(name) if isinstance(name, str) else Path(path).stem, config, path))
    seen: dict[str, int] = {}
    unique = []
    for name, config, source in out:
        seen[name] = seen.get(name, 0) + 1
        unique.append((name if seen[name] == 1 else f"{name}-{seen[name]}", config, source))
    return unique


def _progress(args: argparse.Namespace) -> Callable[[int, int], Any]:
    from rerank_integrations.ir.progress import ProgressBar, should_show

    enabled = should_show(sys.stderr, quiet=args.quiet)
    return lambda total, before: ProgressBar(total, sys.stderr, enabled=enabled, done_before=before)


def _bm25(args: argparse.Namespace) -> Any:
    """The BM25 settings of ``--bm25-stemmer/--bm25-k1/--bm25-b`` (checked: exit 2)."""
    from rerank_integrations.ir.first_stage import BM25Settings

    return BM25Settings(stemmer=args.bm25_stemmer, k1=args.bm25_k1, b=args.bm25_b)


def _first_stage_meta(args: argparse.Namespace) -> dict[str, Any]:
    from rerank_integrations.ir.pipeline import first_stage_meta

    return first_stage_meta(k=args.first_stage_k, candidates=args.candidates, bm25=_bm25(args))


def _first_stage(args: argparse.Namespace) -> tuple[Any, list[str], Any, list[Any]]:
    """Dataset, query ids, first-stage run and jobs, from the data/candidates arguments."""
    from rerank_integrations.ir.formats import read_run
    from rerank_integrations.ir.pipeline import (
        candidates_for,
        load_dataset,
        make_jobs,
        select_queries,
    )

    candidates = read_run(args.candidates) if args.candidates else None
    keep = {d for scores in candidates.values() for d in scores} if candidates else None
    dataset = load_dataset(
        data=args.data,
        split=args.split,
        corpus=args.corpus,
        queries=args.queries,
        qrels=args.qrels,
        keep_docs=keep,
    )
    query_ids = select_queries(dataset, candidates=candidates, max_queries=args.max_queries)
    first = candidates_for(
        dataset, query_ids, candidates=candidates, k=args.first_stage_k, bm25=_bm25(args)
    )
    jobs = make_jobs(
        dataset,
        query_ids,
        first,
        instruction=args.instruction,
        instruction_field=args.instruction_field,
        metadata_fields=_fields(args.metadata_fields),
    )
    return dataset, query_ids, first, jobs


def _summary(output: str, s: Any) -> str:
    if not s.reranked:
        return f"{output}: all {s.queries} queries done by an earlier run, nothing to rerank\n"
    rate = s.documents / s.seconds if s.seconds > 0 else 0.0
    kept = f"{s.kept} kept from an earlier run, " if s.kept else ""
    return (
        f"{output}: {s.queries} queries ({kept}{s.reranked} reranked: {s.documents} "
        f"documents in {s.seconds:.1f} s, {rate:.1f} docs/s)\n"
    )


# the --ray-* options and their argparse defaults (a changed one needs --engine ray)
_RAY_DEFAULTS = {
    "ray_address": None,
    "ray_actors": None,
    "ray_cpus_per_actor": 1.0,
    "ray_gpus_per_actor": None,
}


def _ray(args: argparse.Namespace) -> Any:
    """The :class:`~.ray_engine.RayOptions` of ``--engine ray`` (checked: exit 2), else
    ``None``; a ``--ray-*`` option without ``--engine ray`` is an error, not ignored."""
    if args.engine != "ray":
        given = [n for n, default in _RAY_DEFAULTS.items() if getattr(args, n) != default]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise RerankInputError(given[0], f"{flag} needs --engine ray")
        return None
    from rerank_integrations.ir.ray_engine import RayOptions

    return RayOptions(
        address=args.ray_address,
        actors=args.ray_actors,
        cpus_per_actor=args.ray_cpus_per_actor,
        gpus_per_actor=args.ray_gpus_per_actor,
        quiet=args.quiet,
    )


def _check_numbers(args: argparse.Namespace) -> None:
    """The numeric options, checked before any file is read or model loaded."""
    int_value("first_stage_k", args.first_stage_k, minimum=1)
    int_value("concurrency", args.concurrency, minimum=1)
    optional_int("max_queries", args.max_queries, minimum=1)
    _bm25(args)
    _ray(args)
    alpha = getattr(args, "alpha", None)
    if alpha is not None and not 0 < number_value("alpha", alpha) < 1:
        raise RerankInputError("alpha", f"must be between 0 and 1, got {alpha}")


def _input_files(args: argparse.Namespace) -> list[tuple[str, str | Path]]:
    """Every file the command reads, labelled as the user gave it (for ``check_outputs``)."""
    files: list[tuple[str, str | Path]] = []
    if args.data:
        root = Path(args.data)
        files += [
            ("--data corpus", root / "corpus.jsonl"),
            ("--data queries", root / "queries.jsonl"),
            ("--data qrels", root / "qrels" / f"{args.split}.tsv"),
        ]
    for option in ("corpus", "queries", "qrels", "candidates"):
        if getattr(args, option):
            files.append((f"--{option}", getattr(args, option)))
    for option in ("config", "model"):
        value = getattr(args, option)
        for item in value if isinstance(value, list) else [value] * (value is not None):
            if option == "config" or os.path.isfile(item):  # a hub id or a folder: not a file
                files.append((f"--{option}", item))
    files += [("run file", path) for _, path in _named_runs(getattr(args, "runs", []))]
    return files


def _engine_session(args: argparse.Namespace) -> AbstractContextManager[Any]:
    """Ray connected for the whole command with ``--engine ray`` (else nothing)."""
    options = _ray(args)
    if options is None:
        return nullcontext()
    from rerank_integrations.ir.ray_engine import ray_session

    return ray_session(options)


def _run(args: argparse.Namespace) -> int:
    from rerank_integrations.ir.bulk import meta_path
    from rerank_integrations.ir.formats import write_run
    from rerank_integrations.ir.outputs import check_outputs
    from rerank_integrations.ir.pipeline import rerank_model

    _check_numbers(args)
    rerankers = _rerankers(args)
    if len(rerankers) != 1:
        raise RerankInputError("model", "give one --model or one --config")
    name, config, _ = rerankers[0]
    outputs: list[tuple[str, str | Path]] = [
        ("--output", args.output),
        ("--output sidecar", meta_path(args.output)),
    ]
    if args.first_stage_output:
        outputs.append(("--first-stage-output", args.first_stage_output))
    check_outputs(_input_files(args), outputs)  # before any file is read or written
    _, query_ids, first, jobs = _first_stage(args)
    if args.first_stage_output:
        write_run(
            args.first_stage_output,
            first,
            "bm25" if not args.candidates else "first-stage",
            order=query_ids,
        )
    summary = rerank_model(
        config,
        jobs,
        args.output,
        tag=args.tag or name,
        concurrency=args.concurrency,
        resume=not args.overwrite,
        progress=_progress(args),
        trusted=args.trust_config,
        first_stage=_first_stage_meta(args),
        ray=_ray(args),
    )
    if not args.quiet:
        sys.stderr.write(_summary(args.output, summary))
    return 0


def _first_stage_label(args: argparse.Namespace) -> str:
    """The first stage in words, e.g. ``BM25 (english stemmer, k1 1.2, b 0.75), top 100``."""
    if args.candidates:
        return f"{args.candidates}, top {args.first_stage_k}"
    return f"{_bm25(args).describe()}, top {args.first_stage_k}"


def _chart_title(args: argparse.Namespace, baseline: str, *, with_first_stage: bool) -> str:
    """The chart's title: the data set and the first stage (or the baseline run given)."""
    if args.data:
        data = Path(args.data).resolve().name
    elif args.corpus:
        data = Path(args.corpus).resolve().parent.name or Path(args.corpus).name
    else:
        data = Path(args.qrels).name if args.qrels else "qrels"
    if with_first_stage:
        return f"{data} · first stage: {_first_stage_label(args)}"
    return f"{data} · baseline: {baseline}"


def _named_runs(paths: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in paths:
        name, sep, path = item.partition("=")
        if sep and name and not Path(item).exists():
            out.append((name, path))
        else:
            out.append((Path(item).stem, item))
    return out


def _eval(args: argparse.Namespace) -> int:
    from rerank_integrations.ir import metrics, report
    from rerank_integrations.ir.bulk import meta_path
    from rerank_integrations.ir.formats import read_corpus, read_qrels, read_run, write_run
    from rerank_integrations.ir.outputs import check_outputs
    from rerank_integrations.ir.pipeline import load_dataset, rerank_model

    _check_numbers(args)
    metric_names = _fields(args.metrics)
    metrics.parse_metrics(metric_names)  # fail on a typo before any work
    rerankers = _rerankers(args)
    if not rerankers and not args.runs:
        raise RerankInputError("runs", "give run files and/or --model/--config to evaluate")
    first_name = Path(args.candidates).stem if args.candidates else "bm25"
    outputs: list[tuple[str, str | Path]] = []
    if args.runs_dir and rerankers:  # the runs kept there (without it: a fresh temp folder)
        kept = [Path(args.runs_dir) / f"{name}.trec" for name, _, _ in rerankers]
        outputs += [("--runs-dir", Path(args.runs_dir) / f"{first_name}.trec")]
        outputs += [("--runs-dir", p) for path in kept for p in (path, meta_path(path))]
    if args.plot:
        from rerank_integrations.ir.plot import check_plot_path

        check_plot_path(args.plot)
        outputs.append(("--plot", args.plot))
    check_outputs(_input_files(args), outputs)  # before any file is read or written
    systems: dict[str, Any] = {}
    sources: dict[str, str] = {}
    corpus_ids: set[str] | None = None
    qrels = read_qrels(args.qrels) if args.qrels else None

    def add(name: str, run: Any, source: str) -> None:
        base, n = name, 1
        while name in systems:
            n += 1
            name = f"{base}-{n}"
        systems[name] = run
        sources[name] = source

    if rerankers:
        dataset, query_ids, first, jobs = _first_stage(args)
        qrels = qrels or dataset.qrels
        corpus_ids = set(dataset.corpus) if not args.candidates else None
        with tempfile.TemporaryDirectory() as tmp:
            runs_dir = Path(args.runs_dir or tmp)
            runs_dir.mkdir(parents=True, exist_ok=True)
            write_run(runs_dir / f"{first_name}.trec", first, first_name, order=query_ids)
            add(first_name, first, args.candidates or _first_stage_label(args))
            with _engine_session(args):  # one Ray connection for every --model row
                for name, config, source in rerankers:
                    out = runs_dir / f"{name}.trec"
                    summary = rerank_model(
                        config,
                        jobs,
                        out,
                        tag=name,
                        concurrency=args.concurrency,
                        resume=args.runs_dir is not None,
                        progress=_progress(args),
                        trusted=args.trust_config,
                        first_stage=_first_stage_meta(args),
                        ray=_ray(args),
                    )
                    if not args.quiet:
                        sys.stderr.write(_summary(str(out), summary))
                    add(name, read_run(out), source)
    for name, path in _named_runs(args.runs):
        add(name, read_run(path), path)
    if qrels is None:
        if args.data is None:
            raise RerankInputError("qrels", "give --qrels or a BEIR folder (--data) with qrels")
        qrels = load_dataset(data=args.data, split=args.split).qrels
        if qrels is None:
            raise RerankInputError("qrels", f"{args.data} has no qrels/{args.split}.tsv")
    if corpus_ids is None and (args.data or args.corpus) and not rerankers:
        from rerank_integrations.ir.formats import beir_paths

        corpus_ids = set(read_corpus(args.corpus or beir_paths(args.data, args.split).corpus))
    baseline = args.baseline or next(iter(systems))
    if baseline not in systems:
        raise RerankInputError("baseline", f"{baseline!r} is not one of {list(systems)}")
    evaluation = metrics.evaluate(qrels, systems, metric_names)
    comparisons = metrics.compare(evaluation, baseline, test=args.test)
    warnings = report.coverage_warnings(evaluation)
    missing = None if corpus_ids is None else metrics.judged_docs_not_in_corpus(qrels, corpus_ids)
    warnings += report.qrels_warnings(evaluation, missing)
    if corpus_ids is not None:
        for name, run in systems.items():
            unknown = sum(d not in corpus_ids for scores in run.values() for d in scores)
            if unknown:
                warnings.append(
                    f"{name}: {unknown} retrieved doc ids are not in the corpus "
                    "(scored as not relevant)"
                )
    for line in warnings:
        logger.warning("%s", line)
    if args.json:
        data = report.to_json(
            evaluation,
            comparisons,
            baseline=baseline,
            alpha=args.alpha,
            sources=sources,
            warnings=warnings,
            missing=missing,
        )
        sys.stdout.write(json.dumps(data, indent=1) + "\n")
    else:
        sys.stdout.write(
            report.render_table(evaluation, comparisons, baseline=baseline, alpha=args.alpha)
        )
    if args.plot:
        from rerank_integrations.ir.plot import plot_evaluation

        plot_evaluation(
            evaluation,
            baseline,
            args.plot,
            title=_chart_title(args, baseline, with_first_stage=bool(rerankers)),
            comparisons=comparisons,
            alpha=args.alpha,
        )
        if not args.quiet:
            sys.stderr.write(f"wrote {args.plot}\n")
    return 0
