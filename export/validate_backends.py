"""Validation of every backend layout of an export against the TF reference.

Per (format, precision): the separate encoder + decoder-step pair, and for TFLite also the
multi-signature file, each loaded as a runtime backend (:func:`storyedge.runtime.load_backend`)
and run over the validation set. The encoder and decoder comparisons are judged per file
(:func:`storyedge.export.validation.judge`); a runtime that cannot load or run a graph is that
graph's recorded error, never an exception.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from storyedge.constants import VALIDATION_TIMING_PREFIX
from storyedge.export import validation as val
from storyedge.export.context import ExportContext
from storyedge.export.plan import ExportPlan
from storyedge.export.story_build import validate_story
from storyedge.runtime import load_backend
from storyedge.runtime.specs import BackendSpec, backend_name

VALIDATION_THREADS = max(1, min(4, os.cpu_count() or 1))
#: How much of a runtime error's first line a validation record keeps.
ERROR_CHARS = 300

Layout = tuple[str, str, str]  # (format, precision, "separate" | "multi")


def backend_layouts(plan: ExportPlan) -> list[Layout]:
    """Every (format, precision, layout) the plan's files make up, in validation order."""
    layouts: list[Layout] = []
    for fmt, precisions in (("tflite", plan.tflite_precisions), ("onnx", plan.onnx_precisions)):
        for precision in precisions:
            layouts.append((fmt, precision, "separate"))
            if fmt == "tflite":
                layouts.append((fmt, precision, "multi"))
    return layouts


def validate_backends(ctx: ExportContext) -> dict[str, dict[str, Any]]:
    """``{file path: validation record}`` of every built file (one progress step per layout)."""
    records: dict[str, dict[str, Any]] = {}
    for layout in backend_layouts(ctx.plan):
        ctx.progress.stage("validate " + " ".join(layout))
        t0 = time.perf_counter()
        spec = validate_layout(ctx, layout, records)
        ctx.time(f"{VALIDATION_TIMING_PREFIX}{spec.name}", time.perf_counter() - t0)
        ctx.progress.done()
    validate_story(ctx, records, VALIDATION_THREADS)
    return records


def validate_layout(ctx: ExportContext, layout: Layout, records: dict[str, dict[str, Any]]) -> BackendSpec:
    """Run one backend layout, add its files' records to ``records``; returns its spec."""
    fmt, precision, kind = layout
    files = ctx.entries()
    if kind == "multi":
        multi = files[(fmt, "multi", precision)]
        enc_path = dec_path = ctx.stage / multi.path
        size = multi.size_bytes
    else:
        enc, dec = files[(fmt, "encoder", precision)], files[(fmt, "decoder_step", precision)]
        enc_path, dec_path, size = ctx.stage / enc.path, ctx.stage / dec.path, enc.size_bytes + dec.size_bytes
    spec = BackendSpec(backend_name(fmt, precision, kind), fmt, precision, kind, enc_path, dec_path, size,
                       ctx.reference.decoder)
    enc_cmp, dec_cmp = validate_backend(spec, ctx.ref_trace, ctx.ref_states, ctx.vset, ctx.tokenizer.pad_id)

    def judge(comparisons: list[val.Comparison]) -> dict[str, Any]:
        return val.judge(comparisons, precision, ctx.plan.atol, ctx.plan.tolerances, ctx.vset)

    if kind == "multi":
        records[multi.path] = judge([enc_cmp, dec_cmp])
    else:
        records[enc.path] = judge([enc_cmp])
        records[dec.path] = judge([dec_cmp])
    return spec


def _failed(where: str, exc: BaseException) -> val.Comparison:
    lines = str(exc).strip().splitlines()
    return val.Comparison(errors=[f"{where}: {type(exc).__name__}: {lines[0][:ERROR_CHARS] if lines else ''}"])


def validate_backend(
    spec: BackendSpec,
    ref_trace: val.Trace,
    ref_states: list[dict[str, np.ndarray]],
    vset: val.ValidationSet,
    pad_id: int,
) -> tuple[val.Comparison, val.Comparison]:
    """(encoder, decoder) comparisons of one backend. A runtime that fails to load or run a
    graph (e.g. a delegate refusing it) is recorded as that graph's error, not raised."""
    try:
        # threads given explicitly: TFLiteBackend maps None to -1, which ai-edge-litert 2.3 rejects
        backend = load_backend(spec, threads=VALIDATION_THREADS)
    except Exception as exc:  # noqa: BLE001 - any runtime error is a validation failure
        return _failed("load", exc), _failed("load", exc)
    try:
        enc_cmp = val.compare_encoder(ref_trace, val.run_trace(backend, vset, decoder=False))
    except Exception as exc:  # noqa: BLE001
        enc_cmp = _failed("encoder run", exc)
    try:
        trace = val.run_trace(backend, vset, initial_states=ref_states, encoder=False)
        dec_cmp = val.compare_decoder(ref_trace, trace, vset, pad_id)
    except Exception as exc:  # noqa: BLE001
        dec_cmp = _failed("decoder_step run", exc)
    return enc_cmp, dec_cmp
