"""Per backend, the coverage of the files it runs (:class:`~storyedge.bench.results.FileCoverage`),
read from the export manifest: what computes in integer / fp16 / float, the weight bytes per
storage dtype, and whether the file is portable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from storyedge.bench.results import FileCoverage


def file_coverage(entry: Any) -> FileCoverage:
    """The :class:`FileCoverage` of one manifest file entry."""
    cov = entry.coverage
    if cov is None:
        return FileCoverage(path=entry.path, portable=None)
    return FileCoverage(
        path=entry.path, portable=cov.portable,
        compute={cls: sum(ops.values()) for cls, ops in cov.compute.items()},
        weight_bytes=dict(cov.weight_bytes), nonportable_ops=sorted(cov.nonportable_ops),
        float_ops=sorted(cov.compute.get("float", {})),
    )


def backend_coverage(export: Any, spec: Any) -> list[FileCoverage]:
    """Coverage of the file(s) ``spec`` runs (one for a multi-signature file), its story-mode
    files after them; [] when unknown."""
    if spec is None:
        return []
    paths = []
    for path in (spec.encoder_path, spec.decoder_path, *getattr(spec, "story_paths", {}).values()):
        rel = Path(path).resolve().relative_to(Path(export.path).resolve()).as_posix()
        if rel not in paths:
            paths.append(rel)
    by_path = {entry.path: entry for entry in export.manifest.files}
    return [file_coverage(by_path[p]) for p in paths if p in by_path]
