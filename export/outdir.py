"""The export directory: refused early when it cannot be (re)written, built atomically.

``OUT`` is built as ``OUT.tmp-<pid>`` next to it and renamed into place only when complete
(:func:`storyedge.atomic.atomic_directory`; with ``overwrite`` the old ``OUT`` is swapped out
only then), so an interrupted export never leaves a complete-looking ``OUT``.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from storyedge.atomic import TMP_INFIX, atomic_directory, not_empty, sibling
from storyedge.errors import UserError

PROBE_PREFIX = ".storyedge-probe-"


def _not_empty_error(out: Path) -> UserError:
    return UserError(f"--out {out}: directory exists and is not empty (pass --overwrite to replace it)")


def check_out_dir(out_dir: str | Path, overwrite: bool) -> Path:
    """:class:`UserError` unless ``out_dir`` can be (re)written; nothing is left behind."""
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")
    if not overwrite and not_empty(out):
        raise _not_empty_error(out)
    probe = out.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"--out {out}: {probe} is not a directory")
    try:  # os.access says yes to root on a read-only file system: try it
        tempfile.TemporaryDirectory(dir=probe, prefix=PROBE_PREFIX).cleanup()
    except OSError as exc:
        raise UserError(f"--out {out}: cannot write under {probe} ({exc.strerror or exc})") from None
    return out


@contextlib.contextmanager
def staging_dir(out: Path, overwrite: bool) -> Iterator[Path]:
    """Yield ``OUT.tmp-<pid>``; on success it becomes ``OUT`` (an old one swapped out and removed).

    :class:`UserError` when the staging directory cannot be created, or when ``OUT`` became
    non-empty meanwhile without ``overwrite``.
    """
    with contextlib.ExitStack() as stack:
        try:
            stage = stack.enter_context(atomic_directory(out, replace=overwrite, exists_error=_not_empty_error))
        except OSError as exc:
            raise UserError(f"--out {out}: cannot create {sibling(out, TMP_INFIX)} ({exc.strerror or exc})") from None
        yield stage
