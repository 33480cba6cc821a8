"""Files that failed validation move to ``rejected/<format>/...``: never listed as good, kept
for inspection (manifest ``rejected``, each entry's ``validation.rejected_from``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from storyedge.export.context import REJECTED_DIR, BuiltFile
from storyedge.manifest import FORMATS, ExportedFile


def reject_failed(
    stage: Path, built: list[BuiltFile], records: dict[str, dict[str, Any]]
) -> tuple[list[ExportedFile], list[ExportedFile]]:
    """(good, rejected) entries, each with its validation record; rejected files are moved
    under ``rejected/`` and format directories left empty are removed."""
    good: list[ExportedFile] = []
    rejected: list[ExportedFile] = []
    for item in built:
        entry = item.entry
        entry.validation = records[entry.path]
        if entry.validation["passed"]:
            good.append(entry)
        else:
            _move_to_rejected(stage, entry)
            rejected.append(entry)
    for sub in FORMATS:
        d = stage / sub
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    return good, rejected


def _move_to_rejected(stage: Path, entry: ExportedFile) -> None:
    """Move ``entry``'s file to ``rejected/<its path>`` and point the entry there."""
    new_rel = f"{REJECTED_DIR}/{entry.path}"
    (stage / new_rel).parent.mkdir(parents=True, exist_ok=True)
    os.replace(stage / entry.path, stage / new_rel)
    entry.validation["rejected_from"] = entry.path
    entry.path = new_rel
