"""Deterministic multilingual benchmark workloads with token lengths set by the model's tokenizer.

- W1 "RAG": 1 query + instruction, 100 documents, token lengths log-normal (median 200,
  sigma 0.9, clipped to [16, 2000]) -> a tail reaching ~2,000 tokens.
- W2 "uniform": 64 documents x 512 tokens.
- W3 "long": 8 documents x 8,000 tokens.
- W4 "concurrent": 16 W1 draws (seeds seed..seed+15, so no two calls are identical) sent as
  concurrent ``arerank`` calls vs the same calls one after another.

Text is random words from a list in several languages and scripts (Latin, Cyrillic, Greek,
Arabic, Devanagari, CJK), so the tokenizer sees realistic mixed input. Lengths are exact in
document tokens (``len(tokenizer.encode(doc, add_special_tokens=False))``) up to +-2 tokens at
the cut point. Everything is a pure function of (tokenizer, seed): ``random.Random`` only.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "W1_MEDIAN",
    "Workload",
    "corpus_lines",
    "make_workload",
    "token_lengths_w1",
]

W1_MEDIAN = 200
W1_SIGMA = 0.9
W1_MAX = 2000
W1_MIN = 16

_WORDS: dict[str, str] = {
    "en": "the retrieval model ranks documents by relevance to a query and the answer depends on "
    "context evidence source policy report market energy climate water health research "
    "system data network city river history language school budget court contract",
    "de": "die Suche findet Dokumente nach Relevanz und der Bericht zeigt Energie Wasser "
    "Gesundheit Forschung Stadt Geschichte Sprache Vertrag Gericht Haushalt Netzwerk",
    "fr": "le modèle classe les documents selon leur pertinence pour une requête et la réponse "
    "dépend du contexte rapport marché énergie climat santé recherche ville histoire",
    "es": "el sistema ordena los documentos según su relevancia para la consulta y la respuesta "
    "depende del contexto informe mercado energía clima salud investigación ciudad",
    "ru": "модель ранжирует документы по релевантности запросу и ответ зависит от контекста "
    "отчёт рынок энергия климат здоровье исследование город история язык договор",
    "el": "το μοντέλο ταξινομεί τα έγγραφα με βάση τη συνάφεια με το ερώτημα και η απάντηση "
    "εξαρτάται από το πλαίσιο έκθεση αγορά ενέργεια κλίμα υγεία έρευνα πόλη",
    "ar": "يقوم النموذج بترتيب المستندات حسب صلتها بالاستعلام والإجابة تعتمد على السياق تقرير "
    "السوق الطاقة المناخ الصحة البحث المدينة التاريخ اللغة العقد",
    "hi": "मॉडल प्रश्न के अनुसार दस्तावेज़ों को क्रमबद्ध करता है और उत्तर संदर्भ पर निर्भर "
    "करता है रिपोर्ट बाजार ऊर्जा जलवायु स्वास्थ्य शोध शहर इतिहास भाषा",
    "zh": "模型 根据 相关性 对 文档 进行 排序 答案 取决于 上下文 报告 市场 能源 气候 健康 "
    "研究 城市 历史 语言 合同 法院 预算 网络 数据 系统",
    "ja": "モデル は クエリ との 関連性 で 文書 を 並べ替え 回答 は 文脈 に 依存 する 報告書 市場 "
    "エネルギー 気候 健康 研究 都市 歴史 言語 契約",
}
_PUNCT = [".", ",", ";", ":", "?", "!", " -", ".\n", "?\n", "\n\n"]
_QUERIES = [
    "What does the report say about {a} and {b}?",
    "Wie hängen {a} und {b} zusammen?",
    "¿Qué relación hay entre {a} y {b}?",
    "Как связаны {a} и {b}?",
    "{a} 和 {b} 有什么关系？",  # noqa: RUF001
]
INSTRUCTION = "Prefer recent, primary sources; answer in the language of the query."


def _vocab() -> list[list[str]]:
    return [text.split() for text in _WORDS.values()]


def corpus_lines(n: int = 400, seed: int = 12345) -> list[str]:
    """Training text for the benchmark tokenizers (same word list as the workloads)."""
    rng = random.Random(seed)
    return [_sentence_run(rng, 60) for _ in range(n)]


def _sentence_run(rng: random.Random, n_words: int) -> str:
    langs = _vocab()
    parts: list[str] = []
    words = rng.choice(langs)
    for i in range(n_words):
        if i % 12 == 0:  # switch language every sentence or so
            words = rng.choice(langs)
        parts.append(rng.choice(words))
        if rng.random() < 0.12:
            parts[-1] += rng.choice(_PUNCT)
    return " ".join(parts)


class _Tok(Protocol):
    def encode(self, text: str, add_special_tokens: bool = ...) -> Any: ...


def _ids_and_offsets(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]


def text_with_tokens(tokenizer: Any, rng: random.Random, n_tokens: int) -> str:
    """Random multilingual text of ~``n_tokens`` tokens (exact up to the cut's re-merge)."""
    n_words = max(4, n_tokens // 2)
    while True:
        text = _sentence_run(rng, n_words)
        ids, offsets = _ids_and_offsets(tokenizer, text)
        if len(ids) > n_tokens + 8:
            break
        n_words *= 2
    end = offsets[n_tokens - 1][1]
    cut = text[:end].rstrip()
    # re-encoding can merge across the cut: trim/extend a little to land on n_tokens (+-2)
    for _ in range(8):
        got = len(tokenizer(cut, add_special_tokens=False)["input_ids"])
        if abs(got - n_tokens) <= 1:
            break
        if got > n_tokens:
            end = offsets[max(0, n_tokens - 1 - (got - n_tokens))][1]
        else:
            end = offsets[min(len(offsets) - 1, n_tokens - 1 + (n_tokens - got))][1]
        cut = text[:end].rstrip()
    return cut


def token_lengths_w1(seed: int, n: int = 100) -> list[int]:
    """Stratified log-normal draw: the n quantiles at (i + 0.5) / n (median exactly 200, the
    top one ~2,000 for n = 100), shuffled by the seed. Clipped to [16, 2000]."""
    rng = random.Random(seed * 7919 + 1)
    mu = math.log(W1_MEDIAN)
    nd = statistics.NormalDist(mu, W1_SIGMA)
    lengths = [
        int(min(W1_MAX, max(W1_MIN, round(math.exp(nd.inv_cdf((i + 0.5) / n)))))) for i in range(n)
    ]
    rng.shuffle(lengths)
    return lengths


@dataclass(frozen=True)
class Workload:
    name: str
    query: str
    documents: tuple[str, ...]
    instruction: str | None
    target_lengths: tuple[int, ...]

    @property
    def n_docs(self) -> int:
        return len(self.documents)


def _query(rng: random.Random) -> str:
    words = [w for ws in _vocab() for w in ws]
    return rng.choice(_QUERIES).format(a=rng.choice(words), b=rng.choice(words))


def make_workload(name: str, tokenizer: Any, seed: int = 0) -> Workload:
    """``name`` in W1, W2, W3 (W4 = ``[make_workload("W1", tok, seed + i) for i in range(16)]``).
    ``tokenizer`` is a transformers fast tokenizer (the model's)."""
    rng = random.Random(f"{name}:{seed}")
    if name == "W1":
        lengths = token_lengths_w1(seed)
        instruction: str | None = INSTRUCTION
    elif name == "W2":
        lengths, instruction = [512] * 64, None
    elif name == "W3":
        lengths, instruction = [8000] * 8, None
    else:
        raise ValueError(f"unknown workload {name!r}")
    query = _query(rng)
    docs = tuple(text_with_tokens(tokenizer, rng, n) for n in lengths)
    return Workload(name, query, docs, instruction, tuple(lengths))


def w4_workloads(tokenizer: Any, seed: int = 0, n: int = 16) -> list[Workload]:
    return [make_workload("W1", tokenizer, seed + 1 + i) for i in range(n)]
