"""The compute-floor and ``--profile`` stages of a bench run.

:func:`peak_probes` builds the MAC peak probes (:mod:`storyedge.bench.compute`), which the bench
runs round by round between its timing blocks; after the timing, :func:`floor_stage` places each
exported backend's encoder and step against its binding floor and :func:`profile_stage` fills the
per-op profiles (:mod:`storyedge.bench.profile`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from storyedge.bench.compute import PeakProbes, available_runtimes, backend_floors, compute_floors
from storyedge.bench.latency import backend_roofline, step_floors
from storyedge.bench.profile import run_profiles
from storyedge.bench.results import BackendResult, ComputeFloors, ComputePeak, MemoryBandwidth, Roofline, StepFloors
from storyedge.macs import RealTokens, step_macs


def shortlist_roofline(floors: StepFloors, result: BackendResult, hidden: int, dropped: int,
                       bandwidth: MemoryBandwidth) -> Roofline:
    """A shortlisted step's roofline: the projection's ``dropped`` columns (and biases) are not read."""
    counts = dict(floors.counts)
    counts["matrix_params"] -= hidden * dropped
    counts["vector_params"] -= dropped
    return backend_roofline(step_floors(counts, floors.read_gbps), result.precision, result.latency.step.p50_ms,
                            bandwidth.last_level_cache_bytes, result.decoder_file_bytes)


def peak_probes(plan: Any, echo: Callable[[str], Any] = print) -> PeakProbes:
    """The MAC peak probes of the runtimes the run's backends use (not measured yet)."""
    s = plan.settings
    runtimes = available_runtimes({spec.format for spec in plan.specs})
    echo(f"preparing MAC peak probes ({', '.join(runtimes)}; fp32, int8; {s.threads} threads) ...")
    return PeakProbes(plan.export.config, s.batch, plan.export.vocab_size, s.threads, runtimes, echo)


def floor_stage(plan: Any, results: list[BackendResult], bandwidth: MemoryBandwidth, floors: StepFloors,
                peaks: list[ComputePeak], real: RealTokens | None = None) -> ComputeFloors:
    """Every exported backend's ``floors`` set against ``peaks`` (a shortlisted step's roofline
    recounted for its narrower projection); the report's compute section. ``real``: the timed
    inputs' real tokens (the Bi-LSTMs' necessary work)."""
    cfg, s = plan.export.config, plan.settings
    compute = compute_floors(cfg, plan.export.vocab_size, s.batch, peaks, real)
    widths = {spec.name: len(spec.vocab_ids) for spec in plan.specs if spec.vocab_ids is not None}
    for r in results:
        if r.reference:
            continue
        width = next((w for name, w in widths.items() if r.name.startswith(name)), None)
        own = None
        if width is not None:
            own = step_macs(cfg, width, s.batch)
            r.roofline = shortlist_roofline(floors, r, cfg.model.decoder_hidden_dim,
                                            plan.export.vocab_size - width, bandwidth)
        r.floors = backend_floors(compute, r.format, r.precision, r.latency.encoder.p50_ms, r.latency.step.p50_ms,
                                  r.roofline, bandwidth.read_gbps, bandwidth.last_level_cache_bytes, own,
                                  caption=(r.latency.caption_tokens, r.latency.caption.p50_ms))
    return compute


def profile_stage(plan: Any, loaded: list[Any], results: list[BackendResult], inputs: dict[str, Any], out: Path,
                  echo: Callable[[str], Any] = print) -> None:
    """``--profile``: each exported backend's per-op profile (see :mod:`storyedge.bench.profile`)."""
    s, cfg = plan.settings, plan.export.config
    run_profiles(loaded, results, s.threads, inputs, plan.export.tokenizer.bos_id, s.caption_tokens,
                 min(s.warmup, 1), s.runs, Path(out), cfg.model.decoder_hidden_dim, s.batch,
                 plan.export.vocab_size, echo)
