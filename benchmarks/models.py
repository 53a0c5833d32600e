"""Random-weight benchmark models: the real architectures, scaled so a CPU run fits in minutes.

Nothing is downloaded. Each format has a REAL architecture (the public checkpoint's config) and
scaled profiles built from it:

- ``gpu``: the real config itself (random weights, real vocabulary).
- ``cpu``: hidden 128, 2 layers, attention width 32 (2 heads x 16, 1 KV head), with the MLP width
  chosen so that the attention-score FLOPs per token keep their real share of the layer's linear
  FLOPs (attention width / linear params per layer as in the real model), and the vocabulary
  chosen so that the LM head keeps its real share of the per-token FLOPs of a full-logit forward.
  Keeping the real vocabulary (151,669) AND the real head share at CPU size is impossible: the
  head costs ``2*hidden*vocab`` FLOPs per token and must stay ~18 % of the total, so the total is
  at least ``11*hidden*vocab`` FLOPs per token (>= 100 MFLOP/token even at hidden 64, measured ~340
  tokens/s on the 2-core CI machine: > 2 minutes per W1 pass, and the reference's full logits
  for 32 x 2,000 tokens would need 39 GB). We keep the share (what the speed ratios depend on)
  and shrink the vocabulary; see docs/benchmarks.md.
- ``cpu-realvocab``: the ``cpu`` body with the REAL vocabulary (head share NOT matched), used for
  the W3 memory row so that the reference's full ``[batch, seq, vocab]`` logits have their real
  size per token.
- ``gpu-smoke``: the real architecture's kind and positions at toy size (hidden 32, 1 layer,
  vocabulary 1,280), for ``bench --profile gpu --smoke``: the GPU code path on the CPU in
  seconds. Its numbers mean nothing; that the path runs does.

Tokenizers are trained locally on the benchmark's multilingual word list (byte-level BPE with the
Qwen split regex for the causal models, Unigram with XLM-R's special ids for the cross-encoder);
their vocabularies are smaller than the model's, the extra ids are simply never produced.
Model directories load under transformers 4.57 (.venv-ref) and 5.x.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

__all__ = [
    "REAL",
    "Arch",
    "arch_for",
    "build_model",
    "flops_per_token",
    "head_share",
]

QWEN_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@dataclass(frozen=True)
class Arch:
    """A transformer config reduced to what sets its FLOPs and memory."""

    label: str
    kind: str  # "qwen3" | "qwen2" | "xlmr"
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    max_positions: int

    @property
    def attn_width(self) -> int:
        return self.heads * self.head_dim

    def linear_params_per_layer(self) -> int:
        h, a, kv = self.hidden, self.attn_width, self.kv_heads * self.head_dim
        attn = h * a + 2 * h * kv + a * h  # q, k, v, o
        mlp = (3 if self.kind != "xlmr" else 2) * h * self.intermediate  # gated MLP in Qwen
        return attn + mlp

    def head_params(self) -> int:
        """Per-token projection params of the scoring head as the REFERENCE runs it."""
        if self.kind == "xlmr":
            return self.hidden * self.hidden + self.hidden  # dense + out_proj on one token
        return self.hidden * self.vocab  # full-vocabulary LM head at every position


REAL: dict[str, Arch] = {
    "ctxl-v2": Arch(
        "ctxl-rerank-v2-1b (Qwen3, 1.7B-class)",
        "qwen3",
        2048,
        28,
        6144,
        16,
        8,
        128,
        151_669,
        32_768,
    ),
    "mxbai-v2": Arch(
        "mxbai-rerank-large-v2 (Qwen2-1.5B)", "qwen2", 1536, 28, 8960, 12, 2, 128, 151_936, 32_768
    ),
    "qwen3": Arch(
        "Qwen3-Reranker-0.6B (Qwen3)", "qwen3", 1024, 28, 3072, 16, 8, 128, 151_669, 32_768
    ),
    "cross-encoder": Arch(
        "jina-reranker-v2-base (XLM-R base)", "xlmr", 768, 12, 3072, 12, 12, 64, 250_002, 1_026
    ),
}


def head_share(a: Arch) -> float:
    """Share of the LM head in the per-token linear FLOPs of a full-logit forward."""
    head = a.head_params() if a.kind != "xlmr" else 0  # classifier runs on 1 token / sequence
    return head / (head + a.layers * a.linear_params_per_layer())


def flops_per_token(a: Arch, *, seq_len: int, full_logits: bool) -> float:
    """Forward FLOPs per token: linear layers + attention scores (+ full LM head if asked).
    Causal attention counted as half of the square."""
    attn = 4 * seq_len * a.attn_width * a.layers * (0.5 if a.kind != "xlmr" else 1.0)
    body = 2 * a.layers * a.linear_params_per_layer() + attn
    return body + (2 * a.head_params() if full_logits and a.kind != "xlmr" else 0)


def _scaled(real: Arch, *, real_vocab: bool) -> Arch:
    h, heads, hd = 128, 2, 16
    kv_heads = 1
    if real.kind == "xlmr":  # BERT-style attention is always `hidden` wide
        hd, kv_heads = h // heads, heads
    layers = 2
    target_per_layer = (heads * hd) * real.linear_params_per_layer() / real.attn_width
    probe = replace(
        real, hidden=h, heads=heads, kv_heads=kv_heads, head_dim=hd, layers=layers, intermediate=0
    )
    attn_params = probe.linear_params_per_layer()
    mlp_mult = 2 if real.kind == "xlmr" else 3
    inter = max(64, round((target_per_layer - attn_params) / (mlp_mult * h)))
    scaled = replace(probe, intermediate=inter, label=f"{real.label} -> cpu")
    if real.kind == "xlmr" or real_vocab:
        return replace(scaled, label=scaled.label + (" (real vocab)" if real_vocab else ""))
    share = head_share(real)
    body = layers * scaled.linear_params_per_layer()
    vocab = round(share / (1 - share) * body / h)
    vocab = (vocab + 63) // 64 * 64
    return replace(scaled, vocab=vocab)


def arch_for(fmt: str, profile: str) -> Arch:
    real = REAL[fmt]
    if profile == "gpu":
        return real
    if profile == "cpu":
        return _scaled(real, real_vocab=False)
    if profile == "cpu-realvocab":
        return _scaled(real, real_vocab=True)
    if profile == "gpu-smoke":
        xlmr = real.kind == "xlmr"
        return replace(
            real,
            label=f"{real.label} -> gpu-smoke",
            hidden=32,
            layers=1,
            intermediate=64,
            heads=2,
            kv_heads=2 if xlmr else 1,
            head_dim=16,
            vocab=1280,
        )
    raise ValueError(f"unknown profile {profile!r}")


# ---------------------------------------------------------------------------------------------
# Tokenizers
# ---------------------------------------------------------------------------------------------

_TEMPLATE_TEXT = [
    "Check whether a given document contains information helpful to answer the query.\n",
    "<Document> ",
    "<Query> ",
    " ??",
    "<Instruct>: ",
    "<Query>: ",
    "<Document>: ",
    "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
    "query: ",
    "document: ",
    "instruction: ",
    "Relevance:",
    "yes",
    "no",
    "0",
    "1",
    " yes",
    " no",
    "You are a search relevance expert who evaluates how well documents match search queries.",
    "Judge whether the Document meets the requirements based on the Query and the Instruct",
    'provided. Note that the answer can only be "yes" or "no".\n<think>\n\n</think>\n\n',
    "why?\ndocument: x\n",
    "ok.\n",
    "no!\n",
]


def _training_corpus() -> list[str]:
    from benchmarks.workloads import corpus_lines

    return corpus_lines() + _TEMPLATE_TEXT * 20 + ["yes", "no", "yes\n", "no\n"] * 400


def build_qwen_like_tokenizer(out: Path, vocab_size: int = 1200) -> dict[str, int]:
    """Byte-level BPE, Qwen split regex, id 0 = '!', <|endoftext|>/<|im_start|>/<|im_end|>."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel(  # type: ignore[call-arg]  # the stub lags the library
        add_prefix_space=False, trim_offsets=False, use_regex=False
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_training_corpus(), trainer=trainer)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok.add_special_tokens(specials)
    assert tok.id_to_token(0) == "!", tok.id_to_token(0)
    for word in ("yes", "no", "0", "1"):
        assert len(tok.encode(word, add_special_tokens=False).ids) == 1, word
    tok.save(str(out / "tokenizer.json"))
    _write_json(
        out / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": None,
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
            "unk_token": None,
            "additional_special_tokens": ["<|im_start|>"],
            "model_max_length": 32768,
            "clean_up_tokenization_spaces": False,
            "split_special_tokens": False,
        },
    )
    _write_json(
        out / "special_tokens_map.json",
        {
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
            "additional_special_tokens": ["<|im_start|>"],
        },
    )
    ids = {t: tok.token_to_id(t) for t in specials}
    assert all(i is not None for i in ids.values()), ids
    return {t: int(i or 0) for t, i in ids.items()} | {"size": tok.get_vocab_size(True)}


def build_xlmr_like_tokenizer(out: Path, vocab_size: int = 1200, max_len: int = 1024) -> int:
    """Unigram + Metaspace with XLM-R ids (<s>=0, <pad>=1, </s>=2, <unk>=3) and pair format."""
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, show_progress=False, special_tokens=specials, unk_token="<unk>"
    )
    tok.train_from_iterator(_training_corpus(), trainer=trainer)
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True)])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    tok.save(str(out / "tokenizer.json"))
    sp = {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "sep_token": "</s>",
        "cls_token": "<s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
    }
    _write_json(
        out / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            **sp,
            "model_max_length": max_len,
            "model_input_names": ["input_ids", "attention_mask"],
            "clean_up_tokenization_spaces": False,
        },
    )
    _write_json(out / "special_tokens_map.json", sp)
    return int(tok.get_vocab_size(True))


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------

_DIR_NAMES = {
    "ctxl-v2": "bench-ctxl-rerank-v2-instruct-multilingual",
    "mxbai-v2": "bench-mxbai-rerank-large-v2",
    "qwen3": "bench-Qwen3-Reranker",
    "cross-encoder": "bench-jina-reranker-v2-cross-encoder",
}


def build_model(
    fmt: str,
    profile: str,
    root: Path,
    *,
    seed: int = 0,
    device: str = "cpu",
    dtype: str = "float32",
) -> Path:
    """Write ``root/<name>-<profile>`` (config, safetensors weights, tokenizer); cached by a
    stamp file so a second call is free. Returns the directory."""
    import torch
    import transformers

    a = arch_for(fmt, profile)
    out = root / f"{_DIR_NAMES[fmt]}-{profile}"
    stamp = out / "bench_arch.json"
    want = json.dumps({"arch": a.__dict__, "seed": seed, "dtype": dtype}, sort_keys=True)
    if stamp.exists() and stamp.read_text(encoding="utf-8") == want:
        return out
    out.mkdir(parents=True, exist_ok=True)
    torch_dtype = getattr(torch, dtype)
    torch.manual_seed(seed)
    if a.kind == "xlmr":
        size = _cached_tokenizer(
            root, "xlmr", out, lambda d: build_xlmr_like_tokenizer(d, max_len=a.max_positions - 2)
        )
        assert size <= a.vocab
        cfg: Any = transformers.XLMRobertaConfig(  # type: ignore[call-arg]  # num_labels: kwargs
            vocab_size=a.vocab,
            hidden_size=a.hidden,
            num_hidden_layers=a.layers,
            num_attention_heads=a.heads,
            intermediate_size=a.intermediate,
            hidden_act="gelu",
            max_position_embeddings=a.max_positions,
            type_vocab_size=1,
            layer_norm_eps=1e-5,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            num_labels=1,
            initializer_range=0.02,
        )
        cls: Any = transformers.XLMRobertaForSequenceClassification
    else:
        ids = _cached_tokenizer(root, "qwen", out, build_qwen_like_tokenizer)
        assert ids["size"] <= a.vocab, (ids, a.vocab)
        common = dict(
            vocab_size=a.vocab,
            hidden_size=a.hidden,
            intermediate_size=a.intermediate,
            num_hidden_layers=a.layers,
            num_attention_heads=a.heads,
            num_key_value_heads=a.kv_heads,
            max_position_embeddings=a.max_positions,
            tie_word_embeddings=False,
            initializer_range=0.02,
            rms_norm_eps=1e-6,
            rope_theta=1_000_000.0,
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
            use_sliding_window=False,
        )
        if a.kind == "qwen3":
            cfg = transformers.Qwen3Config(head_dim=a.head_dim, **common)
            cls = transformers.Qwen3ForCausalLM
        else:
            cfg = transformers.Qwen2Config(**common)
            cls = transformers.Qwen2ForCausalLM
    with torch.device(device):
        model = cls(cfg).to(torch_dtype).eval()
    model.save_pretrained(str(out), safe_serialization=True)
    path = out / "config.json"
    c = json.loads(path.read_text(encoding="utf-8"))
    c["torch_dtype"] = dtype
    c["dtype"] = dtype
    if a.kind != "xlmr":
        c["rope_theta"] = 1_000_000.0
    _write_json(path, c)
    del model
    stamp.write_text(want, encoding="utf-8")
    return out


def _cached_tokenizer(root: Path, kind: str, out: Path, build: Any) -> Any:
    """Train each tokenizer kind once per ``root`` and copy its files (training is the slow
    part of building a model directory)."""
    import shutil

    src = root / f"_tokenizer-{kind}"
    meta = src / "bench_tokenizer.json"
    if not meta.exists():
        result = build(src)
        meta.write_text(json.dumps(result), encoding="utf-8")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(src / name, out / name)
    return json.loads(meta.read_text(encoding="utf-8"))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
