"""The framework-free adapter core: options, precedence, metadata, selection, construction."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from rerank_integrations._adapters.calls import (
    RAW_SCORE_KEY,
    RELEVANCE_SCORE_KEY,
    RerankOptions,
    arerank_texts,
    dedupe_best,
    metadata_enabled,
    pair_results,
    render_metadata,
    rerank_texts,
    resolve_instruction,
    score_metadata,
)
from rerank_integrations._adapters.holder import LazyReranker, build_reranker, refresh_reranker
from rerank_integrations._testing import FakeReranker
from rerank_integrations.errors import RerankInputError, RerankTypeError
from rerank_integrations.results import RerankResult

SCORES = {"a": 0.9, "b": 0.2, "c": 0.6, "d": 0.0, "e": -3.0}
TEXTS = ["a", "b", "c", "d", "e"]


def fake() -> FakeReranker:
    return FakeReranker(SCORES)


# --- options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "exc"),
    [
        (0, RerankInputError),
        (-1, RerankInputError),
        (True, RerankTypeError),
        (1.5, RerankTypeError),
        ("3", RerankTypeError),
    ],
)
def test_options_reject_bad_top_n(bad: Any, exc: type[Exception]) -> None:
    with pytest.raises(exc) as info:
        RerankOptions(top_n=bad)
    assert type(info.value) is exc
    assert info.value.field == "top_n"


@pytest.mark.parametrize(
    ("bad", "exc"),
    [
        (float("nan"), RerankInputError),
        (float("inf"), RerankInputError),
        ("0.5", RerankTypeError),
        (True, RerankTypeError),
    ],
)
def test_options_reject_bad_threshold(bad: Any, exc: type[Exception]) -> None:
    with pytest.raises(exc) as info:
        RerankOptions(score_threshold=bad)
    assert type(info.value) is exc
    assert info.value.field == "score_threshold"


def test_options_normalise() -> None:
    opts = RerankOptions(score_threshold=0, instruction="   ", metadata_keys=["x", "y"])
    assert opts.score_threshold == 0.0 and isinstance(opts.score_threshold, float)
    assert opts.instruction is None
    assert opts.metadata_keys == ("x", "y")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"metadata_keys": "date"}, "metadata_keys"),
        ({"metadata_keys": ["a", 1]}, "metadata_keys[1]"),
        ({"instruction_fn": "x"}, "instruction_fn"),
        ({"metadata_formatter": 3}, "metadata_formatter"),
        ({"send_metadata": 1}, "send_metadata"),
        ({"instruction": 5}, "instruction"),
    ],
)
def test_options_type_errors(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(RerankTypeError) as info:
        RerankOptions(**kwargs)
    assert info.value.field == field


# --- instruction precedence ------------------------------------------------------------


def test_instruction_precedence() -> None:
    seen: list[str] = []

    def fn(query: str) -> str | None:
        seen.append(query)
        return {"q1": "from fn", "q2": None, "q3": ""}[query]

    opts = RerankOptions(instruction="configured", instruction_fn=fn)
    assert resolve_instruction("q1", opts, per_call="per call") == "per call"
    assert seen == []  # a per-call value short-circuits the fn
    assert resolve_instruction("q1", opts) == "from fn"
    assert resolve_instruction("q2", opts) == "configured"  # None falls through
    assert resolve_instruction("q3", opts) is None  # "" switches it off
    assert resolve_instruction("q1", opts, per_call="") is None  # "" per call switches it off
    assert resolve_instruction("q1", RerankOptions(instruction="c")) == "c"
    assert resolve_instruction("q1", RerankOptions()) is None


def test_instruction_fn_bad_return() -> None:
    opts = RerankOptions(instruction_fn=lambda q: 42)  # type: ignore[arg-type,return-value]
    with pytest.raises(RerankTypeError) as info:
        resolve_instruction("q", opts)
    assert info.value.field == "instruction_fn"


# --- metadata --------------------------------------------------------------------------


def test_render_metadata_default_drops_vectors_private_and_scores() -> None:
    meta = {
        "source": "Reuters",
        "date": dt.date(2024, 5, 1),
        "embedding": [0.1, 0.2],
        "_secret": "k",
        RELEVANCE_SCORE_KEY: 0.5,
        RAW_SCORE_KEY: -2.0,
    }
    assert render_metadata([meta, None], RerankOptions()) == [
        "source: Reuters\ndate: 2024-05-01",
        "",
    ]


def test_render_metadata_keys_select_and_order() -> None:
    meta = {"source": "R", "date": "2024", RELEVANCE_SCORE_KEY: 0.5}
    opts = RerankOptions(metadata_keys=["date", RELEVANCE_SCORE_KEY, "missing"])
    # explicitly listed score keys are sent
    assert render_metadata([meta], opts) == ["date: 2024\nrelevance_score: 0.5"]


def test_render_metadata_formatter_gets_selected_keys() -> None:
    got: list[dict[str, Any]] = []

    def fmt(meta: Any) -> str:
        got.append(dict(meta))
        return "|".join(f"{k}={v}" for k, v in meta.items())

    meta = {"a": 1, "b": 2, RAW_SCORE_KEY: 3.0}
    assert render_metadata([meta], RerankOptions(metadata_formatter=fmt)) == ["a=1|b=2"]
    assert render_metadata([meta], RerankOptions(metadata_formatter=fmt, metadata_keys=["b"])) == [
        "b=2"
    ]
    assert got == [{"a": 1, "b": 2}, {"b": 2}]


def test_render_metadata_none_cases() -> None:
    assert render_metadata([{"a": "x"}], RerankOptions(send_metadata=False)) is None
    assert render_metadata(None, RerankOptions()) is None
    assert render_metadata([{}, None, {"v": [1.0, 2.0]}], RerankOptions()) is None


def test_render_metadata_formatter_must_return_str() -> None:
    opts = RerankOptions(metadata_formatter=lambda m: 1)  # type: ignore[arg-type,return-value]
    with pytest.raises(RerankTypeError):
        render_metadata([{"a": 1}], opts)


# --- rerank_texts ----------------------------------------------------------------------


def test_rerank_texts_orders_and_calls_once() -> None:
    r = fake()
    results = rerank_texts(r, "q", TEXTS, None, RerankOptions())
    assert [res.index for res in results] == [0, 2, 1, 3, 4]
    assert len(r.calls) == 1
    assert r.calls[0].documents == tuple(TEXTS)
    assert r.calls[0].metadata is None and r.calls[0].instruction is None


@pytest.mark.parametrize(
    ("top_n", "threshold", "expected"),
    [
        (None, None, [0, 2, 1, 3, 4]),
        (2, None, [0, 2]),
        (5, None, [0, 2, 1, 3, 4]),  # equal to the length
        (50, None, [0, 2, 1, 3, 4]),  # bigger than the length
        (None, 0, [0, 2, 1, 3, 4]),  # 0 is a real threshold: relevance 0.0 is kept
        (None, 0.0, [0, 2, 1, 3, 4]),
        (None, 0.2, [0, 2, 1]),  # >= keeps the exact score
        (None, 0.5, [0, 2]),
        (1, 0.5, [0]),
        (3, 0.5, [0, 2]),  # threshold before top_n
        (None, 0.95, []),
    ],
)
def test_rerank_texts_selection(top_n: Any, threshold: Any, expected: list[int]) -> None:
    r = fake()  # d: relevance 0.0; e: raw -3.0 clipped to relevance 0.0 (ties keep input order)
    opts = RerankOptions(top_n=top_n, score_threshold=threshold)
    results = rerank_texts(r, "q", TEXTS, None, opts)
    assert [res.index for res in results] == expected
    # top_n reaches the backend as a hint only when no threshold is in force
    assert r.calls[0].top_n == (top_n if threshold is None else None)


def test_per_call_overrides_and_none_means_configured() -> None:
    r = fake()
    opts = RerankOptions(top_n=1, score_threshold=0.5, instruction="cfg")
    assert [x.index for x in rerank_texts(r, "q", TEXTS, None, opts)] == [0]
    assert r.calls[-1].instruction == "cfg"
    out = rerank_texts(r, "q", TEXTS, None, opts, top_n=3, score_threshold=0.0, instruction="pc")
    assert [x.index for x in out] == [0, 2, 1]
    assert r.calls[-1].instruction == "pc"


@pytest.mark.parametrize(
    ("bad", "exc"), [(0, RerankInputError), (-2, RerankInputError), (False, RerankTypeError)]
)
def test_per_call_top_n_zero_rejected_even_on_empty(bad: Any, exc: type[Exception]) -> None:
    r = fake()
    with pytest.raises(exc):
        rerank_texts(r, "q", TEXTS, None, RerankOptions(), top_n=bad)
    with pytest.raises(exc):
        rerank_texts(r, "q", [], None, RerankOptions(), top_n=bad)
    assert r.calls == []


def test_empty_input_does_not_call_reranker_or_fn() -> None:
    r = fake()
    called: list[str] = []
    opts = RerankOptions(instruction_fn=lambda q: called.append(q) or "x")
    assert rerank_texts(r, "q", [], [], opts) == []
    assert r.calls == [] and called == []


def test_metadata_reaches_reranker_and_inputs_untouched() -> None:
    r = fake()
    metas: list[dict[str, Any] | None] = [
        {"source": "A", "vec": [0.1]},
        None,
        {"source": "C"},
        {},
        {"source": "E"},
    ]
    before = copy.deepcopy(metas)
    texts = list(TEXTS)
    rerank_texts(r, "q", texts, metas, RerankOptions())
    assert r.calls[0].metadata == ("source: A", "", "source: C", "", "source: E")
    assert metas == before and texts == TEXTS


def test_metadata_length_mismatch() -> None:
    with pytest.raises(RerankInputError):
        rerank_texts(fake(), "q", TEXTS, [{}], RerankOptions())


async def test_async_equals_sync() -> None:
    opts = RerankOptions(top_n=3, instruction="i", metadata_keys=["s"])
    metas = [{"s": t} for t in TEXTS]
    r1, r2 = fake(), fake()
    sync = rerank_texts(r1, "q", TEXTS, metas, opts)
    asy = await arerank_texts(r2, "q", TEXTS, metas, opts)
    assert sync == asy
    assert r1.calls == r2.calls
    assert await arerank_texts(r2, "q", [], None, opts) == []
    assert len(r2.calls) == 1


# --- helpers ---------------------------------------------------------------------------


def test_pair_and_score_metadata() -> None:
    res = [RerankResult(2, 0.8, -1.0), RerankResult(0, 0.1, -9.0)]
    assert pair_results(["x", "y", "z"], res) == [("z", res[0]), ("x", res[1])]
    assert score_metadata(res[0]) == {RELEVANCE_SCORE_KEY: 0.8, RAW_SCORE_KEY: -1.0}


def test_dedupe_best() -> None:
    items = [("a", 0.1), ("b", None), ("a", 0.7), (None, 1.0), ("b", 0.2), ("a", 0.7), (None, 0.0)]
    out = dedupe_best(items, key=lambda t: t[0], score=lambda t: t[1])
    assert out == [("a", 0.7), ("b", 0.2), (None, 1.0), (None, 0.0)]
    assert out[0] is items[2]  # the first of equal best scores wins


def test_build_reranker() -> None:
    r = fake()
    assert build_reranker(r) is r
    assert build_reranker(r, model=None, base_url=None) is r  # None settings are "not given"
    with pytest.raises(RerankInputError):
        build_reranker(r, model="m")
    with pytest.raises(RerankInputError):
        build_reranker(r, backend="local")
    with pytest.raises(RerankInputError) as info:
        build_reranker()
    assert info.value.field == "backend"
    with pytest.raises(RerankTypeError):
        build_reranker("not a reranker")  # type: ignore[arg-type]
    built = build_reranker(
        backend="rerank_integrations._testing:FakeReranker", scores={"x": 1.0}, model=None
    )
    assert isinstance(built, FakeReranker) and built.model_name == "fake-reranker"


def test_lazy_reranker_builds_once_and_owns() -> None:
    lazy = LazyReranker(backend="rerank_integrations._testing:FakeReranker", model="m1")
    assert not lazy.built
    first = lazy.get()
    assert lazy.built and lazy.get() is first and first.model_name == "m1"
    lazy.close()
    assert isinstance(first, FakeReranker) and first.closed
    given = fake()
    held = LazyReranker(given)
    assert held.get() is given
    held.close()
    assert not given.closed  # a reranker the caller passed in is the caller's to close
    with pytest.raises(RerankInputError):
        LazyReranker()


def test_refresh_reranker_rebuilds_only_on_change() -> None:
    path = "rerank_integrations._testing:FakeReranker"
    first = refresh_reranker(None, backend=path, model="m1")
    assert refresh_reranker(first, backend=path, model="m1") is first
    second = refresh_reranker(first, backend=path, model="m2")
    assert second is not first and second.get().model_name == "m2"
    given = fake()
    held = refresh_reranker(second, given)
    assert held.get() is given
    assert refresh_reranker(held, given) is held
    assert refresh_reranker(held, fake()) is not held


def test_options_from_object() -> None:
    class Holder:
        top_n = 2
        score_threshold = 0
        metadata_keys = ("a",)

    opts = RerankOptions.from_object(Holder())
    assert opts == RerankOptions(top_n=2, score_threshold=0.0, metadata_keys=("a",))
    Holder.top_n = 0
    with pytest.raises(RerankInputError):
        RerankOptions.from_object(Holder())


@pytest.mark.parametrize(
    ("module", "blocked", "extra"),
    [
        ("rerank_integrations.langchain", "langchain_core", "langchain"),
        ("rerank_integrations.llama_index", "llama_index", "llamaindex"),
    ],
)
def test_adapter_without_its_framework_names_the_extra(
    module: str, blocked: str, extra: str
) -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        f"sys.modules[{blocked!r}] = None\n"
        "import rerank_integrations._adapters.calls, rerank_integrations._adapters.policy\n"
        "from rerank_integrations.errors import MissingExtraError\n"
        "try:\n"
        f"    import {module}\n"
        "except MissingExtraError as e:\n"
        "    print('MISSING', e.install_command)\n"
        "heavy = [m for m in ('torch', 'httpx', 'langchain_core', 'llama_index', 'haystack')\n"
        "         if sys.modules.get(m) is not None]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert f'MISSING pip install "rerank-integrations[{extra}]"' in out.stdout
    assert "HEAVY []" in out.stdout  # the shared adapter code imports no framework, torch or httpx


class _NoMetadataReranker(FakeReranker):
    """A reranker without a metadata field (like a plain /v1/rerank server)."""

    @property
    def accepts_metadata(self) -> bool:
        return False


@pytest.mark.parametrize(
    ("send", "accepts", "expected"),
    [(None, True, True), (None, False, False), (True, False, True), (False, True, False)],
)
def test_metadata_enabled_rule(send: bool | None, accepts: bool, expected: bool) -> None:
    reranker = FakeReranker() if accepts else _NoMetadataReranker()
    assert metadata_enabled(RerankOptions(send_metadata=send), reranker) is expected


async def test_default_sends_metadata_only_to_rerankers_that_accept_it() -> None:
    metas = [{"source": "wiki"}, None, {"year": 2024}, {}, {}]
    accepting, refusing = fake(), _NoMetadataReranker(SCORES)
    rerank_texts(accepting, "q", TEXTS, metas, RerankOptions())
    await arerank_texts(refusing, "q", TEXTS, metas, RerankOptions())
    rerank_texts(refusing, "q", TEXTS, metas, RerankOptions(send_metadata=True))
    assert accepting.calls[0].metadata == ("source: wiki", "", "year: 2024", "", "")
    assert refusing.calls[0].metadata is None
    assert refusing.calls[1].metadata == ("source: wiki", "", "year: 2024", "", "")
