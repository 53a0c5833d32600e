"""Round-2 remote reliability numbers (docs/reliability.md "Measured (remote)"): a shared sync
reranker with failing and healthy calls, and a gzip bomb against the size cap.

    .venv/bin/python -m benchmarks.remote_hostile [SRC]

SRC is the ``src/`` directory of the version to measure (default: this checkout's); to measure
an older commit, ``git worktree add /tmp/old <commit>`` and pass ``/tmp/old/src`` (the hostile
test server comes from this checkout's ``tests/helpers``). Each scenario runs in its own
subprocess, so ``ru_maxrss`` is that scenario's.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CONCURRENCY = """
import collections, json, threading, time
from helpers.hostile_server import Act, HostileServer
from rerank_integrations.backends.remote import RemoteReranker

with HostileServer() as srv:
    srv.route = lambda seen: Act.error(400) if (seen.body or {}).get("query") == "bad" else None
    r = RemoteReranker("m", base_url=srv.url(), max_retries=0, max_documents_per_request=1)
    counts = collections.Counter()
    lock = threading.Lock()
    stop = time.time() + 5

    def worker(q):
        while time.time() < stop:
            try:
                r.rerank(q, ["a", "b", "c", "d"])
                k = "ok"
            except Exception as e:
                k = type(e).__name__
            with lock:
                counts[(q, k)] += 1

    ts = [threading.Thread(target=worker, args=(q,)) for q in ["good", "bad"] * 8]
    [t.start() for t in ts]
    [t.join() for t in ts]
    good = sum(n for (q, k), n in counts.items() if q == "good")
    failed = sum(n for (q, k), n in counts.items() if q == "good" and k != "ok")
    print(json.dumps({"healthy_calls": good, "healthy_failed": failed}))
"""

BOMB = """
import json, resource, time, zlib
from helpers.hostile_server import Act, HostileServer
from rerank_integrations.backends.remote import RemoteReranker

packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
data = b"".join(packer.compress(bytes(1 << 20)) for _ in range(256)) + packer.flush()
with HostileServer() as server:
    server.default = Act.raw_bytes(data, headers={"Content-Encoding": "gzip"})
    r = RemoteReranker("m", base_url=server.url(), max_response_bytes=1 << 20)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    try:
        r.rerank("q", ["a", "b"])
        error = None
    except Exception as e:
        error = type(e).__name__
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024
    print(json.dumps({"gzip_bytes": len(data), "inflated_mib": 256, "error": error,
                      "grown_mib": grown, "seconds": round(time.perf_counter() - start, 2)}))
"""


def main() -> None:
    src = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "src")
    prelude = f"import sys; sys.path[:0] = [{src!r}, {str(ROOT / 'tests')!r}]\n"
    for name, code in (("concurrency", CONCURRENCY), ("gzip_bomb", BOMB)):
        out = subprocess.run(
            [sys.executable, "-c", prelude + textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        print(name, out.stdout.strip() or out.stderr[-500:])


if __name__ == "__main__":
    main()
