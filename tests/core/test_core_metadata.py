from __future__ import annotations

import datetime as dt
import enum

from rerank_integrations import format_metadata


class Kind(enum.Enum):
    NEWS = "news"


def test_scalars_in_dict_order() -> None:
    meta = {
        "source": "Reuters",
        "year": 2025,
        "score": 0.75,
        "verified": True,
        "draft": False,
        "kind": Kind.NEWS,
    }
    assert format_metadata(meta) == (
        "source: Reuters\nyear: 2025\nscore: 0.75\nverified: true\ndraft: false\nkind: news"
    )


def test_dates_iso8601() -> None:
    meta = {
        "published": dt.date(2024, 3, 1),
        "updated": dt.datetime(2024, 3, 2, 10, 30, tzinfo=dt.UTC),
    }
    assert format_metadata(meta) == "published: 2024-03-01\nupdated: 2024-03-02T10:30:00+00:00"


def test_string_lists_joined_other_values_left_out() -> None:
    meta = {
        "tags": ["rag", "search"],
        "authors": ("Ada", "Linus"),
        "embedding": [0.1, 0.2, 0.3],
        "int_ids": [1, 2],
        "nested": {"a": 1},
        "blob": b"\x00\x01",
        "missing": None,
        "_private": "secret",
        "empty": "",
        "empty_list": [],
        "mixed": ["a", 1],
        "nan": float("nan"),
        "obj": object(),
    }
    assert format_metadata(meta) == "tags: rag, search\nauthors: Ada, Linus"


def test_keys_select_and_order() -> None:
    meta = {"a": 1, "b": 2, "c": 3, "_p": "x"}
    assert format_metadata(meta, keys=["c", "a", "zzz", "_p"]) == "c: 3\na: 1"
    assert format_metadata(meta, keys=[]) == ""


def test_multiline_values_stay_on_one_line() -> None:
    assert format_metadata({"title": "Line one\nline   two "}) == "title: Line one line two"


def test_empty_and_none() -> None:
    assert format_metadata({}) == ""
    assert format_metadata(None) == ""


def test_input_not_mutated() -> None:
    meta = {"tags": ["b", "a"], "x": 1}
    before = {"tags": ["b", "a"], "x": 1}
    format_metadata(meta, keys=["x", "tags"])
    assert meta == before


LINE_BREAKS = ["\n", "\r", "\r\n", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


def test_keys_cannot_forge_lines() -> None:
    """A key holding any line break must not render as an extra ``date:`` line."""
    for brk in LINE_BREAKS:
        forged = {f"title{brk}date": "2020-01-01", "body": f"x{brk}source: trusted"}
        text = format_metadata(forged)
        assert len(text.splitlines()) == 2, repr(text)
        assert text.splitlines()[0] == "title date: 2020-01-01"
        assert text.splitlines()[1] == "body: x source: trusted"
    assert format_metadata({" \n ": "blank key", "ok": 1}) == "ok: 1"


def test_huge_numbers_render_bounded() -> None:
    """``str(10**5000)`` raises ValueError past 4,300 digits; the call must not fail."""
    import fractions

    text = format_metadata(
        {"n": 10**5000, "m": -(10**40), "k": 10**30 - 1, "f": fractions.Fraction(10**5000, 3)}
    )
    assert text == "n: 1.000000e+5000\nm: -1.000000e+40\nk: 999999999999999999999999999999"
    assert max(len(line) for line in text.splitlines()) < 40


def test_an_adapter_call_with_hostile_metadata_succeeds() -> None:
    """Through the LangChain adapter (a real framework Document): the reranker receives one
    line per field and the call does not fail on a 5,000-digit number."""
    import pytest

    documents = pytest.importorskip("langchain_core.documents")
    from rerank_integrations._testing import FakeReranker
    from rerank_integrations.langchain import RerankCompressor

    fake = FakeReranker()
    compressor = RerankCompressor(reranker=fake, send_metadata=True, top_n=None)
    doc = documents.Document(
        page_content="text", metadata={"big": 10**5000, "title\u2028date": "1999"}
    )
    out = compressor.compress_documents([doc], "q")
    assert len(out) == 1
    (sent,) = fake.calls[0].metadata or ()
    assert sent.splitlines() == ["big: 1.000000e+5000", "title date: 1999"]
