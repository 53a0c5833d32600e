"""The one benchmark command: ours vs the reference implementations, side by side, one process.

    make bench                       # CPU: all parts, writes benchmarks/results/cpu.{json,md}
    python -m benchmarks.bench --profile gpu --parts local --out DIR   # on a CUDA machine
    python -m benchmarks.bench --profile gpu --smoke --parts local --out DIR  # its CPU smoke

Parts:
- ``local``: for each format (ctxl-v2, mxbai-v2, qwen3, cross-encoder) and workload (W1, W2,
  W3): documents/second of ``LocalReranker`` and of the reference (benchmarks/references.py) on
  the SAME model directory, inputs and dtype, in ONE process; peak memory of each scoring call;
  max |delta raw score| (parity). Then W4: 16 concurrent ``arerank`` calls vs the same calls
  one after another. On CPU this part needs ``mxbai-rerank`` (transformers 4): ``make bench``
  runs it with ``.venv-ref/bin/python``. On CPU every cell also runs ``quantize="int8"`` (same
  model, same inputs, between ours and the reference): its speed vs our fp32 and the reference,
  its peak memory and its agreement with our fp32 scores (Spearman, top-10 overlap, max |delta|).
  On the GPU profile: MFU of every cell, W4 for every format, and the OOM back-off step (one
  oversized batch under a memory cap must be halved until it fits and score as the normal run).
- ``adapters``: LangChain / LlamaIndex / Haystack vs the direct core call on W1 (needs the
  frameworks: the main ``.venv``).
- ``remote``: 2,000 documents against the loopback test server (100 documents per request,
  200 ms per answer) with the default concurrency, vs one round trip.

Memory: on CPU the peak resident set of the scoring call (Linux ``VmHWM`` after resetting it
through ``/proc/self/clear_refs``, minus the resident set before the call, after
``gc.collect()`` + ``malloc_trim``); on CUDA ``torch.cuda.max_memory_allocated`` minus the
allocation before the call. Model weights are loaded before and are not counted.

``--smoke`` (with ``--profile gpu``) runs the WHOLE GPU code path on the CPU with tiny configs of
the real architectures (bf16, every format, ours and the reference, MFU arithmetic, W4, the OOM
step) on a few documents per workload, so the GPU profile cannot rot unseen: the torch.cuda
calls that have no CPU equivalent (synchronize, the allocator's peak counters, the
per-process memory cap) go through :class:`FakeCudaOps` instead of :class:`CudaOps`
(tests/bench/test_gpu_profile_smoke.py runs it in the default test suite).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.environment import QUIET, offline_logging

if TYPE_CHECKING:
    from benchmarks import models

ROOT = Path(__file__).resolve().parent.parent
FORMATS = ("ctxl-v2", "mxbai-v2", "qwen3", "cross-encoder")
REF_ENV_FORMATS = ("mxbai-v2",)  # their reference package needs transformers 4 (.venv-ref)
GPU_PEAK_TFLOPS = 790.0  # measured bf16 dense matmul on the H200 (KINDS.md), not the datasheet

log = logging.getLogger("benchmarks")


# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------


def _status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def _trim() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")  # reset VmHWM to the current RSS


class CudaOps:
    """The torch.cuda calls the GPU profile makes: synchronisation, the allocator's counters and
    the per-process memory cap of the OOM step. :class:`FakeCudaOps` replaces them in
    ``--smoke``; everything else on the GPU path is the same code."""

    smoke = False

    def __init__(self, torch: Any) -> None:
        self.torch = torch

    def synchronize(self) -> None:
        self.torch.cuda.synchronize()

    def empty_cache(self) -> None:
        self.torch.cuda.empty_cache()

    def reset_peak(self) -> None:
        self.torch.cuda.reset_peak_memory_stats()

    def allocated(self) -> int:
        return int(self.torch.cuda.memory_allocated())

    def max_allocated(self) -> int:
        return int(self.torch.cuda.max_memory_allocated())

    def device_name(self) -> str:
        return str(self.torch.cuda.get_device_name(0))

    @contextlib.contextmanager
    def memory_cap(self, runner: Any, extra_bytes: int, bytes_per_token: int) -> Iterator[None]:
        """Allow this process only what is allocated now plus ``extra_bytes``
        (``torch.cuda.set_per_process_memory_fraction``); ``runner`` is not needed here."""
        self.synchronize()
        self.empty_cache()
        total = int(self.torch.cuda.get_device_properties(0).total_memory)
        fraction = min(1.0, (self.allocated() + extra_bytes) / total)
        self.torch.cuda.set_per_process_memory_fraction(fraction)
        try:
            yield
        finally:
            self.torch.cuda.set_per_process_memory_fraction(1.0)
            self.empty_cache()


class FakeCudaOps(CudaOps):
    """``--smoke`` on the CPU: the calls torch has no CPU equivalent for. Synchronisation is a
    no-op, the allocator counters read the process's resident set (``VmRSS`` / ``VmHWM``) and
    the memory cap fails any batch of more than ``extra_bytes // bytes_per_token`` padded tokens
    with torch's own ``OutOfMemoryError``, which is what the cap does on a GPU. ``calls``
    counts each call, so the smoke test can see that the GPU branch ran."""

    smoke = True

    def __init__(self, torch: Any) -> None:
        super().__init__(torch)
        self.calls: Counter[str] = Counter()

    def synchronize(self) -> None:
        self.calls["synchronize"] += 1

    def empty_cache(self) -> None:
        self.calls["empty_cache"] += 1

    def reset_peak(self) -> None:
        self.calls["reset_peak"] += 1
        _reset_hwm()

    def allocated(self) -> int:
        self.calls["allocated"] += 1
        return _status_kb("VmRSS") * 1024

    def max_allocated(self) -> int:
        self.calls["max_allocated"] += 1
        return _status_kb("VmHWM") * 1024

    def device_name(self) -> str:
        return "none (--smoke on the CPU)"

    @contextlib.contextmanager
    def memory_cap(self, runner: Any, extra_bytes: int, bytes_per_token: int) -> Iterator[None]:
        self.calls["memory_cap"] += 1
        cap_tokens = extra_bytes // bytes_per_token
        real_run = runner.run
        oom = getattr(self.torch, "OutOfMemoryError", None) or self.torch.cuda.OutOfMemoryError

        def capped(items: Sequence[Any], prefix: Any = None) -> Any:
            width = max(len(x.input_ids) for x in items)
            if len(items) * width > cap_tokens:
                raise oom(f"CUDA out of memory (smoke: {len(items)} x {width} > {cap_tokens})")
            return real_run(items, prefix)

        runner.run = capped
        try:
            yield
        finally:
            runner.run = real_run


class Meter:
    """Wall time + peak memory of one call (see module docstring); ``cuda``: the GPU
    profile's :class:`CudaOps` (or its smoke stand-in), ``None`` on the CPU profile."""

    def __init__(self, cuda: CudaOps | None) -> None:
        self.cuda = cuda
        #: CPU seconds (all threads of this process) of the last call: on a shared machine a
        #: steadier comparison than wall time, since other jobs' bursts do not count in it.
        self.last_cpu = 0.0

    def __call__(self, fn: Callable[[], Any]) -> tuple[float, int, Any]:
        c0 = time.process_time()
        try:
            return self._measure(fn)
        finally:
            self.last_cpu = time.process_time() - c0

    def _measure(self, fn: Callable[[], Any]) -> tuple[float, int, Any]:
        _trim()
        if self.cuda is not None:
            ops = self.cuda
            ops.synchronize()
            ops.empty_cache()
            ops.reset_peak()
            base = ops.allocated()
            t0 = time.perf_counter()
            out = fn()
            ops.synchronize()
            dt = time.perf_counter() - t0
            return dt, max(0, ops.max_allocated() - base), out
        _reset_hwm()
        base = _status_kb("VmRSS")
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        return dt, (_status_kb("VmHWM") - base) * 1024, out


# ---------------------------------------------------------------------------------------------
# Local formats
# ---------------------------------------------------------------------------------------------


def _ours(model_dir: Path, fmt: str, device: str, dtype: str, **kwargs: Any) -> Any:
    from rerank_integrations.backends.local import LocalReranker

    return LocalReranker(
        str(model_dir),
        model_format=fmt,
        device=device,
        dtype=dtype,
        instruction_mode="prepend",
        **kwargs,
    )


def _ours_raw(
    reranker: Any, query: str, docs: tuple[str, ...], instruction: str | None
) -> list[float]:
    res = reranker.rerank(query, list(docs), instruction=instruction)
    raw = [0.0] * len(docs)
    for r in res:
        raw[r.index] = r.raw_score
    return raw


def _model_flops(arch: Any, counts: list[int]) -> float:
    from benchmarks.models import flops_per_token

    return sum(flops_per_token(arch, seq_len=n, full_logits=False) * n for n in counts)


def _workload(name: str, tok: Any, args: argparse.Namespace) -> Any:
    from benchmarks.workloads import make_workload

    return _trimmed(make_workload(name, tok, seed=args.seed), args.max_docs)


def _trimmed(wl: Any, max_docs: int | None) -> Any:
    """The first ``max_docs`` documents of a workload (``--smoke``); unchanged when ``None``."""
    if max_docs is None:
        return wl
    return replace(
        wl, documents=wl.documents[:max_docs], target_lengths=wl.target_lengths[:max_docs]
    )


def _int8_fields(
    t_o: list[float],
    t_8: list[float],
    t_r: list[float],
    m_8: list[int],
    raw_o: list[float],
    raw_8: list[float],
    n_docs: int,
) -> dict[str, Any]:
    """The int8 columns of a row: speed vs our fp32 (best of N, and the median of the per-repeat
    side-by-side ratios), vs the reference, peak memory, agreement with our fp32 scores."""
    from benchmarks.agreement import agreement

    agree = agreement(raw_o, raw_8, k=10)
    t8 = min(t_8)
    return {
        "int8_s": t8,
        "int8_docs_s": n_docs / t8,
        "int8_vs_fp32": min(t_o) / t8,
        "int8_vs_fp32_median": statistics.median(o / e for o, e in zip(t_o, t_8, strict=True)),
        "int8_vs_fp32_repeats": [o / e for o, e in zip(t_o, t_8, strict=True)],
        "int8_vs_ref": min(t_r) / t8,
        "int8_peak_mb": max(m_8) / 2**20,
        "int8_spearman": agree["spearman"],
        "int8_top10": agree["top_k"],
        "int8_max_abs_delta": agree["max_abs_delta"],
        "int8_fp32_spread": agree["spread"],
    }


def run_local(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer

    from benchmarks import models
    from benchmarks.references import make_reference

    accel = args.profile == "gpu"  # the GPU code path (also in --smoke, on the CPU)
    if args.smoke:
        device = args.device or "cpu"
        cuda: CudaOps | None = FakeCudaOps(torch)
    else:
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        cuda = CudaOps(torch) if device.startswith("cuda") else None
    dtype = "bfloat16" if accel else "float32"
    meter = Meter(cuda)
    root = Path(args.model_dir)
    rows: list[dict[str, Any]] = []
    w4_rows: list[dict[str, Any]] = []
    oom_rows: list[dict[str, Any]] = []
    model_profile = "gpu-smoke" if args.smoke else args.profile
    jobs: list[tuple[str, str, list[str]]] = [
        (f, model_profile, list(args.workloads)) for f in args.formats
    ]
    if args.profile == "cpu" and "W3" in args.workloads and "ctxl-v2" in args.formats:
        jobs.append(("ctxl-v2", "cpu-realvocab", ["W3"]))
    for fmt, profile, wls in jobs:
        arch = models.arch_for(fmt, profile)
        t0 = time.perf_counter()
        mdir = models.build_model(
            fmt, profile, root, device=device if accel else "cpu", dtype=dtype
        )
        log.info("%s/%s model ready in %.1fs (%s)", fmt, profile, time.perf_counter() - t0, arch)
        tok = AutoTokenizer.from_pretrained(mdir)
        ours_kwargs = json.loads(args.ours_kwargs)
        if args.smoke:  # the GPU's batch plan, not the CPU's small default budget
            from rerank_integrations.backends.local.formats.base import DEFAULT_TOKEN_BUDGETS

            ours_kwargs.setdefault("token_budget", DEFAULT_TOKEN_BUDGETS["cuda"])
        ours = _ours(mdir, fmt, device, dtype, **ours_kwargs)
        int8 = (
            _ours(mdir, fmt, device, dtype, quantize="int8", **ours_kwargs)
            if args.int8 and profile == "cpu"
            else None
        )
        ref = make_reference(
            fmt,
            str(mdir),
            device=device,
            dtype=dtype,
            batch_size=1 if profile == "cpu-realvocab" else 32,
        )
        w2_raw: tuple[Any, list[float]] | None = None
        for wname in wls:
            wl = _workload(wname, tok, args)
            q, docs, ins = wl.query, wl.documents, wl.instruction
            # warm-up on a slice (first-call costs: kernels, allocator, tokenizer caches)
            _ours_raw(ours, q, docs[:4], ins)
            if int8 is not None:
                _ours_raw(int8, q, docs[:4], ins)
            ref.score(q, docs[:4], ins)
            t_o, m_o, t_r, m_r, t_8, m_8 = [], [], [], [], [], []
            c_o: list[float] = []
            c_8: list[float] = []
            raw_8: list[float] = []
            for _ in range(args.repeats):  # side by side: fp32, int8, reference, seconds apart
                dt, mem, raw_o = meter(lambda: _ours_raw(ours, q, docs, ins))  # noqa: B023
                t_o.append(dt)
                m_o.append(mem)
                c_o.append(meter.last_cpu)
                if int8 is not None:
                    dt, mem, raw_8 = meter(lambda: _ours_raw(int8, q, docs, ins))  # noqa: B023
                    t_8.append(dt)
                    m_8.append(mem)
                    c_8.append(meter.last_cpu)
                dt, mem, raw_r = meter(lambda: ref.score(q, docs, ins))  # noqa: B023
                t_r.append(dt)
                m_r.append(mem)
            counts = ref.token_counts(q, docs, ins)
            delta = max(abs(a - b) for a, b in zip(raw_o, raw_r, strict=True))
            to, tr = min(t_o), min(t_r)  # best of N: the least disturbed run
            row = {
                "format": fmt,
                "profile": profile,
                "workload": wname,
                "arch": arch.label,
                "head_share_real": models.head_share(models.REAL[fmt]),
                "head_share_model": models.head_share(arch),
                "vocab": arch.vocab,
                "docs": len(docs),
                "tokens": sum(counts),
                "ours_s": to,
                "ref_s": tr,
                "ours_docs_s": len(docs) / to,
                "ref_docs_s": len(docs) / tr,
                "ratio": tr / to,
                "ratio_median": statistics.median(r / o for o, r in zip(t_o, t_r, strict=True)),
                "ours_peak_mb": max(m_o) / 2**20,
                "ref_peak_mb": max(m_r) / 2**20,
                "max_abs_delta": delta,
                "score_spread": max(raw_r) - min(raw_r),
                "reference": ref.name,
                "device": device,
                "dtype": dtype,
                "model_tflop": _model_flops(arch, counts) / 1e12,
            }
            if int8 is not None:
                row.update(_int8_fields(t_o, t_8, t_r, m_8, raw_o, raw_8, len(docs)))
                row["int8_vs_fp32_cpu"] = statistics.median(c_o) / statistics.median(c_8)
                row["int8_cpu_s_repeats"] = c_8
                row["fp32_cpu_s_repeats"] = c_o
            if accel:
                row["ours_mfu"] = row["model_tflop"] / to / GPU_PEAK_TFLOPS
                row["ref_mfu"] = row["model_tflop"] / tr / GPU_PEAK_TFLOPS
            if wname == "W2":
                w2_raw = (wl, raw_o)
            log.info("%s", json.dumps(row))
            rows.append(row)
            _write_partial(args, rows, w4_rows)
        if fmt in args.w4_formats and profile == model_profile:
            w4_rows.append(run_w4(ours, tok, args))
            log.info("%s", json.dumps(w4_rows[-1]))
            _write_partial(args, rows, w4_rows)
        if accel and cuda is not None and fmt in args.oom_formats and w2_raw is not None:
            oom_rows.append(run_oom(mdir, fmt, device, dtype, arch, w2_raw, cuda))
            log.info("%s", json.dumps(oom_rows[-1]))
        ours.close()
        if int8 is not None:
            int8.close()
        ours = int8 = ref = None
        _trim()
        if cuda is not None:
            cuda.empty_cache()
    out: dict[str, Any] = {"local": rows, "w4": w4_rows, "machine": machine(device, cuda)}
    if oom_rows:
        out["oom"] = oom_rows
    if isinstance(cuda, FakeCudaOps):
        out["smoke_cuda_calls"] = dict(cuda.calls)
    return out


#: the OOM step's memory cap: activations for this many padded tokens beyond the weights.
OOM_CAP_TOKENS = 4096


def activation_bytes_per_token(arch: models.Arch, dtype_bytes: int = 2) -> int:
    """A rough live-activation size per token of one layer's forward (the MLP's gate, up and
    activation outputs plus a few hidden-sized tensors): what sets the memory cap of the OOM
    step so that a 64 x 512 batch does not fit and a few inputs do."""
    return int(dtype_bytes * (3 * arch.intermediate + 4 * arch.hidden))


def run_oom(
    mdir: Path,
    fmt: str,
    device: str,
    dtype: str,
    arch: Any,
    w2: tuple[Any, list[float]],
    cuda: CudaOps,
) -> dict[str, Any]:
    """OOM back-off: W2 as ONE oversized batch (token budget unbounded) under a memory cap of
    :data:`OOM_CAP_TOKENS` tokens of activations above the weights. The engine must split the
    batch in halves until the parts fit, and score exactly as the normal run (same bf16 batch
    shapes are not guaranteed, so the difference is reported, not required to be 0)."""
    from rerank_integrations.errors import OutOfMemoryError

    wl, expected = w2
    q, docs, ins = wl.query, wl.documents, wl.instruction
    big = _ours(
        mdir, fmt, device, dtype, token_budget=10**9, batch_size=len(docs), prefix_caching=False
    )
    runner = big._engine._runner
    bpt = activation_bytes_per_token(arch)
    # a third of the workload's document tokens at most, so a few-document --smoke run halves too
    cap_tokens = min(OOM_CAP_TOKENS, sum(wl.target_lengths) // 3)
    attempts: list[tuple[int, bool]] = []
    ok, error = True, ""
    raw: list[float] = []
    t0 = time.perf_counter()
    with cuda.memory_cap(runner, cap_tokens * bpt, bpt):
        capped_run = runner.run

        def counted(items: Sequence[Any], prefix: Any = None) -> Any:
            try:
                out = capped_run(items, prefix)
            except Exception as exc:
                attempts.append((len(items), bool(runner.is_oom(exc))))
                raise
            attempts.append((len(items), False))
            return out

        runner.run = counted
        try:
            raw = _ours_raw(big, q, docs, ins)
        except OutOfMemoryError as exc:
            ok, error = False, str(exc)
        finally:
            runner.run = capped_run
    wall = time.perf_counter() - t0
    big.close()
    ooms = [n for n, was_oom in attempts if was_oom]
    row: dict[str, Any] = {
        "format": fmt,
        "docs": len(docs),
        "cap_tokens": cap_tokens,
        "bytes_per_token": bpt,
        "first_batch": attempts[0][0] if attempts else 0,
        "oom_batches": len(ooms),
        "largest_fitting_batch": max((n for n, was_oom in attempts if not was_oom), default=0),
        "ok": ok,
        "error": error,
        "wall_s": wall,
    }
    if ok:
        row["max_abs_delta"] = max(abs(a - b) for a, b in zip(raw, expected, strict=True))
        row["score_spread"] = max(expected) - min(expected)
    return row


def run_w4(ours: Any, tok: Any, args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.workloads import w4_workloads

    wls = [_trimmed(w, args.max_docs) for w in w4_workloads(tok, seed=args.seed)]

    async def one(w: Any) -> list[Any]:
        res: list[Any] = await ours.arerank(w.query, list(w.documents), instruction=w.instruction)
        return res

    async def sequential() -> list[list[Any]]:
        return [await one(w) for w in wls]

    async def concurrent() -> list[list[Any]]:
        return list(await asyncio.gather(*(one(w) for w in wls)))

    asyncio.run(one(wls[0]))  # warm-up
    t0 = time.perf_counter()
    seq = asyncio.run(sequential())
    t_seq = time.perf_counter() - t0
    t0 = time.perf_counter()
    conc = asyncio.run(concurrent())
    t_conc = time.perf_counter() - t0
    delta = 0.0
    same_order = True
    for a, b in zip(seq, conc, strict=True):
        same_order &= [r.index for r in a] == [r.index for r in b]
        da = {r.index: r.raw_score for r in a}
        delta = max(delta, *(abs(da[r.index] - r.raw_score) for r in b))
    n_docs = sum(w.n_docs for w in wls)
    return {
        "format": ours.model_format,
        "calls": len(wls),
        "docs": n_docs,
        "sequential_s": t_seq,
        "concurrent_s": t_conc,
        "sequential_docs_s": n_docs / t_seq,
        "concurrent_docs_s": n_docs / t_conc,
        "speedup": t_seq / t_conc,
        "max_abs_delta": delta,
        "same_order": same_order,
    }


def _stem(args: argparse.Namespace) -> str:
    """The result files' name: the profile (``gpu-smoke`` for the smoke mode)."""
    return "gpu-smoke" if args.smoke else str(args.profile)


def _write_partial(args: argparse.Namespace, rows: list[Any], w4: list[Any]) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{_stem(args)}-local.partial.json").write_text(
        json.dumps({"local": rows, "w4": w4}, indent=1), encoding="utf-8"
    )


# ---------------------------------------------------------------------------------------------
# Adapters
# ---------------------------------------------------------------------------------------------


def run_adapters(args: argparse.Namespace) -> dict[str, Any]:
    """Adapter overhead: each adapter vs the direct ``Reranker.rerank`` call on W1 with the same
    reranker. Measured with a ``FakeReranker`` (the framework plumbing alone, many repeats) and
    related to the direct call of the CPU ctxl-v2 LocalReranker on W1 (what a user pays)."""
    from transformers import AutoTokenizer

    from benchmarks import models
    from benchmarks.workloads import make_workload
    from rerank_integrations._testing import FakeReranker

    mdir = models.build_model("ctxl-v2", "cpu", Path(args.model_dir))
    tok = AutoTokenizer.from_pretrained(mdir)
    wl = make_workload("W1", tok, seed=args.seed)
    q, docs, ins = wl.query, list(wl.documents), wl.instruction
    fake = FakeReranker({d: float(i % 17) for i, d in enumerate(docs)})

    from haystack import Document as HDoc
    from langchain_core.documents import Document as LDoc
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    from rerank_integrations.haystack import RerankRanker
    from rerank_integrations.langchain import RerankCompressor
    from rerank_integrations.llama_index import RerankPostprocessor

    lc_docs = [LDoc(page_content=d) for d in docs]
    li_nodes = [NodeWithScore(node=TextNode(text=d), score=1.0) for d in docs]
    hs_docs = [HDoc(content=d) for d in docs]

    def bench_all(reranker: Any, reps: int) -> dict[str, float]:
        lc = RerankCompressor(reranker=reranker, top_n=None, instruction=ins)
        li = RerankPostprocessor(reranker=reranker, top_n=len(docs), instruction=ins)
        hs = RerankRanker(reranker=reranker, top_k=None, instruction=ins)
        hs.warm_up()
        calls: dict[str, Callable[[], Any]] = {
            "direct": lambda: reranker.rerank(q, docs, instruction=ins),
            "langchain": lambda: lc.compress_documents(lc_docs, q),
            "llama_index": lambda: li.postprocess_nodes(li_nodes, QueryBundle(q)),
            "haystack": lambda: hs.run(query=q, documents=hs_docs),
        }
        order = [calls["direct"]().__getitem__(i).index for i in range(3)]
        assert order, order
        times: dict[str, list[float]] = {k: [] for k in calls}
        for _ in range(reps):  # interleaved so drift hits every variant alike
            for k, fn in calls.items():
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
        return {k: statistics.median(v) for k, v in times.items()}

    fake_t = bench_all(fake, args.adapter_reps)
    local = _ours(mdir, "ctxl-v2", "cpu", "float32")
    local.rerank(q, docs[:4], instruction=ins)
    t0 = time.perf_counter()
    local.rerank(q, docs, instruction=ins)
    direct_local = time.perf_counter() - t0
    local.close()
    rows = []
    for k in ("langchain", "llama_index", "haystack"):
        over = fake_t[k] - fake_t["direct"]
        rows.append(
            {
                "adapter": k,
                "fake_direct_ms": fake_t["direct"] * 1e3,
                "fake_adapter_ms": fake_t[k] * 1e3,
                "overhead_ms": over * 1e3,
                "local_direct_s": direct_local,
                "overhead_pct_of_local": 100 * over / direct_local,
                "overhead_pct_of_200ms": 100 * over / 0.2,
            }
        )
    return {"adapters": rows}


# ---------------------------------------------------------------------------------------------
# Remote
# ---------------------------------------------------------------------------------------------


def run_remote(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers.remote_server import RerankTestServer  # type: ignore[import-not-found]

    from rerank_integrations.backends.remote import RemoteReranker

    docs = [f"document number {i} about topic {i % 13}" for i in range(2000)]
    out = []
    with RerankTestServer() as server:
        server.latency = 0.2
        server.max_documents = 100
        base = server.base_url("contextual")
        settings: tuple[tuple[str, dict[str, Any]], ...] = (
            ("max_documents_per_request=100", {"max_documents_per_request": 100}),
            ("defaults: limit learnt from the 422", {}),
        )
        for label, kwargs in settings:
            rr = RemoteReranker(model="bench", api_format="contextual", base_url=base, **kwargs)
            before = len(server.bodies())
            t0 = time.perf_counter()
            rr.rerank("query", docs[:100])
            one_rt = time.perf_counter() - t0
            t0 = time.perf_counter()
            res = rr.rerank("query", docs)
            wall = time.perf_counter() - t0
            assert len(res) == 2000 and sorted(r.index for r in res) == list(range(2000))
            out.append(
                {
                    "setting": label,
                    "one_round_trip_s": one_rt,
                    "wall_s": wall,
                    "ratio": wall / one_rt,
                    "requests": len(server.bodies()) - before,
                }
            )
            if not kwargs:  # the same reranker again: it plans with the limit it learnt
                before = len(server.bodies())
                t0 = time.perf_counter()
                rr.rerank("query", docs)
                wall = time.perf_counter() - t0
                out.append(
                    {
                        "setting": "limit learnt: next call",
                        "one_round_trip_s": one_rt,
                        "wall_s": wall,
                        "ratio": wall / one_rt,
                        "requests": len(server.bodies()) - before,
                    }
                )
            rr.close()
    return {"remote": out}


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def machine(device: str, cuda: CudaOps | None = None) -> dict[str, Any]:
    import torch
    import transformers

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    if cuda is not None:
        info["gpu"] = cuda.device_name()
    with contextlib.suppress(ImportError):
        import sentence_transformers

        info["sentence_transformers"] = sentence_transformers.__version__
    with contextlib.suppress(ImportError):
        from importlib.metadata import version

        import mxbai_rerank  # type: ignore[import-not-found,unused-ignore]  # noqa: F401

        info["mxbai_rerank"] = version("mxbai-rerank")
    return info


def render(res: dict[str, Any]) -> str:
    lines: list[str] = []
    for key, label in (("machine", "Machine"), ("machine_ref_env", "mxbai-v2 rows ran in")):
        m = res.get(key, {})
        if m:
            lines.append(f"{label}: " + ", ".join(f"{k} {v}" for k, v in m.items()))
            lines.append("")
    if res.get("local"):
        lines += [
            "| format | workload | model (head share real / bench) | docs | tokens | ours docs/s"
            " | ref docs/s | ratio | peak MB ours / ref | max abs d raw (score spread)"
            " | reference |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in res["local"]:
            mfu = ""
            if "ours_mfu" in r:
                mfu = f" (MFU {100 * r['ours_mfu']:.3g}% / {100 * r['ref_mfu']:.3g}%)"
            lines.append(
                f"| {r['format']} | {r['workload']} | {r['profile']}, vocab {r['vocab']:,}, "
                f"head {100 * r['head_share_real']:.1f}% / {100 * r['head_share_model']:.1f}% "
                f"| {r['docs']} | {r['tokens']:,} | {r['ours_docs_s']:.1f}{mfu} "
                f"| {r['ref_docs_s']:.1f} | **{r['ratio']:.2f}x** "
                f"| {r['ours_peak_mb']:.0f} / {r['ref_peak_mb']:.0f} "
                f"| {r['max_abs_delta']:.1e} ({r['score_spread']:.2g}) "
                f"| {r['reference']} |"
            )
        lines.append("")
    int8 = [r for r in res.get("local", []) if "int8_s" in r]
    if int8:
        lines += [
            "| int8 format | workload | fp32 docs/s | int8 docs/s | int8 / fp32 wall (median; best)"
            " | int8 / fp32 CPU time | int8 / ref | peak MB fp32 / int8 / ref | Spearman vs fp32"
            " | top-10 overlap | max abs d raw (fp32 spread) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in int8:
            lines.append(
                f"| {r['format']} | {r['workload']} | {r['ours_docs_s']:.1f} "
                f"| {r['int8_docs_s']:.1f} | **{r['int8_vs_fp32_median']:.2f}x** "
                f"({r['int8_vs_fp32']:.2f}x) | {r.get('int8_vs_fp32_cpu', 0):.2f}x "
                f"| {r['int8_vs_ref']:.2f}x "
                f"| {r['ours_peak_mb']:.0f} / {r['int8_peak_mb']:.0f} / {r['ref_peak_mb']:.0f} "
                f"| {r['int8_spearman']:.4f} | {r['int8_top10']:.1f} "
                f"| {r['int8_max_abs_delta']:.3f} ({r['int8_fp32_spread']:.2g}) |"
            )
        lines.append("")
    if res.get("oom"):
        lines += [
            "| OOM back-off format | docs | cap (tokens) | first batch | OOM batches"
            " | largest fitting batch | scored | max abs d raw vs normal run |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in res["oom"]:
            d = f"{r['max_abs_delta']:.1e}" if r["ok"] else r["error"][:60]
            lines.append(
                f"| {r['format']} | {r['docs']} | {r['cap_tokens']} | {r['first_batch']}"
                f" | {r['oom_batches']} | {r['largest_fitting_batch']} | {r['ok']}"
                f" | {d} |"
            )
        lines.append("")
    if res.get("w4"):
        lines += [
            "| W4 format | calls x docs | sequential docs/s | concurrent docs/s | speedup"
            " | max abs d raw | same order |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in res["w4"]:
            lines.append(
                f"| {r['format']} | {r['calls']} x {r['docs'] // r['calls']} "
                f"| {r['sequential_docs_s']:.1f} | {r['concurrent_docs_s']:.1f} "
                f"| **{r['speedup']:.2f}x** | {r['max_abs_delta']:.1e} | {r['same_order']} |"
            )
        lines.append("")
    if res.get("adapters"):
        lines += [
            "| adapter | fake: direct ms | fake: adapter ms | overhead ms | overhead % of "
            "the local W1 call (direct s) | overhead % of a 200 ms remote call |",
            "|---|---|---|---|---|---|",
        ]
        for r in res["adapters"]:
            lines.append(
                f"| {r['adapter']} | {r['fake_direct_ms']:.2f} | {r['fake_adapter_ms']:.2f} "
                f"| {r['overhead_ms']:.2f} | **{r['overhead_pct_of_local']:.3f}%** "
                f"({r['local_direct_s']:.2f} s) | {r['overhead_pct_of_200ms']:.2f}% |"
            )
        lines.append("")
    if res.get("remote"):
        lines += [
            "| remote (2,000 docs, 100/request, 200 ms) | one round trip s | wall s "
            "| wall / round trip | requests served |",
            "|---|---|---|---|---|",
        ]
        for r in res["remote"]:
            lines.append(
                f"| {r['setting']} | {r['one_round_trip_s']:.3f} | {r['wall_s']:.3f} "
                f"| **{r['ratio']:.2f}x** | {r['requests']} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profile", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--parts", default="local,adapters,remote")
    p.add_argument("--formats", default=",".join(FORMATS))
    p.add_argument("--workloads", default="W1,W2,W3")
    p.add_argument("--w4-formats", default=None, help="default: ctxl-v2 on CPU, all on GPU")
    p.add_argument("--repeats", type=int, default=None, help="timed runs (best of N); cpu 1, gpu 3")
    p.add_argument("--adapter-reps", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--model-dir", default=str(ROOT / ".cache" / "bench-models"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument(
        "--ref-python",
        default=None,
        help="run the local part in this interpreter (the .venv-ref with mxbai-rerank)",
    )
    p.add_argument("--json", default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--ours-kwargs",
        default="{}",
        help="extra LocalReranker kwargs (JSON), e.g. '{\"prefix_caching\": false}'",
    )
    p.add_argument(
        "--int8",
        action=argparse.BooleanOptionalAction,
        default=None,
        help='also run quantize="int8" in every cell (default: on for the cpu profile)',
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="with --profile gpu: the whole GPU code path on the CPU, tiny configs",
    )
    p.add_argument(
        "--max-docs",
        type=int,
        default=None,
        help="first N documents of each workload (default: all; --smoke: 8)",
    )
    p.add_argument(
        "--oom-formats",
        default=None,
        help="formats that run the OOM back-off step (gpu profile; default ctxl-v2)",
    )
    args = p.parse_args(argv)
    if args.smoke and args.profile != "gpu":
        p.error("--smoke is the GPU profile's CPU smoke mode: pass --profile gpu")
    if args.int8 is None:
        args.int8 = args.profile == "cpu"
    if args.smoke and args.max_docs is None:
        args.max_docs = 8
    args.oom_formats = [f for f in (args.oom_formats or "ctxl-v2").split(",") if f]
    args.formats = [f for f in args.formats.split(",") if f]
    args.workloads = [w for w in args.workloads.split(",") if w]
    if args.w4_formats is None:
        args.w4_formats = "ctxl-v2" if args.profile == "cpu" else ",".join(FORMATS)
    args.w4_formats = [f for f in args.w4_formats.split(",") if f]
    if args.repeats is None:
        args.repeats = 1 if args.profile == "cpu" or args.smoke else 3
    offline_logging(quiet=(*QUIET, "sentence_transformers", "httpx"))
    parts = [x for x in args.parts.split(",") if x]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {"command": " ".join(sys.argv), "ours_kwargs": args.ours_kwargs}
    for part in parts:
        t0 = time.perf_counter()
        if part == "local" and args.ref_python:
            # mxbai-rerank runs only under transformers 4: its format runs in that interpreter;
            # the other formats (and their references) in this one.
            here = [f for f in args.formats if f not in REF_ENV_FORMATS]
            there = [f for f in args.formats if f in REF_ENV_FORMATS]
            merged: dict[str, Any] = {"local": [], "w4": []}
            if there:
                sub = out / f"{args.profile}-local-ref-env.json"
                cmd = [
                    args.ref_python,
                    "-m",
                    "benchmarks.bench",
                    "--parts",
                    "local",
                    "--profile",
                    args.profile,
                    "--formats",
                    ",".join(there),
                    "--workloads",
                    ",".join(args.workloads),
                    "--w4-formats",
                    ",".join(args.w4_formats) or "none",
                    "--repeats",
                    str(args.repeats),
                    "--seed",
                    str(args.seed),
                    "--model-dir",
                    args.model_dir,
                    "--out",
                    str(out),
                    "--json",
                    str(sub),
                    "--ours-kwargs",
                    args.ours_kwargs,
                    "--int8" if args.int8 else "--no-int8",
                    *(["--max-docs", str(args.max_docs)] if args.max_docs else []),
                ]
                subprocess.run(cmd, check=True, cwd=ROOT)
                sub_res = json.loads(sub.read_text(encoding="utf-8"))
                merged["local"] += sub_res["local"]
                merged["w4"] += sub_res["w4"]
                merged["machine_ref_env"] = sub_res["machine"]
            if here:
                args.formats = here
                local = run_local(args)
                merged["local"] = local["local"] + merged["local"]
                merged["w4"] = local["w4"] + merged["w4"]
                merged["machine"] = local["machine"]
            res.update(merged)
        elif part == "local":
            res.update(run_local(args))
        elif part == "adapters":
            res.update(run_adapters(args))
        elif part == "remote":
            res.update(run_remote(args))
        else:
            raise SystemExit(f"unknown part {part!r}")
        log.info("part %s done in %.1fs", part, time.perf_counter() - t0)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1), encoding="utf-8")
        return 0
    stem = _stem(args)
    (out / f"{stem}.json").write_text(json.dumps(res, indent=1), encoding="utf-8")
    for scratch in (f"{stem}-local.partial.json", f"{stem}-local-ref-env.json"):
        (out / scratch).unlink(missing_ok=True)  # merged into <profile>.json
    table = render(res)
    (out / f"{stem}.md").write_text(table + "\n", encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
