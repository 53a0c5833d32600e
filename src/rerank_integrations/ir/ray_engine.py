"""``run``/``eval --engine ray``: the queries scored by Ray Data actors (docs/scale-out.md).

The driver (this process) keeps everything but the model: the data, the first stage, the
jobs, the output plan and the file. The jobs go to Ray Data as one row per query
(:func:`~rerank_integrations.ray_data.job_row`); ``map_batches`` runs
:class:`~rerank_integrations.ray_data.RerankScorer` on a fixed pool of actors, each building
ONE reranker from the config (a GPU per actor for a local model on a GPU cluster; CPUs
otherwise; for a remote API each actor keeps up to ``concurrency`` queries in flight, each
under the reranker's own ``max_concurrency``). Only ``query_id`` and ``scores`` come back,
streamed in completion order to :func:`~.bulk.score_to_file`, which writes them exactly as the
in-process engine does: the same run file, sidecar and summary, the same resume.

Faults: Ray restarts a killed actor and retries its batch (the dead attempt delivered
nothing; a result delivered twice is written once); a killed driver leaves the resumable
file of the in-process engine, and the same command resumes it (on Ray or in-process).

Ray is imported only here, lazily: without ``pip install "rerank-integrations[ray]"`` the
engine raises :class:`~rerank_integrations.errors.MissingExtraError`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from rerank_integrations.base import checked_config
from rerank_integrations.errors import RerankError, RerankInputError
from rerank_integrations.extras import import_extra
from rerank_integrations.ir.bulk import OnResult, ScoreJobs
from rerank_integrations.ir.jobs import QueryJob
from rerank_integrations.validation import int_value, number_value, optional_int, optional_str

logger = logging.getLogger(__name__)

__all__ = [
    "RAY_EXTRA",
    "ActorPlan",
    "RayOptions",
    "check_device",
    "on_ray",
    "plan_actors",
    "ray_session",
]

RAY_EXTRA = "ray"
"""The extra that brings Ray Data."""


@dataclass(frozen=True, slots=True)
class RayOptions:
    """Where and how wide the Ray engine runs (``--ray-*`` options).

    ``address``: the cluster (``ray start --head`` prints it; ``None``: ``RAY_ADDRESS`` or a
    local cluster started for the run and stopped after it). ``actors``: the pool size
    (``None``: one per GPU of the cluster for a local model, else 1). ``cpus_per_actor`` and
    ``gpus_per_actor`` (``None``: 1 GPU for a local model on a cluster with GPUs, else 0) are
    each actor's Ray resources; torch in an actor uses ``cpus_per_actor`` threads.
    ``quiet``: no worker logs on the driver's stderr.
    """

    address: str | None = None
    actors: int | None = None
    cpus_per_actor: float = 1.0
    gpus_per_actor: float | None = None
    quiet: bool = False

    def __post_init__(self) -> None:
        optional_str("ray_address", self.address)
        optional_int("ray_actors", self.actors, minimum=1)
        number_value("ray_cpus_per_actor", self.cpus_per_actor, minimum=0)
        if self.gpus_per_actor is not None:
            number_value("ray_gpus_per_actor", self.gpus_per_actor, minimum=0)


@dataclass(frozen=True, slots=True)
class ActorPlan:
    """The actor pool of one run: its size and each actor's resources."""

    actors: int
    num_cpus: float
    num_gpus: float


def plan_actors(
    options: RayOptions, *, local_model: bool, cluster: Mapping[str, float]
) -> ActorPlan:
    """The pool for ``options`` on a cluster with ``cluster`` resources (``{"CPU": 8, "GPU":
    2}``): pure. A local model takes one GPU per actor when the cluster has GPUs (and one actor
    per GPU unless ``actors`` is given); anything else runs one actor unless told."""
    gpus = float(cluster.get("GPU", 0.0))
    per_gpu = options.gpus_per_actor
    if per_gpu is None:
        per_gpu = 1.0 if local_model and gpus >= 1 else 0.0
    if options.actors is not None:
        actors = options.actors
    elif per_gpu > 0:
        actors = max(1, int(gpus // per_gpu))
    else:
        actors = 1
    for resource, per_actor in (("CPU", options.cpus_per_actor), ("GPU", per_gpu)):
        have = float(cluster.get(resource, 0.0))
        if per_actor > have:
            raise RerankInputError(
                f"ray_{resource.lower()}s_per_actor",
                f"an actor needs {per_actor:g} {resource}, the cluster has {have:g}",
            )
    return ActorPlan(actors, options.cpus_per_actor, per_gpu)


def check_device(config: Mapping[str, Any], plan: ActorPlan) -> None:
    """A GPU actor sees only its own GPU (Ray sets ``CUDA_VISIBLE_DEVICES``), as ``cuda`` /
    ``cuda:0``: a config naming another index would fail on every actor, so it fails here."""
    device = config.get("device")
    own = (None, "cuda", "cuda:0")
    if (
        plan.num_gpus > 0
        and isinstance(device, str)
        and device.startswith("cuda")
        and device not in own
    ):
        raise RerankInputError(
            "device",
            f"{device!r}: on Ray each GPU actor sees its one GPU as 'cuda'; "
            "pass --device cuda (or none)",
        )


def _import_ray() -> ModuleType:
    import_extra("ray.data", extra=RAY_EXTRA, feature="--engine ray (Ray Data)")
    return import_extra("ray", extra=RAY_EXTRA, feature="--engine ray (Ray Data)")


@contextmanager
def ray_session(options: RayOptions) -> Iterator[ModuleType]:
    """Ray, connected: to ``options.address`` (or ``RAY_ADDRESS``, or a new local cluster);
    a connection this opened is closed on exit (a local cluster it started is stopped). Ray
    already initialised in this process (a notebook, a test) is used as it is."""
    ray = _import_ray()
    started = False
    if ray.is_initialized() and options.address is not None:
        logger.warning(
            "Ray is already initialised in this process: --ray-address %s is not used",
            options.address,
        )
    if not ray.is_initialized():
        ray.init(
            address=options.address,
            include_dashboard=False,
            log_to_driver=not options.quiet,
            logging_level=logging.WARNING,
        )
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _rerank_error(exc: BaseException) -> RerankError | None:
    """The RerankError a worker raised, out of Ray's wrappers (its message names the field)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        cause = getattr(current, "cause", None)  # Ray's wrapper (itself a RerankError too)
        if isinstance(cause, RerankError):
            return cause
        if isinstance(current, RerankError):
            return current
        todo += [current.__cause__, current.__context__, getattr(current, "cause", None)]
    return None


class _ReportingScorer:
    """:class:`~rerank_integrations.ray_data.RerankScorer` whose construction error is raised
    by its first batch: Ray reports an actor constructor's error only as text (an
    ``ActorDiedError``, after retrying the actor), a batch's error as itself."""

    def __init__(self, config: Mapping[str, Any], **kwargs: Any) -> None:
        from rerank_integrations.ray_data import RerankScorer

        self._error: RerankError | None = None
        self._scorer: RerankScorer | None = None
        try:
            self._scorer = RerankScorer(config, **kwargs)
        except RerankError as exc:
            self._error = exc

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        if self._scorer is None:
            raise self._error or RuntimeError("the scorer was not built")
        return self._scorer(batch)


def on_ray(
    config: Mapping[str, Any], options: RayOptions, *, concurrency: int, trusted: bool = False
) -> ScoreJobs:
    """The Ray engine for :func:`~.bulk.score_to_file`: ``config`` checked here (as data unless
    ``trusted``, before Ray starts), built on each actor; each actor gets batches of
    ``concurrency`` queries and keeps them all in flight."""
    int_value("concurrency", concurrency, minimum=1)
    checked_config(dict(config), trusted=trusted)
    local_model = config.get("backend") == "local"

    def score(todo: Sequence[QueryJob], on_result: OnResult) -> None:
        from rerank_integrations.ray_data import job_row

        by_id = {job.query_id: job for job in todo}
        with ray_session(options) as ray:
            plan = plan_actors(options, local_model=local_model, cluster=ray.cluster_resources())
            check_device(config, plan)
            logger.info(
                "Ray engine: %d actors x (%g CPU, %g GPU), %d queries",
                plan.actors,
                plan.num_cpus,
                plan.num_gpus,
                len(todo),
            )
            ds = ray.data.from_items([job_row(job) for job in todo])
            ds.context.enable_progress_bars = False  # the command's bar counts the queries
            ds.context.raise_original_map_exception = True  # a worker's RerankError as itself
            ds = ds.map_batches(
                _ReportingScorer,
                fn_constructor_kwargs={
                    "config": dict(config),
                    "trusted": trusted,
                    "concurrency": concurrency,
                    "columns": ["query_id"],
                },
                batch_size=concurrency,
                compute=ray.data.ActorPoolStrategy(size=plan.actors),
                num_cpus=plan.num_cpus,
                num_gpus=plan.num_gpus,
            )
            try:
                for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                    for query_id, scores in zip(batch["query_id"], batch["scores"], strict=True):
                        job = by_id[str(query_id)]
                        on_result(job, dict(zip(job.doc_ids, map(float, scores), strict=True)))
            except Exception as exc:
                error = _rerank_error(exc)
                if error is None:
                    raise
                raise error from None

    return score
