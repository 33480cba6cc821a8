"""Renderings of a :class:`~storyedge.bench.results.BenchReport`: the terminal tables, ``report.md``,
``report.json``, the PNG plots, and the ``--compare`` deltas against an earlier report.

Tables go through ``tabulate`` (plain columns in the terminal, pipe tables in markdown).
matplotlib (Agg) is imported for the plots only and, when it is absent, the plots are skipped
with a note (the runtime-only path needs no matplotlib).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tabulate import tabulate

from storyedge.bench.results import (
    BUDGET_LABELS,
    BenchReport,
    CompareRow,
    Comparison,
    Delta,
    LatencyStats,
    Pick,
    Summary,
)
from storyedge.atomic import atomic_write
from storyedge.bench.pareto import pareto_plot, ppl_ratio_plot
from storyedge.bench.quality_report import quality_heading, quality_rows
from storyedge.errors import UserError

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
STEP_PLOT = "step_latency.png"
PPL_PLOT = "ppl_ratio.png"
PARETO_PLOT = "pareto.png"
#: summary question → the Summary attribute answering it (in display order)
SUMMARY_QUESTIONS = {
    "fastest caption": "fastest_caption",
    "fastest step": "fastest_step",
    "smallest file": "smallest_file",
    "fastest caption within budgets": "within_budgets",
}
PERCENTILES = ("count", "mean_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "stdev_ms")

Table = tuple[list[str], list[list[str]]]


# ---------------------------------------------------------------------------- formatting


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 10 ** -(digits + 1)):
            return f"{value:.2e}"
        return f"{value:.{digits}f}"
    return str(value)


def _numeric(cell: str) -> bool:
    return cell in ("-", "nan") or cell[:1].isdigit() or (cell[:1] in "+-" and cell[1:2].isdigit())


def _table(table: Table, markdown: bool = False) -> str:
    """Cells are preformatted strings: columns of figures right-aligned, text left-aligned."""
    headers, rows = table
    if markdown:
        headers = [h.replace("|", "\\|") for h in headers]
        rows = [[c.replace("|", "\\|") for c in row] for row in rows]
    align = [
        "right" if i and rows and all(_numeric(row[i]) for row in rows) else "left" for i in range(len(headers))
    ]
    return tabulate(rows, headers, tablefmt="pipe" if markdown else "simple", colalign=align, disable_numparse=True)


def parity_rows(report: BenchReport) -> Table:
    """Parity per backend: PPL, ratio, KL, agreements, max |Δlogit| and the gate verdict."""
    headers = ["backend", "prec", "PPL", "ratio", "KL", "top-1", "decisive", "ties", "greedy", "max|dlogit|", "gates"]
    rows = []
    for b in report.backends:
        p = b.parity
        if p is None:
            continue
        failed = [name for name, g in p.gates.items() if not g.passed]
        verdict = "ref" if b.reference else ("-" if not p.gates else ("FAIL " + ",".join(failed) if failed else "pass"))
        rows.append([
            b.name, b.precision, _fmt(p.ppl, 4), _fmt(p.ppl_ratio, 5), f"{p.kl:.2e}", _fmt(p.top1_agreement, 4),
            _fmt(p.top1_decisive, 4), _fmt(p.near_ties, 3), _fmt(p.greedy_agreement, 3), _fmt(p.max_abs_logit_diff, 5), verdict,
        ])
    return headers, rows


def coverage_rows(report: BenchReport) -> Table:
    """Per exported file a backend runs: portability, ops per compute class, weight MB per dtype."""
    headers = ["backend", "file", "portable", "integer", "hybrid", "fp16", "float", "weights (MB by dtype)",
               "float ops / contrib ops"]
    rows = []
    for b in report.backends:
        for c in b.coverage:
            weights = ", ".join(f"{k} {v / 1e6:.3f}" for k, v in sorted(c.weight_bytes.items(), key=lambda kv: -kv[1]))
            extra = ("contrib: " + ",".join(c.nonportable_ops)) if c.nonportable_ops else ",".join(c.float_ops[:6])
            rows.append([b.name, c.path, _fmt(c.portable), *(str(c.compute.get(k, 0)) for k in
                         ("integer", "hybrid", "fp16", "float")), weights or "-", extra or "-"])
    return headers, rows


def latency_rows(report: BenchReport) -> Table:
    """Latency per backend (p50s unless named), memory, and the step against the roofline floor."""
    headers = [
        "backend", "size MB", "load ms", "RSS+ MB", "1st enc ms", "enc p50", "step p50", "step p99",
        "step mean", "x floor", "x fp32 floor", "1st tok p50", "caption p50", "tok/s",
    ]
    rows = []
    for b in report.backends:
        lat, roof = b.latency, b.roofline
        rows.append([
            b.name, _fmt(b.size_mb, 2), _fmt(b.load_seconds * 1e3, 1), _fmt(b.rss_delta_mb, 1),
            _fmt(b.first_encode_ms, 2), _fmt(lat.encoder.p50_ms, 3), _fmt(lat.step.p50_ms, 4),
            _fmt(lat.step.p99_ms, 4), _fmt(lat.step.mean_ms, 4), _fmt(roof.step_vs_floor, 2),
            _fmt(roof.step_vs_fp32_floor, 2) + ("*" if roof.fits_in_llc else ""),
            _fmt(lat.first_token.p50_ms, 3), _fmt(lat.caption.p50_ms, 3), _fmt(lat.tokens_per_s, 0),
        ])
    return headers, rows


def story_rows(report: BenchReport) -> Table:
    """Story mode's next caption beside the full-window caption, per backend that has it (p50s)."""
    headers = ["backend", "enc p50", "story enc p50", "x enc", "calls", "new frame p50", "caption p50",
               "story caption p50", "x caption", "reason ms"]
    rows = []
    for b in report.backends:
        st = b.story
        if st is None:
            continue
        rows.append([
            b.name, _fmt(b.latency.encoder.p50_ms, 3), _fmt(st.encoder.p50_ms, 3), _fmt(st.encoder_vs_full, 2),
            "1" if st.one_call else "2", _fmt(st.frame.p50_ms, 3), _fmt(b.latency.caption.p50_ms, 3), _fmt(st.caption.p50_ms, 3),
            _fmt(st.caption_vs_full, 2), _fmt(st.reason_ms, 3),
        ])
    return headers, rows


STORY_TITLE = (
    "Story mode (ms; the next caption of a story: one new frame through the per-frame graph, the story graph "
    "over the last k cached frames, then the same greedy steps; calls = graph calls per caption before the "
    "steps, 1 where the file runs both graphs in one call, which new frame p50 then includes; "
    "x = story / full-window p50; the reason graph runs once per story)"
)


def percentile_rows(report: BenchReport) -> Table:
    """Decoder-step latency distribution per backend."""
    headers = ["backend", "count", "mean", "p50", "p90", "p95", "p99", "stdev"]
    rows = []
    for b in report.backends:
        step: LatencyStats = b.latency.step
        rows.append([b.name, *(_fmt(getattr(step, k), 4) for k in PERCENTILES)])
    return headers, rows


def budget_rows(report: BenchReport) -> Table:
    """Each backend's measure per set budget, marked ``ok`` / ``OVER``, and its verdict."""
    limits = report.settings.budgets.limits()
    headers = ["backend", *(f"{name} <= {limit:g}" for name, limit in limits.items()), "budgets"]
    rows = []
    for b in report.backends:
        cells = [
            "-" if v.within is None else f"{_fmt(v.value, 3)} {'ok' if v.within else 'OVER'}" for v in b.budgets
        ]
        over = b.over_budget
        rows.append([b.name, *cells, "within" if not over else "OVER " + ",".join(over)])
    return headers, rows


def _pick_cells(pick: Pick) -> list[str]:
    value = f"{_fmt(pick.value, 4 if pick.unit == 'ms' and pick.value < 1 else 3)} {pick.unit}"
    speedup = "-" if pick.speedup is None else f"{pick.speedup:.1f}x ({pick.speedup_of} p50)"
    floor = "-" if pick.floor_multiple is None else f"{pick.floor_multiple:.2f}x {pick.floor_binding}".rstrip()
    return [pick.backend, value, speedup, floor]


def summary_rows(report: BenchReport) -> Table:
    """One row per summary question answered."""
    summary = report.summary
    ref = summary.reference or "tf-reference"
    headers = ["question", "backend", "value (p50)", f"speed-up vs {ref}", "step x floor"]
    rows = []
    for question, attribute in SUMMARY_QUESTIONS.items():
        pick = getattr(summary, attribute)
        if pick is not None:
            rows.append([question, *_pick_cells(pick)])
    return headers, rows


def summary_lines(report: BenchReport, markdown: bool = False) -> list[str]:
    """The summary's title, its table and what qualifies it (parity, budgets, floor, reference)."""
    s: Summary = report.summary
    scope = (
        "among the exported backends that pass every parity gate"
        + (" and every caption-quality gate" if report.quality is not None else "") if s.parity_checked
        else "parity NOT checked (--latency-only), ranked by latency alone"
    )
    lines = [f"Summary: {scope}"]
    if not s.eligible:
        lines.append("no exported backend passes the parity gates" if s.parity_checked
                     else "no exported backend was timed")
    else:
        lines.append(_table(summary_rows(report), markdown))
    if s.budgets_failed:
        limits = ", ".join(f"{k} <= {v:g}" for k, v in report.settings.budgets.limits().items())
        lines.append(f"no eligible backend is within every budget ({limits})")
    if s.reference is None:
        lines.append("speed-up: no TF reference was timed (--latency-only)")
    lines.append("step x floor: step p50 / its binding floor (compute, bytes or read; see the compute floor); "
                 "where none was measured, / the roofline floor at its precision, '-' where the step's weights "
                 "fit in the last-level cache (that floor does not bind there)")
    return lines


def _budget_lines(report: BenchReport, markdown: bool) -> list[str]:
    limits = report.settings.budgets.limits()
    if not limits:
        return []
    described = "; ".join(f"{BUDGET_LABELS[k]} <= {v:g}" for k, v in limits.items())
    return [
        f"Budgets (p50 latencies; size = file bytes; peak RSS = {report.baseline_rss_mb:.0f} MB baseline "
        f"+ RSS+): {described}",
        *([""] if markdown else []),
        _table(budget_rows(report), markdown),
    ]


# ------------------------------------------------------------------------------ terminal


def data_floor_text(report: BenchReport) -> str:
    """The data's PPL floor on the parity windows, and the reference's PPL above it."""
    f = report.data_floor
    assert f is not None
    ref = report.reference_result
    excess = ""
    if ref is not None and ref.parity is not None:
        excess = f"; {ref.name} PPL - floor = {ref.parity.ppl - f.floor_ppl:.4f}"
    return (
        f"Data floor on these {f.windows} windows: PPL {f.floor_ppl:.4f} (paraphrase entropy "
        f"{f.mean_entropy:.3f} nats over {f.mean_tokens:.2f} tokens per caption; oracle exact match "
        f"{f.oracle_exact_match:.1%}){excess}"
    )


def terminal_text(report: BenchReport) -> str:
    """The tables ``storyedge bench`` prints."""
    s = report.settings
    parts = [
        f"storyedge bench: {report.export_dir}  (batch {s.batch}, threads {s.threads}, "
        f"warmup {s.warmup}, runs {s.runs}, caption {s.caption_tokens} tokens)"
    ]
    if report.parity is not None:
        p = report.parity
        parts.append(f"\nParity vs {p.reference} on {p.windows} {p.split} windows ({p.tokens} target tokens)")
        parts.append(_table(parity_rows(report)))
        if report.data_floor is not None:
            parts.append(data_floor_text(report))
    else:
        parts.append("\nParity: skipped (--latency-only)")
    if report.quality is not None:
        parts.append("\n" + quality_heading(report))
        parts.append(_table(quality_rows(report)))
    parts.append(f"\n{_latency_title(report)}")
    parts.append(_table(latency_rows(report)))
    if story_rows(report)[1]:
        parts += [f"\n{STORY_TITLE}", _table(story_rows(report))]
    parts += ["\n" + "\n".join(section) for section in _extra_sections(report, markdown=False) if section]
    coverage = coverage_rows(report)
    if coverage[1]:
        parts.append("\nCoverage (ops per compute class; portable = TFLite builtins / ONNX standard domain only)")
        parts.append(_table(coverage))
    budget = _budget_lines(report, markdown=False)
    if budget:
        parts.append("\n" + "\n".join(budget))
    parts.append("\n" + "\n".join(summary_lines(report)))
    parts.append(f"\npeak RSS {report.peak_rss_mb:.0f} MB")
    if report.parity is not None:
        failed = report.failed_gates
        parts.append("gates: " + ("all passed" if not failed else "FAILED " + "; ".join(failed)))
    return "\n".join(parts)


def _latency_title(report: BenchReport) -> str:
    roof, bw = report.roofline, report.memory_bandwidth
    cached = any(b.roofline.fits_in_llc for b in report.backends)
    return (
        f"Latency (ms; step = one decoder step; caption = encoder + {report.settings.caption_tokens} steps). "
        f"Roofline: {roof.fp32_weight_bytes / 1e6:.3f} MB fp32 weights/step at {bw.read_gbps:.1f} GB/s read = "
        f"{roof.fp32_floor_ms:.4f} ms floor; x floor = step p50 / floor"
        + (" (* weights fit in the last-level cache: floor not binding)" if cached else "")
    )


# ------------------------------------------------------------------------------ markdown


def markdown_text(report: BenchReport) -> str:
    """``report.md``: settings, the tables, the summary, budgets and what each number means."""
    lines = _markdown_head(report)
    if report.parity is not None:
        p = report.parity
        lines += [
            f"## Parity vs `{p.reference}`", "",
            f"{p.windows} windows of split `{p.split}`, {p.tokens} non-pad target tokens; "
            "PPL = exp(mean NLL), ratio = PPL / PPL(reference), KL = mean KL(ref ‖ backend) in nats.", "",
            _table(parity_rows(report), markdown=True), "",
            *([data_floor_text(report), ""] if report.data_floor is not None else []),
            "Gates: " + ("all passed" if not report.failed_gates else "**FAILED**: " + "; ".join(report.failed_gates)),
            "",
        ]
    if report.quality is not None:
        lines += ["## Caption quality", "", quality_heading(report), "", _table(quality_rows(report), markdown=True), ""]
    lines += _markdown_latency(report)
    if story_rows(report)[1]:
        lines += ["### Story mode", "", STORY_TITLE + ".", "", _table(story_rows(report), markdown=True), ""]
    for section in _extra_sections(report, markdown=True):
        if section:
            lines += ["### " + section[0], "", *section[1:], ""]
    coverage = coverage_rows(report)
    if coverage[1]:
        lines += [
            "## Coverage", "",
            "What each file really is: ops computing on integer activations (integer), on float activations with "
            "quantized weights (hybrid: dynamic range, int4 weight-only), in float16 (fp16), in float32 (float); "
            "weight bytes per storage dtype; portable = TFLite builtins only / ONNX standard domain only "
            "(no com.microsoft contrib op).", "",
            _table(coverage, markdown=True), "",
        ]
    title, *body = summary_lines(report, markdown=True)
    lines += ["## Summary", "", title, ""]
    for paragraph in body:
        lines += [paragraph, ""]
    budget = _budget_lines(report, markdown=True)
    if budget:
        lines += ["## Budgets", "", *budget, ""]
    if report.compare is not None:
        machine = other_machine_line(report.compare)
        lines += [f"## Compared with {report.compare.old}", "", _table(compare_rows(report.compare), markdown=True), "",
                  *([machine, ""] if machine else [])]
    if report.plots:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in report.plots] + [""]
    lines += [f"Peak RSS of the bench process: {report.peak_rss_mb:.0f} MB; a process holding no backend yet: "
              f"{report.baseline_rss_mb:.0f} MB.", ""]
    lines += [f"- {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def _markdown_head(report: BenchReport) -> list[str]:
    s, host = report.settings, report.host
    return [
        "# storyedge bench report", "",
        f"- export: `{report.export_dir}` (source: {_source_text(report.source)})",
        f"- created: {report.created}; host: {host.platform}, {host.describe()}; "
        f"storyedge {report.storyedge_version}",
        f"- runtimes: {', '.join(f'{k} {v}' for k, v in host.versions.items())}",
        f"- batch {s.batch}, threads {s.threads}, warm-up {s.warmup}, timed runs {s.runs}, "
        f"caption {s.caption_tokens} tokens, latency-only: {s.latency_only}",
        "",
    ]


def _markdown_latency(report: BenchReport) -> list[str]:
    s, bw, roof = report.settings, report.memory_bandwidth, report.roofline
    llc = bw.last_level_cache_bytes
    return [
        "## Latency", "",
        f"Times in ms. step = one decoder step ({s.runs} runs × {s.caption_tokens} steps); enc = encoder; "
        f"caption = encoder + {s.caption_tokens} greedy steps forced to full length; 1st tok = encoder + 1 step. "
        "RSS+ = change of resident memory across creating the backend and its first inference (signed). "
        "x floor = step p50 / roofline floor at the backend's own precision; x fp32 floor = against the fp32 "
        "floor (* = the step's weights fit in the last-level cache, where the DRAM floor does not bind). "
        "tok/s = caption tokens / caption p50.", "",
        _table(latency_rows(report), markdown=True), "",
        "Step latency percentiles:", "",
        _table(percentile_rows(report), markdown=True), "",
        "### Roofline floor", "",
        f"Memory read bandwidth (measured in this run): {bw.read_gbps:.2f} GB/s "
        f"(1 thread {bw.read_gbps_1thread:.2f}; {bw.method}); last-level cache "
        + (f"{llc / 2**20:.0f} MiB. " if llc else "size unknown. ")
        + f"A decoder step reads {roof.counts['matrix_params']:,} matrix weights + "
        f"{roof.counts['vector_params']:,} fp32 biases + one embedding row: "
        f"{roof.fp32_weight_bytes / 1e6:.2f} MB in fp32 → floor {roof.fp32_floor_ms:.4f} ms; "
        f"int8 {roof.int8_weight_bytes / 1e6:.2f} MB → {roof.int8_floor_ms:.4f} ms. {roof.note}", "",
    ]


def _extra_sections(report: BenchReport, markdown: bool) -> list[list[str]]:
    """The compute floor, the per-op profiles, the shortlist parity and the wall time (see :mod:`.report_floors`)."""
    return [floor_lines(report, markdown), profile_lines(report, markdown), shortlist_lines(report, markdown),
            wall_lines(report, markdown)]


def _source_text(source: dict[str, Any]) -> str:
    """One-line provenance of the exported model (the manifest's ``source``, abridged)."""
    if source.get("random_init"):
        return f"random init, seed {source.get('seed')}; tokenizer: {source.get('tokenizer', '?')}"
    if source.get("checkpoint"):
        meta = source.get("meta") or {}
        extra = ", ".join(f"{k} {meta[k]}" for k in ("epoch", "val_ppl") if k in meta)
        return f"checkpoint {source['checkpoint']}" + (f" ({extra})" if extra else "")
    short = {k: v for k, v in source.items() if isinstance(v, (str, int, float, bool))}
    return json.dumps(short) if short else "unknown"


# ---------------------------------------------------------------------------------- plots


def write_plots(report: BenchReport, out_dir: Path) -> list[str]:
    """Step latency per backend (p50 bars, p99 whiskers); with parity, the PPL ratio per backend with
    its gates and the Pareto plot (caption latency vs BLEU-4 or PPL ratio, see :mod:`storyedge.bench.pareto`)."""
    try:
        import matplotlib  # lazy: plots only, and the runtime-only path may not have it

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # lazy: as above
    except ImportError:
        report.notes.append("plots skipped: matplotlib is not installed")
        return []
    written = []
    if report.backends:
        _step_plot(plt, report, out_dir / STEP_PLOT)
        written.append(STEP_PLOT)
    if any(b.parity is not None for b in report.backends):
        ppl_ratio_plot(plt, report, out_dir / PPL_PLOT)
        written.append(PPL_PLOT)
        pareto_plot(plt, report, out_dir / PARETO_PLOT)
        written.append(PARETO_PLOT)
    return written


def _step_plot(plt: Any, report: BenchReport, path: Path) -> None:
    timed = report.backends
    names = [b.name for b in timed]
    p50 = [b.latency.step.p50_ms for b in timed]
    p99 = [b.latency.step.p99_ms for b in timed]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names) + 2), 4.5))
    x = range(len(names))
    ax.bar(x, p50, color="#4c72b0", label="p50")
    ax.errorbar(x, p50, yerr=[[0] * len(p50), [max(b - a, 0) for a, b in zip(p50, p99)]], fmt="none",
                ecolor="black", capsize=4, label="p99")
    floor = report.roofline.fp32_floor_ms
    ax.axhline(floor, color="#c44e52", linestyle="--", linewidth=1, label=f"fp32 roofline floor {floor:.3f} ms")
    ax.axhline(report.roofline.int8_floor_ms, color="#dd8452", linestyle=":", linewidth=1, label="int8 roofline floor")
    ax.set_yscale("log")
    ax.set_xticks(list(x), names, rotation=30, ha="right")
    ax.set_ylabel("decoder step latency (ms, log)")
    ax.set_title(f"Decoder step, batch {report.settings.batch}, {report.settings.threads} threads")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------- write


def write_reports(report: BenchReport, out_dir: str | Path) -> dict[str, Path]:
    """Write the plots, ``report.json`` and ``report.md`` into ``out_dir`` (creating it)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report.plots = write_plots(report, out)
    atomic_write(out / REPORT_JSON, report.to_json())
    atomic_write(out / REPORT_MD, markdown_text(report))
    return {"json": out / REPORT_JSON, "md": out / REPORT_MD, **{p: out / p for p in report.plots}}


def report_path(path: str | Path) -> Path:
    """``path`` itself, or the ``report.json`` in it when it is a directory."""
    p = Path(path)
    return p / REPORT_JSON if p.is_dir() else p


def load_report(path: str | Path) -> BenchReport:
    """A previous ``report.json`` (or the directory holding one); one-line :class:`UserError` when
    there is none, or it is not a bench report of this schema MAJOR."""
    p = report_path(path)
    if not p.is_file():
        raise UserError(f"{path}: no bench report there")
    return BenchReport.from_json(p.read_text(), p)


# -------------------------------------------------------------------------------- compare


def compare_reports(old: BenchReport, new: BenchReport, old_path: str | Path) -> Comparison:
    """Per backend present in both: old/new/delta of step, encoder and caption means and PPL ratio."""
    old_by = {b.name: b for b in old.backends}
    rows = []
    for b in new.backends:
        o = old_by.get(b.name)
        if o is None:
            continue
        rows.append(CompareRow(
            backend=b.name,
            step=Delta.of(o.latency.step.mean_ms, b.latency.step.mean_ms),
            encoder=Delta.of(o.latency.encoder.mean_ms, b.latency.encoder.mean_ms),
            caption=Delta.of(o.latency.caption.mean_ms, b.latency.caption.mean_ms),
            ppl_ratio=Delta.of(o.parity.ppl_ratio if o.parity else None, b.parity.ppl_ratio if b.parity else None),
            bleu4=Delta.of(_greedy_bleu4(o), _greedy_bleu4(b)),
        ))
    new_names = {b.name for b in new.backends}
    return Comparison(str(old_path), rows, sorted(set(old_by) - new_names), sorted(new_names - set(old_by)),
                      other_machine="" if old.host.same_machine(new.host) else old.host.describe())


def other_machine_line(compare: Comparison) -> str | None:
    """The warning that the compared report ran on another machine (None where it did not)."""
    if not compare.other_machine:
        return None
    return (f"note: the old report ran on another machine ({compare.other_machine}): its deltas mix the "
            "machines' speeds with what changed")


def _greedy_bleu4(result: Any) -> float | None:
    quality = result.caption_quality("greedy")
    return None if quality is None else quality.scores.bleu4


def compare_rows(compare: Comparison) -> Table:
    """The ``--compare`` table: old → new means and relative deltas per backend."""
    headers = ["backend", "step ms old→new", "Δ step", "enc ms old→new", "Δ enc", "caption Δ", "PPL ratio old→new",
               "Δ ratio", "BLEU-4 old→new"]

    def pct(d: Delta) -> str:
        return "-" if d.pct is None else f"{d.pct:+.1f}%"

    rows = []
    for r in compare.rows:
        s, e, p = r.step, r.encoder, r.ppl_ratio
        rows.append([
            r.backend, f"{_fmt(s.old, 4)}→{_fmt(s.new, 4)}", pct(s), f"{_fmt(e.old, 3)}→{_fmt(e.new, 3)}",
            pct(e), pct(r.caption), f"{_fmt(p.old, 5)}→{_fmt(p.new, 5)}", "-" if p.delta is None else f"{p.delta:+.5f}",
            "-" if r.bleu4 is None else f"{_fmt(r.bleu4.old, 2)}→{_fmt(r.bleu4.new, 2)}",
        ])
    return headers, rows


def compare_text(compare: Comparison) -> str:
    """The ``--compare`` block of the terminal output."""
    parts = [f"Compared with {compare.old}", _table(compare_rows(compare))]
    machine = other_machine_line(compare)
    if machine:
        parts.append(machine)
    if compare.only_old:
        parts.append("only in the old report: " + ", ".join(compare.only_old))
    if compare.only_new:
        parts.append("only in the new report: " + ", ".join(compare.only_new))
    return "\n".join(parts)


# The compute-floor / profile / shortlist sections use this module's table helpers: imported last.
from storyedge.bench.report_floors import floor_lines, profile_lines, shortlist_lines, wall_lines  # noqa: E402
