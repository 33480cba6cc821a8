"""The bench's quality plots: the PPL ratio per backend with its gates, and the Pareto plot.

``pareto.png``: one point per backend at (greedy caption latency p50, greedy BLEU-4), or the PPL
ratio where no caption quality was scored; marker area proportional to the file size (the
in-memory TF reference is a hollow marker), the backends no other backend beats on both axes
joined by the Pareto front, a cross on each backend failing a gate, the quality gate (reference BLEU-4 - ``gate_bleu_drop``, or the PPL
ratio gates per precision) as horizontal lines and the caption-latency budget as a vertical line;
a backend over any set budget gets a red edge.

Labels never sit on the data area's lines: the PPL-ratio plot writes each ratio under its
backend's tick label, and both plots keep the legend outside the axes (inside, it hid the
right-most backend's gate line).

``plt`` is matplotlib's pyplot, imported (lazily) by the caller.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from storyedge.bench.results import BackendResult, BenchReport

PRECISION_COLORS = {"fp32": "#4c72b0", "fp16": "#55a868", "int8-dynamic": "#dd8452", "int8": "#c44e52", "int4": "#8172b3"}
GATE_STYLES = ("--", ":", "-.", (0, (5, 1)))


def _legend_outside(ax: Any) -> None:
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def ppl_ratio_plot(plt: Any, report: BenchReport, path: Path) -> None:
    """PPL ratio per backend, each backend's gate line(s) across its slot, the ratios under the
    tick labels (not over the gate lines) and the legend outside the axes."""
    rated = [(b, b.parity) for b in report.backends if b.parity is not None]
    fig, ax = plt.subplots(figsize=(max(7, 0.9 * len(rated) + 4), 4.8))
    for i, (b, p) in enumerate(rated):
        ax.plot([i], [p.ppl_ratio], marker="o", markersize=8, color=PRECISION_COLORS.get(b.precision, "grey"),
                linestyle="none")
        for line in p.gate_lines:
            ax.hlines(line, i - 0.4, i + 0.4, colors="black", linestyles="--", linewidth=1)
    for precision, color in PRECISION_COLORS.items():
        if any(b.precision == precision for b, _ in rated):
            ax.plot([], [], marker="o", color=color, linestyle="none", label=precision)
    ax.plot([], [], color="black", linestyle="--", label="gate")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xlim(-0.6, len(rated) - 0.4)
    ax.set_xticks(range(len(rated)), [f"{b.name}\n{p.ppl_ratio:.5f}" for b, p in rated], rotation=30, ha="right",
                  fontsize=8)
    ax.set_ylabel("PPL / PPL(reference)")
    ax.set_title("Perplexity ratio per backend (dashed: gate; ratio under each name)")
    _legend_outside(ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _greedy_bleu(b: BackendResult) -> float | None:
    q = b.caption_quality("greedy")
    return None if q is None else q.scores.bleu4


def pareto_front(points: list[tuple[float, float]], higher_is_better: bool) -> list[int]:
    """Indices of the points no other point beats on both axes (lower x, better y), by x."""
    def better(a: tuple[float, float], b: tuple[float, float]) -> bool:
        ya, yb = (a[1], b[1]) if higher_is_better else (-a[1], -b[1])
        return a[0] <= b[0] and ya >= yb and (a[0] < b[0] or ya > yb)

    front = [i for i, p in enumerate(points) if not any(better(q, p) for j, q in enumerate(points) if j != i)]
    return sorted(front, key=lambda i: points[i][0])


def pareto_plot(plt: Any, report: BenchReport, path: Path) -> None:
    """``pareto.png`` (see the module doc)."""
    rows = [b for b in report.backends if b.parity is not None]
    use_bleu = all(_greedy_bleu(b) is not None for b in rows) and bool(rows)
    ys = [_greedy_bleu(b) if use_bleu else b.parity.ppl_ratio for b in rows]  # type: ignore[union-attr]
    xs = [b.latency.caption.p50_ms for b in rows]
    sized = [b.size_mb for b in rows if b.size_mb]
    biggest = max(sized) if sized else 1.0
    fig, ax = plt.subplots(figsize=(9, 5.2))
    for b, x, y in zip(rows, xs, ys):
        color = PRECISION_COLORS.get(b.precision, "grey")
        area = 40 + 760 * (b.size_mb or 0) / biggest
        over = bool(b.over_budget)
        face = "none" if b.reference else color
        ax.scatter([x], [y], s=area, facecolors=face, edgecolors="#d62728" if over else color,
                   linewidths=2.0 if over else 1.2, alpha=0.75, zorder=3)
        if not b.reference and not (b.parity.passed and b.quality_passed):  # type: ignore[union-attr]
            ax.scatter([x], [y], s=60, marker="x", color="black", linewidths=1.5, zorder=5)
    front = pareto_front(list(zip(xs, ys)), higher_is_better=use_bleu)
    if len(front) > 1:
        ax.plot([xs[i] for i in front], [ys[i] for i in front], color="grey", linewidth=1, zorder=2,
                label="Pareto front")
    _gate_lines(ax, report, rows, use_bleu)
    caption_budget = report.settings.budgets.caption_ms
    if caption_budget is not None:
        ax.axvline(caption_budget, color="#d62728", linestyle="--", linewidth=1,
                   label=f"caption budget {caption_budget:g} ms")
    for precision, color in PRECISION_COLORS.items():
        if any(b.precision == precision for b in rows):
            ax.scatter([], [], s=40, color=color, label=precision)
    if report.settings.budgets.limits():
        ax.scatter([], [], s=40, facecolors="none", edgecolors="#d62728", linewidths=2, label="over a budget")
    if any(not b.reference and not (b.parity.passed and b.quality_passed) for b in rows):  # type: ignore[union-attr]
        ax.scatter([], [], s=60, marker="x", color="black", label="fails a gate")
    ax.set_xscale("log")
    if xs:
        ax.set_xlim(min(xs) / 1.4, max(xs) * 2.2)  # room for the right-most label
    ax.margins(y=0.15)
    ax.xaxis.set_major_locator(plt.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(plt.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    _labels(fig, ax, [b.name for b in rows], xs, ys)
    ax.set_xlabel("greedy caption latency p50 (ms, log)")
    ax.set_ylabel("BLEU-4 (greedy, vs reference captions)" if use_bleu else "PPL / PPL(reference)")
    size_note = f"marker area ~ file size (largest {biggest:.2f} MB; hollow: in memory)"
    ax.set_title(f"Caption latency vs {'BLEU-4' if use_bleu else 'PPL ratio'}; {size_note}", fontsize=9)
    ax.grid(True, alpha=0.3)
    _legend_outside(ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


#: label offsets (points) tried in turn: right-above, right-below, left-above, left-below, further up / down
_OFFSETS = ((8, 8), (8, -16), (-8, 8), (-8, -16), (8, 20), (8, -28))


def _labels(fig: Any, ax: Any, names: list[str], xs: list[float], ys: list[float]) -> None:
    """Each backend's name beside its point, at the first offset whose box (estimated from the
    name's length, in display pixels) overlaps no label placed before it."""
    px = fig.dpi / 72.0
    placed: list[tuple[float, float, float, float]] = []
    for i in sorted(range(len(names)), key=lambda i: (xs[i], -ys[i])):
        cx, cy = ax.transData.transform((xs[i], ys[i]))
        width, height = 4.3 * len(names[i]) * px, 10 * px
        choice = _OFFSETS[0]
        for dx, dy in _OFFSETS:
            left = cx + dx * px - (width if dx < 0 else 0)
            box = (left, cy + dy * px, left + width, cy + dy * px + height)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                choice = (dx, dy)
                placed.append(box)
                break
        else:
            placed.append(box)
        ax.annotate(names[i], (xs[i], ys[i]), textcoords="offset points", xytext=choice, fontsize=7, zorder=4,
                    ha="right" if choice[0] < 0 else "left",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7})


def _gate_lines(ax: Any, report: BenchReport, rows: list[BackendResult], use_bleu: bool) -> None:
    """The quality gate(s) as horizontal lines: reference BLEU-4 - drop, or the PPL-ratio gates."""
    if use_bleu:
        reference = next((b for b in rows if b.reference), None)
        drop = report.gates.bleu_drop
        if reference is not None and drop is not None:
            line = _greedy_bleu(reference) - drop  # type: ignore[operator]
            ax.axhline(line, color="black", linestyle="--", linewidth=1, label=f"BLEU gate (ref - {drop:g})")
        return
    seen: dict[float, list[str]] = {}
    for b in rows:
        for line in b.parity.gate_lines:  # type: ignore[union-attr]
            seen.setdefault(round(line, 9), [])
            if b.precision not in seen[round(line, 9)]:
                seen[round(line, 9)].append(b.precision)
    for k, (line, precisions) in enumerate(sorted(seen.items())):
        ax.axhline(line, color="black", linestyle=GATE_STYLES[k % len(GATE_STYLES)], linewidth=1,
                   label=f"gate {line:g} ({', '.join(precisions)})")
