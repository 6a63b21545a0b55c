"""Writing files so that a crash never leaves a half-written one: checkpoints and the classifier use these.

* :func:`write_file_atomically` writes ``NAME`` through a temporary file in the same folder and one rename.
* :func:`write_folder_atomically` writes a whole folder beside the old one (``NAME.partial-…``) and swaps it
  in with two renames; at every moment either ``NAME`` or ``NAME.previous`` is complete, and
  :func:`complete_folder` says which to read.
* :func:`fresh_folder` makes a private folder for one request's files and clears out old ones.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a rename durable (best effort: some file systems refuse to fsync a folder)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def write_file_atomically(path: str | Path, write: Callable[[Path], object], durable: bool = True) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    ``durable`` also flushes the file and the rename to disk (a checkpoint must survive a power cut); a cache
    that is only ever read whole, never after a reboot, can skip those two fsyncs (about 0.5 ms here).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        if durable:
            _fsync_file(tmp)
        tmp.chmod(0o644)
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_folder_atomically(directory: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(partial)`` on an empty folder beside ``directory``, then swap it in as ``directory``."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    for stale in directory.parent.glob(directory.name + ".partial-*"):  # left by a save that was killed
        shutil.rmtree(stale, ignore_errors=True)
    partial = Path(tempfile.mkdtemp(prefix=directory.name + ".partial-", dir=directory.parent))
    try:
        write(partial)
        for f in partial.iterdir():
            _fsync_file(f)
            f.chmod(0o644)
        partial.chmod(0o755)
        previous = directory.with_name(directory.name + ".previous")
        if directory.exists():
            # NAME is complete, so an older NAME.previous is no longer needed; NAME becomes the fallback
            if previous.exists():
                shutil.rmtree(previous)
            os.replace(directory, previous)
        # else: NAME.previous (if any) is the only complete copy and stays until the new NAME is in place
        os.replace(partial, directory)
        fsync_dir(directory.parent)
        shutil.rmtree(previous, ignore_errors=True)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return directory


def complete_folder(directory: str | Path) -> Path:
    """The folder to read: ``directory``, or its ``.previous`` copy if a save was cut off mid-swap."""
    directory = Path(directory)
    previous = directory.with_name(directory.name + ".previous")
    if not directory.exists() and previous.is_dir():
        return previous
    return directory


def fresh_folder(parent: str | Path, max_age_s: float, keep: str | Path | Iterable[str | Path] | None = None) -> Path:
    """A new, uniquely named folder under ``parent`` for one request's files.

    Folders under ``parent`` older than ``max_age_s`` are deleted first, so a long-running server does not fill
    its disk; ``keep`` (one folder or a collection of them: say, every folder a session's model was loaded
    from) is spared, and so is any folder that holds one of them.
    """
    parent = Path(parent)
    if parent.is_dir():
        kept = _resolved(keep)
        cutoff = time.time() - max_age_s
        for folder in parent.iterdir():
            try:
                if folder.is_dir() and folder.stat().st_mtime < cutoff and not _holds(folder, kept):
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:  # another request removed it first
                continue
    folder = parent / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    return folder


def _resolved(keep: str | Path | Iterable[str | Path] | None) -> frozenset[str]:
    """``keep`` as a set of real paths; a single path (str or Path) counts as one folder, not as characters.

    ``os.path.realpath`` rather than ``Path.resolve``: it never raises, even on a symlink loop.
    """
    if keep is None:
        return frozenset()
    folders = [keep] if isinstance(keep, (str, os.PathLike)) else list(keep)
    return frozenset(os.path.realpath(f) for f in folders if f is not None and os.fspath(f) != "")


def _holds(folder: Path, kept: frozenset[str]) -> bool:
    """True if ``folder`` is one of ``kept`` or contains one (a model loaded from a subfolder of a request's)."""
    real = os.path.realpath(folder)
    return any(k == real or k.startswith(real.rstrip(os.sep) + os.sep) for k in kept)
