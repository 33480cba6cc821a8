"""The final table of an export: files, sizes, max diffs vs the TF reference, status."""

from __future__ import annotations

from storyedge.manifest import ExportedFile, Manifest

#: The output whose diff the table shows per graph (all of them are in the manifest).
HEADLINE = {"encoder": ("h0", "c0", "context"), "decoder_step": ("logits",), "multi": ("logits",)}


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


def format_table(manifest: Manifest, only_rejected: bool = False) -> str:
    """Plain-text table: file, precision, size, headline max |diff|, tolerance, status."""
    rows = [("file", "precision", "size", "max |diff|", "tolerance", "status")]
    entries = [] if only_rejected else [(e, "ok") for e in manifest.files]
    entries += [(e, "REJECTED") for e in manifest.rejected]
    for entry, status in entries:
        diff, tol = _diff_cell(entry)
        if status == "REJECTED":
            v = entry.validation or {}
            failing = v.get("errors") or v.get("failing_outputs") or v.get("shape_errors")
            if failing:
                status += f" ({', '.join(map(str, failing))})"
        rows.append((entry.path, entry.precision, human_bytes(entry.size_bytes), diff, tol, status))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if not only_rejected:
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
    return "\n".join(lines)
