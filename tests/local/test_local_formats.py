"""Unit tests of the local formats and the engine's pure planning logic (no model)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

import pytest

from rerank_integrations.backends.local.engine import (
    EncodedInput,
    EngineSettings,
    plan_batches,
    run_with_oom_backoff,
)
from rerank_integrations.backends.local.formats import FORMATS, detect_format
from rerank_integrations.backends.local.formats.base import (
    PairTemplate,
    render_document_slot,
    sigmoid,
)
from rerank_integrations.backends.local.formats.cross_encoder import (
    CrossEncoderFormat,
    split_windows,
)
from rerank_integrations.backends.local.formats.ctxl_v2 import CtxlV2Format, round_bfloat16
from rerank_integrations.backends.local.formats.mxbai_v2 import (
    MxbaiV2Format,
    mxbai_estimated_max,
)
from rerank_integrations.backends.local.formats.prompt import encode_prompt_parts
from rerank_integrations.backends.local.formats.qwen3 import Qwen3Format
from rerank_integrations.backends.local.loading import (
    choose_attn_implementation,
    parse_dtype,
    usable_positions,
)
from rerank_integrations.errors import (
    ModelLoadError,
    OutOfMemoryError,
    RerankInputError,
)
from rerank_integrations.validation import RerankRequest, validate_request


def call(
    query: str, instruction: str | None, documents: list[str], metadata: list[str] | None
) -> RerankRequest:
    """A rerank call as the reranker hands it to a format (validated)."""
    return validate_request(query, documents, instruction=instruction, metadata=metadata)


class ToyEncoder:
    """Word-level encoder: each whitespace-separated word (newlines are words too) is one id.
    Ids are stable across calls (a shared vocabulary), so prompts can be decoded in asserts."""

    def __init__(self, prefix: tuple[int, ...] = (), suffix: tuple[int, ...] = ()) -> None:
        self.special_prefix = prefix
        self.special_suffix = suffix
        self.vocab: dict[str, int] = {"!": 0, "yes": 1, "no": 2, "1": 3, "0": 4}
        self.inv: dict[int, str] = {v: k for k, v in self.vocab.items()}

    def _id(self, word: str) -> int:
        if word not in self.vocab:
            self.vocab[word] = len(self.vocab) + 100
            self.inv[self.vocab[word]] = word
        return self.vocab[word]

    def encode(self, text: str) -> list[int]:
        return [self._id(w) for w in re.findall(r"\n|[^\s]+", text)]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def token_id(self, token: str) -> int | None:
        return self.vocab.get(token)

    def decode(self, ids: Sequence[int]) -> list[str]:
        return [self.inv.get(i, f"<{i}>") for i in ids]


# ---------------------------------------------------------------------------------------------
# ctxl-v2
# ---------------------------------------------------------------------------------------------


def test_ctxl_prompt_is_the_model_card_prompt() -> None:
    r = CtxlV2Format()
    p = r.prompt_parts("what is x?", "prefer new", "x is y.", None)
    assert p.head + p.document + p.tail == (
        "Check whether a given document contains information helpful to answer the query.\n"
        "<Document> x is y.\n<Query> what is x? prefer new ??"
    )
    p = r.prompt_parts("what is x?", None, "x is y.", None)
    assert (p.head + p.document + p.tail).endswith("\n<Query> what is x? ??")
    assert "None" not in p.tail


def test_ctxl_metadata_goes_right_before_the_document() -> None:
    p = CtxlV2Format().prompt_parts("q", None, "body", "source: wiki\ndate: 2024")
    assert (p.head + p.document).endswith("<Document> source: wiki\ndate: 2024\nbody")
    assert render_document_slot("d", "") == ("", "d")


def test_ctxl_truncation_cuts_the_document_never_the_query_tail() -> None:
    enc = ToyEncoder(prefix=(7,))  # a BOS-adding tokenizer (Mistral-like)
    r = CtxlV2Format()
    long_doc = " ".join(f"w{i}" for i in range(200))
    out = r.encode(enc, call("the query", "an instruction", [long_doc, "short"], ["meta: m"] * 2),
                   max_length=40)
    assert out.num_truncated == 1
    long_ids = out.documents[0].inputs[0].input_ids
    assert len(long_ids) == 40
    assert long_ids[0] == 7  # BOS kept
    words = enc.decode(long_ids)
    assert words[-7:] == ["\n", "<Query>", "the", "query", "an", "instruction", "??"]
    assert "meta:" in words and "m" in words  # metadata survives truncation
    assert "w0" in words and "w199" not in words  # the document end was cut
    assert not out.documents[1].truncated


def test_ctxl_raises_when_query_alone_exceeds_max_length() -> None:
    with pytest.raises(RerankInputError) as err:
        CtxlV2Format().encode(ToyEncoder(), call("q " * 50, None, ["d"], None), max_length=20)
    assert err.value.field == "query"


def test_ctxl_raw_score_is_rounded_through_bfloat16() -> None:
    torch = pytest.importorskip("torch")
    r = CtxlV2Format()
    for x in (-2.296875123, -12.3751, 0.1, 3.0000001, -7.77777):
        expected = torch.tensor([x], dtype=torch.float32).to(torch.bfloat16).float().item()
        assert r.raw_score((x,)) == expected
        assert round_bfloat16(x) == expected
    assert r.relevance(0.0) == 0.5
    assert r.score_token_ids(ToyEncoder()) == (0,)


# ---------------------------------------------------------------------------------------------
# qwen3
# ---------------------------------------------------------------------------------------------


def test_qwen3_default_instruction_and_layout() -> None:
    r = Qwen3Format()
    p = r.prompt_parts("q?", None, "doc", None)
    assert p.head == (
        "<Instruct>: Given a web search query, retrieve relevant passages that answer the query"
        "\n<Query>: q?\n<Document>: "
    )
    assert r.prompt_parts("q?", "custom", "doc", None).head.startswith("<Instruct>: custom\n")
    enc = ToyEncoder()
    out = r.encode(enc, call("q?", None, ["doc text"], None), max_length=1000)
    ids = out.documents[0].inputs[0].input_ids
    assert ids[: len(enc.encode(r.prefix))] == tuple(enc.encode(r.prefix))
    assert ids[-len(enc.encode(r.suffix)) :] == tuple(enc.encode(r.suffix))
    assert r.score_token_ids(enc) == (1, 2)  # yes, no
    assert r.raw_score((3.0, 1.0)) == 2.0
    assert r.relevance(2.0) == pytest.approx(sigmoid(2.0))
    # the shared prefix covers the system prompt, instruction and query, not the document
    prefix_len = out.documents[0].inputs[0].prefix_len
    assert "doc" not in enc.decode(ids[:prefix_len]) and "q?" in enc.decode(ids[:prefix_len])


# ---------------------------------------------------------------------------------------------
# mxbai-v2
# ---------------------------------------------------------------------------------------------


def test_mxbai_query_text_and_score() -> None:
    r = MxbaiV2Format()
    assert r.query_text("q", None) == "query: q"
    assert r.query_text("q", "be strict") == "instruction: be strict\nquery: q"
    assert r.raw_score((5.0, 2.0)) == 3.0
    assert r.estimated_max == 12.0  # the reference's default: sigmoid(raw - 6)
    assert r.relevance(6.0) == 0.5
    assert MxbaiV2Format(estimated_max=9.0).relevance(4.5) == 0.5


def test_mxbai_estimated_max_per_model() -> None:
    assert mxbai_estimated_max("mixedbread-ai/mxbai-rerank-base-v2") == 9.0
    assert mxbai_estimated_max("mixedbread-ai/mxbai-rerank-large-v2") == 12.0
    assert mxbai_estimated_max("/models/mxbai-rerank-base-v2/") == 9.0
    assert mxbai_estimated_max("/models/my-finetune") == 12.0  # the reference's default


def test_mxbai_layout_and_truncation_lengths() -> None:
    enc = ToyEncoder()
    r = MxbaiV2Format(model_max_positions=10_000)
    template = r.template_length(enc)
    long_doc = " ".join(f"w{i}" for i in range(300))
    long_query = " ".join(f"q{i}" for i in range(100))
    out = r.encode(enc, call(long_query, None, [long_doc, "tiny doc"], None), max_length=80)
    assert out.query_truncated
    ids = out.documents[0].inputs[0].input_ids
    # query part capped at 3/4 of max_length, the pair (query, sep + doc) at max_length
    assert len(ids) == 80 + template
    words = enc.decode(ids)
    assert words.count("query:") == 1
    assert sum(w.startswith("q") and w[1:].isdigit() for w in words) == 80 * 3 // 4 - 1
    assert words[-2:] == ["<|im_start|>assistant", "\n"]
    assert out.documents[0].truncated and not out.documents[1].truncated
    short = enc.decode(out.documents[1].inputs[0].input_ids)
    i = short.index("document:")
    assert short[i - 1 : i + 5] == ["\n", "document:", "tiny", "doc", "\n", "You"]


def test_mxbai_max_length_reduced_to_fit_positions() -> None:
    enc = ToyEncoder()
    r = MxbaiV2Format(model_max_positions=120)
    template = r.template_length(enc)
    assert r.effective_max_length(enc, 8192) == 120 - template
    out = r.encode(enc, call("q", None, [" ".join(["w"] * 500)], None), max_length=8192)
    assert len(out.documents[0].inputs[0].input_ids) <= 120 + 1  # + the second sep


def test_mxbai_metadata_is_protected_from_truncation() -> None:
    enc = ToyEncoder()
    r = MxbaiV2Format(model_max_positions=10_000)
    out = r.encode(enc, call("q", None, [" ".join(["w"] * 500)], ["lang: en"]), max_length=40)
    words = enc.decode(out.documents[0].inputs[0].input_ids)
    i = words.index("document:")
    assert words[i : i + 4] == ["document:", "lang:", "en", "\n"]
    assert out.documents[0].truncated


# ---------------------------------------------------------------------------------------------
# cross-encoder
# ---------------------------------------------------------------------------------------------

XLMR_PAIR = PairTemplate(prefix=(90,), middle=(91, 91), suffix=(91,))


def test_pair_template_build_with_token_types() -> None:
    bert = PairTemplate(prefix=(5,), middle=(6,), suffix=(6,), type_a=0, type_b=1,
                        uses_token_types=True)
    ids, types = bert.build([1, 2], [3])
    assert ids == (5, 1, 2, 6, 3, 6)
    assert types == (0, 0, 0, 0, 1, 1)
    ids, types = XLMR_PAIR.build([1], [2])
    assert ids == (90, 1, 91, 91, 2, 91) and types is None


@pytest.mark.parametrize("n,window,overlap", [(10, 10, 2), (11, 10, 2), (100, 30, 7), (57, 8, 2)])
def test_split_windows_cover_overlap_and_right_align(n: int, window: int, overlap: int) -> None:
    spans = split_windows(n, window, overlap)
    covered = set()
    for start, end in spans:
        assert end - start == min(window, n)
        covered.update(range(start, end))
    assert covered == set(range(n))
    assert spans[-1][1] == n and spans[0][0] == 0
    for (_s1, e1), (s2, _) in itertools.pairwise(spans):
        assert e1 - s2 >= overlap  # neighbours overlap by at least `overlap`


def test_cross_encoder_windows_long_documents() -> None:
    enc = ToyEncoder()
    r = CrossEncoderFormat(pair=XLMR_PAIR)
    doc = " ".join(f"w{i}" for i in range(100))
    out = r.encode(enc, call("the query", None, [doc, "short"], ["m: 1", None or ""]),
                   max_length=40)
    windows = out.documents[0].inputs
    assert len(windows) > 1 and len(out.documents[1].inputs) == 1
    assert not out.documents[0].truncated and out.num_windowed == 1
    seen = set()
    for w in windows:
        assert len(w.input_ids) <= 40
        words = enc.decode(w.input_ids)
        assert words[1:3] == ["the", "query"] and words[5:8] == ["m:", "1", "\n"]
        seen.update(x for x in words if x.startswith("w"))
    assert seen == {f"w{i}" for i in range(100)}
    # window = 40 - 2 (query) - 4 (specials) - 3 (metadata) = 31, overlap min(80, 31 // 4) = 7
    assert len(windows[0].input_ids) == 40


def test_cross_encoder_instruction_is_prepended_and_query_limited() -> None:
    enc = ToyEncoder()
    r = CrossEncoderFormat(pair=XLMR_PAIR)
    out = r.encode(enc, call("q", "instr", ["d"], None), max_length=100)
    assert enc.decode(out.documents[0].inputs[0].input_ids) == [
        "<90>", "instr", "q", "<91>", "<91>", "d", "<91>",
    ]
    assert r.query_limit(1024) == 512  # jina's query cap with its 1024 window
    assert r.query_limit(512) == 380
    assert r.query_limit(64) == 30
    out = r.encode(enc, call("q " * 300, None, ["d"], None), max_length=64)
    assert out.query_truncated


def test_format_registry() -> None:
    assert tuple(f.name for f in FORMATS) == ("ctxl-v2", "mxbai-v2", "qwen3", "cross-encoder")
    assert [type(f) for f in FORMATS] == [
        CtxlV2Format, MxbaiV2Format, Qwen3Format, CrossEncoderFormat,
    ]
    assert not CrossEncoderFormat.follows_instruction and CtxlV2Format.follows_instruction


def test_encode_prompt_parts_prefix_len_stops_before_document() -> None:
    enc = ToyEncoder()
    parts = CtxlV2Format().prompt_parts("q", None, "alpha beta", None)
    out = encode_prompt_parts(enc, [parts], add_special_tokens=True, max_length=100)
    x = out[0].inputs[0]
    assert enc.decode(x.input_ids[: x.prefix_len])[-1] == "<Document>"


# ---------------------------------------------------------------------------------------------
# detection / loading decisions
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model,config,expected",
    [
        ("ContextualAI/ctxl-rerank-v2-instruct-multilingual-1b",
         {"architectures": ["Qwen3ForCausalLM"]}, "ctxl-v2"),
        ("ContextualAI/ctxl-rerank-v2-instruct-multilingual-6b",
         {"architectures": ["MistralForCausalLM"]}, "ctxl-v2"),
        ("mixedbread-ai/mxbai-rerank-base-v2", {"architectures": ["Qwen2ForCausalLM"]},
         "mxbai-v2"),
        ("mixedbread-ai/mxbai-rerank-base-v1",
         {"architectures": ["DebertaV2ForSequenceClassification"]}, "cross-encoder"),
        ("Qwen/Qwen3-Reranker-0.6B", {"architectures": ["Qwen3ForCausalLM"]}, "qwen3"),
        ("/models/tiny-Qwen3-Reranker", {"architectures": ["Qwen3ForCausalLM"]}, "qwen3"),
        ("BAAI/bge-reranker-v2-m3", {"architectures": ["XLMRobertaForSequenceClassification"],
                                     "model_type": "xlm-roberta"}, "cross-encoder"),
        ("cross-encoder/ms-marco-MiniLM-L6-v2",
         {"architectures": ["BertForSequenceClassification"]}, "cross-encoder"),
        ("jinaai/jina-reranker-v2-base-multilingual",
         {"architectures": ["XLMRobertaForSequenceClassification"], "use_flash_attn": True,
          "auto_map": {"AutoModelForSequenceClassification":
                       "jinaai/jina-reranker-v2-base-multilingual--modeling_xlm_roberta."
                       "XLMRobertaForSequenceClassification"}}, "cross-encoder"),
    ],
)
def test_detect_format(model: str, config: dict[str, object], expected: str) -> None:
    assert detect_format(model, config).name == expected


def test_detect_format_error_lists_formats() -> None:
    with pytest.raises(ModelLoadError) as err:
        detect_format("/models/some-llm", {"architectures": ["Qwen2ForCausalLM"]})
    for fmt in FORMATS:
        assert repr(fmt.name) in str(err.value) and fmt.summary in str(err.value)
    assert "model_format" in str(err.value)


def test_parse_dtype_and_attention_choice() -> None:
    assert parse_dtype(None) is None
    assert parse_dtype("bf16") == "bfloat16"
    assert parse_dtype("torch.float32") == "float32"
    assert parse_dtype("HALF") == "float16"
    with pytest.raises(RerankInputError) as err:
        parse_dtype("int8")
    assert err.value.field == "dtype"
    assert choose_attn_implementation("cuda", "bfloat16", None, flash_available=True) == (
        "flash_attention_2"
    )
    assert choose_attn_implementation("cuda", "float32", None, flash_available=True) == "sdpa"
    assert choose_attn_implementation("cpu", "bfloat16", None, flash_available=True) == "sdpa"
    assert choose_attn_implementation("cuda", "bfloat16", "eager", flash_available=True) == "eager"


def test_usable_positions() -> None:
    assert usable_positions({"model_type": "xlm-roberta", "max_position_embeddings": 514,
                             "pad_token_id": 1}) == 512
    assert usable_positions({"architectures": ["XLMRobertaForSequenceClassification"],
                             "max_position_embeddings": 1026, "pad_token_id": 1}) == 1024
    assert usable_positions({"model_type": "qwen3", "max_position_embeddings": 40960}) == 40960


# ---------------------------------------------------------------------------------------------
# engine planning (pure)
# ---------------------------------------------------------------------------------------------


def test_plan_batches_respects_budget_and_covers_everything() -> None:
    lengths = [5, 300, 40, 41, 7, 1000, 39, 2, 300, 64]
    plan = plan_batches(lengths, token_budget=400, max_batch_size=3)
    flat = [i for b in plan for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    for b in plan:
        assert len(b) <= 3
        if len(b) > 1:
            assert len(b) * max(lengths[i] for i in b) <= 400
    # sorted longest first: padding waste stays small
    widths = [max(lengths[i] for i in b) for b in plan]
    assert widths == sorted(widths, reverse=True)
    assert plan[0] == [5]  # longer than the budget: alone
    with pytest.raises(ValueError):
        plan_batches([1], token_budget=0, max_batch_size=1)


def test_plan_batches_fills_batches() -> None:
    plan = plan_batches([10] * 10, token_budget=40, max_batch_size=64)
    assert [len(b) for b in plan] == [4, 4, 2]


class FakeOOM(RuntimeError):
    pass


def test_oom_backoff_halves_down_to_one() -> None:
    calls: list[int] = []

    def run(items: Sequence[int]) -> list[tuple[float, ...]]:
        calls.append(len(items))
        if len(items) > 2:
            raise FakeOOM("CUDA out of memory")
        return [(float(i),) for i in items]

    cleared: list[int] = []
    out = run_with_oom_backoff(
        list(range(8)), run, is_oom=lambda e: isinstance(e, FakeOOM),
        on_oom=lambda: cleared.append(1),
    )
    assert out == [(float(i),) for i in range(8)]
    assert calls[0] == 8 and calls[1] == 4 and max(calls[2:]) <= 4
    assert len(cleared) == 3  # 8 -> 4+4, then each 4 -> 2+2


def test_oom_backoff_raises_at_one_and_passes_other_errors() -> None:
    def always(items: Sequence[int]) -> list[tuple[float, ...]]:
        raise FakeOOM("out of memory")

    with pytest.raises(OutOfMemoryError):
        run_with_oom_backoff([1, 2, 3], always, is_oom=lambda e: isinstance(e, FakeOOM))

    def broken(items: Sequence[int]) -> list[tuple[float, ...]]:
        raise KeyError("x")

    with pytest.raises(KeyError):
        run_with_oom_backoff([1, 2], broken, is_oom=lambda e: isinstance(e, FakeOOM))


def test_sigmoid_is_stable() -> None:
    assert sigmoid(0.0) == 0.5
    assert sigmoid(-1000.0) == 0.0
    assert sigmoid(1000.0) == 1.0
    assert sigmoid(2.0) == pytest.approx(1 - sigmoid(-2.0))


def test_prefix_reuse_only_when_the_prefix_is_a_real_share() -> None:
    s = EngineSettings(token_budget=100, max_batch_size=4)
    assert s.use_prefix(EncodedInput(tuple(range(300)), prefix_len=80))  # 80 >= 0.1 * 220
    assert not s.use_prefix(EncodedInput(tuple(range(3000)), prefix_len=80))  # long input
    assert not s.use_prefix(EncodedInput(tuple(range(20)), prefix_len=5))  # tiny prefix
    off = EngineSettings(token_budget=100, max_batch_size=4, prefix_caching=False)
    assert not off.use_prefix(EncodedInput(tuple(range(300)), prefix_len=80))


def test_cli_help_lists_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    from rerank_integrations.cli import main

    with pytest.raises(SystemExit):
        main(["rerank", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "local: " + ", ".join(f.name for f in FORMATS) in help_text
