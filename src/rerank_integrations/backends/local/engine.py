"""The execution engine of the local backend: batching, OOM back-off, one worker thread.

It knows nothing format-specific: it runs the :class:`EncodedInput` token ids a format produced
on a :class:`BatchRunner` (:mod:`.runners`, the only code that touches torch tensors) and hands
the score rows back. Design (what makes it fast, see docs/local.md "Performance design"):

- **Token-budget batches.** :func:`plan_batches` sorts the inputs by length and cuts batches so
  that ``batch size x longest input <= token_budget`` (and ``<= max_batch_size`` inputs):
  neighbours have similar lengths, so padding waste is small. Results are scattered back to
  input order.
- **Last-token projection.** Causal formats run the decoder BODY (no ``lm_head``), gather the
  hidden state of each input's last real token and multiply it with only the 1-2 ``lm_head``
  rows the format reads: ``[B, H] x [H, k]`` instead of ``[B, L, vocab]`` logits.
- **Right padding + gather.** Inputs are right-padded, so every row's real tokens keep the
  positions ``0..n-1`` (the model's defaults) and a document's score does not depend on what
  else is in the batch (the references' left padding is equivalent; RoPE only sees relative
  positions). The attention mask is ALWAYS passed, also for a batch without padding: with an
  all-ones mask transformers takes SDPA's ``is_causal`` fast path, without one transformers 4.x
  materialises a 4-D mask (docs/benchmarks.md).
- **Shared-prefix KV reuse.** When the query precedes the document (mxbai-v2, qwen3), every
  input of a call starts with the same query/template tokens (``EncodedInput.prefix_len``).
  The prefix runs ONCE, its KV cache is repeated across the batch and only the suffixes
  (document + tail) are computed. A small LRU keeps recent prefixes (repeated queries,
  ctxl's fixed header).
- **OOM back-off.** A batch that runs out of accelerator memory is split in halves and retried,
  down to one input, then :class:`~rerank_integrations.errors.OutOfMemoryError` is raised.
- **One worker thread.** All callers (threads, ``arerank`` coroutines) tokenize in their own
  thread and submit token ids to a queue; a single background thread drains EVERYTHING pending
  into one batch plan, so concurrent callers share batches and the model is never used by two
  threads at once. ``arerank`` awaits an ``asyncio`` wrapper of the job's future and never
  blocks the event loop.
- **Lifecycle** (docs/reliability.md "Local backend"). The worker runs a module-level loop over
  the queue and a WEAK reference to the engine (a strong one only while it runs a cycle), so a
  reranker nothing references is collected with its model; a ``weakref.finalize`` then stops
  the worker. After ``os.fork()`` the child gets a fresh lock, queue and (lazily started)
  worker, so a reranker used in the parent works in the child instead of waiting forever on a
  thread that does not exist there.
- **Isolated calls** (deterministic bulk runs, docs/evaluation.md "Determinism"). Merging
  callers makes which inputs share a batch (hence its padding width and shape, hence the last
  float digits of a score) depend on timing. A call made inside :func:`call_scope` with
  ``isolated=True`` (the bulk runner's, via a ``contextvars`` value, so no signature changes)
  is never merged with another call: its inputs are planned only among themselves, in a fixed
  order, so its scores are a function of its own inputs. Other calls keep sharing batches.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from rerank_integrations.errors import OutOfMemoryError, RerankerClosedError, RerankError
from rerank_integrations.forking import reset_after_fork

logger = logging.getLogger(__name__)

__all__ = [
    "BatchRunner",
    "CallScope",
    "EncodedInput",
    "EngineSettings",
    "WORKER_THREAD_NAME",
    "LocalEngine",
    "call_scope",
    "current_call_scope",
    "plan_batches",
    "run_with_oom_backoff",
]

Rows = tuple[float, ...]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class EncodedInput:
    """One model input. ``prefix_len`` leading tokens depend only on the query/instruction (not
    on the document), so their KV cache may be shared by every document of the call."""

    input_ids: tuple[int, ...]
    token_type_ids: tuple[int, ...] | None = None
    prefix_len: int = 0


@dataclass(frozen=True, slots=True)
class CallScope:
    """How the calls made in the current context run: ``label`` names them in warnings (the
    bulk runner sets the query id); ``isolated`` batches each call's inputs only among
    themselves (never with another call's), so its scores do not depend on timing."""

    label: str | None = None
    isolated: bool = False


_NO_SCOPE = CallScope()
_CALL_SCOPE: ContextVar[CallScope | None] = ContextVar("rerank_local_call_scope", default=None)


def current_call_scope() -> CallScope:
    """The :class:`CallScope` of the running context (the default one outside any scope)."""
    return _CALL_SCOPE.get() or _NO_SCOPE


@contextmanager
def call_scope(*, label: str | None = None, isolated: bool = False) -> Iterator[CallScope]:
    """Run the calls of this block under ``CallScope(label, isolated)``. A ``contextvars``
    value: it follows the current thread or asyncio task and is copied into
    ``asyncio.to_thread``; other threads and tasks keep their own scope."""
    scope = CallScope(label, isolated)
    token = _CALL_SCOPE.set(scope)
    try:
        yield scope
    finally:
        _CALL_SCOPE.reset(token)


# ---------------------------------------------------------------------------------------------
# Pure planning / retry logic
# ---------------------------------------------------------------------------------------------


def plan_batches(
    lengths: Sequence[int], *, token_budget: int, max_batch_size: int
) -> list[list[int]]:
    """Group input positions into batches, longest first.

    Inputs are sorted by length (descending; ties by position) and added to the current batch
    while ``(len(batch) + 1) * longest <= token_budget`` and ``len(batch) < max_batch_size``.
    An input longer than the budget gets a batch of its own. Every position appears exactly
    once."""
    if token_budget < 1 or max_batch_size < 1:
        raise ValueError("token_budget and max_batch_size must be >= 1")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        n = max(1, lengths[i])
        width = max(longest, n)
        full = len(current) >= max_batch_size or (len(current) + 1) * width > token_budget
        if current and full:
            batches.append(current)
            current, width = [], n
        current.append(i)
        longest = width
    if current:
        batches.append(current)
    return batches


def run_with_oom_backoff(
    items: Sequence[T],
    run: Callable[[Sequence[T]], list[Rows]],
    *,
    is_oom: Callable[[BaseException], bool],
    on_oom: Callable[[], None] = lambda: None,
) -> list[Rows]:
    """``run(items)``; on an out-of-memory error split ``items`` in halves and retry each half,
    recursively, down to single items. A single item that still runs out of memory raises
    :class:`OutOfMemoryError`. Other errors propagate unchanged."""
    try:
        return run(items)
    except Exception as exc:
        if not is_oom(exc):
            raise
        on_oom()
        if len(items) <= 1:
            raise OutOfMemoryError(
                "the model ran out of accelerator memory on a single input; lower max_length, "
                "use a smaller dtype or another device"
            ) from exc
        mid = len(items) // 2
        logger.warning("out of memory on a batch of %d inputs; retrying in halves", len(items))
        first = run_with_oom_backoff(items[:mid], run, is_oom=is_oom, on_oom=on_oom)
        return first + run_with_oom_backoff(items[mid:], run, is_oom=is_oom, on_oom=on_oom)


class BatchRunner(Protocol):
    """Runs a batch of inputs and returns one tuple of score rows per input (implemented over
    torch in :mod:`.runners`; fakes in the tests)."""

    supports_prefix: bool

    def run(self, items: Sequence[EncodedInput], prefix: Any | None = None) -> list[Rows]: ...

    def prepare_prefix(self, prefix_ids: Sequence[int]) -> Any: ...

    def is_oom(self, exc: BaseException) -> bool: ...

    def clear_cache(self) -> None: ...

    def release(self) -> None: ...


# ---------------------------------------------------------------------------------------------
# The engine and its worker
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineSettings:
    """``token_budget``: max padded tokens per batch; ``max_batch_size``: max inputs per batch;
    ``prefix_caching``: reuse a shared prefix's KV cache (causal formats);
    ``min_prefix_tokens``: shortest prefix worth caching; ``min_prefix_share``: the prefix must
    be at least this share of the rest of the input (a cached prefix forces an explicit
    attention mask, which costs more than a short prefix saves on long inputs);
    ``prefix_cache_size``: LRU entries."""

    token_budget: int
    max_batch_size: int
    prefix_caching: bool = True
    min_prefix_tokens: int = 8
    min_prefix_share: float = 0.1
    prefix_cache_size: int = 8

    def use_prefix(self, item: EncodedInput) -> bool:
        """Whether ``item`` runs on its cached prefix (decided per input, never by the other
        inputs of the call, so scores stay batch-invariant)."""
        rest = len(item.input_ids) - item.prefix_len
        return (
            self.prefix_caching
            and item.prefix_len >= self.min_prefix_tokens
            and item.prefix_len >= self.min_prefix_share * rest
        )


@dataclass
class _Job:
    inputs: Sequence[EncodedInput]
    future: Future[list[Rows]] = field(default_factory=Future)
    isolated: bool = False


_STOP = object()

#: the thread name of every engine's worker (tests count live workers by it).
WORKER_THREAD_NAME = "rerank-local-engine"


def _stop_worker(jobs: queue.SimpleQueue[Any]) -> None:
    """Ask the worker draining ``jobs`` to exit (SimpleQueue.put is safe in a finalizer)."""
    jobs.put(_STOP)


def _drain(jobs: queue.SimpleQueue[Any]) -> tuple[list[_Job], bool]:
    """Block for one item, then take everything pending: the jobs and whether a stop came."""
    first = jobs.get()
    if first is _STOP:
        return [], True
    batch: list[_Job] = [first]
    while True:
        try:
            nxt = jobs.get_nowait()
        except queue.Empty:
            return batch, False
        if nxt is _STOP:
            return batch, True
        batch.append(nxt)


def _worker_cycle(jobs: queue.SimpleQueue[Any], engine_ref: weakref.ref[LocalEngine]) -> bool:
    """One worker cycle; ``False`` once the worker should exit. The engine is strongly held
    only inside this call, never while the worker waits on the queue."""
    batch, stop = _drain(jobs)
    live = [j for j in batch if j.future.set_running_or_notify_cancel()]
    if live:
        engine = engine_ref()
        if engine is None:  # collected while these jobs waited: fail them, never leave a hang
            for job in live:
                job.future.set_exception(RerankError("this LocalReranker was garbage-collected"))
        else:
            engine._run_jobs(live)
    return not stop


def _worker_loop(jobs: queue.SimpleQueue[Any], engine_ref: weakref.ref[LocalEngine]) -> None:
    while _worker_cycle(jobs, engine_ref):
        pass
    logger.debug("local engine worker stopped")


class LocalEngine:
    """Scores :class:`EncodedInput` lists on one model from any number of threads."""

    def __init__(self, runner: BatchRunner, settings: EngineSettings) -> None:
        self._runner: BatchRunner | None = runner
        self.settings = settings
        self._closed = False
        self._prefixes: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        #: number of worker cycles and batches run (read by tests and benchmarks).
        self.stats = {"cycles": 0, "batches": 0, "jobs": 0}
        self._new_process_state()
        reset_after_fork(self)  # a forked child gets its own lock, queue and worker

    def _new_process_state(self) -> None:
        """The per-process part: lock, queue, worker (started on the first submit) and the
        finalizer that stops that worker when the engine is collected without close()."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopper = weakref.finalize(self, _stop_worker, self._queue)

    def _after_fork_in_child(self) -> None:
        """In a forked child: the parent's worker thread does not exist here and its lock may
        have been held at fork time, so start from scratch. Jobs the parent had queued belong
        to the parent's callers and are dropped."""
        self._stopper.detach()
        self._new_process_state()

    # -- public API ---------------------------------------------------------------------------

    def submit(
        self, inputs: Sequence[EncodedInput], *, isolated: bool | None = None
    ) -> Future[list[Rows]]:
        """Queue ``inputs``; the future resolves to one rows tuple per input, in order.
        ``isolated`` (default: the current :func:`call_scope`'s) batches them only among
        themselves, never with other callers' inputs."""
        if isolated is None:
            isolated = current_call_scope().isolated
        job = _Job(inputs, isolated=isolated)
        if self._pid != os.getpid():  # forked without the at-fork hook having run
            self._after_fork_in_child()
        with self._lock:
            if self._closed:
                raise RerankerClosedError("this LocalReranker is closed")
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=_worker_loop,
                    args=(self._queue, weakref.ref(self)),
                    name=WORKER_THREAD_NAME,
                    daemon=True,
                )
                self._thread.start()
            self._queue.put(job)
        return job.future

    def score(self, inputs: Sequence[EncodedInput], *, isolated: bool | None = None) -> list[Rows]:
        """Blocking :meth:`submit`."""
        return self.submit(inputs, isolated=isolated).result()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop the worker (after the jobs already queued) and free the model. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            self._stopper.detach()
            self._queue.put(_STOP)
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._prefixes.clear()
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.release()

    # -- worker ---------------------------------------------------------------------------------

    def _run_jobs(self, jobs: Sequence[_Job]) -> None:
        """The shared jobs of a cycle as one plan, then each isolated job on its own (in
        queue order)."""
        shared = [job for job in jobs if not job.isolated]
        if shared:
            self._run_group(shared)
        for job in jobs:
            if job.isolated:
                self._run_group([job])

    def _run_group(self, jobs: Sequence[_Job]) -> None:
        flat: list[EncodedInput] = [x for job in jobs for x in job.inputs]
        try:
            rows = self.score_inputs(flat)
        except BaseException as exc:  # handed to every waiting caller, none is lost
            for job in jobs:
                job.future.set_exception(exc)
            return
        self.stats["cycles"] += 1
        self.stats["jobs"] += len(jobs)
        start = 0
        for job in jobs:
            job.future.set_result(rows[start : start + len(job.inputs)])
            start += len(job.inputs)

    # -- planning + running (called on the worker thread) --------------------------------------

    def score_inputs(self, flat: Sequence[EncodedInput]) -> list[Rows]:
        """Rows for every input, in order (runs on the calling thread; not locked)."""
        runner = self._runner
        if runner is None:
            raise RerankerClosedError("this LocalReranker is closed")
        s = self.settings
        results: list[Rows | None] = [None] * len(flat)
        groups: dict[tuple[int, ...], list[int]] = {}
        plain: list[int] = []
        for i, x in enumerate(flat):
            if runner.supports_prefix and s.use_prefix(x):
                groups.setdefault(x.input_ids[: x.prefix_len], []).append(i)
            else:
                plain.append(i)

        def run_plan(idxs: list[int], skip: int, prefix: Any | None) -> None:
            lengths = [len(flat[i].input_ids) - skip for i in idxs]
            for batch in plan_batches(
                lengths, token_budget=s.token_budget, max_batch_size=s.max_batch_size
            ):
                members = [idxs[b] for b in batch]
                rows = run_with_oom_backoff(
                    members,
                    lambda m: runner.run([flat[i] for i in m], prefix),
                    is_oom=runner.is_oom,
                    on_oom=runner.clear_cache,
                )
                self.stats["batches"] += 1
                for i, r in zip(members, rows, strict=True):
                    results[i] = r

        if plain:
            run_plan(plain, 0, None)
        for key, idxs in groups.items():
            run_plan(idxs, len(key), self._prefix_state(runner, key))
        return [r if r is not None else () for r in results]

    def _prefix_state(self, runner: BatchRunner, key: tuple[int, ...]) -> Any:
        state = self._prefixes.get(key)
        if state is not None:
            self._prefixes.move_to_end(key)
            return state
        state = run_with_oom_backoff(
            [key],
            lambda _k: [runner.prepare_prefix(key)],
            is_oom=runner.is_oom,
            on_oom=runner.clear_cache,
        )[0]
        self._prefixes[key] = state
        while len(self._prefixes) > self.settings.prefix_cache_size:
            self._prefixes.popitem(last=False)
        return state
