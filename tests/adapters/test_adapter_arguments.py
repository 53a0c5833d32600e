"""Every adapter argument follows the core rule, at construction AND on assignment:
a wrong type raises RerankTypeError, a bad value RerankInputError, both naming the field,
before any model or network work (the fake reranker records no call)."""

from __future__ import annotations

from typing import Any

import pytest

from rerank_integrations._testing import FakeReranker
from rerank_integrations.errors import RerankInputError, RerankTypeError

CASES: list[tuple[str, object, type[Exception]]] = [
    ("top_n", 0, RerankInputError),
    ("top_n", -3, RerankInputError),
    ("top_n", "3", RerankTypeError),
    ("top_n", True, RerankTypeError),
    ("top_n", 2.0, RerankTypeError),
    ("score_threshold", float("nan"), RerankInputError),
    ("score_threshold", "0.5", RerankTypeError),
    ("score_threshold", True, RerankTypeError),
    ("instruction", 5, RerankTypeError),
    ("instruction", "bad\udcff", RerankInputError),
    ("instruction_fn", "not callable", RerankTypeError),
    ("metadata_keys", "date", RerankTypeError),
    ("metadata_keys", ["date", 3], RerankTypeError),
    ("metadata_keys", {"date", "source"}, RerankTypeError),  # a set: random order on the wire
    ("metadata_keys", frozenset({"date"}), RerankTypeError),
    ("metadata_formatter", 42, RerankTypeError),
    ("send_metadata", "yes", RerankTypeError),
    ("send_metadata", 1, RerankTypeError),
    ("model", 7, RerankTypeError),
    ("model", "  ", RerankInputError),
    ("base_url", 80, RerankTypeError),
    ("api_format", ["jina"], RerankTypeError),
    ("device", 0, RerankTypeError),
    ("backend", 1, RerankTypeError),
    ("reranker_kwargs", ["timeout", 3], RerankTypeError),
    ("api_key", 12345, RerankTypeError),
]


def _adapters() -> list[tuple[str, Any]]:
    from rerank_integrations.langchain import RerankCompressor
    from rerank_integrations.llama_index import RerankPostprocessor

    return [("langchain", RerankCompressor), ("llama_index", RerankPostprocessor)]


def _field_of(exc: BaseException) -> str:
    return exc.field  # type: ignore[attr-defined]


@pytest.mark.parametrize(("field", "bad", "exc"), CASES, ids=[f"{c[0]}={c[1]!r}" for c in CASES])
@pytest.mark.parametrize("adapter", ["langchain", "llama_index"])
def test_pydantic_adapters_at_construction(
    adapter: str, field: str, bad: object, exc: type[Exception]
) -> None:
    cls = dict(_adapters())[adapter]
    fake = FakeReranker({})
    settings: dict[str, Any] = {field: bad}
    if field not in {
        "model",
        "base_url",
        "api_format",
        "device",
        "backend",
        "reranker_kwargs",
        "api_key",
    }:
        settings["reranker"] = fake
    with pytest.raises(exc) as info:
        cls(**settings)
    assert type(info.value) is exc
    assert _field_of(info.value).startswith(field)
    assert fake.calls == []
    if isinstance(bad, str) and len(bad) > 3:
        assert bad not in str(info.value)  # the value itself is never quoted


@pytest.mark.parametrize(("field", "bad", "exc"), CASES, ids=[f"{c[0]}={c[1]!r}" for c in CASES])
@pytest.mark.parametrize("adapter", ["langchain", "llama_index"])
def test_pydantic_adapters_on_assignment(
    adapter: str, field: str, bad: object, exc: type[Exception]
) -> None:
    cls = dict(_adapters())[adapter]
    obj = (
        cls(backend="local", model="some-model")
        if field == "reranker_kwargs"
        else cls(reranker=FakeReranker({}))
    )
    before = getattr(obj, field)
    with pytest.raises(exc) as info:
        setattr(obj, field, bad)
    assert type(info.value) is exc and _field_of(info.value).startswith(field)
    assert getattr(obj, field) == before  # the bad value was not stored


HAYSTACK_CASES: list[tuple[str, object, type[Exception]]] = [
    ("top_k", 0, RerankInputError),
    ("top_k", "3", RerankTypeError),
    ("top_k", True, RerankTypeError),
    ("score_threshold", float("inf"), RerankInputError),
    ("score_threshold", "high", RerankTypeError),
    ("instruction", 5, RerankTypeError),
    ("instruction_fn", "x", RerankTypeError),
    ("meta_fields_to_embed", "date", RerankTypeError),
    ("metadata_keys", ["a", None], RerankTypeError),
    ("metadata_keys", {"a", "b"}, RerankTypeError),
    ("metadata_keys", frozenset({"a"}), RerankTypeError),
    ("metadata_formatter", 1, RerankTypeError),
    ("send_metadata", "no", RerankTypeError),
    ("reranker_kwargs", [1, 2], RerankTypeError),
    ("api_key", "sk-plain", RerankTypeError),
]


@pytest.mark.parametrize(
    ("field", "bad", "exc"), HAYSTACK_CASES, ids=[f"{c[0]}={c[1]!r}" for c in HAYSTACK_CASES]
)
def test_haystack_ranker_at_construction(field: str, bad: object, exc: type[Exception]) -> None:
    from rerank_integrations.haystack import RerankRanker

    fake = FakeReranker({})
    settings: dict[str, Any] = {field: bad}
    if field in {"reranker_kwargs", "api_key"}:
        settings["backend"] = "remote"
    else:
        settings["reranker"] = fake
    with pytest.raises(exc) as info:
        RerankRanker(**settings)
    assert type(info.value) is exc
    assert _field_of(info.value).startswith(field)
    assert fake.calls == []


@pytest.mark.parametrize("keys", [{"source", "date"}, frozenset({"date"})], ids=["set", "frozen"])
@pytest.mark.parametrize("adapter", ["langchain", "llama_index", "haystack"])
def test_metadata_keys_as_a_set_is_refused_by_every_adapter(adapter: str, keys: object) -> None:
    """One rule: an ordered sequence. A set's order (so the model input and the scores) would
    change between runs, so it is a RerankTypeError naming the field, never converted."""
    from rerank_integrations._adapters.calls import RerankOptions
    from rerank_integrations.haystack import RerankRanker

    cls = {**dict(_adapters()), "haystack": RerankRanker}[adapter]
    fake = FakeReranker({})
    with pytest.raises(RerankTypeError) as info:
        cls(fake, metadata_keys=keys) if adapter == "haystack" else cls(
            reranker=fake, metadata_keys=keys
        )
    assert info.value.field == "metadata_keys"
    with pytest.raises(RerankTypeError):
        RerankOptions(metadata_keys=keys)  # type: ignore[arg-type]
    ordered = cls(fake, metadata_keys=("b", "a")) if adapter == "haystack" else cls(
        reranker=fake, metadata_keys=("b", "a")
    )
    assert list(ordered.metadata_keys) == ["b", "a"]
