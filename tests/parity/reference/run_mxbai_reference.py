"""Score cases with the official mxbai-rerank package (``MxbaiRerankV2``) and print JSON.

Run by the parity test through ``$RERANK_REF_PYTHON`` (the ``.venv-ref`` interpreter with
transformers<5 and mxbai-rerank 0.1.6; see constraints-ref.txt / ``make ref-env``). It must not
import rerank_integrations: it is the independent oracle.

Input (JSON on stdin)::

    {"model": "<local Qwen2 dir>", "estimated_max": 12.0 | null,
     "attn_implementation": "sdpa" | "eager",
     "runs": [{"max_length": 8192 | null,
               "cases": [{"query": str, "instruction": str | null, "documents": [str, ...],
                          "batch": "all" | "one"}]}]}

One ``MxbaiRerankV2`` is built per run (``max_length`` is a constructor argument).

``batch: "all"`` scores a case's documents in one ``predict`` call (one padded batch);
``"one"`` calls ``predict`` once per document. For every case the output has the raw scores
(logit("1") - logit("0"), what ``predict(normalize=False)`` returns) and the normalised ones
(``predict(normalize=True)``), plus ``rank`` (the package's own ranking of the case, indices
best first)::

    {"versions": {...}, "runs": [{"max_length": int, "estimated_max": float,
                                  "results": [{"raw": [...], "normalized": [...],
                                               "rank": [...]}]}]}
"""

from __future__ import annotations

import json
import sys
from typing import Any


def main() -> int:
    import mxbai_rerank
    import torch
    import transformers
    from mxbai_rerank import MxbaiRerankV2

    request: dict[str, Any] = json.load(sys.stdin)
    runs = [
        _score_run(MxbaiRerankV2, request, run["max_length"], run["cases"])
        for run in request["runs"]
    ]
    out = {
        "versions": {
            "mxbai_rerank": getattr(mxbai_rerank, "__version__", "?"),
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        },
        "runs": runs,
    }
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


def _score_run(
    model_cls: Any, request: dict[str, Any], max_length: int | None, cases: list[dict[str, Any]]
) -> dict[str, Any]:
    import torch

    kwargs: dict[str, Any] = {
        "device": "cpu",
        "torch_dtype": torch.float32,
        "attn_implementation": request.get("attn_implementation") or "sdpa",
    }
    if max_length is not None:
        kwargs["max_length"] = int(max_length)
    if request.get("estimated_max") is not None:
        kwargs["estimated_max"] = float(request["estimated_max"])
    model = model_cls(request["model"], **kwargs)

    results = []
    for case in cases:
        query = case["query"]
        docs = list(case["documents"])
        instruction = case.get("instruction")
        if case.get("batch", "all") == "one":
            raw = [
                float(model.predict([query], [d], instruction=instruction).view(-1)[0])
                for d in docs
            ]
        else:
            scores = model.predict([query] * len(docs), docs, instruction=instruction)
            raw = [float(x) for x in scores.view(-1)]
        normalized = [float(x) for x in model.normalize_scores(torch.tensor(raw))]
        ranked = model.rank(
            query,
            docs,
            top_k=len(docs),
            batch_size=len(docs) + 1,  # below batch_size: one predict call, input order
            instruction=instruction,
            return_documents=False,
        )
        results.append({"raw": raw, "normalized": normalized, "rank": [r.index for r in ranked]})
    return {
        "max_length": model.max_length,
        "estimated_max": model.estimated_max,
        "results": results,
    }


if __name__ == "__main__":
    raise SystemExit(main())
