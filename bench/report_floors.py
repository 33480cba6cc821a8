"""Report sections of the compute floor, the ``--profile`` per-op profiles and the vocabulary
shortlist's parity (rendered into the terminal text and ``report.md`` by :mod:`.report`)."""

from __future__ import annotations

from storyedge.bench.latency import BYTES_PER_WEIGHT
from storyedge.bench.report import _fmt, _table
from storyedge.bench.results import BenchReport, ComputePeak, GraphProfile

#: op rows of a profile shown in the terminal (report.md / report.json list every kept row)
TERMINAL_OPS = 3


def floor_table(report: BenchReport) -> tuple[list[str], list[list[str]]]:
    """Per backend: encoder and step p50, their compute, bytes and weight-read floors, which binds,
    the multiple; the caption's floor (the encoder's + its steps') and multiple."""
    headers = ["backend", "enc p50", "enc compute floor", "enc bytes floor", "enc read floor", "enc binds",
               "enc x floor", "step p50", "step compute floor", "step bytes floor", "step read floor", "step binds",
               "step x floor", "caption floor", "caption x floor", "peak"]
    rows = []
    for b in report.backends:
        f = b.floors
        if f is None:
            continue
        e, s = f.encoder, f.step
        rows.append([b.name, _fmt(b.latency.encoder.p50_ms, 3), _fmt(e.compute_floor_ms, 4), _fmt(e.bytes_floor_ms, 4),
                     _fmt(e.read_floor_ms, 4), e.binding, _fmt(e.vs_floor, 2), _fmt(b.latency.step.p50_ms, 4),
                     _fmt(s.compute_floor_ms, 4), _fmt(s.bytes_floor_ms, 4), _fmt(s.read_floor_ms, 4), s.binding,
                     _fmt(s.vs_floor, 2), _fmt(f.caption_floor_ms, 3), _fmt(f.caption_vs_floor, 2), s.peak])
    return headers, rows


def _read_gbps(p: ComputePeak) -> float:
    """The rate a probe read its weights at (GB/s, at its precision's bytes per weight)."""
    return p.weights_per_s * BYTES_PER_WEIGHT[p.precision] / 1e9


def peak_table(report: BenchReport) -> tuple[list[str], list[list[str]]]:
    """The MAC peaks measured in the run, and the rate each probe read its weights at."""
    headers = ["runtime", "precision", "role", "M x K x N", "ms/call", "call overhead ms", "GMAC/s", "weights GB/s"]
    peaks = report.compute.peaks if report.compute else []
    rows = [[p.runtime, p.precision, p.role, "x".join(str(d) for d in p.shape), _fmt(p.ms, 4), _fmt(p.overhead_ms, 4),
             _fmt(p.macs_per_s / 1e9, 2), _fmt(_read_gbps(p), 1)] for p in peaks]
    return headers, rows


def floor_lines(report: BenchReport, markdown: bool = False) -> list[str]:
    """The compute-floor section (nothing when the report has none)."""
    c = report.compute
    if c is None:
        return []
    enc = ", ".join(f"{k} {v / 1e6:.1f}M" for k, v in c.encoder_macs.items())
    step = ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in c.step_macs.items())
    sequential = c.encoder_sequential_total
    recurrent = f", {sequential / 1e6:.1f}M of them recurrent (one time step at a time)" if sequential else ""
    real = [f"{n} of {slots} {what}" for what, n, slots in
            (("caption", c.caption_tokens, c.caption_slots), ("reason", c.reason_tokens, c.reason_slots)) if n is not None]
    over = f", the Bi-LSTMs over the timed inputs' real tokens ({', '.join(real)} tokens)" if real else ""
    lines = [
        f"Compute floor: encoder {c.encoder_total_macs / 1e6:.1f}M MACs ({enc}){recurrent}{over}; "
        f"step {c.step_total_macs / 1e6:.2f}M MACs ({step}).",
        *([""] if markdown else []),
        _table(peak_table(report), markdown),
        *([""] if markdown else []),
    ]
    headers, rows = floor_table(report)
    if rows:
        lines += [_table((headers, rows), markdown), *([""] if markdown else [])]
    lines.append(c.note)
    return lines


def _graph_rows(name: str, graph: str, g: GraphProfile, limit: int | None) -> list[list[str]]:
    ops = g.top if limit is None else g.top[:limit]
    return [[name, graph, o.op, _fmt(o.ms_per_call, 4), f"{o.share * 100:.1f}%", str(o.nodes)] for o in ops]


def profile_lines(report: BenchReport, markdown: bool = False) -> list[str]:
    """The ``--profile`` section: top ops by share of encoder and step time per backend."""
    profiled = [b for b in report.backends if b.profile is not None]
    if not profiled:
        return []
    limit = None if markdown else TERMINAL_OPS
    rows: list[list[str]] = []
    notes: dict[str, list[str]] = {}
    files: list[str] = []
    for b in profiled:
        p = b.profile
        assert p is not None
        for graph, g in (("encoder", p.encoder), ("step", p.step)):
            if g is None:
                rows.append([b.name, graph, "not measured", "-", "-", "-"])
            else:
                rows += _graph_rows(b.name, graph, g, limit)
        notes.setdefault(f"{p.source}. {p.note}", []).append(b.name)
        files += p.files
    headers = ["backend", "graph", "op", "ms/call", "share", "nodes"]
    lines = [f"{', '.join(names)}: {text}" for text, names in notes.items()]
    if files:
        lines.append(f"Raw ONNX Runtime profiles (chrome://tracing JSON): {', '.join(files)}" if markdown
                     else f"Raw ONNX Runtime profiles: {len(files)} JSON files under profiles/ next to the report")
    return ["Per-op profile (top ops by share of the graph's time)", *([""] if markdown else []),
            _table((headers, rows), markdown), *([""] if markdown else []), *lines]


def shortlist_lines(report: BenchReport, markdown: bool = False) -> list[str]:
    """Parity of vocabulary-shortlist backends, on the shortlist."""
    rows = []
    for b in report.backends:
        s = b.shortlist
        if s is None:
            continue
        rows.append([b.name, f"{s.size}/{s.vocab_size}", f"{s.targets_outside}/{s.targets}",
                     _fmt(s.reference_ppl, 4), _fmt(s.ppl, 4), _fmt(s.ppl_ratio, 5)])
    if not rows:
        return []
    headers = ["backend", "shortlist/V", "targets outside", "ref PPL (shortlist)", "PPL (shortlist)", "ratio"]
    return ["Vocabulary shortlist: PPL over the in-shortlist targets, softmax over the shortlist (the reference's "
            "logits taken at the same ids); targets outside the shortlist cannot be produced and are counted, "
            "not scored. Full-vocabulary backends are the ones above; these run beside them.",
            *([""] if markdown else []), _table((headers, rows), markdown)]


def wall_lines(report: BenchReport, markdown: bool = False) -> list[str]:
    """Where the wall time went: per share (precision, story mode, shared), export and bench."""
    w = report.wall
    if w is None:
        return []
    rows = [[s.share, _fmt(s.export_s, 1), _fmt(s.bench_s, 1), _fmt(s.total_s, 1)] for s in w.shares]
    export = f"export {w.export_s:.0f} s (its manifest) + " if w.export_s is not None else ""
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in w.stages.items())
    return [f"Wall time: {export}this bench {w.bench_s:.0f} s ({stages}). Per share: each precision's files, "
            "validation, loading, parity and timing; story mode's graphs at every precision; the rest shared "
            "(TFLite files convert side by side: the export's time is divided in proportion to each share's "
            "conversion seconds).",
            *([""] if markdown else []),
            _table((["share", "export s", "bench s", "total s"], rows), markdown)]
