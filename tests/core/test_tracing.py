"""One OpenInference RERANKER span per rerank call (docs/observability.md), read back from the
OpenTelemetry SDK's in-memory exporter: the fake reranker, the remote backend against a loopback
server (retries, splits, errors) and a real LangChain pipeline; and zero cost without the API."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.hostile_server import Act, HostileServer

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

from rerank_integrations import tracing
from rerank_integrations._testing import FakeReranker
from rerank_integrations.base import Reranker
from rerank_integrations.errors import (
    RemoteStatusError,
    RerankerClosedError,
    RerankTypeError,
)

SCORES = {"a": 0.2, "b": 0.9, "c": 0.5}


@pytest.fixture(scope="session")
def _exporter() -> InMemorySpanExporter:
    """The process's tracer provider can be set once: set it once for the session."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


@pytest.fixture
def spans(_exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.delenv(tracing.CONTENT_ENV, raising=False)
    _exporter.clear()

    def finished() -> list[ReadableSpan]:
        return [s for s in _exporter.get_finished_spans() if s.name == tracing.SPAN_NAME]

    yield finished
    _exporter.clear()


def only(spans: Any) -> dict[str, Any]:
    (span,) = spans()
    assert span.kind is SpanKind.INTERNAL
    return dict(span.attributes or {})


def test_the_api_is_found() -> None:
    assert tracing.ENABLED is True


def test_sync_call_has_one_reranker_span(spans: Any) -> None:
    reranker = FakeReranker(SCORES, model="fake-model")
    results = reranker.rerank("the query", ["a", "b", "c"], top_n=2)
    attrs = only(spans)
    assert attrs["openinference.span.kind"] == "RERANKER"
    assert attrs["reranker.model_name"] == "fake-model"
    assert attrs["reranker.query"] == "the query"
    assert attrs["reranker.top_k"] == 2
    assert attrs["rerank_integrations.backend"] == FakeReranker.backend_name
    assert attrs["rerank_integrations.documents"] == 3
    for i in range(3):
        assert attrs[f"reranker.input_documents.{i}.document.id"] == str(i)
    assert [r.index for r in results] == [1, 2]
    assert attrs["reranker.output_documents.0.document.id"] == "1"
    assert attrs["reranker.output_documents.0.document.score"] == 0.9
    assert attrs["reranker.output_documents.1.document.id"] == "2"
    assert attrs["reranker.output_documents.1.document.score"] == 0.5
    assert "reranker.output_documents.2.document.id" not in attrs
    # no text by default: not the documents, their metadata or the instruction
    assert not [k for k in attrs if k.endswith((".content", ".metadata"))]
    assert "rerank_integrations.instruction" not in attrs
    (span,) = spans()
    assert span.status.status_code is StatusCode.UNSET


async def test_async_call_has_one_reranker_span(spans: Any) -> None:
    reranker = FakeReranker(SCORES)
    await reranker.arerank("q", ["a", "b", "c"])
    attrs = only(spans)
    assert attrs["openinference.span.kind"] == "RERANKER"
    assert attrs["reranker.top_k"] == 3  # top_n=None: every document comes back
    assert [attrs[f"reranker.output_documents.{k}.document.id"] for k in range(3)] == [
        "1",
        "2",
        "0",
    ]


async def test_concurrent_async_calls_get_a_span_each(spans: Any) -> None:
    reranker = FakeReranker(SCORES)
    await asyncio.gather(*(reranker.arerank(f"q{i}", ["a", "b"]) for i in range(5)))
    assert sorted(dict(s.attributes or {})["reranker.query"] for s in spans()) == [
        f"q{i}" for i in range(5)
    ]


@pytest.mark.parametrize("value", ["1", "true", "ON"])
def test_text_only_when_the_environment_says_so(
    spans: Any, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(tracing.CONTENT_ENV, value)
    FakeReranker(SCORES).rerank("q", ["a", "b"], instruction="prefer b", metadata=["m0", "m1"])
    attrs = only(spans)
    assert attrs["reranker.input_documents.0.document.content"] == "a"
    assert attrs["reranker.input_documents.1.document.metadata"] == '"m1"'  # a JSON string
    assert attrs["reranker.output_documents.0.document.content"] == "b"
    assert attrs["rerank_integrations.instruction"] == "prefer b"


def test_empty_documents_still_one_span(spans: Any) -> None:
    assert FakeReranker().rerank("q", []) == []
    attrs = only(spans)
    assert attrs["reranker.top_k"] == 0
    assert not [k for k in attrs if k.startswith("reranker.output_documents")]


def test_errors_are_recorded_and_raised(spans: Any) -> None:
    reranker = FakeReranker()
    with pytest.raises(RerankTypeError):
        reranker.rerank("q", ["a", 3])  # type: ignore[list-item]
    reranker.close()
    with pytest.raises(RerankerClosedError):
        reranker.rerank("q", ["a"])
    bad_type, closed = spans()
    for span, error in ((bad_type, RerankTypeError), (closed, RerankerClosedError)):
        assert span.status.status_code is StatusCode.ERROR
        (event,) = span.events
        assert event.name == "exception"
        assert dict(event.attributes or {})["exception.type"].endswith(error.__name__)
    assert dict(closed.attributes or {})["reranker.query"] == "q"  # validated before refusing


def test_a_span_of_the_caller_is_the_parent(spans: Any) -> None:
    tracer = trace.get_tracer("app")
    with tracer.start_as_current_span("retrieve") as parent:
        FakeReranker().rerank("q", ["a"])
    (span,) = spans()
    assert span.parent is not None
    assert span.parent.span_id == parent.get_span_context().span_id


def test_backend_facts_never_land_on_a_foreign_span(_exporter: InMemorySpanExporter) -> None:
    _exporter.clear()
    with trace.get_tracer("app").start_as_current_span("other"):
        tracing.add_attributes({"rerank_integrations.format": "x"})
        tracing.record_exception(ValueError("x"))
    (other,) = _exporter.get_finished_spans()
    assert "rerank_integrations.format" not in dict(other.attributes or {})
    assert not other.events


class Custom(FakeReranker):
    """A custom backend reporting a fact of its own (docs/observability.md); no ``_ascore``:
    the base class runs ``_score`` in a worker thread, which sees the call's span too."""

    backend_name = ""

    def _score(self, request: Any) -> Any:
        if tracing.ENABLED:
            tracing.add_attributes({"custom.hits": len(request.documents)})
        return super()._score(request)

    _ascore = Reranker._ascore


def test_a_custom_backend_adds_its_facts(spans: Any) -> None:
    reranker = Custom(SCORES)
    reranker.rerank("q", ["a", "b"])
    asyncio.run(reranker.arerank("q", ["a", "b", "c"]))
    first, second = (dict(s.attributes or {}) for s in spans())
    assert first["custom.hits"] == 2
    assert second["custom.hits"] == 3
    assert first["rerank_integrations.backend"] == "Custom"  # no backend_name: the class


# ------------------------------------------------------------------ remote backend


@pytest.fixture
def server() -> Iterator[HostileServer]:
    with HostileServer() as s:
        yield s


def remote(server: HostileServer, **kwargs: Any) -> Any:
    from rerank_integrations.backends.remote import RemoteReranker

    async def no_wait(seconds: float) -> None:
        return None

    kwargs.setdefault("_sleep", lambda seconds: None)
    kwargs.setdefault("_async_sleep", no_wait)
    return RemoteReranker("m", base_url=server.url(), **kwargs)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_remote_retry_is_counted(spans: Any, server: HostileServer, mode: str) -> None:
    server.script.extend([Act.error(503), Act.ok()])
    with remote(server) as reranker:
        if mode == "sync":
            reranker.rerank("q", ["a", "b", "c"], top_n=1)
        else:
            asyncio.run(reranker.arerank("q", ["a", "b", "c"], top_n=1))
    attrs = only(spans)
    assert attrs["rerank_integrations.backend"] == "remote"
    assert attrs["rerank_integrations.format"] == "contextual"
    assert attrs["reranker.model_name"] == "m"
    assert attrs["rerank_integrations.remote.planned_requests"] == 1
    assert attrs["rerank_integrations.remote.sub_requests"] == 1
    assert attrs["rerank_integrations.remote.retries"] == 1
    assert attrs["rerank_integrations.remote.splits"] == 0
    assert attrs["rerank_integrations.truncated_documents"] == 0
    assert "reranker.output_documents.0.document.score" in attrs
    assert len(server.requests) == 2


def test_remote_split_is_counted(spans: Any, server: HostileServer) -> None:
    server.script.extend([Act.error(413, {"detail": "too many documents"}), Act.ok(), Act.ok()])
    with remote(server) as reranker:
        assert len(reranker.rerank("q", ["a", "b", "c", "d"])) == 4
    attrs = only(spans)
    assert attrs["rerank_integrations.remote.splits"] == 1
    assert attrs["rerank_integrations.remote.sub_requests"] == 3
    assert attrs["rerank_integrations.remote.retries"] == 0


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_remote_error_is_recorded(spans: Any, server: HostileServer, mode: str) -> None:
    server.default = Act.error(400, {"detail": "bad request"})
    with remote(server, max_retries=0) as reranker, pytest.raises(RemoteStatusError):
        if mode == "sync":
            reranker.rerank("q", ["a", "b"])
        else:
            asyncio.run(reranker.arerank("q", ["a", "b"]))
    (span,) = spans()
    assert span.status.status_code is StatusCode.ERROR
    (event,) = span.events
    assert dict(event.attributes or {})["exception.type"].endswith("RemoteStatusError")
    attrs = dict(span.attributes or {})
    assert attrs["rerank_integrations.remote.sub_requests"] == 1
    assert not [k for k in attrs if k.startswith("reranker.output_documents")]


def test_remote_passthrough_records_the_error_and_returns(
    spans: Any, server: HostileServer
) -> None:
    server.default = Act.error(500)
    with remote(server, max_retries=1, on_error="passthrough") as reranker:
        assert [r.index for r in reranker.rerank("q", ["a", "b"])] == [0, 1]
    (span,) = spans()
    assert span.status.status_code is StatusCode.UNSET  # the call returned
    (event,) = span.events
    assert event.name == "exception"
    attrs = dict(span.attributes or {})
    assert attrs["rerank_integrations.remote.passthrough"] is True
    assert attrs["rerank_integrations.remote.retries"] == 1


# ------------------------------------------------------------------ local backend


def test_local_reports_its_format_and_inputs(spans: Any, tiny_xlmr_dir: Any) -> None:
    pytest.importorskip("torch")
    from rerank_integrations.backends.local import LocalReranker

    with LocalReranker(str(tiny_xlmr_dir), device="cpu", dtype="float32") as reranker:
        reranker.rerank("q", ["one document", "another one"], top_n=1)
        asyncio.run(reranker.arerank("q", ["a document"]))
    sync_span, async_span = spans()
    attrs = dict(sync_span.attributes or {})
    assert attrs["rerank_integrations.backend"] == "local"
    assert attrs["rerank_integrations.format"] == "cross-encoder"
    assert attrs["rerank_integrations.local.inputs"] == 2
    assert attrs["rerank_integrations.truncated_documents"] == 0
    assert attrs["reranker.top_k"] == 1
    assert "rerank_integrations.local.batches" not in attrs  # not reported (docs say why)
    assert dict(async_span.attributes or {})["rerank_integrations.local.inputs"] == 1


# ------------------------------------------------------------------ a real framework


def test_langchain_pipeline_makes_one_span_per_call(spans: Any) -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document

    from rerank_integrations.langchain import RerankCompressor

    docs = [Document(page_content=t, id=f"id-{t}") for t in ("a", "b", "c")]
    compressor = RerankCompressor(reranker=FakeReranker(SCORES), top_n=2)
    out = compressor.compress_documents(docs, "q")
    assert [d.page_content for d in out] == ["b", "c"]
    attrs = only(spans)
    assert attrs["reranker.top_k"] == 2
    assert attrs["reranker.output_documents.0.document.id"] == "1"  # the position, not "id-b"
    asyncio.run(compressor.acompress_documents(docs, "q2"))
    assert [dict(s.attributes or {})["reranker.query"] for s in spans()] == ["q", "q2"]


# ------------------------------------------------------------------ zero cost without the API


def test_disabled_builds_no_span(spans: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    class Boom:
        def __init__(self, *args: Any) -> None:
            raise AssertionError("a span was built while tracing is off")

    monkeypatch.setattr(tracing, "ENABLED", False)
    monkeypatch.setattr(tracing, "RerankSpan", Boom)
    reranker = FakeReranker(SCORES)
    assert [r.index for r in reranker.rerank("q", ["a", "b"])] == [1, 0]
    assert [r.index for r in asyncio.run(reranker.arerank("q", ["a", "b"]))] == [1, 0]
    assert spans() == []


def test_without_the_api_nothing_is_imported() -> None:
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "from rerank_integrations import tracing\n"
        "from rerank_integrations._testing import FakeReranker\n"
        "assert tracing.ENABLED is False\n"
        "assert [r.index for r in FakeReranker({'b': 1.0}).rerank('q', ['a', 'b'])] == [1, 0]\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_importing_the_package_does_not_import_opentelemetry() -> None:
    code = "import sys, rerank_integrations.base; print('opentelemetry.trace' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_long_lists_fit_the_attribute_limit(
    spans: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = [f"d{i}" for i in range(500)]
    reranker = FakeReranker({d: i / 1000 for i, d in enumerate(docs)})
    with caplog.at_level("WARNING"):
        reranker.rerank("q", docs)
    assert not [r for r in caplog.records if "Attributes dict is full" in r.getMessage()]
    attrs = only(spans)
    assert len(attrs) <= 128
    assert attrs["openinference.span.kind"] == "RERANKER"
    assert attrs["rerank_integrations.documents"] == 500
    assert attrs["reranker.top_k"] == 500
    # the best results first, then (were there room) the inputs
    assert attrs["reranker.output_documents.0.document.id"] == "499"
    assert "reranker.output_documents.499.document.id" not in attrs

    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "1000")  # the SDK's is still 128
    with caplog.at_level("WARNING"):
        reranker.rerank("q", docs[:100])
    (_, second) = spans()
    second_attrs = dict(second.attributes or {})
    # written least important first: over the SDK's limit, the inputs go, never the call
    assert second_attrs["openinference.span.kind"] == "RERANKER"
    assert second_attrs["reranker.output_documents.0.document.id"] == "99"


def test_sampled_out_builds_no_attributes(spans: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_documents(self: Any, room: int) -> dict[str, Any]:
        raise AssertionError("attributes built for a span that is not recording")

    monkeypatch.setattr(tracing.RerankSpan, "_documents", no_documents)
    tracer = trace.NoOpTracer()
    monkeypatch.setattr(trace, "get_tracer", lambda *a, **k: tracer)
    assert [r.index for r in FakeReranker(SCORES).rerank("q", ["a", "b"])] == [1, 0]
    assert spans() == []
