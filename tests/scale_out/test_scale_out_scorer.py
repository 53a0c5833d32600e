"""``RerankScorer`` called directly, as Ray Data calls it on an actor: a dict of columns in
(numpy object arrays, as Ray's default batch format gives them, or plain lists), the same
columns plus ``scores`` out. No Ray cluster here (tests/scale_out/test_scale_out_ray.py runs it
on one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rerank_integrations import LocalReranker
from rerank_integrations._testing import FakeReranker
from rerank_integrations.errors import RerankInputError, RerankTypeError
from rerank_integrations.ray_data import RerankScorer, row_jobs

FAKE = {
    "backend": "rerank_integrations._testing:FakeReranker",
    "scores": {"a": 3.0, "b": 1.0, "c": 2.0},
    "model": "fake",
}


def _objects(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = value
    return out


def test_scores_follow_each_rows_document_order_and_every_column_comes_back() -> None:
    batch = {
        "query_id": np.array(["q1", "q2"], dtype=object),
        "query": np.array(["first", "second"], dtype=object),
        "documents": _objects([np.array(["b", "a", "c"]), np.array(["c", "zz"])]),
        "extra": np.array([7, 8]),
    }
    scorer = RerankScorer(FAKE)
    out = scorer(batch)
    assert list(out) == ["query_id", "query", "documents", "extra", "scores"]
    for name in ("query_id", "query", "documents", "extra"):
        assert out[name] is batch[name]  # unchanged, not copied or reordered
    assert [list(s) for s in out["scores"]] == [[1.0, 3.0, 2.0], [2.0, 0.0]]
    assert out["scores"][0].dtype == np.float64


def test_instruction_metadata_and_nulls_reach_the_reranker() -> None:
    # a column of nulls arrives as NaN floats in a numpy batch: read as "none"
    batch = {
        "query": ["q", "q"],
        "documents": [["a", "b"], ["c"]],
        "instruction": np.array(["prefer recent", np.nan], dtype=object),
        "metadata": _objects([["m-a", "m-b"], np.float32("nan")]),
    }
    scorer = RerankScorer(FAKE)
    scorer(batch)
    reranker = scorer.reranker
    assert isinstance(reranker, FakeReranker)
    calls = sorted(reranker.calls, key=lambda c: len(c.documents), reverse=True)
    assert calls[0].instruction == "prefer recent" and tuple(calls[0].metadata) == ("m-a", "m-b")
    assert calls[1].instruction is None and calls[1].metadata is None


def test_columns_keeps_only_the_named_inputs() -> None:
    out = RerankScorer(FAKE, columns=["query_id"])(
        {"query_id": ["x"], "query": ["q"], "documents": [["a"]]}
    )
    assert list(out) == ["query_id", "scores"]
    with pytest.raises(RerankInputError, match="columns"):
        RerankScorer(FAKE, columns=["nope"])({"query": ["q"], "documents": [["a"]]})


@pytest.mark.parametrize(
    ("batch", "error", "field"),
    [
        ({"query": ["q"]}, RerankInputError, "has no 'documents' column"),
        ({"query": ["q"], "documents": ["a single string"]}, RerankTypeError, "documents'][0]"),
        ({"query": ["q", "r"], "documents": [["a"]]}, RerankInputError, "has 1 rows"),
        ([("q", ["a"])], RerankTypeError, "batch_format='numpy'"),
    ],
)
def test_bad_batches_are_typed_errors_naming_the_column(
    batch: Any, error: type[Exception], field: str
) -> None:
    with pytest.raises(error, match=field.replace("[", r"\[").replace("]", r"\]")):
        row_jobs(batch)


def test_a_config_is_data_unless_trusted() -> None:
    hostile = {
        "backend": "remote",
        "model": "m",
        "api_format": "jina",
        "base_url": "http://127.0.0.1:9/v1",
        "api_key_env": "AWS_SECRET_ACCESS_KEY",
    }
    with pytest.raises(RerankInputError, match="api_key_env"):
        RerankScorer(hostile)


def test_a_rows_scores_do_not_depend_on_its_batch(tiny_ctxl_dir: Path) -> None:
    """Isolated engine scopes: the same row scored alone or among others gives the same
    floats, bit for bit, and they are the reranker's own raw scores."""
    rows = [
        ("what is a reranker?", ["a short one", "a much longer document " * 20, "mid size text"]),
        ("capital of France", ["Paris", "Berlin is the capital of Germany"]),
        ("bread", ["flour water salt yeast " * 8]),
    ]
    config = LocalReranker(str(tiny_ctxl_dir), device="cpu").to_config()
    scorer = RerankScorer(config, trusted=True)
    together = scorer({"query": [q for q, _ in rows], "documents": [d for _, d in rows]})
    for i, (query, documents) in enumerate(rows):
        alone = scorer({"query": [query], "documents": [documents]})
        assert list(alone["scores"][0]) == list(together["scores"][i])
        expected = {r.index: r.raw_score for r in scorer.reranker.rerank(query, documents)}
        assert list(together["scores"][i]) == [expected[j] for j in range(len(documents))]
    scorer.close()


@pytest.mark.parametrize(
    ("options", "local", "cluster", "plan"),
    [
        ({}, True, {"CPU": 64, "GPU": 8}, (8, 1.0, 1.0)),  # a local model: one actor per GPU
        ({"gpus_per_actor": 0.5}, True, {"CPU": 64, "GPU": 8}, (16, 1.0, 0.5)),
        ({"actors": 3}, True, {"CPU": 64, "GPU": 8}, (3, 1.0, 1.0)),
        ({}, True, {"CPU": 2}, (1, 1.0, 0.0)),  # a laptop: one CPU actor unless told
        ({"actors": 2, "cpus_per_actor": 1.0}, True, {"CPU": 2}, (2, 1.0, 0.0)),
        ({"cpus_per_actor": 0.25, "actors": 4}, False, {"CPU": 2, "GPU": 8}, (4, 0.25, 0.0)),
    ],
)
def test_the_actor_pool_follows_the_cluster(
    options: dict[str, Any], local: bool, cluster: dict[str, float], plan: tuple[Any, ...]
) -> None:
    from rerank_integrations.ir.ray_engine import RayOptions, plan_actors

    got = plan_actors(RayOptions(**options), local_model=local, cluster=cluster)
    assert (got.actors, got.num_cpus, got.num_gpus) == plan


def test_an_actor_larger_than_the_cluster_is_refused_before_any_work() -> None:
    from rerank_integrations.ir.ray_engine import RayOptions, plan_actors

    with pytest.raises(RerankInputError, match="ray_gpus_per_actor: an actor needs 1 GPU"):
        plan_actors(RayOptions(gpus_per_actor=1.0), local_model=True, cluster={"CPU": 2})
    with pytest.raises(RerankInputError, match="ray_cpus_per_actor"):
        plan_actors(RayOptions(cpus_per_actor=4.0), local_model=False, cluster={"CPU": 2})


def test_a_gpu_index_other_than_the_actors_own_is_refused() -> None:
    from rerank_integrations.ir.ray_engine import ActorPlan, check_device

    gpu, cpu = ActorPlan(2, 1.0, 1.0), ActorPlan(1, 1.0, 0.0)
    with pytest.raises(RerankInputError, match="pass --device cuda"):
        check_device({"device": "cuda:1"}, gpu)
    for device in ("cuda", "cuda:0", None):
        check_device({"device": device}, gpu)
    check_device({"device": "cuda:1"}, cpu)  # no GPU per actor: not Ray's GPU placement
