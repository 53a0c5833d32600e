"""LocalReranker lifecycle under hostile use (docs/reliability.md "Local backend").

- ``os.fork()``: a reranker used in the parent reranks in the child (the child gets a fresh
  lock, queue and worker), checked with a real forked child under a time bound: the parent
  kills a child that does not finish, so a regression fails instead of hanging the run.
- Dropped without ``close()``: the worker holds only a weak reference, so the reranker and its
  model are collected and the worker threads do not accumulate.
- ``pickle`` / ``copy.deepcopy`` / ``copy.copy`` rebuild from the settings (the model loads
  again) and give identical scores on a worker of their own.
- Cross-encoder windows: metadata is capped to half of the room after the query, so the window
  count is bounded by the document length (not by the metadata's), with one warning per call.
"""

from __future__ import annotations

import copy
import gc
import inspect
import json
import logging
import math
import os
import pickle
import queue
import re
import signal
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from rerank_integrations import LocalReranker  # noqa: E402
from rerank_integrations.backends.local.engine import (  # noqa: E402
    _STOP,
    WORKER_THREAD_NAME,
    EncodedInput,
    LocalEngine,
    _Job,
    _worker_cycle,
)
from rerank_integrations.backends.local.formats.base import PairTemplate  # noqa: E402
from rerank_integrations.backends.local.formats.cross_encoder import (  # noqa: E402
    CrossEncoderFormat,
    cap_metadata,
    split_windows,
)
from rerank_integrations.errors import RerankerClosedError, RerankError  # noqa: E402
from rerank_integrations.validation import validate_request  # noqa: E402

QUERY = "What is the capital of France?"
DOCS = [
    "Paris is the capital and largest city of France.",
    "Berlin is the capital of Germany!\n",
    "Green tea contains antioxidants called catechins.",
    "The quick brown fox jumps over the lazy dog. " * 6,
]
CHILD_TIMEOUT_S = 60.0
COLLECT_TIMEOUT_S = 10.0


def scores(reranker: LocalReranker, **kwargs: Any) -> list[float]:
    """Raw scores in document order."""
    results = reranker.rerank(QUERY, DOCS, **kwargs)
    return [r.raw_score for r in sorted(results, key=lambda r: r.index)]


def workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == WORKER_THREAD_NAME]


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gc.collect()
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture(scope="module")
def xlmr(tiny_xlmr_dir: Path) -> Iterator[LocalReranker]:
    r = LocalReranker(str(tiny_xlmr_dir), dtype="float32")
    yield r
    r.close()


@pytest.fixture(scope="module")
def mxbai(tiny_mxbai_dir: Path) -> Iterator[LocalReranker]:
    r = LocalReranker(str(tiny_mxbai_dir), dtype="float32")
    yield r
    r.close()


# ---------------------------------------------------------------------------------------------
# fork
# ---------------------------------------------------------------------------------------------


def run_in_fork(child: Callable[[], Any], timeout: float = CHILD_TIMEOUT_S) -> Any:
    """Fork; the child runs ``child()`` and sends back its JSON result (or its traceback). The
    parent waits at most ``timeout`` seconds, then kills the child and fails the test."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 0
        try:
            os.close(read_fd)
            try:
                payload = {"ok": child()}
            except BaseException:
                payload = {"error": traceback.format_exc()}
                code = 1
            with os.fdopen(write_fd, "w") as out:
                json.dump(payload, out)
        finally:
            os._exit(code)
    os.close(write_fd)
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read_fd)
        pytest.fail(f"the forked child did not finish within {timeout} s (killed)")
    with os.fdopen(read_fd) as inp:
        text = inp.read()
    result = json.loads(text) if text else {"error": f"child exited with status {status}"}
    if "error" in result:
        pytest.fail(f"the forked child failed:\n{result['error']}")
    return result["ok"]


@pytest.mark.parametrize("name", ["xlmr", "mxbai"])
def test_reranker_used_in_the_parent_works_in_a_forked_child(
    name: str, request: pytest.FixtureRequest
) -> None:
    reranker: LocalReranker = request.getfixturevalue(name)
    parent = scores(reranker, metadata=["date: 2024"] * len(DOCS))  # worker started, prefix LRU
    # intra-op threads used in the parent before the fork (the torch side of "works in a child")
    big = torch.ones(512, 512)
    assert float((big @ big)[0, 0]) == 512.0
    parent_worker = reranker._engine._thread

    def child() -> dict[str, Any]:
        first = scores(reranker, metadata=["date: 2024"] * len(DOCS))
        again = scores(reranker)  # a second call on the child's worker
        return {
            "scores": first,
            "plain": again,
            "own_worker": reranker._engine._thread is not parent_worker,
            "workers": len(workers()),
        }

    got = run_in_fork(child)
    assert got["scores"] == pytest.approx(parent, abs=1e-6)
    assert got["plain"] == pytest.approx(scores(reranker), abs=1e-6)
    assert got["own_worker"] and got["workers"] == 1
    assert scores(reranker, metadata=["date: 2024"] * len(DOCS)) == pytest.approx(parent, abs=1e-6)


def test_fork_while_another_thread_reranks(xlmr: LocalReranker) -> None:
    """Fork while the parent's worker may be busy: the child still gets an answer (its own
    worker), and the parent's callers are not disturbed."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def busy() -> None:
        try:
            while not stop.is_set():
                xlmr.rerank(QUERY, DOCS)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=busy)
    thread.start()
    try:
        time.sleep(0.2)
        got = run_in_fork(lambda: scores(xlmr))
    finally:
        stop.set()
        thread.join(CHILD_TIMEOUT_S)
    assert not errors and not thread.is_alive()
    assert got == pytest.approx(scores(xlmr), abs=1e-6)


def test_closed_reranker_raises_in_the_child(tiny_xlmr_dir: Path) -> None:
    r = LocalReranker(str(tiny_xlmr_dir))
    r.rerank(QUERY, DOCS[:1])
    r.close()

    def child() -> str:
        try:
            r.rerank(QUERY, DOCS[:1])
        except RerankError as exc:
            return type(exc).__name__
        return "no error"

    assert run_in_fork(child) == "RerankerClosedError"


# ---------------------------------------------------------------------------------------------
# dropped without close()
# ---------------------------------------------------------------------------------------------


def test_dropped_rerankers_are_collected_with_their_model_and_worker(tiny_xlmr_dir: Path) -> None:
    before = set(workers())  # the module fixtures' workers
    refs: list[weakref.ref[Any]] = []
    for _ in range(12):
        r = LocalReranker(str(tiny_xlmr_dir))
        assert r.rerank(QUERY, DOCS[:2])  # the worker is running
        runner: Any = r._engine._runner
        assert runner is not None
        refs += [weakref.ref(r), weakref.ref(r._engine), weakref.ref(runner.module)]
        del r, runner
    assert wait_until(lambda: all(ref() is None for ref in refs), COLLECT_TIMEOUT_S)
    assert wait_until(lambda: set(workers()) <= before, COLLECT_TIMEOUT_S), workers()


async def test_dropped_after_arerank_and_temporary_rerankers(tiny_xlmr_dir: Path) -> None:
    before = set(workers())
    temp = LocalReranker(str(tiny_xlmr_dir)).rerank(QUERY, DOCS)  # never bound to a name
    assert len(temp) == len(DOCS)
    r = LocalReranker(str(tiny_xlmr_dir))
    assert len(await r.arerank(QUERY, DOCS)) == len(DOCS)
    ref = weakref.ref(r)
    del r
    assert wait_until(lambda: ref() is None and set(workers()) <= before, COLLECT_TIMEOUT_S)


def test_jobs_left_by_a_collected_engine_fail_instead_of_hanging() -> None:
    class Gone:
        pass

    jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
    job = _Job([EncodedInput((1, 2, 3))])
    jobs.put(job)
    jobs.put(_STOP)
    gone = Gone()
    ref = cast("weakref.ref[LocalEngine]", weakref.ref(gone))
    del gone
    assert ref() is None
    assert _worker_cycle(jobs, ref) is False  # the stop behind the job ends the worker
    with pytest.raises(RerankError, match="garbage-collected"):
        job.future.result(timeout=1)


def test_close_still_frees_at_once_and_stops_the_worker(tiny_xlmr_dir: Path) -> None:
    r = LocalReranker(str(tiny_xlmr_dir))
    r.rerank(QUERY, DOCS[:1])
    worker = r._engine._thread
    assert worker is not None and worker.is_alive()
    r.close()
    assert not worker.is_alive() and r._engine._runner is None


# ---------------------------------------------------------------------------------------------
# pickle / copy
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_copy",
    [lambda r: pickle.loads(pickle.dumps(r)), copy.deepcopy, copy.copy],
    ids=["pickle", "deepcopy", "copy"],
)
def test_copies_rebuild_from_settings(
    make_copy: Callable[[LocalReranker], LocalReranker], tiny_mxbai_dir: Path
) -> None:
    original = LocalReranker(str(tiny_mxbai_dir), dtype="float32", batch_size=3)
    try:
        expected = scores(original)
        duplicate = make_copy(original)
        try:
            assert type(duplicate) is LocalReranker and duplicate is not original
            assert duplicate.to_config() == original.to_config()
            assert duplicate.model_format == original.model_format
            assert duplicate._engine is not original._engine
            assert scores(duplicate) == expected  # same weights, settings and batches
            assert duplicate._engine._thread is not original._engine._thread
            assert duplicate._engine._thread is not None and duplicate._engine._thread.is_alive()
            original.close()  # the copy does not share the model or the worker
            assert scores(duplicate) == expected
        finally:
            duplicate.close()
    finally:
        original.close()


def test_copy_settings_cover_every_constructor_argument(xlmr: LocalReranker) -> None:
    """A new constructor argument must reach to_config() (or a copy would silently drop it)."""
    params = set(inspect.signature(LocalReranker.__init__).parameters) - {"self"}
    assert set(xlmr._settings()) == params


def test_pickle_carries_settings_only(xlmr: LocalReranker, tiny_xlmr_dir: Path) -> None:
    data = pickle.dumps(xlmr)
    assert len(data) < 4096  # no weights, no tokenizer
    assert str(tiny_xlmr_dir).encode() in data


def test_closed_reranker_cannot_be_copied(tiny_xlmr_dir: Path) -> None:
    r = LocalReranker(str(tiny_xlmr_dir))
    r.close()
    for make_copy in (pickle.dumps, copy.deepcopy):
        with pytest.raises(RerankerClosedError, match="closed"):
            make_copy(r)


# ---------------------------------------------------------------------------------------------
# cross-encoder windows: metadata capped
# ---------------------------------------------------------------------------------------------


class WordEncoder:
    """One id per whitespace-separated word (a newline is a word)."""

    special_prefix: tuple[int, ...] = ()
    special_suffix: tuple[int, ...] = ()

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}

    def encode(self, text: str) -> list[int]:
        return [
            self.vocab.setdefault(w, 100 + len(self.vocab)) for w in re.findall(r"\n|\S+", text)
        ]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def token_id(self, token: str) -> int | None:
        return self.vocab.get(token)


PAIR = PairTemplate((90,), (91, 91), (91,))


def max_windows(n_tokens: int, room: int, fmt: CrossEncoderFormat) -> int:
    """The bound: the window count with the smallest document part the cap allows."""
    window = room - fmt.metadata_limit(room)
    return len(split_windows(n_tokens, window, min(fmt.max_overlap, window // 4)))


def test_cap_metadata_keeps_the_head_and_the_line_break() -> None:
    assert cap_metadata([1, 2, 3], 3) == ([1, 2, 3], False)
    assert cap_metadata([1, 2, 3, 4, 9], 3) == ([1, 2, 9], True)
    assert cap_metadata([1, 2], 1) == ([1], True)
    assert cap_metadata([1, 2], 0) == ([], True)


@pytest.mark.parametrize("meta_words", [0, 3, 15, 16, 33, 500])
def test_window_count_is_bounded_by_the_document_length(meta_words: int) -> None:
    fmt = CrossEncoderFormat(pair=PAIR)
    enc = WordEncoder()
    doc = " ".join(f"w{i}" for i in range(2000))
    meta = " ".join(f"m{i}" for i in range(meta_words))
    out = fmt.encode(enc, validate_request("q", [doc], metadata=[meta]), max_length=40)
    room = 40 - 1 - PAIR.num_special  # 35
    windows = out.documents[0].inputs
    no_metadata = CrossEncoderFormat(pair=PAIR, max_metadata_share=0.0)
    # at most twice the windows of the same document without metadata (the old rule: 1 token
    # of document per window once the metadata filled the room, i.e. ~2000 windows)
    assert len(windows) <= max_windows(2000, room, fmt) <= 2 * max_windows(2000, room, no_metadata)
    seen: set[int] = set()
    for w in windows:
        assert len(w.input_ids) <= 40
        seen.update(w.input_ids)
    assert set(enc.encode(doc)) <= seen  # every document token is scored
    cut = meta_words + 1 > fmt.metadata_limit(room)  # +1: the metadata's line break
    assert out.documents[0].metadata_cut is cut and out.num_metadata_cut == int(cut)
    if meta_words and not cut:  # small metadata: whole, in every window, as before
        meta_ids = enc.encode(meta + "\n")
        for w in windows:
            assert list(w.input_ids[4 : 4 + len(meta_ids)]) == meta_ids  # after <s> q </s></s>


def test_short_documents_keep_all_their_metadata() -> None:
    fmt = CrossEncoderFormat(pair=PAIR)
    enc = WordEncoder()
    meta = " ".join(f"m{i}" for i in range(30))  # more than the cap, but the document fits
    out = fmt.encode(enc, validate_request("q", ["short doc"], metadata=[meta]), max_length=40)
    (only,) = out.documents[0].inputs
    assert only.input_ids == PAIR.build(enc.encode("q"), enc.encode(f"{meta}\nshort doc"))[0]
    assert not out.documents[0].metadata_cut


def test_long_metadata_on_a_real_tokenizer_one_warning_per_call(
    xlmr: LocalReranker, caplog: pytest.LogCaptureFixture
) -> None:
    tok = xlmr._encoder
    fmt = xlmr.format
    assert isinstance(fmt, CrossEncoderFormat)
    doc = "Paris is the capital and largest city of France. " * 120
    room = xlmr.max_length - len(tok.encode(QUERY)) - fmt.pair.num_special
    meta = "tea " * (room - 2)
    assert len(tok.encode(meta + "\n")) >= room - 2
    plain = xlmr._encode(validate_request(QUERY, [doc]))
    n_doc = len(tok.encode(doc))
    with caplog.at_level(logging.WARNING, logger="rerank_integrations"):
        results = xlmr.rerank(QUERY, [doc, doc, "short"], metadata=[meta, meta, "x"])
    assert len(results) == 3 and all(math.isfinite(r.raw_score) for r in results)
    cut_warnings = [r for r in caplog.records if "metadata of 2 long documents" in r.message]
    assert len(cut_warnings) == 1
    encoded = xlmr._encode(validate_request(QUERY, [doc], metadata=[meta]))
    n_windows = len(encoded.documents[0].inputs)
    assert n_windows <= max_windows(n_doc, room, fmt)
    assert n_windows <= 2 * len(plain.documents[0].inputs) + 1
