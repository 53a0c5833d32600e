"""docs/core.md's error tables are what the code does: every row is checked against the code.

- The hierarchy table (``error | subclass of | also a | raised when``): each class exists in
  :mod:`rerank_integrations.errors` with exactly the documented bases, and every error class of
  that module has a row.
- The bad-argument table (``input | call | error | .field``): each row's call is run (``rerank``
  rows with both ``rerank`` and ``arerank`` of a :class:`FakeReranker`; the core validators and
  ``Reranker.from_config`` as written) and must raise exactly the documented class, naming the
  documented field.

The parser is strict: a table with an error column but another layout, a cell that is not one
code span, or a call it cannot run (another function, an argument that is not a literal) fails,
so a new docs row is a new test case or a failing test, never silently skipped.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import importlib
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rerank_integrations import errors
from rerank_integrations._testing import FakeReranker
from rerank_integrations.base import Reranker
from rerank_integrations.validation import validate_score_threshold

CORE_MD = Path(__file__).resolve().parents[2] / "docs" / "core.md"

HIERARCHY_HEADER = ("error", "subclass of", "also a", "raised when")
ARGUMENT_HEADER = ("input", "call", "error", "`.field`")
_CODE = re.compile(r"`([^`]+)`")


@dataclass(frozen=True)
class Row:
    line: int  # 1-based line in docs/core.md
    cells: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"docs/core.md:{self.line}"


@dataclass(frozen=True)
class Table:
    line: int
    header: tuple[str, ...]
    rows: tuple[Row, ...]


def _cells(line: str) -> tuple[str, ...]:
    text = line.strip()
    assert text.startswith("|") and text.endswith("|"), f"not a table row: {line!r}"
    return tuple(c.strip() for c in text[1:-1].split("|"))


def read_tables(path: Path = CORE_MD) -> list[Table]:
    """Every markdown table of the file (header, separator, rows)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    tables: list[Table] = []
    i = 0
    while i < len(lines):
        if not lines[i].lstrip().startswith("|"):
            i += 1
            continue
        start = i
        while i < len(lines) and lines[i].lstrip().startswith("|"):
            i += 1
        block = lines[start:i]
        assert len(block) >= 2 and set(block[1].replace("|", "").strip()) <= {"-", ":", " "}, (
            f"docs/core.md:{start + 1}: a table needs a header and a separator row"
        )
        header = _cells(block[0])
        rows = []
        for offset, text in enumerate(block[2:], start=start + 3):
            cells = _cells(text)
            assert len(cells) == len(header), (
                f"docs/core.md:{offset}: {len(cells)} cells, the header has {len(header)}"
            )
            rows.append(Row(offset, cells))
        tables.append(Table(start + 1, header, tuple(rows)))
    return tables


def error_tables() -> list[Table]:
    """The tables with an error column; each must have one of the two known layouts."""
    found = [t for t in read_tables() if "error" in t.header]
    for table in found:
        assert table.header in (HIERARCHY_HEADER, ARGUMENT_HEADER), (
            f"docs/core.md:{table.line}: an error table this test cannot check: {table.header}"
        )
    return found


def _table(header: tuple[str, ...]) -> Table:
    tables = [t for t in error_tables() if t.header == header]
    assert len(tables) == 1, f"docs/core.md must have exactly one table {header}"
    assert tables[0].rows, f"docs/core.md:{tables[0].line}: the table has no rows"
    return tables[0]


def code(row: Row, cell: str) -> str:
    """The one code span a cell consists of."""
    match = _CODE.fullmatch(cell)
    assert match is not None, f"{row.where}: expected one `code` span, got {cell!r}"
    return match.group(1)


def error_class(row: Row, name: str) -> type[errors.RerankError]:
    cls = getattr(errors, name, None)
    assert isinstance(cls, type) and issubclass(cls, errors.RerankError), (
        f"{row.where}: {name!r} is not an error of rerank_integrations.errors"
    )
    return cls


def _resolve(row: Row, dotted: str) -> type:
    """A builtin (``ValueError``) or ``module.Name`` (``pickle.PicklingError``)."""
    module, _, name = dotted.rpartition(".")
    obj = getattr(importlib.import_module(module) if module else builtins, name, None)
    assert isinstance(obj, type), f"{row.where}: {dotted!r} is not a class"
    return obj


# ---------------------------------------------------------------------------------------------
# the hierarchy table
# ---------------------------------------------------------------------------------------------


def test_every_error_table_has_a_known_layout() -> None:
    kinds = sorted(t.header for t in error_tables())
    assert kinds == sorted([HIERARCHY_HEADER, ARGUMENT_HEADER])


def test_hierarchy_table_lists_every_error_class() -> None:
    documented = [code(r, r.cells[0]) for r in _table(HIERARCHY_HEADER).rows]
    in_code = [
        name
        for name, obj in vars(errors).items()
        if inspect.isclass(obj)
        and issubclass(obj, errors.RerankError)
        and obj is not errors.RerankError
    ]
    assert len(documented) == len(set(documented)), "an error is listed twice"
    assert sorted(documented) == sorted(in_code)


@pytest.mark.parametrize("row", _table(HIERARCHY_HEADER).rows, ids=lambda r: r.cells[0])
def test_hierarchy_row_matches_the_class(row: Row) -> None:
    name, parent, also, when = row.cells
    cls = error_class(row, code(row, name))
    parent_cls = error_class(row, code(row, parent))
    expected = {parent_cls} | ({_resolve(row, code(row, also))} if also else set())
    assert set(cls.__bases__) == expected, (
        f"{row.where}: {cls.__name__} has bases {[b.__name__ for b in cls.__bases__]}"
    )
    assert when, f"{row.where}: says nothing about when it is raised"


def test_closed_error_is_documented_outside_the_remote_errors() -> None:
    rows = {code(r, r.cells[0]): r for r in _table(HIERARCHY_HEADER).rows}
    assert rows["RerankerClosedError"].cells[1] == "`RerankError`"
    assert not issubclass(errors.RerankerClosedError, errors.RemoteError)


# ---------------------------------------------------------------------------------------------
# the bad-argument table
# ---------------------------------------------------------------------------------------------


def _literal(row: Row, node: ast.expr) -> Any:
    """A Python literal, or ``float("nan")`` / ``float("inf")``; anything else fails."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "float"
        and len(node.args) == 1
        and not node.keywords
        and isinstance(node.args[0], ast.Constant)
        and node.args[0].value in ("nan", "inf", "-inf")
    ):
        return float(node.args[0].value)
    try:
        return ast.literal_eval(node)
    except ValueError:
        pytest.fail(f"{row.where}: argument {ast.unparse(node)!r} is not a literal")


def _callee(row: Row, func: ast.expr) -> str:
    if isinstance(func, ast.Name) and func.id in ("rerank", "validate_score_threshold"):
        return func.id
    if (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and (func.value.id, func.attr) == ("Reranker", "from_config")
    ):
        return "Reranker.from_config"
    pytest.fail(
        f"{row.where}: cannot run {ast.unparse(func)!r}; the table's calls are rerank(...), "
        "validate_score_threshold(...) and Reranker.from_config(...)"
    )


def parse_call(row: Row, text: str) -> tuple[str, list[Any], dict[str, Any]]:
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        pytest.fail(f"{row.where}: not a Python call: {text!r}")
    if not isinstance(node, ast.Call):
        pytest.fail(f"{row.where}: not a call: {text!r}")
    name = _callee(row, node.func)
    if any(isinstance(a, ast.Starred) for a in node.args) or any(
        k.arg is None for k in node.keywords
    ):
        pytest.fail(f"{row.where}: no * or ** arguments: {text!r}")
    args = [_literal(row, a) for a in node.args]
    kwargs = {str(k.arg): _literal(row, k.value) for k in node.keywords}
    return name, args, kwargs


def _runs(name: str) -> list[tuple[str, Callable[..., Any]]]:
    """The ways to make a call: ``rerank`` also goes through ``arerank``."""
    if name == "rerank":
        reranker = FakeReranker()

        def arerank(*args: Any, **kwargs: Any) -> Any:
            return asyncio.run(reranker.arerank(*args, **kwargs))

        return [("rerank", reranker.rerank), ("arerank", arerank)]
    if name == "validate_score_threshold":
        return [(name, validate_score_threshold)]
    return [(name, Reranker.from_config)]


@pytest.mark.parametrize("row", _table(ARGUMENT_HEADER).rows, ids=lambda r: r.cells[1])
def test_argument_row_raises_the_documented_error(row: Row) -> None:
    what, call, error, field = row.cells
    assert what, f"{row.where}: the input column is empty"
    expected = error_class(row, code(row, error))
    assert issubclass(expected, errors.RerankInputError | errors.RerankTypeError), (
        f"{row.where}: a bad argument raises RerankInputError or RerankTypeError"
    )
    expected_field = code(row, field)
    name, args, kwargs = parse_call(row, code(row, call))
    for how, run in _runs(name):
        try:
            run(*args, **kwargs)
        except Exception as exc:
            raised = exc
        else:
            pytest.fail(f"{row.where}: {how} raised nothing, the docs say {expected.__name__}")
        assert type(raised) is expected, (
            f"{row.where}: {how} raised {type(raised).__name__}, the docs say {expected.__name__}"
        )
        assert getattr(raised, "field", None) == expected_field, (
            f"{row.where}: {how} named field {getattr(raised, 'field', None)!r}"
        )


def test_parser_refuses_rows_it_cannot_run() -> None:
    row = Row(0, ())
    for text in (
        'reranker.rerank("q", ["a"])',  # another callee
        'rerank(make_query(), ["a"])',  # not a literal
        "rerank(*args)",
        "top_n=0",
    ):
        with pytest.raises(pytest.fail.Exception):
            parse_call(row, text)
    with pytest.raises(AssertionError):
        code(row, "top_n")  # not a code span
