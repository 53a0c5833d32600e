"""The adapters' security and lifecycle rules (issue: secrets, untrusted configs, late errors,
pickling, replaced rerankers):

- no pydantic validation error, repr, serialisation or pickle ever contains the API key;
- a loaded config imports a ``module:Class`` backend only from an allowed module and never
  switches on ``trust_remote_code`` / ``allow_pickle``;
- bad inputs raise a typed error naming the field before any model (or network) work;
- pickle / deepcopy rebuild from settings; a replaced reranker is closed once idle and not kept
  alive.
"""

from __future__ import annotations

import copy
import gc
import json
import pickle
import sys
import threading
import weakref
from pathlib import Path
from typing import Any, ClassVar

import pytest
from helpers.remote_server import RerankTestServer

from rerank_integrations._adapters.policy import ALLOWED_BACKENDS_ENV, UNPICKLED_KEY_ENV
from rerank_integrations._testing import FakeReranker
from rerank_integrations.errors import RerankInputError, RerankTypeError

SECRET = "sk-live-0123456789abcdef-SECRET"
SCORES = {"a": 0.2, "b": 0.9, "c": 0.5}


class CountingReranker(FakeReranker):
    """A backend built from settings that counts its builds (to prove nothing was built)."""

    backend_name = f"{__name__}:CountingReranker"
    builds: ClassVar[list[str]] = []

    def __init__(self, model: str = "counting", **kwargs: Any) -> None:
        type(self).builds.append(model)
        super().__init__(SCORES, model=model, **kwargs)


COUNTING = f"{__name__}:CountingReranker"
FAKE = "rerank_integrations._testing:FakeReranker"


@pytest.fixture(autouse=True)
def _allow_this_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOWED_BACKENDS_ENV, __name__)
    monkeypatch.delenv(UNPICKLED_KEY_ENV, raising=False)
    CountingReranker.builds.clear()


def _lc() -> Any:
    from rerank_integrations.langchain import RerankCompressor

    return RerankCompressor


def _li() -> Any:
    from rerank_integrations.llama_index import RerankPostprocessor

    return RerankPostprocessor


def _hs() -> Any:
    from rerank_integrations.haystack import RerankRanker

    return RerankRanker


def lc_docs() -> list[Any]:
    from langchain_core.documents import Document

    return [Document(page_content=t, id=t) for t in ("a", "b", "c")]


def li_nodes() -> list[Any]:
    from llama_index.core.schema import NodeWithScore, TextNode

    return [NodeWithScore(node=TextNode(id_=t, text=t), score=0.0) for t in ("a", "b", "c")]


def hs_docs() -> list[Any]:
    from haystack import Document

    return [Document(id=t, content=t) for t in ("a", "b", "c")]


# --- 9. the key never shows ------------------------------------------------------------------


@pytest.mark.parametrize("adapter", ["langchain", "llama_index"])
@pytest.mark.parametrize(
    ("bad", "exc", "field"),
    [
        ({"unknown_field": 1}, RerankTypeError, "unknown_field"),  # as Python's unexpected kwarg
        ({"top_k": 3}, RerankTypeError, "top_k"),
    ],
)
def test_pydantic_errors_never_quote_the_key(
    adapter: str, bad: dict[str, Any], exc: type[Exception], field: str
) -> None:
    cls = _lc() if adapter == "langchain" else _li()
    with pytest.raises(exc) as info:
        cls(backend="remote", base_url="http://127.0.0.1:1", api_key=SECRET, **bad)
    assert SECRET not in str(info.value) and SECRET[:12] not in repr(info.value)
    assert info.value.field == field  # type: ignore[attr-defined]
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__ or info.value.__context__ is None


def test_llama_index_bad_metadata_mode_never_quotes_the_key() -> None:
    cls = _li()
    with pytest.raises(RerankInputError) as info:
        cls(backend="remote", base_url="http://127.0.0.1:1", api_key=SECRET, metadata_mode="bogus")
    assert SECRET not in str(info.value) and info.value.field == "metadata_mode"
    pp = cls(backend="remote", base_url="http://127.0.0.1:1", api_key=SECRET)
    with pytest.raises(RerankInputError) as info:
        pp.metadata_mode = "bogus"
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("adapter", ["langchain", "llama_index", "haystack"])
def test_a_key_inside_reranker_kwargs_is_refused(adapter: str) -> None:
    cls = {"langchain": _lc, "llama_index": _li, "haystack": _hs}[adapter]()
    with pytest.raises(RerankInputError) as info:
        cls(backend="remote", base_url="http://127.0.0.1:1", reranker_kwargs={"api_key": SECRET})
    assert info.value.field == "reranker_kwargs['api_key']"
    assert SECRET not in str(info.value) and "api_key" in str(info.value)
    if adapter != "haystack":
        obj = cls(backend="remote", base_url="http://127.0.0.1:1")
        with pytest.raises(RerankInputError):
            obj.reranker_kwargs = {"api_key": SECRET}
        assert obj.reranker_kwargs == {}


@pytest.mark.parametrize("adapter", ["langchain", "llama_index"])
def test_pickle_and_every_serialisation_omit_the_key(adapter: str) -> None:
    cls = _lc() if adapter == "langchain" else _li()
    obj = cls(backend="remote", base_url="http://127.0.0.1:1", api_key=SECRET, model="m")
    obj.get_reranker()  # built: a live HTTP client must not end up in the pickle either
    blob = pickle.dumps(obj)
    assert SECRET.encode() not in blob
    texts = [repr(obj), str(obj), obj.model_dump_json(), json.dumps(obj.model_dump(mode="json"))]
    if adapter == "llama_index":
        texts += [obj.to_json(), str(obj.to_dict())]
    else:
        from langchain_core.load import dumps

        texts.append(dumps(obj))
    assert not [t for t in texts if SECRET in t]


# --- 10. untrusted configs -------------------------------------------------------------------


@pytest.fixture
def evil_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module whose import has a side effect (writes a marker file)."""
    marker = tmp_path / "imported.txt"
    (tmp_path / "evil_backend_mod.py").write_text(
        f"open({str(marker)!r}, 'w').write('side effect')\n"
        "from rerank_integrations._testing import FakeReranker\n"
        "class Evil(FakeReranker):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("evil_backend_mod", None)
    return marker


@pytest.mark.filterwarnings("ignore::langchain_core._api.beta_decorator.LangChainBetaWarning")
def test_langchain_loads_never_imports_an_unallowed_backend(evil_module: Path) -> None:
    from langchain_core.load import dumps, loads

    cls = _lc()
    text = dumps(cls(backend=FAKE, model="m"))
    text = text.replace(FAKE, "evil_backend_mod:Evil")
    with pytest.raises(RerankInputError) as info:
        loads(text, valid_namespaces=["rerank_integrations"], allowed_objects=[cls])
    assert info.value.field == "backend"
    assert "RERANK_INTEGRATIONS_ALLOWED_BACKENDS" in str(info.value)
    assert not evil_module.exists()  # the module was never imported


def test_llama_index_from_json_never_imports_an_unallowed_backend(evil_module: Path) -> None:
    cls = _li()
    data = cls(backend=FAKE, model="m").to_dict()
    data["backend"] = "evil_backend_mod:Evil"
    with pytest.raises(RerankInputError) as info:
        cls.from_json(json.dumps(data))
    assert info.value.field == "backend"
    # a reranker config naming it is refused the same way
    data = cls(reranker=FakeReranker(SCORES)).to_dict()
    data["reranker"]["backend"] = "evil_backend_mod:Evil"
    with pytest.raises(RerankInputError) as info:
        cls.from_dict(data)
    assert info.value.field == "reranker['backend']"
    assert not evil_module.exists()


def test_an_allowed_backend_module_loads(
    evil_module: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ALLOWED_BACKENDS_ENV, f"{__name__},evil_backend_mod")
    pp = _li().from_json(
        json.dumps({**_li()(backend=FAKE).to_dict(), "backend": "evil_backend_mod:Evil"})
    )
    assert evil_module.exists()  # allowed explicitly: imported when checked
    assert pp.get_reranker().model_name == "fake-reranker"


@pytest.mark.parametrize("flag", ["trust_remote_code", "allow_pickle"])
def test_configs_cannot_switch_on_remote_code_or_pickle(flag: str) -> None:
    from langchain_core.load import dumps, loads

    lc, li = _lc(), _li()
    text = dumps(lc(backend="local", model="m", reranker_kwargs={"batch_size": 2}))
    bad = text.replace('"batch_size": 2', f'"batch_size": 2, "{flag}": true')
    assert bad != text
    with pytest.raises(RerankInputError) as info:
        loads(bad, valid_namespaces=["rerank_integrations"], allowed_objects=[lc])
    assert info.value.field == f"reranker_kwargs[{flag!r}]"
    data = li(backend="local", model="m").to_dict()
    with pytest.raises(RerankInputError):
        li.from_dict({**data, "reranker_kwargs": {flag: True}})
    with pytest.raises(RerankInputError) as info:
        li.from_dict({**data, "backend": None, "model": None,
                      "reranker": {"backend": "local", "model": "m", flag: True}})  # fmt: skip
    assert info.value.field == f"reranker[{flag!r}]"
    with pytest.raises(RerankInputError):
        _hs().from_dict(
            {
                "type": "rerank_integrations.haystack.RerankRanker",
                "init_parameters": {"backend": "local", "reranker_kwargs": {flag: True}},
            }
        )
    # False / absent is fine; in code, pass a reranker built with the flag instead
    li(backend="local", model="m", reranker_kwargs={flag: False})


# --- 12. typed errors before any model work --------------------------------------------------


def test_langchain_bad_documents_and_blank_query_fail_before_building() -> None:
    c = _lc()(backend=COUNTING)
    with pytest.raises(RerankTypeError) as info:
        c.compress_documents(None, "q")  # type: ignore[arg-type]
    assert info.value.field == "documents"
    with pytest.raises(RerankTypeError) as info:
        c.compress_documents([lc_docs()[0], None], "q")  # type: ignore[list-item]
    assert info.value.field == "documents[1]"
    with pytest.raises(RerankInputError) as info:
        c.compress_documents(lc_docs(), "   ")
    assert info.value.field == "query"
    assert CountingReranker.builds == []


async def test_langchain_async_bad_input_fails_before_building() -> None:
    c = _lc()(backend=COUNTING)
    with pytest.raises(RerankTypeError):
        await c.acompress_documents([None], "q")  # type: ignore[list-item]
    with pytest.raises(RerankInputError):
        await c.acompress_documents(lc_docs(), "")
    assert CountingReranker.builds == []


def test_langchain_runnable_says_what_it_expects() -> None:
    step = _lc()(reranker=FakeReranker(SCORES)).as_runnable()
    with pytest.raises(RerankTypeError) as info:
        step.invoke(lc_docs())  # what `retriever | step` passes
    assert info.value.field == "input" and "'documents'" in str(info.value)
    with pytest.raises(RerankInputError, match="missing"):
        step.invoke({"documents": lc_docs()})


def test_llama_index_bad_nodes_and_blank_query_fail_before_building() -> None:
    from llama_index.core.instrumentation import get_dispatcher

    pp = _li()(backend=COUNTING)
    events: list[Any] = []
    root = get_dispatcher()
    handler = _Recorder(events=events)
    root.add_event_handler(handler)
    try:
        with pytest.raises(RerankTypeError) as info:
            pp.postprocess_nodes([*li_nodes(), None], query_str="q")  # type: ignore[list-item]
        assert info.value.field == "nodes[3]"
        with pytest.raises(RerankInputError) as info:
            pp.postprocess_nodes(li_nodes(), query_str=" ")
        assert info.value.field == "query"
    finally:
        root.event_handlers.remove(handler)
    assert CountingReranker.builds == []
    from llama_index.core.instrumentation.events.rerank import ReRankStartEvent

    assert not [e for e in events if isinstance(e, ReRankStartEvent)]  # refused: no start


@pytest.mark.parametrize("adapter", ["langchain", "llama_index"])
@pytest.mark.parametrize(
    "backend", [f"{__name__}:Missing", "no_such_module_xyz:Nope", "not-a-path", "  "]
)
def test_bad_backend_is_a_typed_error_at_construction(adapter: str, backend: str) -> None:
    cls = _lc() if adapter == "langchain" else _li()
    with pytest.raises(RerankInputError) as info:
        cls(backend=backend)
    assert info.value.field == "backend"


def test_score_threshold_true_is_rejected_at_construction() -> None:
    for cls in (_lc(), _li()):
        with pytest.raises(RerankTypeError):
            cls(reranker=FakeReranker(SCORES), score_threshold=True)
    with pytest.raises(RerankTypeError):
        _hs()(FakeReranker(SCORES), score_threshold=True)


# --- 13. pickle / deepcopy, replaced rerankers ----------------------------------------------


def _run(adapter: str, obj: Any) -> list[str]:
    if adapter == "langchain":
        return [d.id for d in obj.compress_documents(lc_docs(), "q")]
    if adapter == "llama_index":
        return [n.node.node_id for n in obj.postprocess_nodes(li_nodes(), query_str="q")]
    return [d.id for d in obj.run(query="q", documents=hs_docs())["documents"]]


def _make(adapter: str, **kw: Any) -> Any:
    if adapter == "haystack":
        return _hs()(backend=COUNTING, top_k=None, **kw)
    cls = _lc() if adapter == "langchain" else _li()
    return cls(backend=COUNTING, top_n=None, **kw)


@pytest.mark.parametrize("adapter", ["langchain", "llama_index", "haystack"])
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_copies_rebuild_from_settings(adapter: str, how: str) -> None:
    obj = _make(adapter)
    assert _run(adapter, obj) == ["b", "c", "a"]
    clone = copy.deepcopy(obj) if how == "deepcopy" else pickle.loads(pickle.dumps(obj))
    assert CountingReranker.builds == ["counting"]
    assert _run(adapter, clone) == ["b", "c", "a"]
    assert CountingReranker.builds == ["counting", "counting"]  # its own reranker
    assert clone._lazy().get() is not obj._lazy().get()
    # a passed-in reranker travels as its to_config() and is rebuilt as well
    given = FakeReranker(SCORES)
    kw: dict[str, Any] = {"top_k": None} if adapter == "haystack" else {"top_n": None}
    cls = {"langchain": _lc, "llama_index": _li, "haystack": _hs}[adapter]()
    holder = cls(given, **kw) if adapter == "haystack" else cls(reranker=given, **kw)
    clone = copy.deepcopy(holder) if how == "deepcopy" else pickle.loads(pickle.dumps(holder))
    assert _run(adapter, clone) == ["b", "c", "a"] and given.calls == []


def test_haystack_pipeline_deepcopy() -> None:
    from haystack import Pipeline

    pipeline = Pipeline()
    pipeline.add_component("ranker", _make("haystack"))
    clone = copy.deepcopy(pipeline)
    out = clone.run({"ranker": {"query": "q", "documents": hs_docs()}})
    assert [d.id for d in out["ranker"]["documents"]] == ["b", "c", "a"]


@pytest.mark.parametrize("adapter", ["langchain", "llama_index"])
def test_an_unpickled_adapter_reads_the_key_again(
    adapter: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cls = _lc() if adapter == "langchain" else _li()
    with RerankTestServer() as server:
        url = server.base_url("jina")
        obj = cls(backend="remote", api_format="jina", base_url=url, api_key=SECRET, top_n=None)
        clone = pickle.loads(pickle.dumps(obj))
        assert clone.api_key is None
        with pytest.raises(RerankInputError) as info:  # a custom base_url: no silent no-auth
            _run(adapter, clone)
        assert info.value.field == "api_key" and UNPICKLED_KEY_ENV in str(info.value)
        assert server.requests == []
        monkeypatch.setenv(UNPICKLED_KEY_ENV, "sk-from-env")
        assert sorted(_run(adapter, clone)) == ["a", "b", "c"]
        assert server.requests[-1].headers["Authorization"] == "Bearer sk-from-env"
        # deepcopy (in-process) keeps the key
        copied = copy.deepcopy(obj)
        _run(adapter, copied)
        assert server.requests[-1].headers["Authorization"] == f"Bearer {SECRET}"


def test_haystack_token_secret_is_never_pickled() -> None:
    from haystack.utils import Secret

    with RerankTestServer() as server:
        ranker = _hs()(backend="remote", api_format="jina", base_url=server.base_url("jina"),
                       api_key=Secret.from_token(SECRET))  # fmt: skip
        blob = pickle.dumps(ranker)
        assert SECRET.encode() not in blob
        clone = pickle.loads(blob)
        with pytest.raises(RerankInputError) as info:
            _run("haystack", clone)
        assert info.value.field == "api_key" and server.requests == []


def _child_run(blob: bytes) -> list[str]:
    obj = pickle.loads(blob)
    return [d.id for d in obj.compress_documents(lc_docs(), "q")]


def test_multiprocessing_spawn_gets_a_working_copy() -> None:
    import multiprocessing

    blob = pickle.dumps(_make("langchain", model="in-child"))
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        assert pool.apply(_child_run, (blob,), ) == ["b", "c", "a"]  # fmt: skip


@pytest.mark.parametrize("adapter", ["langchain", "llama_index", "haystack"])
def test_replaced_rerankers_are_closed_and_not_kept_alive(adapter: str) -> None:
    obj = _make(adapter, model="m0")
    refs = []
    for i in range(1, 7):  # reassign `model` six times
        _run(adapter, obj)
        current = obj._lazy().get()
        refs.append(weakref.ref(current))
        del current
        obj.model = f"m{i}"
    _run(adapter, obj)
    gc.collect()
    alive = [r() for r in refs if r() is not None]
    assert alive == [], f"{len(alive)} replaced rerankers are still referenced"
    assert CountingReranker.builds == [f"m{i}" for i in range(7)]


def test_a_replaced_reranker_in_use_is_closed_when_its_call_ends() -> None:
    gate = threading.Event()
    entered = threading.Event()

    class Blocking(FakeReranker):
        def _score(self, request: Any) -> Any:
            entered.set()
            gate.wait(10)
            return super()._score(request)

    from rerank_integrations._adapters.holder import LazyReranker, refresh_reranker

    built: list[FakeReranker] = []

    def factory(**_: Any) -> FakeReranker:
        r = Blocking(SCORES)
        built.append(r)
        return r

    holder = LazyReranker(backend=FAKE)
    holder._settings = {}
    holder.get = lambda: built[0] if built else factory()  # type: ignore[method-assign]
    first = factory()
    holder._reranker = first
    result: list[Any] = []

    def call() -> None:
        with holder.using() as r:
            result.append(r.rerank("q", ["a", "b"]))

    t = threading.Thread(target=call)
    t.start()
    assert entered.wait(5)
    new = refresh_reranker(holder, backend=FAKE, model="other")  # the settings changed
    assert new is not holder and holder.retired
    assert not first.closed  # still in use by the running call
    gate.set()
    t.join(5)
    assert result and first.closed  # closed as soon as the call ended


class _Recorder:
    """A minimal LlamaIndex event handler."""

    def __new__(cls, events: list[Any]) -> Any:
        from llama_index.core.instrumentation.event_handlers import BaseEventHandler

        class Recorder(BaseEventHandler):
            @classmethod
            def class_name(cls) -> str:
                return "Recorder"

            def handle(self, event: Any, **kwargs: Any) -> None:
                events.append(event)

        return Recorder()


def test_reassigning_a_local_model_six_times_does_not_accumulate_threads(
    tiny_xlmr_dir: Path,
) -> None:
    """Real LocalRerankers (each has a worker thread): replaced ones are closed and dropped."""
    c = _lc()(backend="local", model=str(tiny_xlmr_dir), device="cpu", top_n=None)
    c.compress_documents(lc_docs(), "q")
    baseline = threading.active_count()
    refs = [weakref.ref(c.get_reranker())]
    for i in range(6):
        c.model = str(tiny_xlmr_dir) + "/" * (i % 2 + 1)  # another string: another reranker
        c.compress_documents(lc_docs(), "q")
        refs.append(weakref.ref(c.get_reranker()))
        assert threading.active_count() <= baseline, "replaced rerankers' threads pile up"
    gc.collect()
    assert sum(r() is not None for r in refs) == 1  # only the current one is alive
    c.close()


@pytest.mark.parametrize("adapter", ["langchain", "llama_index"])
def test_a_model_copy_never_closes_the_originals_reranker(adapter: str) -> None:
    obj = _make(adapter, model="m1")
    _run(adapter, obj)
    original = obj._lazy().get()
    copied = obj.model_copy(update={"model": "m2"})  # shares the private holder at first
    assert copied.get_reranker().model_name == "m2"
    assert not original.closed and obj.get_reranker() is original
    _run(adapter, obj)
    assert obj.get_reranker() is original and CountingReranker.builds == ["m1", "m2"]


@pytest.mark.parametrize("adapter", ["langchain", "llama_index"])
def test_model_validate_applies_the_same_policy(adapter: str, evil_module: Path) -> None:
    cls = _lc() if adapter == "langchain" else _li()
    with pytest.raises(RerankInputError) as info:
        cls.model_validate({"backend": "evil_backend_mod:Evil"})
    assert info.value.field == "backend"
    with pytest.raises(RerankInputError):
        cls.model_validate({"reranker": {"backend": "local", "trust_remote_code": True}})
    assert not evil_module.exists()


@pytest.mark.parametrize("adapter", ["langchain", "llama_index"])
def test_model_validate_errors_never_quote_the_key(adapter: str) -> None:
    cls = _lc() if adapter == "langchain" else _li()
    data = {"backend": "remote", "base_url": "http://127.0.0.1:1", "api_key": SECRET}
    for bad in ({"unknown": 1}, {"backend": "nope:Nope"}, {"reranker": FakeReranker()}):
        with pytest.raises((RerankInputError, RerankTypeError)) as info:
            cls.model_validate({**data, **bad})
        assert SECRET not in str(info.value)
        with pytest.raises((RerankInputError, RerankTypeError)) as info:
            cls.model_validate_json(json.dumps({**data, **bad}, default=str))
        assert SECRET not in str(info.value)
