"""Where ``run`` and ``eval`` write: never over one of their inputs, never half a file.

- :func:`check_outputs` compares every path a command will write with every path it reads
  (and with each other) by file identity, before anything is written: an existing file by
  device and inode (so a symlink or a hard link to an input IS that input), a path that does
  not exist yet by its resolved absolute form. A clash is a
  :class:`~rerank_integrations.errors.RerankInputError` naming both paths.
- :func:`replacing`, :func:`write_text` and :func:`write_bytes` write a whole file through a
  temporary file in the destination's folder (``.<name>.<random>.tmp``, created exclusively,
  so it is never an existing file), flushed to disk, then renamed over the destination in one
  step: a crash or a full disk leaves the old file or the complete new one, never a mix. The
  temporary file is removed when the write fails; only a hard kill can leave one behind (it is
  never read). When the destination is a symlink, the file it points to is replaced and the
  link kept; an existing destination keeps its permission bits.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, Any, TextIO, cast

from rerank_integrations.errors import RerankInputError

__all__ = ["check_outputs", "file_identity", "replacing", "write_bytes", "write_text"]

PathArg = str | os.PathLike[str]


def file_identity(path: PathArg) -> tuple[object, ...]:
    """What makes two paths the same file: ``(device, inode)`` for an existing file (links
    followed), else the resolved absolute path."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):  # does not exist (yet), or cannot be a file name
        try:
            return ("path", os.path.realpath(path))
        except (OSError, ValueError):
            return ("path", os.path.abspath(path))
    return ("file", info.st_dev, info.st_ino)


def check_outputs(
    inputs: Iterable[tuple[str, PathArg]], outputs: Iterable[tuple[str, PathArg]]
) -> None:
    """Raise :class:`RerankInputError` when an output is one of the inputs, or two outputs
    are one file. Each item is ``(label, path)``, the label as the user wrote the option
    (e.g. ``"--candidates"``); the error names both labels and paths."""
    read: dict[tuple[object, ...], tuple[str, str]] = {}
    for label, path in inputs:
        read.setdefault(file_identity(path), (label, os.fspath(path)))
    written: dict[tuple[object, ...], tuple[str, str]] = {}
    for label, path in outputs:
        key = file_identity(path)
        if key in read:
            in_label, in_path = read[key]
            raise RerankInputError(
                label,
                f"{os.fspath(path)} is the same file as the input {in_label} {in_path}; "
                "an input is never overwritten: choose another output path",
            )
        if key in written:
            other_label, other_path = written[key]
            raise RerankInputError(
                label,
                f"{os.fspath(path)} is the same file as the output {other_label} {other_path}; "
                "choose another output path",
            )
        written[key] = (label, os.fspath(path))


# --------------------------------------------------------------------------------- writing


def _destination(path: PathArg) -> Path:
    target = Path(os.path.realpath(path))  # a symlink's target is replaced, the link stays
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _create_temp(target: Path) -> tuple[int, Path]:
    """A new file next to ``target``, created exclusively (never an existing file)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(temp, flags, 0o666), temp
        except FileExistsError:
            continue


def _commit(temp: Path, target: Path) -> None:
    with contextlib.suppress(OSError):  # keep the permission bits of the file replaced
        os.chmod(temp, stat.S_IMODE(os.stat(target).st_mode))
    os.replace(temp, target)
    try:  # make the rename itself durable (POSIX); a folder cannot be opened everywhere
        folder = os.open(target.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(folder)
    except OSError:
        pass
    finally:
        os.close(folder)


def _discard(temp: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(temp)


@contextmanager
def _atomic(path: PathArg, mode: str) -> Iterator[IO[Any]]:
    """The yielded file is a fresh temporary one beside ``path``, flushed to disk and renamed
    over it when the block ends without an exception (folders are created), else deleted."""
    target = _destination(path)
    fd, temp = _create_temp(target)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        _commit(temp, target)
    except BaseException:
        _discard(temp)
        raise


def replacing(path: PathArg) -> AbstractContextManager[TextIO]:
    """Write UTF-8 text to ``path`` atomically (:func:`_atomic`)."""
    return cast(AbstractContextManager[TextIO], _atomic(path, "w"))


def write_text(path: PathArg, text: str) -> None:
    """``path`` holds ``text`` (UTF-8), replaced atomically."""
    with replacing(path) as fh:
        fh.write(text)


def write_bytes(path: PathArg, data: bytes) -> None:
    """``path`` holds ``data``, replaced atomically."""
    with _atomic(path, "wb") as fh:
        fh.write(data)
