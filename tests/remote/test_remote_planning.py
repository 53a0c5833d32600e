"""Folding, token estimate, client-side truncation, splitting under limits, learnt limits and
merging (pure)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rerank_integrations.backends.remote.formats import FORMATS, WireRequest
from rerank_integrations.backends.remote.limits import LearnedLimits, Limits, StatedLimit
from rerank_integrations.backends.remote.planning import (
    PAIR_OVERHEAD,
    estimate_tokens,
    fold_request,
    merge_results,
    plan_call,
    plan_requests,
    split_rejected,
    split_to_limit,
    truncate_to_tokens,
)
from rerank_integrations.errors import (
    RemoteResponseError,
    RerankInputError,
    UnsupportedFeatureError,
)
from rerank_integrations.folding import fold_instruction, fold_metadata
from rerank_integrations.validation import RerankRequest


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("", 0),
        ("abc", 1),
        ("abcd", 2),
        ("hello world", 4),
        ("2024", 4),  # digits count one each
        ("year 2024", 6),
        ("你好世界", 4),  # CJK: one per character
        ("héllo", 3),
        ("Привет", 6),
    ],
)
def test_estimate_tokens_table(text: str, tokens: int) -> None:
    assert estimate_tokens(text) == tokens


def test_estimate_is_conservative_for_english_and_cjk() -> None:
    english = "Rerankers score each query and document pair with a cross-encoder. " * 20
    # real tokenizers give ~4.2 chars/token for English: the estimate must not be lower
    assert estimate_tokens(english) >= len(english) / 4
    cjk = "检索增强生成使用重排序模型来提高相关性。" * 20
    assert estimate_tokens(cjk) >= len(cjk)


@given(st.text(max_size=300), st.integers(min_value=0, max_value=120))
def test_truncate_fits_and_is_a_prefix(text: str, budget: int) -> None:
    cut = truncate_to_tokens(text, budget)
    assert text.startswith(cut)
    assert estimate_tokens(cut) <= budget
    if estimate_tokens(text) <= budget:
        assert cut == text
    else:  # maximal: one more character would not fit
        assert estimate_tokens(text[: len(cut) + 1]) > budget


def _plan(docs: list[str], limits: Limits, **kw: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {
        "instruction": None,
        "metadata": None,
        "top_n": None,
        "limits": limits,
        "truncate": True,
    }
    args.update(kw)
    return plan_requests("query", docs, **args)  # type: ignore[arg-type]


def test_no_limits_one_request() -> None:
    plan = _plan(["a", "b", "c"], Limits())
    assert len(plan.requests) == 1
    assert plan.requests[0].indices == (0, 1, 2)
    assert plan.truncated == ()


def test_split_by_document_count() -> None:
    docs = [f"d{i}" for i in range(250)]
    plan = _plan(docs, Limits(max_documents_per_request=100), top_n=5)
    assert [len(r.documents) for r in plan.requests] == [100, 100, 50]
    assert [r.indices[0] for r in plan.requests] == [0, 100, 200]
    flat = [i for r in plan.requests for i in r.indices]
    assert flat == list(range(250))
    assert all(r.top_n == 5 for r in plan.requests)
    assert all(list(r.documents) == docs[r.indices[0] : r.indices[-1] + 1] for r in plan.requests)


def test_top_n_hint_clamped_to_sub_request() -> None:
    plan = _plan([f"d{i}" for i in range(5)], Limits(max_documents_per_request=2), top_n=4)
    assert [r.top_n for r in plan.requests] == [2, 2, 1]


def test_split_by_tokens() -> None:
    doc = "x" * 300  # 100 tokens; pair cost = 100 + query(2) + overhead
    cost = 100 + estimate_tokens("query") + PAIR_OVERHEAD
    plan = _plan([doc] * 10, Limits(max_tokens_per_request=3 * cost))
    assert [len(r.documents) for r in plan.requests] == [3, 3, 3, 1]
    for r in plan.requests:
        assert (
            sum(estimate_tokens(d) for d in r.documents) + len(r.documents) * (cost - 100)
            <= 3 * cost
        )


def test_metadata_and_instruction_count_and_travel() -> None:
    plan = _plan(
        ["a", "b", "c", "d"],
        Limits(max_documents_per_request=3),
        instruction="be nice",
        metadata=["m0", "", "m2", "m3"],
    )
    assert [r.metadata for r in plan.requests] == [("m0", "", "m2"), ("m3",)]
    assert all(r.instruction == "be nice" for r in plan.requests)


def test_oversize_document_truncated_within_limit() -> None:
    limits = Limits(max_tokens_per_document=100)
    long_doc = "word " * 400
    plan = _plan(["short", long_doc, "x"], limits, instruction="inst", metadata=["", "meta", ""])
    assert plan.truncated == (1,)
    request = plan.requests[0]
    cut = request.documents[1]
    assert long_doc.startswith(cut) and len(cut) < len(long_doc)
    pair = (
        estimate_tokens("query")
        + estimate_tokens("inst")
        + estimate_tokens(cut)
        + estimate_tokens("meta")
        + PAIR_OVERHEAD
    )
    assert 90 <= pair <= 100
    assert request.documents[0] == "short" and request.metadata == ("", "meta", "")


def test_oversize_metadata_is_cut_when_it_leaves_no_room() -> None:
    plan = _plan(["doc " * 200], Limits(max_tokens_per_document=100), metadata=["m" * 3000])
    request = plan.requests[0]
    assert plan.truncated == (0,)
    assert 0 < estimate_tokens(request.metadata[0]) <= 50  # type: ignore[index]
    assert estimate_tokens(request.documents[0]) >= 40


def test_oversize_error_names_the_document() -> None:
    with pytest.raises(RerankInputError) as info:
        _plan(["ok", "y" * 1000], Limits(max_tokens_per_document=50), truncate=False)
    assert info.value.field == "documents[1]"


def test_query_alone_over_the_limit_is_rejected() -> None:
    with pytest.raises(RerankInputError) as info:
        plan_requests(
            "q" * 600,
            ["a"],
            instruction=None,
            metadata=None,
            top_n=None,
            limits=Limits(max_tokens_per_document=100),
            truncate=True,
        )
    assert info.value.field == "query"


def test_request_token_limit_also_bounds_one_document() -> None:
    assert Limits(max_tokens_per_request=50, max_tokens_per_document=8000).per_document == 50
    plan = _plan(["z" * 3000], Limits(max_tokens_per_request=50))
    assert plan.truncated == (0,)


def test_plan_does_not_mutate_inputs() -> None:
    docs = ["w " * 500, "b"]
    metas = ["m", "n"]
    _plan(docs, Limits(max_tokens_per_document=60), metadata=metas)
    assert docs == ["w " * 500, "b"] and metas == ["m", "n"]


def test_split_in_half_and_merge() -> None:
    request = WireRequest(
        "q", ("a", "b", "c", "d", "e"), (5, 6, 7, 8, 9), None, ("", "", "m", "", ""), 4
    )
    (first, second), trusted = split_rejected(request, None)  # no stated limit: halves
    assert not trusted
    assert first.indices == (5, 6, 7) and second.indices == (8, 9)
    assert first.metadata == ("", "", "m") and second.metadata == ("", "")
    assert (first.top_n, second.top_n) == (3, 2)
    merged = merge_results([(first, [(1, 0.2), (0, 0.9)]), (second, [(1, 1.7), (0, -0.5)])])
    by_index = {r.index: r for r in merged}
    assert set(by_index) == {5, 6, 8, 9}
    assert by_index[6].relevance_score == 0.2
    assert by_index[9].relevance_score == 1.0 and by_index[9].raw_score == 1.7
    assert by_index[8].relevance_score == 0.0 and by_index[8].raw_score == -0.5
    with pytest.raises(ValueError):
        split_rejected(WireRequest("q", ("a",), (0,)), None)


def test_merge_rejects_double_scoring() -> None:
    r = WireRequest("q", ("a",), (3,))
    with pytest.raises(RemoteResponseError):
        merge_results([(r, [(0, 0.1)]), (r, [(0, 0.2)])])


def _request(n: int, *, top_n: int | None = None, meta: bool = False) -> WireRequest:
    return WireRequest(
        "q",
        tuple(f"doc {i}" for i in range(n)),
        tuple(range(100, 100 + n)),
        instruction="be brief",
        metadata=tuple(f"m{i}" for i in range(n)) if meta else None,
        top_n=top_n,
    )


@pytest.mark.parametrize(
    ("n", "limit", "sizes"),
    [
        (2000, 100, [100] * 20),
        (100, 30, [25, 25, 25, 25]),  # ceil(100/30) = 4 near-equal parts, not 30/30/30/10
        (101, 100, [51, 50]),
        (7, 3, [3, 2, 2]),
        (5, 1, [1, 1, 1, 1, 1]),
        (100, 100, None),  # within the stated limit: the number is not to be trusted
        (50, 100, None),
    ],
)
def test_split_to_document_limit(n: int, limit: int, sizes: list[int] | None) -> None:
    request = _request(n, top_n=10, meta=True)
    parts = split_to_limit(request, max_documents=limit)
    if sizes is None:
        assert parts is None
        return
    assert parts is not None
    assert [len(p.documents) for p in parts] == sizes
    assert [i for p in parts for i in p.indices] == list(request.indices)  # contiguous, in order
    assert [d for p in parts for d in p.documents] == list(request.documents)
    assert [m for p in parts for m in p.metadata or ()] == list(request.metadata or ())
    assert all(p.top_n == min(10, len(p.documents)) for p in parts)
    assert all(p.query == "q" and p.instruction == "be brief" for p in parts)


def test_split_to_token_limit() -> None:
    request = _request(40)
    pair = estimate_tokens("q") + estimate_tokens("be brief") + PAIR_OVERHEAD
    costs = [pair + estimate_tokens(d) for d in request.documents]
    parts = split_to_limit(request, max_tokens=100)
    assert parts is not None and len(parts) >= 2
    assert [d for p in parts for d in p.documents] == list(request.documents)
    start = 0
    for part in parts:
        n = len(part.documents)
        assert sum(costs[start : start + n]) <= 100
        start += n
    assert split_to_limit(request, max_tokens=sum(costs)) is None  # already fits
    # a document over the limit alone gets a part of its own (the server will name it)
    lone = split_to_limit(_request(3), max_tokens=1)
    assert lone is not None and [len(p.documents) for p in lone] == [1, 1, 1]
    assert split_to_limit(request) is None


# --------------------------------------------------------------------------- folding


def _call(**kw: object) -> RerankRequest:
    args: dict[str, object] = {"query": "q", "documents": ("a", "b"), "top_n": 1}
    args.update(kw)
    return RerankRequest(**args)  # type: ignore[arg-type]


def test_fold_request_uses_the_shared_rule() -> None:
    call = _call(instruction="prefer 2024", metadata=("src: x", ""))
    folded = fold_request(call, FORMATS["jina"], fold=True)  # vllm has an instruction field
    # the rule of rerank_integrations.folding (= the local instruction_mode="prepend")
    assert folded.query == "prefer 2024 q" == fold_instruction("q", "prefer 2024")
    assert folded.documents == ("src: x\na", "b")
    assert folded.documents[0] == fold_metadata("a", "src: x")
    assert folded.instruction is None and folded.metadata is None
    assert folded.top_n == 1


def test_fold_request_keeps_fields_the_format_has() -> None:
    call = _call(instruction="prefer 2024", metadata=("src: x", ""))
    assert fold_request(call, FORMATS["contextual"], fold=True) == call
    assert fold_request(call, FORMATS["contextual"], fold=False) == call


def test_fold_request_refuses_without_fold() -> None:
    with pytest.raises(UnsupportedFeatureError, match="fold_unsupported"):
        fold_request(_call(instruction="i"), FORMATS["jina"], fold=False)
    with pytest.raises(UnsupportedFeatureError, match="metadata"):
        fold_request(_call(metadata=("m", "")), FORMATS["cohere"], fold=False)


def test_fold_request_drops_empty_metadata_and_unsupported_top_n() -> None:
    folded = fold_request(_call(metadata=("", "")), FORMATS["tei"], fold=False)
    assert folded.metadata is None and folded.documents == ("a", "b")
    assert folded.top_n is None  # TEI has no top_n: the core applies it
    kept = fold_request(_call(metadata=("", "")), FORMATS["contextual"], fold=False)
    assert kept.metadata is None


def test_plan_call_folds_then_plans() -> None:
    call = _call(documents=("a", "b", "c"), instruction="inst", metadata=("m", "", ""), top_n=5)
    plan = plan_call(
        call, FORMATS["jina"], Limits(max_documents_per_request=2), fold=True, truncate=True
    )
    assert [r.documents for r in plan.requests] == [("m\na", "b"), ("c",)]
    assert all(r.query == "inst q" and r.instruction is None for r in plan.requests)
    assert [r.top_n for r in plan.requests] == [2, 1]


# --------------------------------------------------------------------------- learnt limits


def test_learned_limits_only_ever_lower() -> None:
    configured = Limits(max_documents_per_request=20, max_tokens_per_document=8000)
    learned = LearnedLimits(configured)
    assert learned.current == configured
    assert learned.learn(StatedLimit("documents", 8)) is True
    assert learned.current == Limits(max_documents_per_request=8, max_tokens_per_document=8000)
    assert learned.learn(StatedLimit("documents", 50)) is False  # never raised again
    assert learned.learn(StatedLimit("documents", 8)) is False
    assert learned.learn(StatedLimit("tokens", 3000)) is True  # unlimited before
    assert learned.learn(StatedLimit("tokens", 2999)) is True
    assert learned.current == Limits(8, 2999, 8000)
    assert learned.configured == configured  # the configuration itself is untouched


def test_learned_limits_never_exceed_the_configured_ones() -> None:
    learned = LearnedLimits(Limits(max_documents_per_request=5))
    assert learned.learn(StatedLimit("documents", 50)) is False
    assert learned.current.max_documents_per_request == 5


def test_learned_limits_are_thread_safe() -> None:
    learned = LearnedLimits(Limits())
    values = list(range(500, 0, -1))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda v: learned.learn(StatedLimit("documents", v)), values))
    assert learned.current.max_documents_per_request == 1


def test_split_rejected_under_a_trusted_limit_or_in_halves() -> None:
    request = _request(100, top_n=5)
    parts, trusted = split_rejected(request, StatedLimit("documents", 30))
    assert trusted and [len(p.documents) for p in parts] == [25, 25, 25, 25]
    parts, trusted = split_rejected(request, StatedLimit("documents", 100))  # not over it
    assert not trusted and [len(p.documents) for p in parts] == [50, 50]
    parts, trusted = split_rejected(request, None)
    assert not trusted and [len(p.documents) for p in parts] == [50, 50]
    parts, trusted = split_rejected(request, StatedLimit("tokens", 100))
    assert trusted and len(parts) > 2
    assert [i for p in parts for i in p.indices] == list(request.indices)
