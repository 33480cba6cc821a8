"""``schema_version`` of the files storyedge writes and reads back (manifest, bench report, training
summary): ``"MAJOR.MINOR"``.

A new field bumps MINOR, so a reader accepts any MINOR of its own MAJOR (fields it does not know
are ignored, fields a file lacks take their defaults); a change that an old reader would misread
bumps MAJOR, and a file of another MAJOR (or one that is not ours at all) is refused with one
line naming the file and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from storyedge.errors import UserError


def major_of(version: str) -> int:
    """MAJOR of ``"MAJOR.MINOR"``; ValueError for anything else."""
    major, _, minor = str(version).partition(".")
    if not (major.isdigit() and minor.isdigit()):
        raise ValueError(f"not a MAJOR.MINOR version: {version!r}")
    return int(major)


def check_schema(data: Any, expected: str, kind: str, path: str | Path, marks: tuple[str, ...] = ()) -> None:
    """Refuse ``data`` unless it is a mapping of ``kind`` whose ``schema_version`` has
    ``expected``'s MAJOR (:class:`UserError`, exit 2). ``marks``: keys every version of ``kind``
    has, so that another storyedge file (a manifest given for a report) is named as not one."""
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a storyedge {kind} (expected a JSON object)")
    missing = [key for key in marks if key not in data]
    if missing:
        raise UserError(f"{path}: not a storyedge {kind} (no {missing[0]!r})")
    found = data.get("schema_version")
    if found is None:
        raise UserError(f"{path}: not a storyedge {kind} (no schema_version)")
    try:
        found_major = major_of(str(found))
    except ValueError:
        raise UserError(
            f"{path}: {kind} schema_version {found!r} is from an older storyedge; this version reads "
            f"{expected.split('.')[0]}.x (re-create the file)"
        ) from None
    if found_major != major_of(expected):
        raise UserError(
            f"{path}: {kind} schema_version {found} is not readable by this storyedge "
            f"(it reads {major_of(expected)}.x); re-create the file with this version"
        )


def known_fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``data`` that are fields of dataclass ``cls`` (a newer MINOR may add others)."""
    names = set(getattr(cls, "__dataclass_fields__", {}))
    return {k: v for k, v in data.items() if k in names}
