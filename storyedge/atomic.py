"""One way to (re)write a whole directory, and one to (re)write a file, atomically.

:func:`atomic_directory` yields an empty temporary sibling ``NAME.tmp-<pid>`` of the target
``NAME``; when the block ends without an exception, every file in it is fsynced, an existing
``NAME`` is renamed out of the way to ``NAME.old-<pid>``, the new directory is renamed to ``NAME``
and the old one is removed. A crash at any point leaves either the old or the new complete
directory: ``NAME`` itself, or — only between the two renames — the old one as ``NAME.old-<pid>``
(:func:`displaced` finds it; the run directory's bundle loader falls back to it). An exception
inside the block removes the temporary directory and leaves ``NAME`` untouched.

Used by the exporter (``OUT``), the training bundle (``best/``) and the synthetic dataset writer.
:func:`atomic_write` does the same for one file (``manifest.json``, ``history.json``,
``summary.json``, the bench reports): a reader never sees it half-written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

#: Infix of the directory being built (``NAME.tmp-<token>``).
TMP_INFIX = "tmp"
#: Infix of the replaced directory while the new one is renamed in (``NAME.old-<token>``).
OLD_INFIX = "old"


def sibling(final: Path, infix: str, token: str | None = None) -> Path:
    """``final.parent / "NAME.<infix>-<token>"`` (token: this process id by default)."""
    return final.parent / f"{final.name}.{infix}-{token if token is not None else os.getpid()}"


def displaced(final: str | Path) -> list[Path]:
    """Old versions of ``final`` left by a crash between the two renames, newest first."""
    final = Path(final)
    found = [p for p in final.parent.glob(f"{final.name}.{OLD_INFIX}-*") if p.is_dir()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def not_empty(path: Path) -> bool:
    """True when ``path`` exists and is not an empty directory."""
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def _refuse(final: Path) -> Exception:
    return FileExistsError(f"{final}: exists and is not empty")


@contextlib.contextmanager
def atomic_directory(
    final: str | Path,
    *,
    replace: bool,
    exists_error: Callable[[Path], Exception] = _refuse,
) -> Iterator[Path]:
    """Yield a fresh temporary directory that becomes ``final`` when the block succeeds.

    ``replace``: an existing non-empty ``final`` is swapped out and removed; without it such a
    ``final`` (checked when the block has finished, so one that appeared meanwhile counts too)
    raises ``exists_error(final)`` (default :class:`FileExistsError`) and ``final`` is left as it
    was. Creating the temporary directory may raise :class:`OSError` before the block runs.
    """
    final = Path(final)
    stage = sibling(final, TMP_INFIX)
    final.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
        fsync_tree(stage)
        _swap_in(stage, final, replace, exists_error)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _swap_in(stage: Path, final: Path, replace: bool, exists_error: Callable[[Path], Exception]) -> None:
    """Rename ``stage`` to ``final``, moving an existing ``final`` aside first and removing it last."""
    old = sibling(final, OLD_INFIX)
    if final.exists() or final.is_symlink():
        if not replace and not_empty(final):
            raise exists_error(final)
        _remove(old)
        os.replace(final, old)
    try:
        os.replace(stage, final)
    except OSError:
        if final.exists():  # created by another process between the check and the rename
            raise exists_error(final) from None
        if old.exists():  # put the old one back
            os.replace(old, final)
        raise
    _fsync_directory(final.parent)
    _remove(old)


def _remove(path: Path) -> None:
    """Remove a directory tree or a file; nothing there is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def fsync_tree(directory: Path) -> None:
    """fsync every file under ``directory`` (and the directories themselves, where allowed)."""
    for path in directory.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        elif path.is_dir():
            _fsync_directory(path)
    _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. a platform that cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temporary sibling and ``os.replace`` (never truncated)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{TMP_INFIX}-{os.getpid()}")
    try:
        if isinstance(data, str):
            tmp.write_text(data)
        else:
            tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
