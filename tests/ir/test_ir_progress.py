"""The progress bar: its text, and that it appears only on a terminal (a real pty) without
``--quiet``."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from rerank_integrations.ir.progress import (
    ProgressBar,
    format_duration,
    render_progress,
    should_show,
)


def test_render_progress() -> None:
    line = render_progress(12, 50, 1532, 10.0)
    assert line.startswith("12/50 queries [#####")
    assert " 24% | 153.2 docs/s | ETA 0:32" in line  # 38 left at 12 per 10 s
    assert render_progress(50, 50, 10, 65.0).endswith("done in 1:05")
    assert render_progress(0, 3, 0, 0.0).endswith("ETA ?")
    # a resumed run: 40 were done before; the rate and ETA are this process's own
    assert "ETA 0:10" in render_progress(45, 50, 100, 10.0, done_before=40)
    assert format_duration(3725) == "1:02:05"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_draws_only_when_enabled() -> None:
    now = [0.0]
    stream = _Tty()
    bar = ProgressBar(3, stream, enabled=True, clock=lambda: now[0])
    now[0] = 0.05
    bar.update(docs=10)  # 0.05 s after the first draw: throttled
    now[0] = 0.5
    bar.update(docs=10)
    now[0] = 0.55
    bar.update(docs=10)  # the last one is always drawn
    bar.close()  # already on screen: only the newline
    text = stream.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n")
    assert "0/3 queries" in text and "2/3 queries" in text and "1/3 queries" not in text
    assert "3/3 queries [########################] 100% | 54.5 docs/s | done in 0:01" in text
    quiet = io.StringIO()
    bar = ProgressBar(3, quiet, enabled=False)
    bar.update(docs=1)
    bar.close()
    assert quiet.getvalue() == ""
    assert should_show(_Tty(), quiet=False) and not should_show(_Tty(), quiet=True)
    assert not should_show(io.StringIO(), quiet=False)


def _run_cli(args: list[str], *, tty: bool) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "rerank_integrations", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if not tty:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
        return out.returncode, out.stderr
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave, env=env
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=120), b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.parametrize(
    ("tty", "quiet", "shown"), [(True, False, True), (False, False, False), (True, True, False)]
)
def test_progress_bar_only_on_a_terminal(
    beir_dir: Path, fake_config: Path, tmp_path: Path, tty: bool, quiet: bool, shown: bool
) -> None:
    cmd = f"run --data {beir_dir} --config {fake_config} -o {tmp_path / 'o.trec'} --first-stage-k 5"
    rc, stderr = _run_cli(cmd.split() + ["--quiet"] * quiet, tty=tty)
    assert rc == 0, stderr
    assert ("4/4 queries [" in stderr) is shown, stderr
    assert ("docs/s" in stderr) is (not quiet), stderr  # the summary line stays without -q
    assert "Traceback" not in stderr
