"""Scores tiny causal models with OUR LocalReranker in whatever interpreter runs this script.

Used by tests/parity/test_local_prefix_cache_versions.py to run the package under the reference
venv's transformers 4 (``$RERANK_REF_PYTHON``, constraints-ref.txt), where models only know the
KV-cache keyword ``past_key_values``; the test venv's transformers 5 takes ``cache``. The package
is found through PYTHONPATH (src/), not installed there.

stdin: {"models": [dir, ...], "query": str, "documents": [str, ...]}
stdout (last line): {"transformers": version, "<dir>": {"cache_name", "cached", "plain",
"warnings", "prefixes"}}
"""

from __future__ import annotations

import json
import sys
import warnings

import transformers

from rerank_integrations import LocalReranker


def main() -> None:
    payload = json.loads(sys.stdin.read())
    query, docs = payload["query"], payload["documents"]
    out: dict[str, object] = {"transformers": transformers.__version__}
    for model in payload["models"]:
        with (
            LocalReranker(model, dtype="float32") as cached,
            LocalReranker(model, dtype="float32", prefix_caching=False) as plain,
        ):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                a = [x.raw_score for x in sorted(cached.rerank(query, docs), key=lambda x: x.index)]
            b = [x.raw_score for x in sorted(plain.rerank(query, docs), key=lambda x: x.index)]
            out[model] = {
                "cache_name": cached._engine._runner.cache_name,  # type: ignore[union-attr]
                "cached": a,
                "plain": b,
                "warnings": [
                    str(w.message)
                    for w in caught
                    if issubclass(w.category, (FutureWarning, DeprecationWarning))
                ],
                "prefixes": len(cached._engine._prefixes),
            }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
