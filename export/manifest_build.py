"""The export's :class:`~storyedge.manifest.Manifest`, assembled from the context once the files
are built, validated and sorted into good and rejected."""

from __future__ import annotations

import datetime as _dt
import platform
from typing import Any

from storyedge import __version__
from storyedge.export import validation as val
from storyedge.export.context import REFERENCE_DIR, ExportContext
from storyedge.export.plan import distribution_version
from storyedge.manifest import ExportedFile, Manifest
from storyedge.run_dir import CONFIG_FILE, TOKENIZER_DIR, WEIGHTS_FILE

#: Distributions whose versions shaped the files (recorded in the manifest).
VERSIONED_DISTRIBUTIONS = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert", "numpy")


def versions() -> dict[str, str]:
    """Versions of everything that shaped the files."""
    out = {"storyedge": __version__, "python": platform.python_version()}
    out.update({dist: distribution_version(dist) for dist in VERSIONED_DISTRIBUTIONS})
    return out


def multi_vs_separate(entries: dict[tuple[str, str, str], ExportedFile], precisions: list[str]) -> dict[str, Any]:
    """Per TFLite precision: the multi-signature file's size vs the two separate files'."""
    out: dict[str, Any] = {}
    for precision in precisions:
        m = entries[("tflite", "multi", precision)]
        e, d = entries[("tflite", "encoder", precision)], entries[("tflite", "decoder_step", precision)]
        separate = e.size_bytes + d.size_bytes
        out[f"tflite-{precision}"] = {
            "multi_bytes": m.size_bytes,
            "separate_bytes": separate,
            "saved_bytes": separate - m.size_bytes,
            "multi_over_separate": round(m.size_bytes / separate, 4),
        }
    return out


def validation_source(ctx: ExportContext) -> dict[str, Any]:
    """The manifest's ``source.validation``: what the files were validated (and calibrated) on."""
    calibrated = "int8" in ctx.plan.tflite_precisions
    return {
        "data": ctx.vset.data,
        "windows": ctx.vset.windows,
        "batches": len(ctx.vset),
        "calibration_windows": ctx.cset.windows if calibrated else 0,
        "calibration_data": ctx.cset.data if calibrated else None,
        "tolerance_factors": dict(val.TOLERANCE_FACTORS),
        "tolerance_overrides": dict(ctx.plan.tolerances),
    }


def assemble_manifest(
    ctx: ExportContext, source: dict[str, Any], good: list[ExportedFile], rejected: list[ExportedFile]
) -> Manifest:
    """The manifest of the export in ``ctx`` (``source``: the caller's provenance record)."""
    src = dict(source)
    src["validation"] = validation_source(ctx)
    if ctx.plan.skipped:
        src["skipped"] = ctx.plan.skipped
    tokenizer = ctx.tokenizer
    return Manifest(
        storyedge_version=__version__,
        batch=ctx.plan.batch,
        config=ctx.config.to_dict(),
        tokenizer={"dir": TOKENIZER_DIR, "fingerprint": tokenizer.fingerprint(), "source": tokenizer.source,
                   **tokenizer.special_ids},
        versions=versions(),
        source=src,
        files=good,
        decoder=ctx.reference.decoder,
        reference={"weights": f"{REFERENCE_DIR}/{WEIGHTS_FILE}", "config": f"{REFERENCE_DIR}/{CONFIG_FILE}"},
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        multi_vs_separate=multi_vs_separate(ctx.entries(), ctx.plan.tflite_precisions),
        rejected=rejected,
        story=ctx.story,
    )
