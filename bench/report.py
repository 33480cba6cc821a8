"""Reports of ``storyedge bench``: terminal tables, ``report.json``, ``report.md``, PNG plots and
``--compare`` deltas. Numpy/stdlib only; matplotlib (Agg) is imported for the plots and, when it
is absent, the plots are skipped with a note (the runtime-only path needs no matplotlib)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from storyedge.errors import UserError

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
STEP_PLOT = "step_latency.png"
PPL_PLOT = "ppl_ratio.png"


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


def _table(headers: list[str], rows: list[list[str]], markdown: bool = False) -> str:
    if markdown:
        esc = lambda cells: [c.replace("|", "\\|") for c in cells]  # noqa: E731
        lines = ["| " + " | ".join(esc(headers)) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(esc(r)) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def parity_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = ["backend", "prec", "PPL", "ratio", "KL", "top-1", "greedy", "max|dlogit|", "gates"]
    rows = []
    for b in report["backends"]:
        p = b.get("parity")
        if not p:
            continue
        gates = p.get("gates") or {}
        verdict = "ref" if b.get("reference") else (
            "-" if not gates else ("pass" if all(g["passed"] for g in gates.values())
                                  else "FAIL " + ",".join(k for k, g in gates.items() if not g["passed"]))
        )
        rows.append([
            b["name"], b["precision"], _fmt(p["ppl"], 4), _fmt(p["ppl_ratio"], 5), f"{p['kl']:.2e}",
            _fmt(p["top1_agreement"], 4), _fmt(p["greedy_agreement"], 3), _fmt(p["max_abs_logit_diff"], 5),
            verdict,
        ])
    return headers, rows


def latency_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = [
        "backend", "size MB", "load ms", "RSS+ MB", "1st enc ms", "enc p50", "step p50", "step p99",
        "step mean", "x floor", "x fp32 floor", "1st tok p50", "caption p50", "tok/s",
    ]
    rows = []
    for b in report["backends"]:
        lat = b.get("latency")
        if not lat:
            continue
        roof = b.get("roofline", {})
        rows.append([
            b["name"], _fmt(b["size_bytes"] / 1e6, 2) if b["size_bytes"] else "-", _fmt(b["load_seconds"] * 1e3, 1),
            _fmt(b.get("rss_delta_mb"), 1),
            _fmt(b.get("first_encode_ms"), 2), _fmt(lat["encoder"]["p50_ms"], 3), _fmt(lat["step"]["p50_ms"], 4),
            _fmt(lat["step"]["p99_ms"], 4), _fmt(lat["step"]["mean_ms"], 4), _fmt(roof.get("step_vs_floor"), 2),
            _fmt(roof.get("step_vs_fp32_floor"), 2) + ("*" if roof.get("fits_in_llc") else ""),
            _fmt(lat["first_token"]["p50_ms"], 3), _fmt(lat["caption"]["p50_ms"], 3), _fmt(lat["tokens_per_s"], 0),
        ])
    return headers, rows


def target_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = ["target (p50)", "measured", "goal", "met", "detail"]
    rows = []
    for name, t in (report.get("targets") or {}).items():
        rows.append([name, _fmt(t.get("value"), 4), t.get("goal", ""), _fmt(t.get("met")), t.get("detail", "")])
    return headers, rows


def terminal_text(report: dict[str, Any]) -> str:
    """The tables ``storyedge bench`` prints."""
    s = report["settings"]
    parts = [
        f"storyedge bench: {report['export_dir']}  (batch {s['batch']}, threads {s['threads']}, "
        f"warmup {s['warmup']}, runs {s['runs']}, caption {s['caption_tokens']} tokens)"
    ]
    if report.get("parity"):
        p = report["parity"]
        parts.append(f"\nParity vs {p['reference']} on {p['windows']} {p['split']} windows ({p['tokens']} target tokens)")
        parts.append(_table(*parity_rows(report)))
    else:
        parts.append("\nParity: skipped (--latency-only)")
    bw = report["memory_bandwidth"]
    roof = report["roofline"]
    parts.append(
        f"\nLatency (ms; step = one decoder step; caption = encoder + {s['caption_tokens']} steps). "
        f"Roofline: {roof['fp32_weight_bytes'] / 1e6:.3f} MB fp32 weights/step at "
        f"{bw['read_gbps']:.1f} GB/s read = {roof['fp32_floor_ms']:.4f} ms floor; x floor = step p50 / floor"
        + (" (* weights fit in the last-level cache: floor not binding)" if any(
            (b.get("roofline") or {}).get("fits_in_llc") for b in report["backends"]) else "")
    )
    parts.append(_table(*latency_rows(report)))
    if report.get("targets"):
        parts.append("\nTargets (measured, not gates)")
        parts.append(_table(*target_rows(report)))
    parts.append(f"\npeak RSS {report['peak_rss_mb']:.0f} MB")
    failed = report.get("failed_gates") or []
    parts.append("gates: " + ("all passed" if not failed else "FAILED " + "; ".join(failed)) if report.get("parity") else "")
    return "\n".join(p for p in parts if p is not None)


def markdown_text(report: dict[str, Any]) -> str:
    """``report.md``: settings, the tables, targets and what each number means."""
    s = report["settings"]
    lines = [
        "# storyedge bench report",
        "",
        f"- export: `{report['export_dir']}` (source: {_source_text(report.get('source') or {})})",
        f"- created: {report['created']}; host: {report['host'].get('platform')}, "
        f"{report['host'].get('cpu_count')} CPUs; storyedge {report['storyedge_version']}",
        f"- runtimes: {', '.join(f'{k} {v}' for k, v in report['host'].get('versions', {}).items())}",
        f"- batch {s['batch']}, threads {s['threads']}, warm-up {s['warmup']}, timed runs {s['runs']}, "
        f"caption {s['caption_tokens']} tokens, latency-only: {s['latency_only']}",
        "",
    ]
    if report.get("parity"):
        p = report["parity"]
        lines += [
            f"## Parity vs `{p['reference']}`",
            "",
            f"{p['windows']} windows of split `{p['split']}`, {p['tokens']} non-pad target tokens; "
            "PPL = exp(mean NLL), ratio = PPL / PPL(reference), KL = mean KL(ref ‖ backend) in nats.",
            "",
            _table(*parity_rows(report), markdown=True),
            "",
            "Gates: " + ("all passed" if not report.get("failed_gates") else "**FAILED**: " + "; ".join(report["failed_gates"])),
            "",
        ]
    bw, roof = report["memory_bandwidth"], report["roofline"]
    lines += [
        "## Latency",
        "",
        f"Times in ms. step = one decoder step ({s['runs']} runs × {s['caption_tokens']} steps); enc = encoder; "
        f"caption = encoder + {s['caption_tokens']} greedy steps forced to full length; 1st tok = encoder + 1 step. "
        "RSS+ = resident memory the backend added (load + first inference). x floor = step p50 / roofline "
        "floor at the backend's own precision; x fp32 floor = against the fp32 floor (* = the step's weights fit "
        "in the last-level cache, where the DRAM floor does not bind). tok/s = caption tokens / caption p50.",
        "",
        _table(*latency_rows(report), markdown=True),
        "",
        "Step latency percentiles:",
        "",
        _table(
            ["backend", "count", "mean", "p50", "p90", "p95", "p99", "stdev"],
            [
                [b["name"], *(_fmt(b["latency"]["step"][k], 4) if k != "count" else str(b["latency"]["step"][k])
                              for k in ("count", "mean_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "stdev_ms"))]
                for b in report["backends"] if b.get("latency")
            ],
            markdown=True,
        ),
        "",
        "### Roofline floor",
        "",
        f"Memory read bandwidth (measured in this run): {bw['read_gbps']:.2f} GB/s "
        f"(1 thread {bw['read_gbps_1thread']:.2f}; {bw['method']}); last-level cache "
        f"{(bw.get('last_level_cache_bytes') or 0) / 2**20:.0f} MiB. "
        f"A decoder step reads {roof['counts']['matrix_params']:,} matrix weights + "
        f"{roof['counts']['vector_params']:,} fp32 biases + one embedding row: "
        f"{roof['fp32_weight_bytes'] / 1e6:.2f} MB in fp32 → floor {roof['fp32_floor_ms']:.4f} ms; "
        f"int8 {roof['int8_weight_bytes'] / 1e6:.2f} MB → {roof['int8_floor_ms']:.4f} ms. {roof['note']}",
        "",
    ]
    if report.get("targets"):
        lines += ["## Targets (measured, not gates)", "", _table(*target_rows(report), markdown=True), ""]
    if report.get("compare"):
        lines += ["## Compared with " + report["compare"]["old"], "", _table(*compare_rows(report["compare"]), markdown=True), ""]
    if report.get("plots"):
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in report["plots"]] + [""]
    lines += [f"Peak RSS of the bench process: {report['peak_rss_mb']:.0f} MB.", ""]
    for note in report.get("notes", []):
        lines.append(f"- {note}")
    return "\n".join(lines) + "\n"


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


def write_plots(report: dict[str, Any], out_dir: Path) -> list[str]:
    """Step latency per backend (p50 bars, p99 whiskers) and PPL ratio per backend with gates."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        report.setdefault("notes", []).append("plots skipped: matplotlib is not installed")
        return []
    written: list[str] = []
    timed = [b for b in report["backends"] if b.get("latency")]
    if timed:
        names = [b["name"] for b in timed]
        p50 = [b["latency"]["step"]["p50_ms"] for b in timed]
        p99 = [b["latency"]["step"]["p99_ms"] for b in timed]
        fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names) + 2), 4.5))
        x = range(len(names))
        ax.bar(x, p50, color="#4c72b0", label="p50")
        ax.errorbar(x, p50, yerr=[[0] * len(p50), [max(b - a, 0) for a, b in zip(p50, p99)]], fmt="none",
                    ecolor="black", capsize=4, label="p99")
        floor = report["roofline"]["fp32_floor_ms"]
        ax.axhline(floor, color="#c44e52", linestyle="--", linewidth=1, label=f"fp32 roofline floor {floor:.3f} ms")
        ax.axhline(report["roofline"]["int8_floor_ms"], color="#dd8452", linestyle=":", linewidth=1, label="int8 roofline floor")
        ax.set_yscale("log")
        ax.set_xticks(list(x), names, rotation=30, ha="right")
        ax.set_ylabel("decoder step latency (ms, log)")
        ax.set_title(f"Decoder step, batch {report['settings']['batch']}, {report['settings']['threads']} threads")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / STEP_PLOT, dpi=110)
        plt.close(fig)
        written.append(STEP_PLOT)
    rated = [b for b in report["backends"] if b.get("parity")]
    if rated:
        names = [b["name"] for b in rated]
        ratios = [b["parity"]["ppl_ratio"] for b in rated]
        fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names) + 2), 4.5))
        colors = {"fp32": "#4c72b0", "fp16": "#55a868", "int8-dynamic": "#dd8452", "int8": "#c44e52"}
        for i, (b, r) in enumerate(zip(rated, ratios)):
            ax.plot([i], [r], marker="o", markersize=8, color=colors.get(b["precision"], "grey"), linestyle="none")
            ax.annotate(f"{r:.5f}", (i, r), textcoords="offset points", xytext=(0, 8), ha="center", fontsize=8)
            for line in b["parity"].get("gate_lines", []):
                ax.hlines(line, i - 0.4, i + 0.4, colors="black", linestyles="--", linewidth=1)
        for precision, color in colors.items():
            if any(b["precision"] == precision for b in rated):
                ax.plot([], [], marker="o", color=color, linestyle="none", label=precision)
        ax.plot([], [], color="black", linestyle="--", label="gate")
        ax.legend(fontsize=8)
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_ylabel("PPL / PPL(reference)")
        ax.set_title("Perplexity ratio per backend (dashed: gate)")
        fig.tight_layout()
        fig.savefig(out_dir / PPL_PLOT, dpi=110)
        plt.close(fig)
        written.append(PPL_PLOT)
    return written


# ---------------------------------------------------------------------------------- write


def write_reports(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.json``, the plots and ``report.md`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report["plots"] = write_plots(report, out)
    (out / REPORT_JSON).write_text(json.dumps(report, indent=2, default=_json_default))
    (out / REPORT_MD).write_text(markdown_text(report))
    return {"json": out / REPORT_JSON, "md": out / REPORT_MD, **{p: out / p for p in report["plots"]}}


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# -------------------------------------------------------------------------------- compare


def load_report(path: str | Path) -> dict[str, Any]:
    """A previous ``report.json`` (or the directory holding one)."""
    p = Path(path)
    if p.is_dir():
        p = p / REPORT_JSON
    if not p.is_file():
        raise UserError(f"{path}: no bench report to compare with")
    try:
        data = json.loads(p.read_text())
        data["backends"]  # noqa: B018 - shape check
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{p}: not a storyedge bench report.json") from None
    data["_path"] = str(p)
    return data


def compare_reports(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Per backend present in both: old/new/delta of step, encoder and caption means and PPL ratio."""
    old_by = {b["name"]: b for b in old["backends"]}
    rows = []
    for b in new["backends"]:
        o = old_by.get(b["name"])
        if o is None:
            continue
        row: dict[str, Any] = {"backend": b["name"]}
        for key in ("step", "encoder", "caption"):
            a = (o.get("latency") or {}).get(key, {}).get("mean_ms")
            c = (b.get("latency") or {}).get(key, {}).get("mean_ms")
            row[key] = _delta(a, c)
        a = (o.get("parity") or {}).get("ppl_ratio")
        c = (b.get("parity") or {}).get("ppl_ratio")
        row["ppl_ratio"] = _delta(a, c)
        rows.append(row)
    only_old = sorted(set(old_by) - {b["name"] for b in new["backends"]})
    only_new = sorted({b["name"] for b in new["backends"]} - set(old_by))
    return {"old": old.get("_path", ""), "rows": rows, "only_old": only_old, "only_new": only_new}


def _delta(old: float | None, new: float | None) -> dict[str, float | None]:
    if old is None or new is None:
        return {"old": old, "new": new, "delta": None, "pct": None}
    return {"old": old, "new": new, "delta": new - old, "pct": (new - old) / old * 100 if old else None}


def compare_rows(compare: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = ["backend", "step ms old→new", "Δ step", "enc ms old→new", "Δ enc", "caption Δ", "PPL ratio old→new", "Δ ratio"]

    def pct(d: dict[str, Any]) -> str:
        return "-" if d["pct"] is None else f"{d['pct']:+.1f}%"

    rows = []
    for r in compare["rows"]:
        s, e, c, p = r["step"], r["encoder"], r["caption"], r["ppl_ratio"]
        rows.append([
            r["backend"], f"{_fmt(s['old'], 4)}→{_fmt(s['new'], 4)}", pct(s), f"{_fmt(e['old'], 3)}→{_fmt(e['new'], 3)}",
            pct(e), pct(c), f"{_fmt(p['old'], 5)}→{_fmt(p['new'], 5)}",
            "-" if p["delta"] is None else f"{p['delta']:+.5f}",
        ])
    return headers, rows


def compare_text(compare: dict[str, Any]) -> str:
    parts = [f"Compared with {compare['old']}", _table(*compare_rows(compare))]
    if compare["only_old"]:
        parts.append("only in the old report: " + ", ".join(compare["only_old"]))
    if compare["only_new"]:
        parts.append("only in the new report: " + ", ".join(compare["only_new"]))
    return "\n".join(parts)
