"""The BM25 first stage is the standard one, checked against an independent computation on
real text (a Medline subset, tests/ir/data/medline-150), and cut at ``k`` in the documented
order (score descending, ties by docid descending), not in bm25s' own order of ties."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from rerank_integrations.cli import main
from rerank_integrations.errors import RerankInputError
from rerank_integrations.ir.first_stage import BM25Settings, bm25_run, document_text
from rerank_integrations.ir.formats import (
    Document,
    Query,
    beir_paths,
    read_corpus,
    read_queries,
    read_run,
)

pytest.importorskip("bm25s")
Stemmer = pytest.importorskip("Stemmer")

MEDLINE = Path(__file__).parent / "data" / "medline-150"


def _analyzer(stemmer: str) -> Callable[[str], list[str]]:
    """The English analyzer, written out: lower case, ``\\w\\w+`` tokens, the English stop
    words (the list bm25s ships), then the Snowball stemmer (PyStemmer) when asked."""
    from bm25s.stopwords import STOPWORDS_EN  # type: ignore[import-untyped]

    stop = set(STOPWORDS_EN)
    stem: Callable[[str], str] = (
        Stemmer.Stemmer("english").stemWord if stemmer == "english" else (lambda w: w)
    )
    pattern = re.compile(r"(?u)\b\w\w+\b")

    def analyze(text: str) -> list[str]:
        return [stem(t) for t in pattern.findall(text.lower()) if t not in stop]

    return analyze


def _reference_bm25(
    corpus: dict[str, Document], query: str, settings: BM25Settings
) -> dict[str, float]:
    """Lucene's BM25, plainly: sum over the query's terms (repeats count) of
    ln(1 + (N - df + 0.5) / (df + 0.5)) * tf / (tf + k1 (1 - b + b dl / avgdl))."""
    analyze = _analyzer(settings.stemmer)
    docs = {d: Counter(analyze(document_text(doc))) for d, doc in corpus.items()}
    n = len(docs)
    avgdl = sum(sum(tf.values()) for tf in docs.values()) / n
    df = Counter(term for tf in docs.values() for term in tf)
    k1, b = settings.k1, settings.b
    scores: dict[str, float] = {}
    for d, tf in docs.items():
        dl = sum(tf.values())
        score = 0.0
        for term in analyze(query):
            if tf[term]:
                idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
                score += idf * tf[term] / (tf[term] + k1 * (1 - b + b * dl / avgdl))
        if score > 0:
            scores[d] = score
    return scores


def _medline() -> tuple[dict[str, Document], dict[str, Query]]:
    paths = beir_paths(MEDLINE)
    return read_corpus(paths.corpus), read_queries(paths.queries)


@pytest.mark.parametrize(
    "settings",
    [BM25Settings(), BM25Settings(stemmer="none"), BM25Settings(k1=0.9, b=0.4)],
    ids=["default", "no-stemmer", "k1-0.9-b-0.4"],
)
def test_bm25_equals_an_independent_computation_on_real_text(settings: BM25Settings) -> None:
    corpus, queries = _medline()
    k = 10
    run = bm25_run(corpus, list(queries.values()), k, settings)
    assert set(run) == set(queries)
    for qid, query in queries.items():
        expected = _reference_bm25(corpus, query.text, settings)
        assert len(expected) > k  # the cut is exercised
        by_docid = sorted(expected.items(), key=lambda item: item[0], reverse=True)
        best = sorted(by_docid, key=lambda item: -item[1])  # ties: docid descending
        got = list(run[qid].items())  # ranked as written: score desc, ties docid desc
        assert [d for d, _ in got] == [d for d, _ in best[:k]], qid
        for doc, score in got:
            assert score == pytest.approx(expected[doc], rel=1e-5, abs=1e-5), (qid, doc)


def test_the_default_analyzer_stems() -> None:
    corpus, queries = _medline()
    stemmed = bm25_run(corpus, [queries["1"]], 1000)["1"]
    plain = bm25_run(corpus, [queries["1"]], 1000, BM25Settings(stemmer="none"))["1"]
    # "lens" also finds "lenses" once stemmed: more candidates than the exact words alone
    assert set(plain) < set(stemmed)
    lenses = [d for d, doc in corpus.items() if "lenses" in document_text(doc).lower().split()]
    assert lenses and all(d in stemmed for d in lenses)


def test_ties_at_the_cut_follow_the_documented_order() -> None:
    # 40 documents with the same text tie; the cut at 5 must keep the 5 greatest docids (the
    # documented order: score descending, ties by docid descending), whatever bm25s returns
    tied = {f"t{i:02d}": Document(f"t{i:02d}", "", "apple orchard") for i in range(40)}
    other = {f"o{i}": Document(f"o{i}", "", f"pear tree number {i}") for i in range(20)}
    best = {"z": Document("z", "", "apple apple orchard apple")}
    corpus = {**tied, **other, **best}
    run = bm25_run(corpus, [Query("q", "apple")], 5)
    assert list(run["q"]) == ["z", "t39", "t38", "t37", "t36"]
    # the tie at the top itself (z is longer, so below them here); no stemmer, other k1, b
    run = bm25_run(corpus, [Query("q", "orchard")], 3, BM25Settings("none", 0.9, 0.4))
    assert list(run["q"]) == ["t39", "t38", "t37"]


def test_a_query_of_stop_words_or_unknown_terms_has_no_candidates() -> None:
    corpus, _ = _medline()
    run = bm25_run(corpus, [Query("a", "the of and"), Query("b", "zzzqqq")], 10)
    assert run == {}


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [({"stemmer": "porter"}, "bm25_stemmer"), ({"k1": -1.0}, "bm25_k1"), ({"b": 1.5}, "bm25_b")],
)
def test_bad_settings_are_input_errors(kwargs: dict[str, object], option: str) -> None:
    with pytest.raises(RerankInputError, match=option):
        BM25Settings(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["--bm25-k1 nan", "--bm25-b 2", "--bm25-k1 -0.5"])
def test_bad_bm25_options_exit_2_before_any_work(
    bad: str, fake_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run.trec"
    argv = f"run --data {MEDLINE} --config {fake_config} -o {out} -q {bad}".split()
    assert main(argv) == 2
    assert "bm25" in capsys.readouterr().err and not out.exists()


def test_run_records_the_first_stage_in_meta_json(fake_config: Path, tmp_path: Path) -> None:
    out, first = tmp_path / "run.trec", tmp_path / "bm25.trec"
    argv = f"run --data {MEDLINE} --config {fake_config} -o {out} --first-stage-k 7 -q"
    argv += f" --first-stage-output {first} --bm25-stemmer none --bm25-k1 0.9 --bm25-b 0.4"
    assert main(argv.split()) == 0
    meta = json.loads(out.with_name(out.name + ".meta.json").read_text(encoding="utf-8"))
    stage = meta["first_stage"]
    assert (stage["method"], stage["stemmer"], stage["k1"], stage["b"], stage["k"]) == (
        "bm25",
        "none",
        0.9,
        0.4,
        7,
    )
    corpus, queries = _medline()
    expected = bm25_run(corpus, list(queries.values()), 7, BM25Settings("none", 0.9, 0.4))
    assert read_run(first) == expected  # the options reach the first stage
    # the defaults: the English stemmer, k1 1.2, b 0.75
    out2 = tmp_path / "run2.trec"
    assert main(f"run --data {MEDLINE} --config {fake_config} -o {out2} -q".split()) == 0
    meta = json.loads(out2.with_name(out2.name + ".meta.json").read_text(encoding="utf-8"))
    stage = meta["first_stage"]
    assert (stage["stemmer"], stage["k1"], stage["b"], stage["k"]) == ("english", 1.2, 0.75, 100)
