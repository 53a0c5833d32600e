"""Untrusted configs never choose which secret is read nor where an environment key is sent.

The attack (before this rule): a config from data (LangChain ``loads``, LlamaIndex
``from_dict``/``from_json``, a Haystack YAML, ``Reranker.from_config``) set ``api_key_env`` to
any environment variable and ``base_url`` to the attacker's host; the first query sent that
variable's value as ``Authorization: Bearer ...`` there. Now such settings may name only the wire
format's own variable for its public host (``rerank_integrations.trust``); anything else is a
``RerankInputError`` naming the field (never its value) before any request, and code opts in
explicitly (``Reranker.from_config(config, trusted=True)``, or a reranker built in code and passed
as ``reranker=``). Each case runs against a loopback "attacker" that records every request.
"""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.hostile_server import HostileServer

from rerank_integrations import Reranker
from rerank_integrations.backends.remote import RemoteReranker
from rerank_integrations.config import reranker_from_config
from rerank_integrations.errors import RerankInputError

SECRET = "sk-stolen-9f8e7d6c5b4a3210-SECRET"
STOLEN = "RI_TEST_UNRELATED_SECRET"  # any variable of the process, e.g. AWS_SECRET_ACCESS_KEY
PUBLIC_KEY = "sk-contextual-0123456789-PUBLIC"
DOCS = ["alpha", "beta", "gamma"]


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STOLEN, SECRET)
    monkeypatch.setenv("CONTEXTUAL_API_KEY", PUBLIC_KEY)
    monkeypatch.delenv("RERANK_API_KEY", raising=False)


@pytest.fixture
def attacker() -> Iterator[HostileServer]:
    with HostileServer() as server:
        yield server


def assert_refused(error: BaseException, field: str, server: HostileServer) -> None:
    """The error names ``field``, quotes no secret, says how to opt in; nothing was sent."""
    assert isinstance(error, RerankInputError), repr(error)
    assert error.field == field
    text = str(error)
    assert SECRET not in text and PUBLIC_KEY not in text
    assert "trusted=True" in text and "reranker=" in text
    assert server.requests == []


def remote_config(server: HostileServer, variable: str = STOLEN) -> dict[str, Any]:
    return {
        "backend": "remote",
        "model": "m",
        "api_format": "contextual",
        "base_url": server.url(),
        "api_key_env": variable,
    }


# --- Reranker.from_config ----------------------------------------------------------------------


@pytest.mark.parametrize("variable", [STOLEN, "CONTEXTUAL_API_KEY"])
def test_from_config_refuses_a_key_variable_for_another_host(
    attacker: HostileServer, variable: str
) -> None:
    config = remote_config(attacker, variable)
    for load in (Reranker.from_config, RemoteReranker.from_config, reranker_from_config):
        with pytest.raises(RerankInputError) as info:
            load(config)
        assert_refused(info.value, "config['api_key_env']", attacker)


def test_from_config_refuses_keys_and_unsafe_switches_from_data() -> None:
    cases = [
        ({"backend": "remote", "model": "m", "api_key": SECRET}, "config['api_key']"),
        ({"backend": "local", "model": "m", "trust_remote_code": True},
         "config['trust_remote_code']"),
        ({"backend": "local", "model": "m", "allow_pickle": True}, "config['allow_pickle']"),
    ]  # fmt: skip
    for config, field in cases:
        with pytest.raises(RerankInputError) as info:
            Reranker.from_config(config)
        assert info.value.field == field and SECRET not in str(info.value)


def test_from_config_accepts_the_formats_own_variable_for_its_public_host() -> None:
    for base_url in (None, "https://api.contextual.ai/v1", "https://api.contextual.ai/v1/rerank"):
        config = {"backend": "remote", "model": "m", "api_format": "contextual",
                  "base_url": base_url, "api_key_env": "CONTEXTUAL_API_KEY"}  # fmt: skip
        with Reranker.from_config(config) as reranker:
            assert isinstance(reranker, RemoteReranker)
            assert reranker.url == "https://api.contextual.ai/v1/rerank"
    # a to_config() without api_key_env (the default) loads as before
    with Reranker.from_config({"backend": "remote", "model": "m"}) as reranker:
        assert reranker.to_config()["api_key_env"] is None


def test_from_config_trusted_is_the_explicit_opt_in(attacker: HostileServer) -> None:
    config = remote_config(attacker)  # e.g. your own router's key in your own saved file
    with Reranker.from_config(config, trusted=True) as reranker:
        reranker.rerank("q", DOCS)
    assert attacker.requests[0].headers["authorization"] == f"Bearer {SECRET}"


# --- LangChain loads ---------------------------------------------------------------------------


def _lc_record(server: HostileServer, **kwargs: Any) -> str:
    from langchain_core.load import dumps

    from rerank_integrations.langchain import RerankCompressor

    record = json.loads(dumps(RerankCompressor(backend="remote", model="m", base_url=server.url())))
    record["kwargs"].update(kwargs)
    return json.dumps(record)


def _lc_loads(text: str) -> Any:
    from langchain_core.load import loads

    from rerank_integrations.langchain import RerankCompressor

    return loads(text, valid_namespaces=["rerank_integrations"], allowed_objects=[RerankCompressor])


@pytest.mark.filterwarnings("ignore::langchain_core._api.beta_decorator.LangChainBetaWarning")
def test_langchain_loads_never_sends_a_chosen_secret(attacker: HostileServer) -> None:
    for kwargs, field in [
        ({"reranker_kwargs": {"api_key_env": STOLEN}}, "reranker_kwargs['api_key_env']"),
        ({"reranker_kwargs": {"api_key_env": "CONTEXTUAL_API_KEY"}},
         "reranker_kwargs['api_key_env']"),
        ({"backend": None, "model": None, "base_url": None,
          "reranker": remote_config(attacker)}, "reranker['api_key_env']"),
    ]:  # fmt: skip
        with pytest.raises(RerankInputError) as info:
            _lc_loads(_lc_record(attacker, **kwargs))
        assert_refused(info.value, field, attacker)


# --- LlamaIndex from_dict / from_json ----------------------------------------------------------


def _li_data(server: HostileServer, **fields: Any) -> dict[str, Any]:
    from rerank_integrations.llama_index import RerankPostprocessor

    data = RerankPostprocessor(backend="remote", model="m", base_url=server.url()).to_dict()
    return {**data, **fields}


@pytest.mark.parametrize("how", ["from_dict", "from_json", "model_validate"])
def test_llama_index_loading_never_sends_a_chosen_secret(attacker: HostileServer, how: str) -> None:
    from rerank_integrations.llama_index import RerankPostprocessor

    for fields, field in [
        ({"reranker_kwargs": {"api_key_env": STOLEN}}, "reranker_kwargs['api_key_env']"),
        ({"reranker_kwargs": {"api_key_env": "CONTEXTUAL_API_KEY"}},
         "reranker_kwargs['api_key_env']"),
        ({"backend": None, "model": None, "base_url": None,
          "reranker": remote_config(attacker)}, "reranker['api_key_env']"),
    ]:  # fmt: skip
        data = _li_data(attacker, **fields)
        with pytest.raises(RerankInputError) as info:
            if how == "from_dict":
                RerankPostprocessor.from_dict(data)
            elif how == "from_json":
                RerankPostprocessor.from_json(json.dumps(data))
            else:
                data.pop("class_name")
                RerankPostprocessor.model_validate(data)
        assert_refused(info.value, field, attacker)


# --- Haystack YAML -----------------------------------------------------------------------------


def _hs_yaml(server: HostileServer, **params: Any) -> str:
    import yaml
    from haystack import Pipeline

    from rerank_integrations.haystack import RerankRanker

    pipeline = Pipeline()
    pipeline.add_component(
        "ranker", RerankRanker(backend="remote", model="m", base_url=server.url())
    )
    data = pipeline.to_dict()
    data["components"]["ranker"]["init_parameters"].update(params)
    return str(yaml.safe_dump(data))


def test_haystack_yaml_never_sends_a_chosen_secret(attacker: HostileServer) -> None:
    from haystack import Pipeline
    from haystack.core.errors import DeserializationError

    for params, field in [
        ({"reranker_kwargs": {"api_key_env": STOLEN}}, "reranker_kwargs['api_key_env']"),
        ({"reranker_kwargs": {"api_key_env": "CONTEXTUAL_API_KEY"}},
         "reranker_kwargs['api_key_env']"),
        ({"backend": None, "model": None, "base_url": None,
          "reranker": remote_config(attacker)}, "reranker['api_key_env']"),
    ]:  # fmt: skip
        with pytest.raises(DeserializationError) as info:  # Haystack wraps the component's error
            Pipeline.loads(_hs_yaml(attacker, **params), allowed_modules=["rerank_integrations"])
        assert info.value.__cause__ is not None
        assert_refused(info.value.__cause__, field, attacker)


# --- what stays allowed --------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::langchain_core._api.beta_decorator.LangChainBetaWarning")
def test_the_formats_own_variable_for_its_public_host_still_loads() -> None:
    """No request is needed: building the reranker shows where it would send which key."""
    from haystack import Pipeline
    from langchain_core.load import dumps

    from rerank_integrations.haystack import RerankRanker
    from rerank_integrations.langchain import RerankCompressor
    from rerank_integrations.llama_index import RerankPostprocessor

    kwargs = {"reranker_kwargs": {"api_key_env": "CONTEXTUAL_API_KEY"}}
    lc = _lc_loads(dumps(RerankCompressor(backend="remote", model="m", **kwargs)))
    li = RerankPostprocessor.from_json(
        RerankPostprocessor(backend="remote", model="m", **kwargs).to_json()
    )
    pipeline = Pipeline()
    pipeline.add_component("ranker", RerankRanker(backend="remote", model="m", **kwargs))
    loaded = Pipeline.loads(pipeline.dumps(), allowed_modules=["rerank_integrations"])
    ranker = loaded.get_component("ranker")
    ranker.warm_up()
    for reranker in (lc.get_reranker(), li.get_reranker(), ranker._lazy().get()):
        assert isinstance(reranker, RemoteReranker)
        assert reranker.url == "https://api.contextual.ai/v1/rerank"
        reranker.close()


def _adapter(name: str) -> Any:
    if name == "langchain":
        from rerank_integrations.langchain import RerankCompressor

        return RerankCompressor
    if name == "llama_index":
        from rerank_integrations.llama_index import RerankPostprocessor

        return RerankPostprocessor
    from rerank_integrations.haystack import RerankRanker

    return RerankRanker


@pytest.mark.parametrize("adapter", ["langchain", "llama_index", "haystack"])
def test_code_opts_in_by_passing_a_reranker(attacker: HostileServer, adapter: str) -> None:
    """Built in code, any variable and host work, and keep working through deepcopy and
    pickle (which carry the reranker as its to_config(), rebuilt as trusted)."""
    reranker = RemoteReranker("m", base_url=attacker.url(), api_key_env=STOLEN)
    obj = _adapter(adapter)(reranker=reranker)
    for clone in (obj, copy.deepcopy(obj), pickle.loads(pickle.dumps(obj))):
        built = clone._lazy().get()  # what the adapter's next call reranks with
        built.rerank("q", DOCS)
        clone.close()
    reranker.close()
    assert [r.headers["authorization"] for r in attacker.requests] == [f"Bearer {SECRET}"] * 3


@pytest.mark.parametrize("adapter", ["langchain", "llama_index", "haystack"])
def test_adapter_settings_never_choose_the_key_variable(
    attacker: HostileServer, adapter: str
) -> None:
    """Settings an adapter holds serialise, so the rule holds for them in code too: the same
    settings built in code are refused (pass reranker= instead), also after reassignment."""
    cls = _adapter(adapter)
    with pytest.raises(RerankInputError) as info:
        cls(backend="remote", model="m", base_url=attacker.url(),
            reranker_kwargs={"api_key_env": "CONTEXTUAL_API_KEY"})  # fmt: skip
    assert_refused(info.value, "reranker_kwargs['api_key_env']", attacker)
    obj = cls(backend="remote", model="m", reranker_kwargs={"api_key_env": "CONTEXTUAL_API_KEY"})
    obj.base_url = attacker.url()  # reassigned: refused on the next use, before any request
    with pytest.raises(RerankInputError) as info:
        obj.warm_up() if adapter == "haystack" else obj.get_reranker()
    assert_refused(info.value, "reranker_kwargs['api_key_env']", attacker)


def test_cli_config_file_is_data_unless_trust_config(
    attacker: HostileServer, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """``run --config evil.json`` exits 2 before any request; ``--trust-config`` (a file you
    wrote) builds it as given."""
    from rerank_integrations.cli import main

    data = tmp_path / "data"
    (data / "qrels").mkdir(parents=True)
    (data / "corpus.jsonl").write_text('{"_id": "d0", "title": "", "text": "alpha"}\n')
    (data / "queries.jsonl").write_text('{"_id": "q1", "text": "alpha"}\n')
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td0\t1\n")
    config = tmp_path / "evil.json"
    config.write_text(json.dumps(remote_config(attacker)))
    argv = ["run", "--data", str(data), "--config", str(config), "-q"]
    assert main([*argv, "-o", str(tmp_path / "out.trec")]) == 2
    assert "config['api_key_env']" in capsys.readouterr().err
    assert attacker.requests == [] and not (tmp_path / "out.trec").exists()
    assert main([*argv, "-o", str(tmp_path / "out2.trec"), "--trust-config"]) == 0
    assert attacker.requests[0].headers["authorization"] == f"Bearer {SECRET}"
