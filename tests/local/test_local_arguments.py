"""Every LocalReranker constructor argument under the one rule: a wrong type raises
RerankTypeError, a right type with a bad value RerankInputError, both naming the field, and both
before any model is loaded (the loader is replaced by a recorder; the model path does not exist).

No torch needed: arguments are checked before torch is imported. One control test (with torch)
shows that the same missing path with good arguments does reach the loader and fails there.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from rerank_integrations.backends.local import (
    FORMATS,
    CrossEncoderFormat,
    LocalReranker,
    MxbaiV2Format,
    loading,
)
from rerank_integrations.backends.local.engine import EncodedInput
from rerank_integrations.errors import ModelLoadError, RerankInputError, RerankTypeError

TE, IE = RerankTypeError, RerankInputError

# (argument, bad value, exact error class, field)
CASES: list[tuple[str, Any, type[Exception], str]] = [
    ("model", 3, TE, "model"),
    ("model", None, TE, "model"),
    ("model", Path("models/x"), TE, "model"),
    ("model", "", IE, "model"),
    ("model", "   ", IE, "model"),
    ("model_format", 1, TE, "model_format"),
    ("model_format", CrossEncoderFormat, TE, "model_format"),  # the class, not a format
    ("model_format", "bogus", IE, "model_format"),
    ("model_format", "CTXL-V2", IE, "model_format"),
    ("model_format", "", IE, "model_format"),
    ("device", 0, TE, "device"),
    ("device", b"cpu", TE, "device"),
    ("device", "nonsense", IE, "device"),
    ("device", "", IE, "device"),
    ("device", "cuda:x", IE, "device"),
    ("device", "cuda:", IE, "device"),
    ("dtype", 16, TE, "dtype"),
    ("dtype", object(), TE, "dtype"),
    ("dtype", "int4", IE, "dtype"),
    ("dtype", "", IE, "dtype"),
    ("batch_size", "3", TE, "batch_size"),
    ("batch_size", True, TE, "batch_size"),
    ("batch_size", 2.0, TE, "batch_size"),
    ("batch_size", 0, IE, "batch_size"),
    ("batch_size", -4, IE, "batch_size"),
    ("max_length", "512", TE, "max_length"),
    ("max_length", False, TE, "max_length"),
    ("max_length", 0, IE, "max_length"),
    ("instruction_mode", None, TE, "instruction_mode"),
    ("instruction_mode", 1, TE, "instruction_mode"),
    ("instruction_mode", "ignore", IE, "instruction_mode"),
    ("instruction_mode", "Prepend", IE, "instruction_mode"),
    ("trust_remote_code", "yes", TE, "trust_remote_code"),
    ("trust_remote_code", 1, TE, "trust_remote_code"),
    ("trust_remote_code", None, TE, "trust_remote_code"),
    ("allow_pickle", 0, TE, "allow_pickle"),
    ("allow_pickle", None, TE, "allow_pickle"),
    ("token_budget", 1.5, TE, "token_budget"),
    ("token_budget", True, TE, "token_budget"),
    ("token_budget", -1, IE, "token_budget"),
    ("token_budget", 0, IE, "token_budget"),
    ("attn_implementation", 2, TE, "attn_implementation"),
    ("attn_implementation", "", IE, "attn_implementation"),
    ("revision", 1, TE, "revision"),
    ("revision", "  ", IE, "revision"),
    ("prefix_caching", 0, TE, "prefix_caching"),
    ("prefix_caching", "false", TE, "prefix_caching"),
    ("formats", "ctxl-v2", TE, "formats"),
    ("formats", 5, TE, "formats"),
    ("formats", {FORMATS[0]}, TE, "formats"),
    ("formats", [FORMATS[0], "qwen3"], TE, "formats[1]"),
    ("formats", [CrossEncoderFormat], TE, "formats[0]"),
    ("formats", [], IE, "formats"),
    ("formats", (FORMATS[0], FORMATS[0]), IE, "formats"),
    ("quantize", 8, TE, "quantize"),
    ("quantize", True, TE, "quantize"),
    ("quantize", "int4", IE, "quantize"),
    ("quantize", "INT8", IE, "quantize"),
    ("quantize", "", IE, "quantize"),
]


class _Device:
    def __init__(self, kind: str) -> None:
        self.type = kind

    def __str__(self) -> str:
        return self.type


class _IdleRunner:
    """Stands in for a model: nothing in these tests scores."""

    supports_prefix = False

    def __init__(self) -> None:
        self.released = False

    def run(self, items: Sequence[EncodedInput], prefix: Any = None) -> list[tuple[float, ...]]:
        raise AssertionError("no scoring in argument tests")

    def prepare_prefix(self, prefix_ids: Sequence[int]) -> Any:
        raise AssertionError("no scoring in argument tests")

    def is_oom(self, exc: BaseException) -> bool:
        return False

    def clear_cache(self) -> None:
        pass

    def release(self) -> None:
        self.released = True


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace the loader: record each call, hand back a model with 512 positions."""
    calls: list[dict[str, Any]] = []

    def fake_load_model(model: str, **kwargs: Any) -> loading.LoadedModel:
        runner = _IdleRunner()
        calls.append({"model": model, **kwargs, "runner": runner})
        fmt = kwargs["model_format"] or kwargs["formats"][-1]
        return loading.LoadedModel(
            format=fmt,
            runner=runner,
            encoder=None,  # type: ignore[arg-type]
            device=_Device("cpu"),
            dtype="float32",
            attn_implementation="sdpa",
            max_positions=512,
            tokenizer_max_length=None,
        )

    monkeypatch.setattr(loading, "load_model", fake_load_model)
    return calls


def _missing(tmp_path: Path) -> str:
    return str(tmp_path / "no-such-model-mxbai-rerank-v2")


def test_the_table_covers_every_constructor_argument() -> None:
    params = set(inspect.signature(LocalReranker.__init__).parameters) - {"self"}
    covered = {argument for argument, *_ in CASES}
    assert covered == params
    flags = {"trust_remote_code", "allow_pickle", "prefix_caching"}  # a bool has no bad value
    for argument in params:  # every argument has a wrong-type row, and a bad-value row
        assert any(a == argument and e is TE for a, _, e, _ in CASES), argument
        assert argument in flags or any(a == argument and e is IE for a, _, e, _ in CASES), argument


@pytest.mark.parametrize(
    ("argument", "value", "error", "field"),
    CASES,
    ids=[f"{a}={v!r}" for a, v, _, _ in CASES],
)
def test_bad_argument_is_refused_before_loading(
    tmp_path: Path,
    loads: list[dict[str, Any]],
    argument: str,
    value: Any,
    error: type[Exception],
    field: str,
) -> None:
    kwargs: dict[str, Any] = {"model": _missing(tmp_path), argument: value}
    with pytest.raises(Exception) as info:
        LocalReranker(**kwargs)
    assert type(info.value) is error, info.value
    assert info.value.field == field  # type: ignore[attr-defined]
    assert loads == []  # nothing was loaded


def test_good_arguments_reach_the_loader_normalised(
    tmp_path: Path, loads: list[dict[str, Any]]
) -> None:
    r = LocalReranker(
        _missing(tmp_path),
        model_format="mxbai-v2",
        device="cuda:1",
        dtype="BF16",
        batch_size=1,
        max_length=1,
        instruction_mode="prepend",
        trust_remote_code=True,
        allow_pickle=True,
        token_budget=1,
        attn_implementation="eager",
        revision="main",
        prefix_caching=False,
    )
    (call,) = loads
    assert call["model_format"] is FORMATS[1] and call["formats"] == FORMATS
    assert call["device"] == "cuda:1" and call["dtype"] == "bfloat16"
    assert call["trust_remote_code"] is True and call["allow_pickle"] is True
    assert call["attn_implementation"] == "eager" and call["revision"] == "main"
    config = r.to_config()
    assert config["model_format"] == "mxbai-v2" and config["dtype"] == "bfloat16"
    assert config["batch_size"] == 1 and config["token_budget"] == 1
    assert config["instruction_mode"] == "prepend" and config["prefix_caching"] is False
    r.close()


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:0", "cuda:12", "mps", "xpu:1"])
def test_device_strings_accepted(tmp_path: Path, loads: list[dict[str, Any]], device: str) -> None:
    LocalReranker(_missing(tmp_path), model_format="cross-encoder", device=device).close()
    assert loads[-1]["device"] == device


def test_max_length_beyond_positions_follows_the_format_policy(
    tmp_path: Path, loads: list[dict[str, Any]]
) -> None:
    """Refused after loading (positions come from the model: 512 here), unless the format
    declares the reference's clamp (mxbai-v2); the refused model is released at once."""
    assert CrossEncoderFormat.max_length_policy == "refuse"
    assert MxbaiV2Format.max_length_policy == "clamp"
    with pytest.raises(RerankInputError) as err:
        LocalReranker(_missing(tmp_path), model_format="cross-encoder", max_length=513)
    assert err.value.field == "max_length"
    assert loads[-1]["runner"].released
    with LocalReranker(_missing(tmp_path), model_format="cross-encoder", max_length=512) as r:
        assert r.max_length == 512
    with LocalReranker(_missing(tmp_path), model_format="mxbai-v2", max_length=10_000) as r:
        assert r.max_length == 10_000  # its encode reduces it to the positions, as the reference
        assert not loads[-1]["runner"].released
    assert loads[-1]["runner"].released


def test_missing_model_with_good_arguments_fails_in_the_loader(tmp_path: Path) -> None:
    """The control for the table: the same path does reach the loader when arguments are fine."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    with pytest.raises(ModelLoadError):
        LocalReranker(_missing(tmp_path), device="cpu", dtype="float32", batch_size=2)


def test_torch_dtype_objects_are_accepted() -> None:
    torch = pytest.importorskip("torch")
    assert loading.parse_dtype(torch.bfloat16) == "bfloat16"
    assert loading.parse_dtype(torch.float16) == "float16"
    with pytest.raises(RerankInputError) as err:
        loading.parse_dtype(torch.int8)
    assert err.value.field == "dtype"
