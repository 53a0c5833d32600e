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
