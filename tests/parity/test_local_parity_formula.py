"""``ctxl-v2`` and ``qwen3`` formats against their published formulas, written independently here.

Each oracle builds the prompt exactly as the model card does (ctxl-rerank-v2, Qwen3-Reranker),
runs a FULL-logit forward of the same tiny model with transformers
(``model(**inputs).logits[:, -1, :]``, one document at a time, eager attention, fp32) and reads
the published token(s). The local backend (last-hidden-state projection, sorted batches, SDPA)
must agree within 1e-4.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

TOL = 1e-4

CTXL_INSTRUCTION_PROMPT = (
    "Check whether a given document contains information helpful to answer the query."
)
QWEN3_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n"
)
QWEN3_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
QWEN3_DEFAULT_INSTRUCTION = (
    "Given a web search query, retrieve relevant passages that answer the query"
)

QUERY = "What is the capital of France?"
DOCS = [
    "Paris is the capital and largest city of France.",
    "Berlin is the capital of Germany!",
    "Is Paris the capital?",
    "no",
    "¿Dónde está la biblioteca?",
    "绿茶富含儿茶素等抗氧化剂。",
    "Green tea contains antioxidants called catechins",
    "The quick brown fox jumps over the lazy dog. " * 3,
]
INSTRUCTIONS = [None, "Prefer recent documents.", "Answer in one word?"]


# ---------------------------------------------------------------------------------------------
# Independent oracles
# ---------------------------------------------------------------------------------------------


class _Oracle:
    def __init__(self, model_dir: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(str(model_dir))
        self.model = AutoModelForCausalLM.from_pretrained(
            str(model_dir), dtype=torch.float32, attn_implementation="eager"
        ).eval()

    def last_logits(self, ids: Sequence[int]) -> Any:
        torch = self.torch
        with torch.no_grad():
            inputs = {
                "input_ids": torch.tensor([list(ids)]),
                "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
            }
            return self.model(**inputs).logits[:, -1, :][0]

    def ids(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"])


def ctxl_prompt(query: str, document: str, instruction: str | None) -> str:
    tail = f" {instruction}" if instruction else ""
    return f"{CTXL_INSTRUCTION_PROMPT}\n<Document> {document}\n<Query> {query}{tail} ??"


def ctxl_formula(oracle: _Oracle, query: str, document: str, instruction: str | None) -> float:
    """Logit of vocabulary id 0 at the last position (fp32, before the bf16 rounding)."""
    enc = oracle.tok(ctxl_prompt(query, document, instruction))  # the card tokenizes the string
    return float(oracle.last_logits(enc["input_ids"])[0])


def bf16(x: float) -> float:
    import torch

    return float(torch.tensor(x, dtype=torch.float32).to(torch.bfloat16).float())


def qwen3_formula(oracle: _Oracle, query: str, document: str, instruction: str | None) -> float:
    """logit("yes") - logit("no") with the official piecewise prefix + body + suffix ids."""
    instr = instruction if instruction is not None else QWEN3_DEFAULT_INSTRUCTION
    body = f"<Instruct>: {instr}\n<Query>: {query}\n<Document>: {document}"
    ids = oracle.ids(QWEN3_PREFIX) + oracle.ids(body) + oracle.ids(QWEN3_SUFFIX)
    logits = oracle.last_logits(ids)
    yes = oracle.tok.convert_tokens_to_ids("yes")
    no = oracle.tok.convert_tokens_to_ids("no")
    return float(logits[yes] - logits[no])


def local_scores(
    model_dir: Path,
    model_format: str,
    query: str,
    docs: Sequence[str],
    *,
    instruction: str | None = None,
    batch_size: int = 64,
    max_length: int | None = None,
) -> tuple[list[float], list[float]]:
    """(raw scores, relevance scores) in input order."""
    from rerank_integrations.backends.local import LocalReranker

    reranker = LocalReranker(
        model=str(model_dir),
        model_format=model_format,
        device="cpu",
        dtype="float32",
        batch_size=batch_size,
        max_length=max_length,
    )
    try:
        results = reranker.rerank(query, list(docs), instruction=instruction)
    finally:
        reranker.close()
    raw = [math.nan] * len(docs)
    rel = [math.nan] * len(docs)
    for r in results:
        raw[r.index] = r.raw_score
        rel[r.index] = r.relevance_score
    return raw, rel


@pytest.fixture(scope="module")
def ctxl_oracle(tiny_ctxl_dir: Path) -> _Oracle:
    return _Oracle(tiny_ctxl_dir)


@pytest.fixture(scope="module")
def qwen3_oracle(tiny_qwen3_reranker_dir: Path) -> _Oracle:
    return _Oracle(tiny_qwen3_reranker_dir)


# ---------------------------------------------------------------------------------------------
# ctxl-v2
# ---------------------------------------------------------------------------------------------


def _assert_bf16_rounded(raw: float, fp32_formula: float, what: str) -> None:
    """raw == bf16(formula); the fp32 paths may differ by ~1e-6, so next to a bf16 rounding
    midpoint either neighbour is accepted (never anything else)."""
    assert bf16(raw) == raw, f"{what}: raw_score {raw!r} is not a bfloat16 value"
    allowed = {bf16(fp32_formula), bf16(fp32_formula - TOL), bf16(fp32_formula + TOL)}
    assert raw in allowed, f"{what}: raw {raw!r} vs bf16(formula) {bf16(fp32_formula)!r}"


@pytest.mark.parametrize("instruction", INSTRUCTIONS, ids=["no-instr", "instr", "instr-q"])
@pytest.mark.parametrize("batch_size", [1, 64], ids=["batch1", "batch64"])
def test_ctxl_v2_matches_formula(
    tiny_ctxl_dir: Path,
    ctxl_oracle: _Oracle,
    instruction: str | None,
    batch_size: int,
    record_property: Any,
) -> None:
    raw, _ = local_scores(
        tiny_ctxl_dir, "ctxl-v2", QUERY, DOCS, instruction=instruction, batch_size=batch_size
    )
    expected = [ctxl_formula(ctxl_oracle, QUERY, d, instruction) for d in DOCS]
    record_property(
        "max_abs_delta_vs_bf16_formula",
        max(abs(r - bf16(e)) for r, e in zip(raw, expected, strict=True)),
    )
    record_property(
        "max_abs_delta_vs_fp32_formula", max(abs(r - e) for r, e in zip(raw, expected, strict=True))
    )
    for i, (r, e) in enumerate(zip(raw, expected, strict=True)):
        _assert_bf16_rounded(r, e, f"doc {i} (local={raw}, formula={expected})")


def test_ctxl_v2_instruction_changes_the_prompt(ctxl_oracle: _Oracle) -> None:
    """Guards the oracle: an instruction really changes the score, and no instruction never
    renders 'None'."""
    assert "None" not in ctxl_prompt(QUERY, DOCS[0], None)
    with_instr = ctxl_formula(ctxl_oracle, QUERY, DOCS[0], "Prefer recent documents.")
    without = ctxl_formula(ctxl_oracle, QUERY, DOCS[0], None)
    assert abs(with_instr - without) > 100 * TOL
    spread = [ctxl_formula(ctxl_oracle, QUERY, d, None) for d in DOCS]
    assert max(spread) - min(spread) > 100 * TOL


def test_ctxl_v2_without_pad_token_uses_eos(tiny_models_root: Path) -> None:
    """A tokenizer without a pad token must still batch (EOS as pad) and score like the formula."""
    from helpers.tiny_models import make_tiny_qwen3

    model_dir = make_tiny_qwen3(
        tiny_models_root / "tiny-ctxl-rerank-v2-nopad", seed=5, tokenizer_kwargs={"pad_token": None}
    )
    oracle = _Oracle(model_dir)
    assert oracle.tok.pad_token is None
    raw, _ = local_scores(model_dir, "ctxl-v2", QUERY, DOCS[:4], batch_size=4)
    for i, d in enumerate(DOCS[:4]):
        _assert_bf16_rounded(raw[i], ctxl_formula(oracle, QUERY, d, None), f"doc {i}")


# ---------------------------------------------------------------------------------------------
# Qwen3-Reranker
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("instruction", INSTRUCTIONS, ids=["default-instr", "instr", "instr-q"])
@pytest.mark.parametrize("batch_size", [1, 64], ids=["batch1", "batch64"])
def test_qwen3_matches_formula(
    tiny_qwen3_reranker_dir: Path,
    qwen3_oracle: _Oracle,
    instruction: str | None,
    batch_size: int,
    record_property: Any,
) -> None:
    raw, rel = local_scores(
        tiny_qwen3_reranker_dir,
        "qwen3",
        QUERY,
        DOCS,
        instruction=instruction,
        batch_size=batch_size,
    )
    expected = [qwen3_formula(qwen3_oracle, QUERY, d, instruction) for d in DOCS]
    deltas = [abs(a - b) for a, b in zip(raw, expected, strict=True)]
    record_property("max_abs_delta_raw", max(deltas))
    assert max(deltas) <= TOL, f"max |Δ| = {max(deltas):.3g}\nlocal={raw}\nformula={expected}"
    # relevance_score = sigmoid(yes - no) = softmax([no, yes])[1], as the model card computes it.
    sig = [1.0 / (1.0 + math.exp(-e)) for e in expected]
    rel_deltas = [abs(a - b) for a, b in zip(rel, sig, strict=True)]
    assert max(rel_deltas) <= TOL, f"relevance max |Δ| = {max(rel_deltas):.3g}"


def test_qwen3_default_instruction_is_applied(qwen3_oracle: _Oracle) -> None:
    """Guards the oracle: the default instruction differs from an explicit other one."""
    default = qwen3_formula(qwen3_oracle, QUERY, DOCS[0], None)
    explicit_default = qwen3_formula(qwen3_oracle, QUERY, DOCS[0], QWEN3_DEFAULT_INSTRUCTION)
    other = qwen3_formula(qwen3_oracle, QUERY, DOCS[0], "Prefer recent documents.")
    assert default == explicit_default
    assert abs(default - other) > 100 * TOL


# ---------------------------------------------------------------------------------------------
# Truncation: the document is cut, the query / instruction / template around it are kept
# ---------------------------------------------------------------------------------------------

LONG_DOC = " ".join(f"Paris, Berlin and green tea number {i}; yes or no?" for i in range(60))


def qwen3_truncated_formula(
    oracle: _Oracle, query: str, document: str, instruction: str | None, max_length: int
) -> float:
    """Official Qwen3-Reranker truncation: the body is cut from the right to
    ``max_length - len(prefix) - len(suffix)`` tokens; prefix and suffix are kept."""
    instr = instruction if instruction is not None else QWEN3_DEFAULT_INSTRUCTION
    body = f"<Instruct>: {instr}\n<Query>: {query}\n<Document>: {document}"
    prefix, suffix = oracle.ids(QWEN3_PREFIX), oracle.ids(QWEN3_SUFFIX)
    body_ids = oracle.ids(body)[: max_length - len(prefix) - len(suffix)]
    logits = oracle.last_logits(prefix + body_ids + suffix)
    yes = oracle.tok.convert_tokens_to_ids("yes")
    no = oracle.tok.convert_tokens_to_ids("no")
    return float(logits[yes] - logits[no])


def test_qwen3_truncation_matches_official(
    tiny_qwen3_reranker_dir: Path, qwen3_oracle: _Oracle, record_property: Any
) -> None:
    fixed = len(qwen3_oracle.ids(QWEN3_PREFIX)) + len(qwen3_oracle.ids(QWEN3_SUFFIX))
    max_length = fixed + 80
    docs = [LONG_DOC, "Paris is the capital of France.", LONG_DOC[:400]]
    raw, _ = local_scores(
        tiny_qwen3_reranker_dir, "qwen3", QUERY, docs, batch_size=8, max_length=max_length
    )
    expected = [qwen3_truncated_formula(qwen3_oracle, QUERY, d, None, max_length) for d in docs]
    deltas = [abs(a - b) for a, b in zip(raw, expected, strict=True)]
    record_property("max_abs_delta_raw", max(deltas))
    assert max(deltas) <= TOL, f"max |Δ| = {max(deltas):.3g}\nlocal={raw}\nformula={expected}"
    untruncated = qwen3_formula(qwen3_oracle, QUERY, LONG_DOC, None)
    assert abs(untruncated - expected[0]) > 100 * TOL  # the cut really changed the input


def _ctxl_logit_of_ids(oracle: _Oracle, ids: Sequence[int]) -> float:
    return float(oracle.last_logits(ids)[0])


@pytest.mark.parametrize(
    "instruction", [None, "Prefer recent documents."], ids=["no-instr", "instr"]
)
def test_ctxl_v2_truncation_keeps_query_tail(
    tiny_ctxl_dir: Path, ctxl_oracle: _Oracle, instruction: str | None, record_property: Any
) -> None:
    """ctxl-v2's model card publishes no truncation rule; ours: cut the DOCUMENT, keep
    ``\\n<Query> {query}[ {instruction}] ??`` intact. The oracle builds a prompt of exactly
    ``max_length`` tokens ending with the full query tail, with the document cut at the token
    level; either tokenization of the head/document boundary is accepted (document tokenized
    with the head, or on its own). Plain right truncation of the whole prompt must NOT match."""
    prompt = ctxl_prompt(QUERY, LONG_DOC, instruction)
    doc_at = prompt.index(LONG_DOC)
    head, tail = prompt[:doc_at], prompt[doc_at + len(LONG_DOC) :]
    tail_ids = ctxl_oracle.ids(tail)
    max_length = len(ctxl_oracle.ids(head)) + len(tail_ids) + 60
    raw, _ = local_scores(
        tiny_ctxl_dir,
        "ctxl-v2",
        QUERY,
        [LONG_DOC],
        instruction=instruction,
        batch_size=1,
        max_length=max_length,
    )
    keep = max_length - len(tail_ids)
    joined = ctxl_oracle.ids(head + LONG_DOC)[:keep] + tail_ids
    piecewise = (ctxl_oracle.ids(head) + ctxl_oracle.ids(LONG_DOC))[:keep] + tail_ids
    naive = ctxl_oracle.ids(prompt)[:max_length]
    candidates = {
        "joined": _ctxl_logit_of_ids(ctxl_oracle, joined),
        "piecewise": _ctxl_logit_of_ids(ctxl_oracle, piecewise),
    }
    naive_score = _ctxl_logit_of_ids(ctxl_oracle, naive)
    assert bf16(raw[0]) == raw[0]
    matches = {k: v for k, v in candidates.items() if abs(bf16(v) - raw[0]) <= TOL}
    record_property("matching_boundary", ",".join(sorted(matches)))
    assert matches, f"local={raw[0]} candidates={candidates} naive={naive_score}"
    assert abs(bf16(naive_score) - raw[0]) > 100 * TOL, "plain right truncation cuts the query"
