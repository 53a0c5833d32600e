"""Parity of the ``mxbai-v2`` format with the official ``mxbai-rerank`` package (``MxbaiRerankV2``).

The reference runs in its own environment (transformers<5, see constraints-ref.txt): the test
calls ``tests/parity/reference/run_mxbai_reference.py`` with ``$RERANK_REF_PYTHON`` on the SAME tiny
Qwen2 directory and compares raw scores (logit("1") - logit("0")) within 1e-4 in fp32.

Without ``RERANK_REF_PYTHON`` the test is skipped, unless ``RERANK_REQUIRE_REF=1`` (``make test``
and CI set both), in which case it fails.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

TOL = 1e-4
REF_SCRIPT = Path(__file__).parent / "reference" / "run_mxbai_reference.py"
SMALL_MAX_LENGTH = 48  # small window: the long cases below really get truncated

LONG_DOC = " ".join(
    f"Sentence {i} talks about Paris, Berlin and green tea? Yes!" for i in range(40)
)
LONG_QUERY = "What is the capital of France and why? " * 12

# (name, query, instruction, documents, max_length)
CASES: list[tuple[str, str, str | None, list[str], int | None]] = [
    (
        "plain",
        "What is the capital of France?",
        None,
        [
            "Paris is the capital and largest city of France.",
            "Berlin is the capital of Germany!",
            "Is Paris the capital?",
            "no",
            "1",
            "¿Dónde está la biblioteca?",
            "绿茶富含儿茶素等抗氧化剂。",
            "Green tea contains antioxidants called catechins",
        ],
        None,
    ),
    (
        "instruction",
        "capital of France!",
        "Find documents that answer the question?",
        [
            "Paris is the capital and largest city of France.",
            "The quick brown fox jumps over the lazy dog.",
            "Wie spät ist es? Es ist halb drei.",
            "document: query: yes",
        ],
        None,
    ),
    (
        # punctuation at the very end of query / doc / instruction, and right before the joins
        "punctuation",
        "Is it relevant?",
        "Answer yes or no.",
        ["Yes!", "No.", "Maybe?", "?", "!", ".", "Relevance:", "a\n", "x?\n\n"],
        None,
    ),
    (
        "truncation",
        "Where is Paris?",
        None,
        [LONG_DOC, "Paris is in France.", LONG_DOC[::-1], LONG_DOC[:150]],
        SMALL_MAX_LENGTH,
    ),
    (
        "long-query-truncation",
        LONG_QUERY,
        "Given a web search query, retrieve relevant passages that answer the query.",
        [LONG_DOC, "Paris."],
        SMALL_MAX_LENGTH,
    ),
]


def _ref_python() -> str:
    ref = os.environ.get("RERANK_REF_PYTHON", "")
    if not ref:
        if os.environ.get("RERANK_REQUIRE_REF") == "1":
            pytest.fail("RERANK_REQUIRE_REF=1 but RERANK_REF_PYTHON is not set (run `make test`)")
        pytest.skip(
            "mxbai parity needs the reference venv: set RERANK_REF_PYTHON to .venv-ref/bin/python "
            "(`make ref-env`), as `make test` does"
        )
    if not Path(ref).exists():
        pytest.fail(f"RERANK_REF_PYTHON={ref!r} does not exist (run `make ref-env`)")
    return ref


def _run_reference(model_dir: Path, runs: list[dict[str, Any]]) -> Any:
    payload = {"model": str(model_dir), "runs": runs}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [_ref_python(), str(REF_SCRIPT)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"reference script failed (rc={proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def reference_scores(tiny_mxbai_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """{(case name, "all"|"one"): {"raw": [...], "normalized": [...], "rank": [...]}}: one
    subprocess; one reference model per distinct max_length; every case scored batched and one
    document at a time."""
    lengths = sorted({c[4] for c in CASES}, key=lambda v: -1 if v is None else v)
    runs = [
        {
            "max_length": max_length,
            "cases": [
                {"query": q, "instruction": instr, "documents": docs, "batch": batch}
                for (_, q, instr, docs, ml) in CASES
                if ml == max_length
                for batch in ("all", "one")
            ],
        }
        for max_length in lengths
    ]
    data = _run_reference(tiny_mxbai_dir, runs)
    assert data["versions"]["transformers"].startswith("4."), data["versions"]
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for max_length, run in zip(lengths, data["runs"], strict=True):
        results = iter(run["results"])
        for name, *_ in (c for c in CASES if c[4] == max_length):
            for batch in ("all", "one"):
                res = next(results)
                res["estimated_max"] = run["estimated_max"]
                out[(name, batch)] = res
    return out


def _local_scores(
    model_dir: Path,
    case: tuple[str, str, str | None, list[str], int | None],
    batch_size: int,
) -> tuple[list[float], list[float], list[int]]:
    from rerank_integrations.backends.local import LocalReranker

    _, query, instruction, docs, max_length = case
    reranker = LocalReranker(
        model=str(model_dir),
        model_format="mxbai-v2",
        device="cpu",
        dtype="float32",
        batch_size=batch_size,
        max_length=max_length,
    )
    try:
        results = reranker.rerank(query, docs, instruction=instruction)
    finally:
        reranker.close()
    raw = [math.nan] * len(docs)
    rel = [math.nan] * len(docs)
    for r in results:
        raw[r.index] = r.raw_score
        rel[r.index] = r.relevance_score
    return raw, rel, [r.index for r in results]


@pytest.mark.parametrize("batch_size", [1, 64], ids=["batch1", "batch64"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_mxbai_raw_scores_match_reference(
    tiny_mxbai_dir: Path,
    reference_scores: dict[tuple[str, str], dict[str, Any]],
    case: tuple[str, str, str | None, list[str], int | None],
    batch_size: int,
    record_property: Any,
) -> None:
    raw, rel, order = _local_scores(tiny_mxbai_dir, case, batch_size)
    for ref_batch in ("all", "one"):
        ref = reference_scores[(case[0], ref_batch)]
        deltas = [abs(a - b) for a, b in zip(raw, ref["raw"], strict=True)]
        record_property(f"max_abs_delta_raw_vs_ref_{ref_batch}", max(deltas))
        assert max(deltas) <= TOL, (
            f"{case[0]} batch_size={batch_size} vs reference({ref_batch}): max |Δraw| = "
            f"{max(deltas):.3g}\nlocal={raw}\nref={ref['raw']}"
        )
    ref = reference_scores[(case[0], "all")]
    # relevance_score: the reference's normalisation sigmoid(raw - estimated_max / 2).
    rel_deltas = [abs(a - b) for a, b in zip(rel, ref["normalized"], strict=True)]
    record_property("max_abs_delta_relevance", max(rel_deltas))
    assert max(rel_deltas) <= TOL, (
        f"{case[0]}: relevance_score differs from MxbaiRerankV2(normalize=True) "
        f"(estimated_max={ref['estimated_max']}): max |Δ| = {max(rel_deltas):.3g}"
    )
    # Ranking agrees wherever the reference's scores are not within tolerance of a tie.
    ref_raw = ref["raw"]
    for i, j in itertools.pairwise(order):
        assert ref_raw[i] >= ref_raw[j] - TOL, (order, ref_raw)


def test_mxbai_reference_cases_are_discriminative(
    reference_scores: dict[tuple[str, str], dict[str, Any]],
) -> None:
    """Guards the test itself: scores spread far beyond the tolerance, so a wrong template piece
    or a joined-vs-piecewise tokenization would be caught."""
    raw = reference_scores[("punctuation", "all")]["raw"]
    assert max(raw) - min(raw) > 100 * TOL
    trunc = reference_scores[("truncation", "all")]["raw"]
    # LONG_DOC and its 150-character prefix are both cut to the same window: same score ...
    assert abs(trunc[0] - trunc[3]) < 1e-6, trunc
    # ... while genuinely different documents score differently.
    assert len({round(x, 6) for x in trunc}) == 3, trunc


def test_cases_exercise_the_piecewise_tokenization_trap(tiny_mxbai_dir: Path) -> None:
    """The reference tokenizes query and document pieces separately; the punctuation case must
    produce different ids when the prompt is tokenized as one joined string (otherwise the parity
    test could not catch that bug)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_mxbai_dir))

    def ids(text: str) -> list[int]:
        return list(tok(text, add_special_tokens=False)["input_ids"])

    _, query, instruction, docs, _ = next(c for c in CASES if c[0] == "punctuation")
    q = f"instruction: {instruction}\nquery: {query}"
    differing = [
        d
        for d in docs
        if ids(q) + ids("\n") + ids(f"document: {d}") + ids("\n") != ids(f"{q}\ndocument: {d}\n")
    ]
    assert len(differing) >= len(docs) - 1, differing
