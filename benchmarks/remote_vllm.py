"""RemoteReranker's own cost against a REAL vLLM server (CPU build, tiny XLM-R cross-encoder).

Two rows, each measured INTERLEAVED (ours, bare, ours, bare, ...) so that drift of the
machine hits both alike; medians are reported:

- **client overhead**: one ``rerank()`` of 100 documents vs a bare ``httpx.Client.post`` of
  the SAME JSON body on a kept-alive connection, decoded with ``json.loads``;
- **split path**: 1,000 documents with ``max_documents_per_request=64`` (16 sub-requests
  sent concurrently) vs the ideal: the same 16 bodies posted by 16 bare threads at once.

Usage (needs ``make servers-env``)::

    .venv/bin/python -m benchmarks.remote_vllm --vllm-python .venv-vllm/bin/python

Writes the markdown row(s) to stdout and the raw numbers to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
logger = logging.getLogger("benchmarks.remote_vllm")


def _documents(n: int) -> list[str]:
    words = [
        "Paris",
        "Berlin",
        "tea",
        "bread",
        "capital",
        "river",
        "city",
        "museum",
        "train",
        "market",
        "coffee",
    ]
    return [" ".join(words[(i + j) % len(words)] for j in range(12 + i % 9)) for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vllm-python", required=True)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.path.insert(0, str(ROOT / "tests"))
    import httpx
    from helpers.real_servers import (
        VLLM_CROSS_ENCODER,
        ServerProcess,
        free_port,
        server_argv,
    )
    from helpers.tiny_models import make_tiny_xlmr

    from rerank_integrations import RemoteReranker
    from rerank_integrations.backends.remote.formats import WireRequest, get_format

    work = Path(tempfile.mkdtemp(prefix="bench-vllm-"))
    model_dir = make_tiny_xlmr(work / "tiny-xlmr", num_heads=2)
    port = free_port()
    argv_ = server_argv(
        VLLM_CROSS_ENCODER,
        executable=args.vllm_python,
        model_dir=model_dir,
        served_name="tiny-xlmr",
        port=port,
        max_model_len=256,
        api_key=None,
    )
    server = ServerProcess("vllm-bench", argv_, port, work / "vllm.log")
    server.start()
    results: dict[str, Any] = {}
    try:
        server.wait_ready(900)
        url = f"{server.root}/v1/rerank"
        fmt = get_format("vllm")
        query = "Which city is the capital of France?"

        def body(docs: list[str]) -> bytes:
            request = WireRequest(query, tuple(docs), tuple(range(len(docs))))
            return json.dumps(fmt.build_body("tiny-xlmr", request, True)).encode()

        headers = {"Content-Type": "application/json"}
        bare = httpx.Client(timeout=120)
        ours = RemoteReranker("tiny-xlmr", api_format="vllm", base_url=server.root + "/v1")

        def bare_post(content: bytes) -> None:
            answer = bare.post(url, content=content, headers=headers)
            answer.raise_for_status()
            json.loads(answer.text)

        # ---- client overhead, 100 documents, one request
        docs100 = _documents(100)
        content100 = body(docs100)
        for _ in range(3):  # warm-up: connections, server caches
            ours.rerank(query, docs100)
            bare_post(content100)
        t_ours: list[float] = []
        t_bare: list[float] = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            ours.rerank(query, docs100)
            t1 = time.perf_counter()
            bare_post(content100)
            t2 = time.perf_counter()
            t_ours.append(t1 - t0)
            t_bare.append(t2 - t1)
        m_ours, m_bare = statistics.median(t_ours), statistics.median(t_bare)
        results["overhead_100"] = {
            "ours_median_s": m_ours,
            "bare_median_s": m_bare,
            "overhead": (m_ours - m_bare) / m_bare,
        }

        # ---- split path, 1,000 documents / 64 per request, concurrent
        docs1000 = _documents(1000)
        split = RemoteReranker(
            "tiny-xlmr",
            api_format="vllm",
            base_url=server.root + "/v1",
            max_documents_per_request=64,
        )
        parts = [docs1000[i : i + 64] for i in range(0, 1000, 64)]
        contents = [body(p) for p in parts]
        pool = ThreadPoolExecutor(max_workers=len(contents))
        clients = [httpx.Client(timeout=120) for _ in contents]

        def one(k: int) -> None:
            answer = clients[k].post(url, content=contents[k], headers=headers)
            answer.raise_for_status()
            json.loads(answer.text)

        def ideal() -> None:
            list(pool.map(one, range(len(contents))))

        for _ in range(2):
            split.rerank(query, docs1000)
            ideal()
        s_ours: list[float] = []
        s_ideal: list[float] = []
        for _ in range(max(5, args.repeats // 3)):
            t0 = time.perf_counter()
            split.rerank(query, docs1000)
            t1 = time.perf_counter()
            ideal()
            t2 = time.perf_counter()
            s_ours.append(t1 - t0)
            s_ideal.append(t2 - t1)
        results["split_1000_by_64"] = {
            "ours_median_s": statistics.median(s_ours),
            "ideal_median_s": statistics.median(s_ideal),
            "ratio": statistics.median(s_ours) / statistics.median(s_ideal),
            "requests": len(contents),
        }
        ours.close()
        split.close()
        bare.close()
        for c in clients:
            c.close()
        pool.shutdown()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    o, s = results["overhead_100"], results["split_1000_by_64"]
    print("| row | ours (median) | bare httpx (median) | ours / bare |")
    print("|---|---|---|---|")
    print(
        f"| 100 documents, one request | {o['ours_median_s'] * 1000:.1f} ms | "
        f"{o['bare_median_s'] * 1000:.1f} ms | {1 + o['overhead']:.3f} "
        f"({o['overhead'] * 100:+.1f} %) |"
    )
    print(
        f"| 1,000 documents, 64 per request ({s['requests']} concurrent) | "
        f"{s['ours_median_s'] * 1000:.0f} ms | {s['ideal_median_s'] * 1000:.0f} ms "
        f"(16 bare threads) | {s['ratio']:.3f} |"
    )
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
