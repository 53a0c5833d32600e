"""The ``run``/``eval``/``rerank`` commands under careless or hostile files (docs/reliability.md,
"Command line").

- An output that is one of the inputs (the same path, a symlink or a hard link to it, the
  run's sidecar) is refused with exit 2 before anything is written: every file in the folder
  is byte-identical afterwards and none was created.
- A write that fails midway (a full disk, simulated with ``RLIMIT_FSIZE`` in a subprocess, or
  a writer that raises) leaves the old file or the complete new one, and no temporary file; a
  temporary file never lands on an existing file (an input named ``<output>.tmp`` survives).
- A JSON line nested 100,000 deep or holding a 5,000-digit integer, on ``rerank``'s stdin or
  in a ``run`` input, exits 2 with ``<file>:<line>: <reason>`` and no traceback.

Everything runs on a 6-document BEIR folder written here and the in-tree FakeReranker.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from rerank_integrations.cli import main
from rerank_integrations.ir import formats
from rerank_integrations.ir.bulk import meta_path
from rerank_integrations.ir.formats import read_run, write_run

DOCS = [
    ("d0", "Paris", "Paris is the capital of France."),
    ("d1", "Berlin", "Berlin is the capital of Germany."),
    ("d2", "Bread", "Knead flour, water and yeast, then bake the bread."),
    ("d3", "Tea", "Green tea holds antioxidants."),
    ("d4", "Coffee", "Coffee and tea are drinks rich in antioxidants."),
    ("d5", "Dogs", "A lazy dog sleeps all day."),
]
QUERIES = [("q1", "capital of France"), ("q2", "bake bread"), ("q3", "tea antioxidants")]
CANDIDATES = "".join(
    f"{qid} Q0 d{d} {rank} {10 - rank}.0 first\n"
    for qid, docs in [("q1", (0, 1, 5)), ("q2", (2, 4, 5)), ("q3", (3, 4, 0))]
    for rank, d in enumerate(docs, start=1)
)
DEEP = "[" * 100_000 + "]" * 100_000
HUGE = "7" * 5_000
DEEPLY = "nested too deeply"
DIGITS = "an integer of more than 4300 digits"


def _beir(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": d, "title": t, "text": x}) + "\n" for d, t, x in DOCS),
        encoding="utf-8",
    )
    (root / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in QUERIES), encoding="utf-8"
    )
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td0\t1\nq2\td2\t1\nq3\td3\t1\n", encoding="utf-8"
    )
    return root


def _config(path: Path, *, padding: int = 0) -> Path:
    """A FakeReranker config; ``padding`` unused score entries make its sidecar bigger."""
    scores = {f"{t} {x}": float(i) for i, (_, t, x) in enumerate(DOCS)}
    scores.update({f"unused text number {i}": 0.0 for i in range(padding)})
    config = {"backend": "rerank_integrations._testing:FakeReranker", "scores": scores}
    path.write_text(json.dumps({**config, "model": "fake-reranker"}), encoding="utf-8")
    return path


@pytest.fixture
def work(tmp_path: Path) -> dict[str, Path]:
    """A folder with the data, a candidate run, a config, and links to the candidates."""
    cands = tmp_path / "cands.trec"
    cands.write_text(CANDIDATES, encoding="utf-8")
    (tmp_path / "link.trec").symlink_to(cands)
    os.link(cands, tmp_path / "hard.trec")
    return {
        "tmp": tmp_path,
        "data": _beir(tmp_path / "data"),
        "cands": cands,
        "config": _config(tmp_path / "fake.json"),
    }


def _snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every entry under ``folder``: a file's bytes, a link's target."""
    out: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_symlink():
            out[name] = os.readlink(path)
        elif path.is_file():
            out[name] = path.read_bytes()
    return out


def _temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp"))


# ------------------------------------------------------------------ an output is never an input


@pytest.mark.parametrize(
    ("argv", "output", "clash"),
    [
        # the case: with --overwrite the candidates became the in-progress output
        ("--candidates {cands} -o {cands} --overwrite", "--output", "the input --candidates"),
        ("--candidates {cands} -o {tmp}/link.trec --overwrite", "--output", "--candidates"),
        ("--candidates {cands} -o {tmp}/hard.trec --overwrite", "--output", "--candidates"),
        ("--candidates {tmp}/link.trec -o {cands} --overwrite", "--output", "--candidates"),
        ("-o {data}/corpus.jsonl --overwrite", "--output", "the input --data corpus"),
        ("-o {data}/./qrels/test.tsv --overwrite", "--output", "the input --data qrels"),
        ("-o {tmp}/o.trec --first-stage-output {data}/queries.jsonl", "--first-stage-output",
         "the input --data queries"),
        ("-o {config} --overwrite", "--output", "the input --config"),
        ("--candidates {tmp}/o.trec.meta.json -o {tmp}/o.trec", "--output sidecar",
         "the input --candidates"),
        ("--qrels {tmp}/hard.trec -o {cands}", "--output", "the input --qrels"),
        ("-o {tmp}/o.trec --first-stage-output {tmp}/./o.trec", "--first-stage-output",
         "the output --output"),
    ],
)  # fmt: skip
def test_run_refuses_an_output_that_is_an_input_before_writing_anything(
    work: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    argv: str,
    output: str,
    clash: str,
) -> None:
    if "o.trec.meta.json" in argv:
        (work["tmp"] / "o.trec.meta.json").write_text(CANDIDATES, encoding="utf-8")
    before = _snapshot(work["tmp"])
    args = argv.format(**{k: str(v) for k, v in work.items()}).split()
    assert main(["run", "--data", str(work["data"]), "--config", str(work["config"]), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {output}: ") and "is the same file as" in err, err
    assert clash in err
    assert _snapshot(work["tmp"]) == before  # inputs byte-identical, nothing created


def test_eval_refuses_a_plot_or_a_kept_run_over_an_input(
    work: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    data, cands = str(work["data"]), work["cands"]
    os.link(cands, work["tmp"] / "cands.png")  # a chart's name, a run's bytes
    before = _snapshot(work["tmp"])
    assert main(["eval", "--data", data, str(cands), "--plot", str(work["tmp"] / "cands.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --plot: ") and "the input run file" in err
    # a format matplotlib cannot write fails before the evaluation, not after it
    assert main(["eval", "--data", data, str(cands), "--plot", str(work["tmp"] / "c.trec")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --plot: ") and "no chart format 'trec'" in err
    # --runs-dir keeps the first stage as <runs-dir>/<candidates' name>.trec: here, the input
    argv = ["eval", "--data", data, "--candidates", str(cands), "--config", str(work["config"])]
    assert main([*argv, "--runs-dir", str(work["tmp"]), "-q"]) == 2
    err = capsys.readouterr().err
    assert "error: --runs-dir: " in err and "the input --candidates" in err
    assert _snapshot(work["tmp"]) == before


def test_file_identity_follows_links_and_resolves_new_paths(tmp_path: Path) -> None:
    from rerank_integrations.ir.outputs import file_identity

    real = tmp_path / "real"
    real.write_text("x", encoding="utf-8")
    (tmp_path / "sym").symlink_to(real)
    os.link(real, tmp_path / "hard")
    (tmp_path / "sub").mkdir()
    ids = {file_identity(tmp_path / n) for n in ("real", "sym", "hard", "sub/../real")}
    assert len(ids) == 1
    assert file_identity(tmp_path / "new") == file_identity(tmp_path / "sub" / ".." / "new")
    assert file_identity(tmp_path / "new") != file_identity(tmp_path / "other")


# ------------------------------------------------------------------ old file or complete new one


def test_a_temporary_file_never_lands_on_an_existing_file(
    work: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cands = work["tmp"] / "out.trec.tmp"  # the name a fixed "<output>.tmp" scheme would use
    cands.write_text(CANDIDATES, encoding="utf-8")
    out = work["tmp"] / "out.trec"
    argv = ["run", "--data", str(work["data"]), "--config", str(work["config"])]
    assert main([*argv, "--candidates", str(cands), "-o", str(out), "-q"]) == 0
    assert cands.read_text(encoding="utf-8") == CANDIDATES
    assert list(read_run(out)) == ["q1", "q2", "q3"]
    assert _temp_files(work["tmp"]) == ["out.trec.tmp"]  # only the input


def _fail_on_call(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """The run writer raises ENOSPC on its ``n``-th block, as a full disk would."""
    real = formats.format_run_block
    calls = 0

    def flaky(*args: object, **kwargs: object) -> str:
        nonlocal calls
        calls += 1
        if calls == n:
            raise OSError(errno.ENOSPC, "No space left on device (simulated)")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(formats, "format_run_block", flaky)


def test_write_run_that_fails_midway_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "run.trec"
    write_run(path, {"q1": {"a": 1.0}}, "old")
    old = path.read_bytes()
    _fail_on_call(monkeypatch, 2)
    with pytest.raises(OSError, match="simulated"):
        write_run(path, {"q1": {"a": 2.0}, "q2": {"b": 1.0}, "q3": {"c": 1.0}}, "new")
    assert path.read_bytes() == old
    assert _temp_files(tmp_path) == []


def test_interrupted_final_rewrite_keeps_the_resumable_file(
    work: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["run", "--data", str(work["data"]), "--config", str(work["config"]), "-q"]
    whole, out = work["tmp"] / "whole.trec", work["tmp"] / "run.trec"
    assert main([*base, "-o", str(whole)]) == 0
    with monkeypatch.context() as m:
        # the start rewrite keeps no block (a fresh output), so call 2 is in the final one
        _fail_on_call(m, 2)
        assert main([*base, "-o", str(out)]) == 1
    assert "error: [Errno 28] No space left on device (simulated)" in capsys.readouterr().err
    # the in-progress file, intact: every query complete, in completion order
    assert read_run(out) == read_run(whole)
    assert _temp_files(work["tmp"]) == []
    assert main([*base, "-o", str(out)]) == 0  # resumed: nothing left to rerank
    assert out.read_bytes() == whole.read_bytes()


def _limited(argv: list[str], max_file_bytes: int) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess that cannot grow any file past ``max_file_bytes`` (EFBIG):
    a disk that fills up in the middle of a write."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    return subprocess.run(
        [sys.executable, "-m", "rerank_integrations", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )


def test_a_full_disk_while_writing_the_sidecar_keeps_the_old_one(
    work: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["run", "--data", str(work["data"]), "-o", str(work["tmp"] / "run.trec"), "-q"]
    out, sidecar = work["tmp"] / "run.trec", meta_path(work["tmp"] / "run.trec")
    assert main([*base, "--config", str(work["config"])]) == 0
    old_run, old_meta = out.read_bytes(), sidecar.read_bytes()
    big = _config(work["tmp"] / "big.json", padding=2_000)  # its sidecar is ~60 KB
    done = _limited([*base, "--config", str(big), "--overwrite"], 16_384)
    assert done.returncode == 1 and "File too large" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert sidecar.read_bytes() == old_meta  # not 16 KB of a new one
    assert _temp_files(work["tmp"]) == []
    # the output was started over BEFORE the sidecar: no old block can pass for a new one,
    # and the old command resumes into the same file as before
    assert main([*base, "--config", str(work["config"])]) == 0
    assert out.read_bytes() == old_run


def test_a_full_disk_while_writing_the_chart_keeps_the_old_one(work: dict[str, Path]) -> None:
    pytest.importorskip("ir_measures")
    pytest.importorskip("matplotlib.font_manager")  # its font cache is built here, unlimited
    plot = work["tmp"] / "eval.png"
    plot.write_bytes(b"the previous chart")
    argv = ["eval", "--data", str(work["data"]), str(work["cands"]), "--plot", str(plot), "-q"]
    done = _limited(argv, 4_096)  # the chart is ~30 KB
    assert done.returncode == 1 and "File too large" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert plot.read_bytes() == b"the previous chart"
    assert _temp_files(work["tmp"]) == []


# ------------------------------------------------------------------ hostile JSON lines


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"text": "b", "metadata": ' + DEEP + "}", f"not valid JSON ({DEEPLY})"),
        ('{"text": "b", "metadata": {"n": ' + HUGE + "}}", f"not valid JSON ({DIGITS}"),
    ],
    ids=["nested-100000-deep", "integer-of-5000-digits"],
)
def test_rerank_stdin_hostile_json_line_exits_2_naming_the_line(line: str, reason: str) -> None:
    cli = [sys.executable, "-m", "rerank_integrations", "rerank"]
    done = subprocess.run(
        [*cli, "--model", "/no/model", "--query", "q"],
        input=f'{{"text": "a"}}\n{line}\n',
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-500:]
    assert done.stderr.startswith("error: line 2: ") and reason in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr) < 500


@pytest.mark.parametrize(
    ("target", "line", "reason"),
    [
        ("corpus.jsonl", '{"_id": "dX", "text": "x", "metadata": ' + DEEP + "}", DEEPLY),
        ("corpus.jsonl", '{"_id": ' + HUGE + ', "text": "x"}', DIGITS),
        ("queries.jsonl", '{"_id": "qX", "text": ' + DEEP + "}", DEEPLY),
        ("queries.jsonl", '{"_id": "qX", "text": "x", "n": -' + HUGE + "}", DIGITS),
    ],
)  # fmt: skip
def test_run_hostile_json_line_exits_2_naming_file_and_line(
    work: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    target: str,
    line: str,
    reason: str,
) -> None:
    path = work["data"] / target
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([lines[0], line, *lines[1:]]) + "\n", encoding="utf-8")
    out = work["tmp"] / "o.trec"
    assert main(["run", "--data", str(work["data"]), "--model", "/no/model", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}:2: not valid JSON (") and reason in err
    assert len(err) < 500 and not out.exists()


@pytest.mark.parametrize("body", [DEEP, '{"backend": "local", "n": ' + HUGE + "}"])
def test_run_hostile_config_exits_2_naming_the_file(
    work: dict[str, Path], capsys: pytest.CaptureFixture[str], body: str
) -> None:
    config = work["tmp"] / "hostile.json"
    config.write_text(body, encoding="utf-8")
    out = work["tmp"] / "o.trec"
    assert main(["run", "--data", str(work["data"]), "--config", str(config), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {config}: not valid JSON (") and len(err) < 500
    assert not out.exists()
