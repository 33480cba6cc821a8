"""Where the wall time of a bench run (and of the export it benched) went.

The export's manifest keeps the seconds of every file it converted, of every validation and of
the shared work (SavedModels, the total); the bench times its own stages and, per backend, its
full-window and story-mode timing. :func:`wall_time` sums them per *share*:

* ``<format> <precision>``: its files (story-mode files aside) and their validation, and in the
  bench its backends' loading, parity and full-window timing;
* ``story mode``: the story-mode files and their validation at every precision, and every
  backend's story-mode timing;
* ``shared``: the rest (SavedModels, the TF reference, calibration, eval windows, caption
  quality, the floors, the profile, the report).

So a precision or a graph can be judged by its own cost, or left out of a comparison.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from storyedge.bench.results import BackendResult, ParitySummary, WallShare, WallTime
from storyedge.constants import EXPORT_TOTAL_TIMING, STORY_VALIDATION_TIMING_SUFFIX, VALIDATION_TIMING_PREFIX
from storyedge.manifest import Manifest

STORY_SHARE = "story mode"
SHARED = "shared"


def _share_of_backend(name: str, shares: list[tuple[str, str]]) -> str | None:
    """``<format> <precision>`` of a backend or validation name (``tflite-int8-dynamic-multi``)."""
    # the longest precision first: ``tflite-int8-dynamic`` is not ``tflite-int8``
    for fmt, precision in sorted(shares, key=lambda s: -len(s[1])):
        prefix = f"{fmt}-{precision}"
        if name == prefix or name.startswith(prefix + "-"):
            return f"{fmt} {precision}"
    return None


def export_shares(manifest: Manifest) -> tuple[dict[str, float], float | None]:
    """Export wall seconds per share from the manifest's timings, and the export's total.

    TFLite files convert side by side (:mod:`storyedge.export.tflite_pool`), so their seconds
    overlap and add up to more than the export took: the export's total is divided among the
    shares in proportion to their seconds (the whole of it when nothing overlapped)."""
    seconds: dict[str, float] = dict(manifest.source.get("export", {}).get("seconds", {}))
    total = seconds.pop(EXPORT_TOTAL_TIMING, None)
    pairs = sorted({(f.format, f.precision) for f in manifest.files})
    files = {f.path: f for f in manifest.files}
    story_graphs = set(manifest.story.all_graphs) if manifest.story is not None else set()
    out: dict[str, float] = {}
    for key, s in seconds.items():
        entry = files.get(key)
        if entry is not None:
            story = bool(story_graphs) and set(entry.signatures) <= story_graphs  # its signatures: story graphs only
            share = STORY_SHARE if story else f"{entry.format} {entry.precision}"
        elif key.startswith(VALIDATION_TIMING_PREFIX):
            name = key[len(VALIDATION_TIMING_PREFIX):]
            story = name.endswith(STORY_VALIDATION_TIMING_SUFFIX)
            share = STORY_SHARE if story else _share_of_backend(name, pairs) or SHARED
        else:
            share = SHARED
        out[share] = out.get(share, 0.0) + s
    if total is not None:
        busy = sum(out.values())
        if busy > total > 0:
            out = {share: s * total / busy for share, s in out.items()}
        else:
            out[SHARED] = out.get(SHARED, 0.0) + total - busy
    return out, total


def bench_shares(results: list[BackendResult], parity: ParitySummary | None, bench_s: float) -> dict[str, float]:
    """Bench seconds per share: per exported backend its loading, parity and full-window timing;
    story-mode timing; the rest shared."""
    pairs = sorted({(r.format, r.precision) for r in results if not r.reference})
    out: dict[str, float] = {}
    parity_s = parity.seconds if parity is not None else {}
    for r in results:
        share = None if r.reference else _share_of_backend(r.name, pairs)
        if share is not None:
            out[share] = out.get(share, 0.0) + r.load_seconds + r.timing_seconds + parity_s.get(r.name, 0.0)
        if r.story_timing_seconds:
            out[STORY_SHARE] = out.get(STORY_SHARE, 0.0) + r.story_timing_seconds
    out[SHARED] = max(bench_s - sum(out.values()), 0.0)
    return out


def wall_time(manifest: Manifest, results: list[BackendResult], parity: ParitySummary | None,
              stages: dict[str, float], bench_s: float) -> WallTime:
    """The report's ``wall`` section (see the module doc)."""
    exported, export_total = export_shares(manifest)
    benched = bench_shares(results, parity, bench_s)
    names = [n for n in dict.fromkeys([*exported, *benched]) if n not in (STORY_SHARE, SHARED)]
    order = [*names, *(n for n in (STORY_SHARE, SHARED) if n in exported or n in benched)]
    shares = [WallShare(n, round(exported.get(n, 0.0), 2), round(benched.get(n, 0.0), 2)) for n in order]
    return WallTime(bench_s=round(bench_s, 2), export_s=export_total,
                    stages={k: round(v, 2) for k, v in stages.items()}, shares=shares)


class StageClock:
    """Wall seconds per named stage of a run, and since the clock was made."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.stages: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as (part of) stage ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = self.stages.get(name, 0.0) + time.perf_counter() - start

    def move(self, seconds: float, source: str, target: str) -> None:
        """Count ``seconds`` timed as part of stage ``source`` as stage ``target``'s."""
        self.stages[source] = self.stages.get(source, 0.0) - seconds
        self.stages[target] = self.stages.get(target, 0.0) + seconds

    @property
    def elapsed(self) -> float:
        """Seconds since the clock was made."""
        return time.perf_counter() - self.started
