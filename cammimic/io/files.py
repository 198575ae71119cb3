"""Files and run directories that appear atomically.

Every file and directory written by cammimic is written under a hidden temporary name next to its
destination and renamed into place, so a failed or interrupted run never leaves a half-written
file or replaces a good one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from cammimic.errors import CammimicError

__all__ = [
    "write_text",
    "atomic_path",
    "output_directory",
    "check_output_directory",
    "sha256",
    "bounded",
    "MAX_RECORDED_CHARS",
]


# --------------------------------------------------------------------------------------------
# Atomic writing
# --------------------------------------------------------------------------------------------


def _prepare_parent(p: Path) -> None:
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise CammimicError(
            f"cannot create the folder for {p}: a parent path is a file; choose another path"
        ) from exc
    except OSError as exc:
        raise CammimicError(f"cannot create the folder for {p} ({exc}); check permissions") from exc


def _temp_file(p: Path) -> Path:
    """Create an empty hidden temp file next to ``p`` keeping its suffix (umask applies)."""
    for _ in range(100):
        tmp = p.with_name(f".{p.stem}.tmp-{secrets.token_hex(4)}{p.suffix}")
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise CammimicError(
                f"cannot write {p} ({exc}); check the folder's permissions"
            ) from exc
        os.close(fd)
        return tmp
    raise CammimicError(f"cannot create a temporary file next to {p}")  # pragma: no cover


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a UTF-8 text file atomically. Returns the path written."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to ``path`` (same suffix); on success it replaces ``path`` in one
    rename, on failure it is removed and ``path`` is left as it was."""
    p = Path(path)
    _prepare_parent(p)
    tmp = _temp_file(p)
    try:
        yield tmp
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


# --------------------------------------------------------------------------------------------
# Output directories
# --------------------------------------------------------------------------------------------


def _real(path) -> Path:
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def check_output_directory(
    path: str | os.PathLike, *, overwrite: bool = False, inputs: Iterable[Any] = ()
) -> Path:
    """Fail early if ``path`` cannot be used as a run's output directory.

    A run replaces its output directory as a whole, so refused are: the filesystem root, the
    current directory or one of its parents, the home directory, a directory holding (at any depth) one of
    ``inputs`` (the files the run reads: paths; other objects are ignored), a file, a dangling
    symbolic link, and a non-empty directory unless ``overwrite``. The first three are refused
    even with ``overwrite``: replacing them would delete the user's files. Returns ``path``.
    """
    text = os.fspath(path)
    p = Path(text)
    if not text.strip():
        raise CammimicError("the output directory is empty; pass a folder name such as -o out/run1")
    real = _real(p)
    if real.parent == real:
        raise CammimicError(
            f"output directory {text} is the filesystem root; cammimic replaces its output "
            "directory as a whole, so pass a new folder such as -o out/run1"
        )
    cwd = _real(os.getcwd())
    if real == cwd or real in cwd.parents or real == _real("~"):
        what = (
            "the current directory"
            if real == cwd
            else "a parent of the current directory"
            if real in cwd.parents
            else "your home directory"
        )
        raise CammimicError(
            f"output directory {text} is {what}; cammimic replaces its output directory as a "
            "whole, so pass a new folder such as -o out/run1"
        )
    for item in inputs:
        if not isinstance(item, (str, os.PathLike)):
            continue
        src = _real(item)
        if src == real or real in src.parents:
            raise CammimicError(
                f"output directory {text} contains the input {os.fspath(item)}, which the run "
                "would delete when it replaces the folder; pass a new folder such as -o out/run1"
            )
    if p.is_symlink() and not p.exists():
        raise CammimicError(
            f"output directory {text} is a symbolic link to {os.readlink(p)}, which does not "
            "exist; remove the link or choose another --output"
        )
    if p.exists():
        if not p.is_dir():
            raise CammimicError(
                f"output directory {text} exists and is a file; choose another --output"
            )
        if not overwrite and any(p.iterdir()):
            raise CammimicError(
                f"output directory {text} already exists and is not empty; "
                f"choose another --output or pass --overwrite"
            )
    return p


def _temp_dir(p: Path, tag: str) -> Path:
    for _ in range(100):
        tmp = p.with_name(f".{p.name}.{tag}-{secrets.token_hex(4)}")
        try:
            os.mkdir(tmp, 0o777)
        except FileExistsError:
            continue
        except OSError as exc:
            raise CammimicError(
                f"cannot create a temporary folder next to {p} ({exc}); check permissions"
            ) from exc
        return tmp
    raise CammimicError(f"cannot create a temporary folder next to {p}")  # pragma: no cover


@contextlib.contextmanager
def output_directory(
    path: str | os.PathLike, *, overwrite: bool = False, inputs: Iterable[Any] = ()
) -> Iterator[Path]:
    """Give a run a fresh directory that replaces ``path`` only if the run succeeds.

    Checks ``path`` first (see :func:`check_output_directory`; ``inputs`` as there), then yields a new hidden
    temporary directory next to it. On normal exit the temporary directory is moved into place:
    an existing ``path`` is renamed aside, the new one renamed in, the old one deleted. On an
    exception (including KeyboardInterrupt) the temporary directory is deleted, ``path`` is left
    exactly as it was, and the exception propagates.
    """
    inputs = list(inputs)
    check_output_directory(path, overwrite=overwrite, inputs=inputs)
    p = Path(os.path.abspath(os.fspath(path)))
    _prepare_parent(p)
    tmp = _temp_dir(p, "tmp")
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # success: move into place
    old: Path | None = None
    try:
        if os.path.lexists(p):
            if not p.is_dir():
                raise CammimicError(
                    f"output directory {p} became a file during the run; results kept in {tmp}"
                )
            if p.is_symlink() or any(p.iterdir()):
                if not overwrite and not p.is_symlink():
                    raise CammimicError(
                        f"output directory {p} was filled by something else during the run; "
                        f"results kept in {tmp}"
                    )
                # a link to a directory is replaced by the results; its target is left alone
                old = p.with_name(f".{p.name}.old-{secrets.token_hex(4)}")
                os.rename(p, old)
            else:
                os.rmdir(p)
        try:
            os.rename(tmp, p)
        except OSError:
            if old is not None:
                os.rename(old, p)
            raise
    except OSError as exc:
        raise CammimicError(
            f"could not move the results into {p} ({exc}); they are kept in {tmp}"
        ) from exc
    if old is not None:
        if old.is_symlink():
            old.unlink()
        else:
            shutil.rmtree(old, ignore_errors=True)


def sha256(path) -> str | None:
    """The SHA-256 hex digest of a file, read in 1 MiB blocks; None if it cannot be read (or is
    not a regular file: a FIFO would block the read forever)."""
    try:
        if not Path(path).is_file():
            return None
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    except OSError:
        return None


#: The longest text a record (run.json, report.html, a LoRA file's extra metadata) keeps whole.
MAX_RECORDED_CHARS = 4000


def bounded(value: Any, limit: int = MAX_RECORDED_CHARS) -> Any:
    """``value`` (JSON-like: dicts, lists, strings) with every string longer than ``limit`` cut to
    ``limit`` characters and a note of its length and SHA-256, so a 50 MB prompt or LoRA metadata
    is recorded as 4,000 characters that still identify it."""
    if isinstance(value, str):
        if len(value) <= limit:
            return value
        digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{value[:limit]}…(truncated; {len(value)} chars, sha256 {digest})"
    if isinstance(value, dict):
        return {bounded(k, limit): bounded(v, limit) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [bounded(v, limit) for v in value]
    return value
