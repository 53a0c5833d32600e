"""The one factory of small random-weight models and local tokenizers used by the tests.

Nothing here downloads anything: tokenizers are trained on a small built-in corpus with the
`tokenizers` library and models are built from configs with seeded random weights. Every model
directory is saved so that it loads with ``AutoTokenizer`` / ``AutoModel*`` under BOTH
transformers 5 (the main test venv) and transformers 4.57 (the ``.venv-ref`` parity venv running
the official reference packages; mxbai-rerank 0.1.6 calls ``tokenizer.prepare_for_model``,
which transformers 5 removed, hence the second venv).

Builders (each returns the directory it wrote):

- ``build_qwen_tokenizer(out_dir)``: byte-level BPE with the Qwen split regex; id 0 is ``!``
  (as in Qwen) and ``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>`` are special tokens.
- ``make_tiny_qwen2(out_dir)`` / ``make_tiny_qwen3(out_dir)``: causal LMs on that tokenizer
  (Qwen2 = mxbai-rerank-v2's architecture, Qwen3 = ctxl-rerank-v2-1b's and Qwen3-Reranker's).
- ``build_xlmr_tokenizer(out_dir)``: XLM-R style tokenizer (``<s>``=0, ``<pad>``=1, ``</s>``=2,
  ``<unk>``=3, pair format ``<s> A </s></s> B </s>``).
- ``make_tiny_xlmr(out_dir)``: ``XLMRobertaForSequenceClassification`` with one label.
- ``make_tiny_jina(out_dir)``: the SAME weights as ``make_tiny_xlmr`` (same seed and sizes) but
  written in jina-reranker-v2's checkpoint naming (fused ``mixer.Wqkv``, ``emb_ln``, ...) with a
  config that has no ``model_type`` and an ``auto_map`` pointing at custom code that is NOT
  shipped (so any attempt to execute remote code fails loudly).
- ``build_bert_tokenizer(out_dir)``: WordPiece + BertPreTokenizer, ``[PAD]``=0 ... ``[MASK]``=4,
  pair format ``[CLS] A [SEP] B [SEP]`` with token_type_ids 0 then 1.
- ``make_tiny_bert(out_dir)``: ``BertForSequenceClassification`` (one label, two segment types).

torch / transformers are imported inside the functions so that importing this module is cheap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------------

# Qwen2/Qwen3 pre-tokenizer split regex (as in their tokenizer.json).
QWEN_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_SENTENCES = [
    "What is the capital of France?",
    "Paris is the capital and largest city of France.",
    "Berlin is the capital of Germany!",
    "The quick brown fox jumps over the lazy dog.",
    "How do I bake bread at home?",
    "Mix flour, water, salt and yeast; knead, rest and bake for 40 minutes.",
    "Green tea contains antioxidants called catechins.",
    "El precio del café ha aumentado un 20% este año.",
    "¿Dónde está la biblioteca?",
    "Le thé vert est riche en antioxydants et peut améliorer la fonction cérébrale.",
    "Wie spät ist es? Es ist halb drei.",
    "Die Katze schläft auf dem Sofa.",
    "绿茶富含儿茶素等抗氧化剂。",
    "東京は日本の首都です。",
    "Москва — столица России.",
    "The answer is yes. The answer is no.",
    "Is it relevant? yes! Is it relevant? no.",
    "Relevance: 1. Relevance: 0.",
    "Check whether a given document contains information helpful to answer the query.",
    "You are a search relevance expert who evaluates how well documents match search queries.",
    "For each query-document pair, carefully analyze the semantic relationship between them,",
    "then provide your binary relevance judgment (0 for not relevant, 1 for relevant).",
    "Judge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".',
    "Given a web search query, retrieve relevant passages that answer the query",
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
]

_LINE_PIECES = [
    "query: ",
    "document: ",
    "instruction: ",
    "<Document> ",
    "<Query> ",
    "<Instruct>: ",
    "<Query>: ",
    "<Document>: ",
    "Relevance:",
    "system",
    "user",
    "assistant",
    "<think>",
    "</think>",
]


def _corpus() -> list[str]:
    """A small multilingual corpus: punctuation is often followed by newlines so that merges
    such as ``?\\n`` / ``.\\n`` / ``!\\n`` exist (piecewise vs joined tokenization then differ)."""
    lines: list[str] = []
    for _ in range(6):
        for i, sentence in enumerate(_SENTENCES):
            piece = _LINE_PIECES[i % len(_LINE_PIECES)]
            lines.append(f"{piece}{sentence}\n")
            lines.append(f"{sentence}\n{piece}{sentence}\n\n")
            lines.append(f"query: {sentence}\ndocument: {_SENTENCES[(i + 3) % len(_SENTENCES)]}\n")
        lines.extend(["yes\n", "no\n", "yes", "no", "0\n", "1\n", " yes", " no", "??\n", "?\n"])
        lines.extend(["!\n", ".\n", "?!\n", ":\n", "\n\n", "0 1 0 1 10 01\n"])
    return lines


# --------------------------------------------------------------------------------------------
# Qwen-like tokenizer
# --------------------------------------------------------------------------------------------


def build_qwen_tokenizer(
    out_dir: str | Path,
    *,
    vocab_size: int = 1024,
    eos_token: str = "<|im_end|>",
    pad_token: str | None = "<|endoftext|>",
    model_max_length: int = 32768,
) -> Path:
    """Train a byte-level BPE with the Qwen split regex and save it (loadable by transformers 4
    and 5). ``pad_token=None`` saves a tokenizer without a pad token (a loader must then fall
    back to EOS). Returns ``out_dir``."""
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.post_processor = processors.ByteLevel(
        add_prefix_space=False, trim_offsets=False, use_regex=False
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        special_tokens=[],  # added AFTER training so that id 0 is the first byte symbol, "!"
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    tok.add_special_tokens(list(QWEN_SPECIAL_TOKENS))

    # Invariants the tests rely on.
    if tok.id_to_token(0) != "!":
        raise AssertionError(f"id 0 should be '!', got {tok.id_to_token(0)!r}")
    for word in ("yes", "no", "0", "1"):
        ids = tok.encode(word, add_special_tokens=False).ids
        if len(ids) != 1:
            raise AssertionError(f"{word!r} should be one token, got {ids}")
    joined = tok.encode("why?\ndocument: x", add_special_tokens=False).ids
    piecewise = (
        tok.encode("why?", add_special_tokens=False).ids
        + tok.encode("\n", add_special_tokens=False).ids
        + tok.encode("document: x", add_special_tokens=False).ids
    )
    if joined == piecewise:
        raise AssertionError("tokenizer should merge punctuation with a following newline")

    tok.save(str(out / "tokenizer.json"))
    extra = [t for t in QWEN_SPECIAL_TOKENS if t not in (eos_token, pad_token)]
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_prefix_space": False,
        "bos_token": None,
        "eos_token": eos_token,
        "pad_token": pad_token,
        "unk_token": None,
        "additional_special_tokens": extra,
        "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "split_special_tokens": False,
        "chat_template": _CHAT_TEMPLATE,
    }
    _write_json(out / "tokenizer_config.json", config)
    special_map: dict[str, Any] = {"eos_token": eos_token, "additional_special_tokens": extra}
    if pad_token is not None:
        special_map["pad_token"] = pad_token
    else:
        del config["pad_token"]
        _write_json(out / "tokenizer_config.json", config)
    _write_json(out / "special_tokens_map.json", special_map)
    return out


# --------------------------------------------------------------------------------------------
# Causal LMs (Qwen2 / Qwen3)
# --------------------------------------------------------------------------------------------


def _tokenizer_size(tok_dir: Path) -> int:
    from tokenizers import Tokenizer

    return int(Tokenizer.from_file(str(tok_dir / "tokenizer.json")).get_vocab_size(True))


def _fix_config_for_transformers4(
    out: Path, extra: dict[str, Any] | None = None, drop: tuple[str, ...] = ()
) -> None:
    """transformers 5 writes ``dtype`` / ``rope_parameters``; make the config explicit so that
    transformers 4.57 reads exactly the same hyper-parameters."""
    path = out / "config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    cfg["torch_dtype"] = "float32"
    cfg["dtype"] = "float32"
    rope = cfg.get("rope_parameters")
    if isinstance(rope, dict) and "rope_theta" in rope:
        cfg.setdefault("rope_theta", rope["rope_theta"])
    cfg.update(extra or {})
    for key in drop:
        cfg.pop(key, None)
    _write_json(path, cfg)


def _make_causal_lm(
    arch: str,
    out_dir: str | Path,
    *,
    seed: int,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    max_position_embeddings: int,
    tie_word_embeddings: bool,
    initializer_range: float,
    tokenizer_kwargs: dict[str, Any] | None,
) -> Path:
    import torch
    import transformers

    out = Path(out_dir)
    build_qwen_tokenizer(out, **(tokenizer_kwargs or {}))
    vocab = _tokenizer_size(out)
    vocab_padded = (vocab + 15) // 16 * 16  # real Qwen configs also pad the vocabulary
    tok_cfg = json.loads((out / "tokenizer_config.json").read_text(encoding="utf-8"))
    vocab_ids = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))["added_tokens"]
    ids = {t["content"]: t["id"] for t in vocab_ids}
    common: dict[str, Any] = {
        "vocab_size": vocab_padded,
        "hidden_size": hidden_size,
        "intermediate_size": hidden_size * 2,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "num_key_value_heads": num_kv_heads,
        "max_position_embeddings": max_position_embeddings,
        "tie_word_embeddings": tie_word_embeddings,
        "initializer_range": initializer_range,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids[tok_cfg["eos_token"]],
        "pad_token_id": ids[tok_cfg["pad_token"]] if tok_cfg.get("pad_token") else None,
        "use_sliding_window": False,
    }
    if arch == "qwen3":
        common["head_dim"] = hidden_size // num_heads
        config = transformers.Qwen3Config(**common)
        model_cls: Any = transformers.Qwen3ForCausalLM
    else:
        config = transformers.Qwen2Config(**common)
        model_cls = transformers.Qwen2ForCausalLM
    torch.manual_seed(seed)
    model = model_cls(config).to(torch.float32).eval()
    model.save_pretrained(str(out), safe_serialization=True)
    _fix_config_for_transformers4(out, {"rope_theta": 10000.0})
    return out


def make_tiny_qwen2(
    out_dir: str | Path,
    *,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    max_position_embeddings: int = 2048,
    tie_word_embeddings: bool = False,
    initializer_range: float = 0.1,
    tokenizer_kwargs: dict[str, Any] | None = None,
) -> Path:
    """Tiny random Qwen2ForCausalLM (the mxbai-rerank-v2 architecture) with its tokenizer.

    Untied lm_head by default so that a scorer projecting on the input embeddings instead of
    ``lm_head`` would be caught. ``initializer_range`` is larger than usual so that scores spread
    widely (a 1e-4 tolerance is then a sharp test)."""
    return _make_causal_lm(
        "qwen2",
        out_dir,
        seed=seed,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tie_word_embeddings,
        initializer_range=initializer_range,
        tokenizer_kwargs=tokenizer_kwargs,
    )


def make_tiny_qwen3(
    out_dir: str | Path,
    *,
    seed: int = 1,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    max_position_embeddings: int = 2048,
    tie_word_embeddings: bool = False,
    initializer_range: float = 0.1,
    tokenizer_kwargs: dict[str, Any] | None = None,
) -> Path:
    """Tiny random Qwen3ForCausalLM (ctxl-rerank-v2-1b and Qwen3-Reranker architecture)."""
    return _make_causal_lm(
        "qwen3",
        out_dir,
        seed=seed,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tie_word_embeddings,
        initializer_range=initializer_range,
        tokenizer_kwargs=tokenizer_kwargs,
    )


# --------------------------------------------------------------------------------------------
# XLM-R style tokenizer and cross-encoders
# --------------------------------------------------------------------------------------------

XLMR_SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")


def _unigram_vocab(vocab_size: int) -> list[tuple[str, float]]:
    """A deterministic Unigram vocabulary from the corpus: specials, every character seen (with
    and without the ``▁`` word marker) and the most frequent ``▁word`` pieces (ties broken
    alphabetically). ``UnigramTrainer`` is not deterministic across runs, which would give the
    "same" tiny model a different tokenizer each time."""
    import math
    import unicodedata
    from collections import Counter

    words: Counter[str] = Counter()
    chars: set[str] = set()
    for line in _corpus():
        text = unicodedata.normalize("NFKC", line)
        for word in text.split():
            words["▁" + word] += 1
            chars.update(word)
    pieces: list[tuple[str, float]] = [(t, 0.0) for t in XLMR_SPECIAL_TOKENS]
    for c in sorted(chars):
        pieces.append((c, -12.0))
        pieces.append(("▁" + c, -11.0))
    pieces.append(("▁", -10.0))
    total = sum(words.values())
    room = max(0, vocab_size - len(pieces))
    ranked = sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))
    known = {p for p, _ in pieces}
    for word, count in ranked:
        if room <= 0:
            break
        if word not in known and len(word) > 2:
            pieces.append((word, math.log(count / total)))
            room -= 1
    return pieces


def build_xlmr_tokenizer(
    out_dir: str | Path, *, vocab_size: int = 400, model_max_length: int = 256
) -> Path:
    """Unigram + Metaspace tokenizer with XLM-R's special ids (<s>=0, <pad>=1, </s>=2, <unk>=3,
    <mask> last) and XLM-R's pair format, built deterministically (no training). Returns
    ``out_dir``."""
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.Unigram(_unigram_vocab(vocab_size), unk_id=3, byte_fallback=False))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True)])
    for i, t in enumerate(XLMR_SPECIAL_TOKENS):
        if tok.token_to_id(t) != i:
            raise AssertionError(f"{t} should have id {i}, got {tok.token_to_id(t)}")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    tok.save(str(out / "tokenizer.json"))
    specials = {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "sep_token": "</s>",
        "cls_token": "<s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
    }
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **specials,
        "model_max_length": model_max_length,
        "model_input_names": ["input_ids", "attention_mask"],
        "clean_up_tokenization_spaces": False,
    }
    _write_json(out / "tokenizer_config.json", config)
    _write_json(out / "special_tokens_map.json", specials)
    return out


def _build_xlmr_model(
    tok_dir: Path,
    *,
    seed: int,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    max_position_embeddings: int,
    initializer_range: float,
) -> Any:
    import torch
    import transformers

    config = transformers.XLMRobertaConfig(
        vocab_size=_tokenizer_size(tok_dir),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=hidden_size * 2,
        hidden_act="gelu",
        max_position_embeddings=max_position_embeddings,
        type_vocab_size=1,
        initializer_range=initializer_range,
        layer_norm_eps=1e-5,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        num_labels=1,
        position_embedding_type="absolute",
    )
    torch.manual_seed(seed)
    model = transformers.XLMRobertaForSequenceClassification(config).to(torch.float32).eval()
    _perturb_biases_and_norms(model, seed)
    return model


def _perturb_biases_and_norms(model: Any, seed: int) -> Any:
    """Non-zero biases / LayerNorm parameters (seeded), so a wrong mapping (e.g. a swapped bias
    or norm) or a dropped input changes the scores. Returns the generator, for further draws."""
    import torch

    with torch.no_grad():
        gen = torch.Generator().manual_seed(seed + 1000)
        for name, param in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                param.add_(torch.randn(param.shape, generator=gen) * 0.1)
    return gen


def make_tiny_xlmr(
    out_dir: str | Path,
    *,
    seed: int = 2,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    max_position_embeddings: int = 258,
    initializer_range: float = 0.1,
) -> Path:
    """Tiny random ``XLMRobertaForSequenceClassification`` (num_labels=1) + XLM-R tokenizer.

    ``max_position_embeddings`` = window + 2 as in XLM-R (positions start after the pad id)."""
    out = Path(out_dir)
    build_xlmr_tokenizer(out, model_max_length=max_position_embeddings - 2)
    model = _build_xlmr_model(
        out,
        seed=seed,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        initializer_range=initializer_range,
    )
    model.save_pretrained(str(out), safe_serialization=True)
    _fix_config_for_transformers4(out)
    return out


# Stock XLM-R name fragment -> jina-reranker-v2 name fragment (the inverse of the mapping the
# local backend applies), written independently of src/ so the loader test is not circular.
_STOCK_TO_JINA = (
    ("embeddings.LayerNorm", "emb_ln"),
    ("attention.output.dense", "mixer.out_proj"),
    ("attention.output.LayerNorm", "norm1"),
    ("intermediate.dense", "mlp.fc1"),
    ("output.dense", "mlp.fc2"),
    ("output.LayerNorm", "norm2"),
)


def xlmr_state_dict_to_jina(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Rename a stock XLM-R sequence-classification state dict into jina's checkpoint naming:
    ``encoder.layer.N`` -> ``encoder.layers.N``, q/k/v fused into ``mixer.Wqkv`` (concatenated
    along dim 0 in q, k, v order), ``emb_ln``, ``norm1``/``norm2``, ``mlp.fc1``/``mlp.fc2``."""
    import torch

    out: dict[str, Any] = {}
    fused: dict[str, dict[str, Any]] = {}
    for key, value in state_dict.items():
        if key.endswith(("position_ids", "token_type_ids")) and "embeddings." in key:
            continue  # buffers, not weights
        if ".attention.self." in key:
            prefix, rest = key.split(".attention.self.")
            proj, kind = rest.split(".")  # query|key|value, weight|bias
            fused.setdefault(f"{prefix}|{kind}", {})[proj] = value
            continue
        new = key
        for stock, jina in _STOCK_TO_JINA:
            if stock in new:
                new = new.replace(stock, jina)
                break
        out[new.replace("encoder.layer.", "encoder.layers.")] = value.detach().clone()
    for pk, parts in fused.items():
        prefix, kind = pk.split("|")
        wqkv = torch.cat([parts["query"], parts["key"], parts["value"]], dim=0)
        out[f"{prefix.replace('encoder.layer.', 'encoder.layers.')}.mixer.Wqkv.{kind}"] = wqkv
    return out


def make_tiny_jina(
    out_dir: str | Path,
    *,
    seed: int = 2,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    max_position_embeddings: int = 258,
    initializer_range: float = 0.1,
) -> Path:
    """The same weights as ``make_tiny_xlmr`` (same defaults) in jina-reranker-v2's naming.

    The config mimics jinaai/jina-reranker-v2-base-multilingual's: no ``model_type``,
    ``architectures`` = XLMRobertaForSequenceClassification, ``auto_map`` to custom code (not
    shipped here), ``use_flash_attn``."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    build_xlmr_tokenizer(out, model_max_length=max_position_embeddings - 2)
    model = _build_xlmr_model(
        out,
        seed=seed,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        initializer_range=initializer_range,
    )
    jina_sd = xlmr_state_dict_to_jina(dict(model.state_dict()))
    save_file(
        {k: v.contiguous() for k, v in jina_sd.items()},
        str(out / "model.safetensors"),
        metadata={"format": "pt"},
    )
    cfg = model.config
    config = {
        "_name_or_path": "tiny-jina-reranker-v2-base-multilingual",
        "architectures": ["XLMRobertaForSequenceClassification"],
        "auto_map": {
            "AutoConfig": "configuration_xlm_roberta.XLMRobertaFlashConfig",
            "AutoModel": "modeling_xlm_roberta.XLMRobertaModel",
            "AutoModelForSequenceClassification": (
                "modeling_xlm_roberta.XLMRobertaForSequenceClassification"
            ),
        },
        "attention_probs_dropout_prob": 0.1,
        "bos_token_id": 0,
        "classifier_dropout": None,
        "emb_pooler": None,
        "eos_token_id": 2,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": cfg.hidden_size,
        "num_labels": 1,
        "id2label": {"0": "LABEL_0"},
        "label2id": {"LABEL_0": 0},
        "initializer_range": initializer_range,
        "intermediate_size": cfg.intermediate_size,
        "layer_norm_eps": cfg.layer_norm_eps,
        "max_position_embeddings": cfg.max_position_embeddings,
        "num_attention_heads": cfg.num_attention_heads,
        "num_hidden_layers": cfg.num_hidden_layers,
        "output_past": True,
        "pad_token_id": 1,
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
        "transformers_version": "4.40.0",
        "type_vocab_size": 1,
        "use_cache": False,
        "use_flash_attn": True,
        "vocab_size": cfg.vocab_size,
    }
    _write_json(out / "config.json", config)
    return out


# --------------------------------------------------------------------------------------------
# BERT (WordPiece) cross-encoder with segment ids
# --------------------------------------------------------------------------------------------

BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _wordpiece_vocab(vocab_size: int) -> dict[str, int]:
    """A deterministic WordPiece vocabulary from the corpus: specials (ids 0-4), every character
    seen (as a word start and as a ``##`` continuation) and the most frequent lower-cased words
    (ties broken alphabetically)."""
    import unicodedata
    from collections import Counter

    from tokenizers import normalizers, pre_tokenizers

    norm = normalizers.BertNormalizer(lowercase=True, strip_accents=None, clean_text=True)
    pre = pre_tokenizers.BertPreTokenizer()
    words: Counter[str] = Counter()
    chars: set[str] = set()
    for line in _corpus():
        text = norm.normalize_str(unicodedata.normalize("NFC", line))
        for word, _ in pre.pre_tokenize_str(text):
            words[word] += 1
            chars.update(word)
    tokens: list[str] = list(BERT_SPECIAL_TOKENS)
    for c in sorted(chars):
        tokens.append(c)
        tokens.append("##" + c)
    known = set(tokens)
    for word, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(tokens) >= vocab_size:
            break
        if word not in known and len(word) > 1:
            tokens.append(word)
            known.add(word)
    return {t: i for i, t in enumerate(tokens)}


def build_bert_tokenizer(
    out_dir: str | Path, *, vocab_size: int = 400, model_max_length: int = 256
) -> Path:
    """WordPiece + BertPreTokenizer tokenizer with BERT's specials ([PAD]=0, [UNK]=1, [CLS]=2,
    [SEP]=3, [MASK]=4) and BERT's pair format ``[CLS] A [SEP] B [SEP]`` whose second segment
    gets token_type_id 1; built deterministically (no training). Returns ``out_dir``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = _wordpiece_vocab(vocab_size)
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        lowercase=True, strip_accents=None, clean_text=True, handle_chinese_chars=True
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens(list(BERT_SPECIAL_TOKENS))
    for i, t in enumerate(BERT_SPECIAL_TOKENS):
        if tok.token_to_id(t) != i:
            raise AssertionError(f"{t} should have id {i}, got {tok.token_to_id(t)}")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    pair = tok.encode("what?", "paris.")
    if pair.type_ids[-1] != 1 or pair.type_ids[0] != 0:
        raise AssertionError(f"the second segment should have type id 1: {pair.type_ids}")
    tok.save(str(out / "tokenizer.json"))
    specials = {
        "unk_token": "[UNK]",
        "sep_token": "[SEP]",
        "pad_token": "[PAD]",
        "cls_token": "[CLS]",
        "mask_token": "[MASK]",
    }
    config: dict[str, Any] = {
        "tokenizer_class": "BertTokenizerFast",
        **specials,
        "do_lower_case": True,
        "tokenize_chinese_chars": True,
        "strip_accents": None,
        "model_max_length": model_max_length,
        "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
        "clean_up_tokenization_spaces": False,
    }
    _write_json(out / "tokenizer_config.json", config)
    _write_json(out / "special_tokens_map.json", specials)
    (out / "vocab.txt").write_text(
        "".join(t + "\n" for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])),
        encoding="utf-8",
    )
    return out


def make_tiny_bert(
    out_dir: str | Path,
    *,
    seed: int = 4,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 2,
    max_position_embeddings: int = 256,
    initializer_range: float = 0.1,
) -> Path:
    """Tiny random ``BertForSequenceClassification`` (num_labels=1, type_vocab_size=2) + a
    WordPiece tokenizer whose pairs carry token_type_ids 0/1 (head_dim 32 by default: the CPU
    attention of vLLM does not take 16). The two token-type embeddings are pushed apart so that
    a server that drops the segment ids scores visibly differently."""
    import torch
    import transformers

    out = Path(out_dir)
    build_bert_tokenizer(out, model_max_length=max_position_embeddings)
    config = transformers.BertConfig(
        vocab_size=_tokenizer_size(out),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=hidden_size * 2,
        hidden_act="gelu",
        max_position_embeddings=max_position_embeddings,
        type_vocab_size=2,
        initializer_range=initializer_range,
        layer_norm_eps=1e-12,
        pad_token_id=0,
        num_labels=1,
        position_embedding_type="absolute",
    )
    torch.manual_seed(seed)
    model = transformers.BertForSequenceClassification(config).to(torch.float32).eval()
    gen = _perturb_biases_and_norms(model, seed)
    with torch.no_grad():
        types = model.bert.embeddings.token_type_embeddings.weight
        types.copy_(torch.randn(types.shape, generator=gen) * 0.5)
    model.save_pretrained(str(out), safe_serialization=True)
    _fix_config_for_transformers4(out)
    return out


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
