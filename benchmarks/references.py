"""The reference implementations the benchmark compares against, run in the same process.

- ``mxbai-v2``: the official ``mxbai-rerank`` package's ``MxbaiRerankV2.rank`` (default batch
  size 32: input order below 32 documents, length-sorted buckets above). It only runs under
  transformers 4, so the CPU local-format benchmark runs in ``.venv-ref``. Where it is not
  installed (the GPU image has transformers 5 and no ``mxbai-rerank``) :class:`PlainCausal`
  runs the same token-id assembly with the plain recipe below, and the table says so.
- ``cross-encoder``: sentence-transformers ``CrossEncoder.predict`` (batch size 32). Documents
  longer than the window are scored window by window (jina's rule: query <= 512 tokens, windows
  of the remaining room overlapping by min(80, room // 4), last one right-aligned, max over the
  windows); each window is decoded to text and passed to ``CrossEncoder.predict`` with the
  other pairs, so every window runs through the reference's own batching.
- ``ctxl-v2`` / ``qwen3``: the model cards' plain transformers recipe, written here: build the
  prompt strings, tokenise them all, left-pad, full forward ``model(**batch).logits[:, -1, :]``
  and read the logit(s). The cards run the whole list as ONE batch; we chunk it in input order
  by ``batch_size`` (32), which only helps the reference (less padding, less memory).

Every reference returns RAW scores in input order (ctxl-v2: logit of id 0 rounded through
bfloat16 as the card does; qwen3: logit("yes") - logit("no"); mxbai: logit("1") - logit("0");
cross-encoder: the classifier logit).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["CrossEncoderReference", "MxbaiReference", "PlainCausal", "make_reference"]

CTXL_HEAD = "Check whether a given document contains information helpful to answer the query."
QWEN3_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n"
)
QWEN3_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
QWEN3_DEFAULT_INSTRUCTION = (
    "Given a web search query, retrieve relevant passages that answer the query"
)
MXBAI_PREFIX = (
    "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    "<|im_end|>\n<|im_start|>user\n"
)
MXBAI_TASK = (
    "You are a search relevance expert who evaluates how well documents match search queries. "
    "For each query-document pair, carefully analyze the semantic relationship between them, "
    "then provide your binary relevance judgment (0 for not relevant, 1 for relevant).\n"
    "Relevance:"
)
MXBAI_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n"


def _torch_dtype(torch: Any, dtype: str) -> Any:
    return getattr(torch, dtype)


class PlainCausal:
    """Model-card recipe: tokenise all, left-pad per chunk, full forward, read the last logits."""

    name = "plain transformers recipe"

    def __init__(
        self, model_dir: str, fmt: str, *, device: str, dtype: str, batch_size: int = 32
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.fmt = fmt
        self.device = device
        self.batch_size = batch_size
        self.tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        model = AutoModelForCausalLM.from_pretrained(
            model_dir, torch_dtype=_torch_dtype(torch, dtype), attn_implementation="sdpa"
        )
        self.model = model.to(device).eval()  # type: ignore[arg-type]

        def one(t: str) -> int:
            ids = self.tok(t, add_special_tokens=False)["input_ids"]
            assert len(ids) == 1, (t, ids)
            return int(ids[0])

        if fmt == "qwen3":
            self.pos, self.neg = one("yes"), one("no")
        elif fmt == "mxbai-v2":
            self.pos, self.neg = one("1"), one("0")
            self.name = "plain recipe, mxbai token-id assembly (mxbai-rerank not installed)"

    def _ids(self, query: str, docs: Sequence[str], instruction: str | None) -> list[list[int]]:
        enc = self.tok
        if self.fmt == "ctxl-v2":
            appended = f" {instruction}" if instruction else ""
            texts = [f"{CTXL_HEAD}\n<Document> {d}\n<Query> {query}{appended} ??" for d in docs]
            return [list(x) for x in enc(texts, add_special_tokens=False)["input_ids"]]
        if self.fmt == "qwen3":
            ins = instruction or QWEN3_DEFAULT_INSTRUCTION
            pre = enc(QWEN3_PREFIX, add_special_tokens=False)["input_ids"]
            suf = enc(QWEN3_SUFFIX, add_special_tokens=False)["input_ids"]
            bodies = [f"<Instruct>: {ins}\n<Query>: {query}\n<Document>: {d}" for d in docs]
            return [pre + list(b) + suf for b in enc(bodies, add_special_tokens=False)["input_ids"]]
        # mxbai-v2: piecewise token-id assembly (no truncation needed for these workloads)

        def piece(t: str) -> list[int]:
            return list(enc(t, add_special_tokens=False)["input_ids"])

        q = f"instruction: {instruction}\nquery: {query}" if instruction else f"query: {query}"
        head = piece(MXBAI_PREFIX) + piece(q) + piece("\n")
        tail = piece("\n") + piece(MXBAI_TASK) + piece(MXBAI_SUFFIX)
        return [head + piece(f"document: {d}") + tail for d in docs]

    def token_counts(self, query: str, docs: Sequence[str], instruction: str | None) -> list[int]:
        return [len(x) for x in self._ids(query, docs, instruction)]

    def score(self, query: str, docs: Sequence[str], instruction: str | None) -> list[float]:
        torch = self.torch
        all_ids = self._ids(query, docs, instruction)  # "tokenise all"
        out: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(all_ids), self.batch_size):
                chunk = all_ids[start : start + self.batch_size]
                mult = 8 if self.fmt == "mxbai-v2" else None
                batch = self.tok.pad(
                    {"input_ids": chunk}, padding=True, pad_to_multiple_of=mult, return_tensors="pt"
                )
                inputs = {k: v.to(self.device) for k, v in batch.items()}
                logits = self.model(**inputs).logits[:, -1, :]
                if self.fmt == "ctxl-v2":
                    s = logits[:, 0].to(torch.bfloat16).float()
                else:
                    s = (logits[:, self.pos] - logits[:, self.neg]).float()
                out.extend(s.cpu().tolist())
        return out


class MxbaiReference:
    name = "mxbai-rerank MxbaiRerankV2"

    def __init__(self, model_dir: str, *, device: str, dtype: str, batch_size: int = 32) -> None:
        import torch
        from mxbai_rerank import MxbaiRerankV2

        self.batch_size = batch_size
        self.model = MxbaiRerankV2(model_dir, device=device, torch_dtype=_torch_dtype(torch, dtype))
        self._plain: PlainCausal | None = None
        self._dir, self._device, self._dtype = model_dir, device, dtype

    def token_counts(self, query: str, docs: Sequence[str], instruction: str | None) -> list[int]:
        enc = self.model.prepare_inputs([query] * len(docs), list(docs), instruction=instruction)
        return [int(m.sum()) for m in enc["attention_mask"]]

    def score(self, query: str, docs: Sequence[str], instruction: str | None) -> list[float]:
        res = self.model.rank(
            query,
            list(docs),
            top_k=len(docs),
            sort=False,
            return_documents=False,
            batch_size=self.batch_size,
            instruction=instruction,
        )
        by_index = {r.index: r.score for r in res}
        return [float(by_index[i]) for i in range(len(docs))]


def jina_windows(n_doc: int, q_len: int, max_length: int) -> list[tuple[int, int]]:
    """jina-reranker-v2's windows: room = max_length - query - 4 specials, overlap
    min(80, room // 4), stride room - overlap, the last window right-aligned."""
    room = max_length - q_len - 4
    if n_doc <= room:
        return [(0, n_doc)]
    overlap = min(80, room // 4)
    spans, start = [], 0
    while start + room < n_doc:
        spans.append((start, start + room))
        start += room - overlap
    spans.append((n_doc - room, n_doc))
    return spans


class CrossEncoderReference:
    name = "sentence-transformers CrossEncoder"

    def __init__(self, model_dir: str, *, device: str, dtype: str, batch_size: int = 32) -> None:
        import torch
        from sentence_transformers import CrossEncoder

        self.batch_size = batch_size
        self.model = CrossEncoder(
            model_dir,
            device=device,
            activation_fn=torch.nn.Identity(),
            model_kwargs={"torch_dtype": _torch_dtype(torch, dtype), "attn_implementation": "sdpa"},
        )
        self.tok = self.model.tokenizer
        limit = getattr(self.model, "max_seq_length", None) or self.tok.model_max_length
        self.max_length = int(limit)

    def _pairs(self, query: str, docs: Sequence[str]) -> tuple[list[tuple[str, str]], list[int]]:
        q_ids = self.tok(query, add_special_tokens=False)["input_ids"][:512]
        q_text = self.tok.decode(q_ids) if len(q_ids) == 512 else query
        pairs: list[tuple[str, str]] = []
        owner: list[int] = []
        for i, d in enumerate(docs):
            d_ids = self.tok(d, add_special_tokens=False)["input_ids"]
            spans = jina_windows(len(d_ids), len(q_ids), self.max_length)
            for a, b in spans:
                pairs.append((q_text, d if len(spans) == 1 else self.tok.decode(d_ids[a:b])))
                owner.append(i)
        return pairs, owner

    def token_counts(self, query: str, docs: Sequence[str], instruction: str | None) -> list[int]:
        q = f"{instruction} {query}" if instruction else query
        pairs, _ = self._pairs(q, docs)
        return [
            len(x)
            for x in self.tok(
                [p[0] for p in pairs],
                [p[1] for p in pairs],
                truncation=True,
                max_length=self.max_length,
            )["input_ids"]
        ]

    def score(self, query: str, docs: Sequence[str], instruction: str | None) -> list[float]:
        q = f"{instruction} {query}" if instruction else query  # ours: instruction_mode="prepend"
        pairs, owner = self._pairs(q, docs)
        raw = self.model.predict(
            pairs, batch_size=self.batch_size, show_progress_bar=False, convert_to_numpy=True
        )
        best = [float("-inf")] * len(docs)
        for i, s in zip(owner, raw, strict=True):
            best[i] = max(best[i], float(s))
        return best


def make_reference(
    fmt: str, model_dir: str, *, device: str, dtype: str, batch_size: int = 32
) -> Any:
    if batch_size != 32:  # the real-vocabulary W3 row: full logits of 8 x 8,000 tokens OOM
        return PlainCausal(model_dir, fmt, device=device, dtype=dtype, batch_size=batch_size)
    if fmt == "cross-encoder":
        return CrossEncoderReference(model_dir, device=device, dtype=dtype)
    if fmt == "mxbai-v2":
        try:
            import mxbai_rerank  # noqa: F401
        except ImportError:
            return PlainCausal(model_dir, fmt, device=device, dtype=dtype)
        try:
            return MxbaiReference(model_dir, device=device, dtype=dtype)
        except Exception:  # e.g. transformers 5: prepare_for_model removed
            return PlainCausal(model_dir, fmt, device=device, dtype=dtype)
    return PlainCausal(model_dir, fmt, device=device, dtype=dtype)
