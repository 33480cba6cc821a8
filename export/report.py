"""The final table of an export: files, sizes, max diffs vs the TF reference, status; as plain
text (:func:`format_table`, what ``storyedge export`` prints) or Markdown
(:func:`format_markdown`), both laid out by ``tabulate``."""

from __future__ import annotations

from tabulate import tabulate

from storyedge.manifest import ExportedFile, Manifest

#: The outputs whose worst diff the table shows per graph (all of them are in the manifest); a
#: graph not named here (the encoder, the story-mode graphs) shows its worst output.
HEADLINE = {"decoder_step": ("logits",), "multi": ("logits",)}
HEADERS = ("file", "precision", "size", "max |diff|", "tolerance", "status")
#: ``tabulate`` table formats per :func:`render_table` style.
TABLE_FORMATS = {"text": "simple", "markdown": "github"}
OK, REJECTED = "ok", "REJECTED"


def human_bytes(size: int) -> str:
    """1234567 → '1.18 MiB'."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    return f"{size} B"


def _diff_cell(entry: ExportedFile) -> tuple[str, str]:
    v = entry.validation or {}
    diffs = v.get("max_abs_diff", {})
    tols = v.get("tolerance", {})
    names = [n for n in HEADLINE.get(entry.graph, ()) if n in diffs] or list(diffs)
    if not names:
        return "-", "-"
    worst = max(names, key=lambda n: diffs[n] / tols[n] if tols.get(n) else diffs[n])
    return f"{worst} {diffs[worst]:.2e}", f"{tols.get(worst, float('nan')):.1e}"


def table_rows(manifest: Manifest, only_rejected: bool = False) -> list[tuple[str, ...]]:
    """One row per file (good ones first, unless ``only_rejected``), cells as in :data:`HEADERS`."""
    entries = [] if only_rejected else [(e, OK) for e in manifest.files]
    entries += [(e, REJECTED) for e in manifest.rejected]
    rows = []
    for entry, status in entries:
        diff, tol = _diff_cell(entry)
        if status == REJECTED:
            v = entry.validation or {}
            failing = v.get("errors") or v.get("failing_outputs") or v.get("shape_errors")
            if failing:
                status += f" ({', '.join(map(str, failing))})"
        rows.append((entry.path, entry.precision, human_bytes(entry.size_bytes), diff, tol, status))
    return rows


def summary_lines(manifest: Manifest) -> list[str]:
    """The lines under the table: multi vs separate sizes, validation data, skipped files."""
    lines = []
    for name, cmp in manifest.multi_vs_separate.items():
        lines.append(
            f"{name}: multi-signature {human_bytes(cmp['multi_bytes'])} vs separate "
            f"{human_bytes(cmp['separate_bytes'])} ({cmp['multi_over_separate']:.2f}x)"
        )
    v = manifest.source.get("validation", {})
    if v:
        lines.append(f"validated on {v.get('windows')} window(s) of {v.get('data')}")
    for s in manifest.source.get("skipped", []):
        lines.append(f"skipped {s['format']} {s['precision']}: {s['reason']}")
    return lines


def _escape_markdown(cell: str) -> str:
    return cell.replace("|", "\\|")


def render_table(manifest: Manifest, style: str = "text", only_rejected: bool = False) -> str:
    """The export's table in ``style`` (``text`` or ``markdown``), then (unless
    ``only_rejected``) the summary lines (a bullet list in Markdown)."""
    if style not in TABLE_FORMATS:
        raise ValueError(f"unknown table style {style!r} (one of {', '.join(TABLE_FORMATS)})")
    headers, rows = list(HEADERS), table_rows(manifest, only_rejected)
    if style == "markdown":
        headers = [_escape_markdown(h) for h in headers]
        rows = [tuple(_escape_markdown(c) for c in row) for row in rows]
    table = tabulate(rows, headers=headers, tablefmt=TABLE_FORMATS[style], disable_numparse=True, stralign="left")
    lines = [line.rstrip() for line in table.splitlines()]
    if not only_rejected:
        extra = summary_lines(manifest)
        if style == "markdown" and extra:
            lines += ["", *(f"- {line}" for line in extra)]
        else:
            lines += extra
    return "\n".join(lines)


def format_table(manifest: Manifest, only_rejected: bool = False) -> str:
    """Plain-text table: file, precision, size, headline max |diff|, tolerance, status."""
    return render_table(manifest, "text", only_rejected)


def format_markdown(manifest: Manifest, only_rejected: bool = False) -> str:
    """The same table as Markdown (a GitHub pipe table and a bullet list)."""
    return render_table(manifest, "markdown", only_rejected)
