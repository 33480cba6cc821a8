"""What one export will do, decided and checked before anything is written: :class:`ExportPlan`.

:func:`make_plan` resolves the arguments of :func:`storyedge.export.export_model` against the
config's ``export`` section (formats, precisions per format, batch, opset, atol, tolerances,
validation / calibration windows), refuses bad ones with :class:`UserError`, and notes the ONNX
precisions that are skipped. The plan also counts the progress bar's steps.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from typing import Any

from storyedge.config import Config
from storyedge.errors import UserError
from storyedge.constants import EXPORT_FORMATS as FORMATS
from storyedge.constants import (
    CALIBRATION_METHODS,
    INT4_BLOCK_SIZES,
    ONNX_OPSET_MAX,
    ONNX_OPSET_MIN,
    ONNX_PRECISIONS,
    ONNX_STANDARD_INT4_OPSET,
    TFLITE_PRECISIONS,
)
from storyedge.constants import QUANTIZE_PRECISIONS as PRECISIONS

#: Calibration windows for full-integer TFLite when not given (taken after the validation ones).
DEFAULT_CALIBRATION_WINDOWS = 64
#: ONNX opsets tf2onnx converts to (inclusive).
OPSET_RANGE = (ONNX_OPSET_MIN, ONNX_OPSET_MAX)
#: TFLite graphs per precision: the two separate files and the multi-signature file, with the
#: SavedModel signature keys each holds.
TFLITE_GRAPHS: dict[str, tuple[str, ...]] = {
    "encoder": ("encoder",),
    "decoder_step": ("decoder_step",),
    "multi": ("encoder", "decoder_step"),
}
#: ONNX graphs (one file each per precision).
ONNX_GRAPHS = ("encoder", "decoder_step")
#: The TFLite file (per precision) holding every story-mode graph as one signature each (one
#: conversion, shared weights); ONNX has one file per story-mode graph (the frame + story graph's
#: weights read in place from the frame and story files).
TFLITE_STORY_FILE = "story"

ListArg = str | list[str] | tuple[str, ...] | None


def _split_list(value: ListArg, default: list[str]) -> list[str]:
    """A comma-separated string or a sequence → stripped, non-empty items (``None``: default)."""
    if value is None:
        return list(default)
    parts = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return [p.strip() for p in parts if p.strip()]


def parse_formats(formats: ListArg, default: list[str]) -> list[str]:
    """``tflite`` / ``onnx`` / ``all`` (or a list / comma list of them) → ordered formats."""
    out: list[str] = []
    for item in _split_list(formats, default):
        for name in list(FORMATS) if item == "all" else [item]:
            if name not in FORMATS:
                raise UserError(f"unknown export format {item!r} (choose from tflite, onnx, all)")
            if name not in out:
                out.append(name)
    if not out:
        raise UserError("no export format given (tflite, onnx or all)")
    return [f for f in FORMATS if f in out]


def parse_quantize(quantize: ListArg, default: list[str]) -> list[str]:
    """``none,fp16,int8-dynamic,int8`` names (list or comma list) → precision labels, ordered."""
    labels: list[str] = []
    for item in _split_list(quantize, default):
        if item not in PRECISIONS:
            raise UserError(
                f"unknown quantization {item!r} (choose from {', '.join(PRECISIONS)}; comma-separated)"
            )
        if PRECISIONS[item] not in labels:
            labels.append(PRECISIONS[item])
    if not labels:
        raise UserError(f"no quantization given (one or more of {', '.join(PRECISIONS)})")
    order = list(PRECISIONS.values())
    return sorted(labels, key=order.index)


#: How a TFLite SavedModel traces the LSTMs (:mod:`storyedge.export.graphs`): WHILE loops, or
#: straight-line code (``unrolled``).
LOOP_LAYOUT, CHUNKED_LAYOUT, UNROLLED_LAYOUT = "loop", "chunked", "unrolled"
#: Time steps a WHILE iteration runs at most (a divisor of the length) per loop layout. LiteRT
#: copies every loop-carried tensor (the hoisted [T, B, 4H] input product, the [T, B, H] outputs)
#: once an iteration, so fewer iterations copy less; but XNNPACK packs each of the body's copies of
#: the recurrent kernel apart, which the fp32 kernel (4 MB at the seed size) pays for. At the
#: seed size (LiteRT, 2 threads, interleaved p50s; 1 → 2 → 4 steps): int8-dynamic encoder 14.2 →
#: 11.6 → 10.5 ms, reason graph 5.6 → 4.4 → 3.7 ms (8 steps: no better than 4); fp32 encoder 26.8
#: → 25.2 → 26.9 ms, frame graph 8.8 → 8.2 → 10.2 ms. Those were ``Interpreter`` runs; the backend's
#: ``CompiledModel`` packs each weight once (weight cache), and there 4 steps ran the fp32 encoder
#: 1-6 % and the story graphs 3-11 % faster than 2, and 8 steps the int8 files no faster than 4
#: (interleaved A/Bs of whole seed-size exports): the float files keep 2 for the ``Interpreter``.
LOOP_STEPS = {LOOP_LAYOUT: 2, CHUNKED_LAYOUT: 4}
RNN_LAYOUTS = (*LOOP_STEPS, UNROLLED_LAYOUT)
#: Loop layouts whose padding-exact Bi-LSTMs project each iteration's tokens inside the loop
#: (:func:`~storyedge.export.graphs.length_bounded_direction`) rather than hoisting the projection:
#: the loop then carries the [L, N, E] tokens, not the [L, N, 4H] projection LiteRT copies once an
#: iteration. Only int8-dynamic: its [u·N, E] x [E, 4H] weights (600 KB at the seed size) stay in
#: the core's cache, the fp32 ones (2.4 MB) do not, and a one-row fp32 loop got slower (seed-size
#: direction, LiteRT, 2 threads, 24 real tokens: int8-dynamic 1.00 -> 0.89 ms at 3 rows, 0.60 ->
#: 0.58 at 1; fp32 3.26 -> 2.99 at 3 rows but 1.11 -> 1.42 at 1). Those were ``Interpreter`` runs;
#: through the ``CompiledModel`` (interleaved, int8-dynamic, in-loop -> hoisted, whole Bi-LSTMs)
#: 3 rows ran 2.30 -> 2.33 ms, 1 row 1.06 -> 1.01 ms and the reason's pooled one (1 row, 64 tokens)
#: 1.93 -> 1.78 ms: hoisting one-row loops would take 1-2 % off an encoder, not worth a layout
#: that depends on the row count.
IN_LOOP_PROJECTION_LAYOUTS = (CHUNKED_LAYOUT,)
#: the layout of each TFLite precision: the float files ``loop``, int8-dynamic and full int8
#: ``chunked`` (full int8 is calibrated inside the loops by :mod:`~storyedge.export.tflite_loops`)
PRECISION_LAYOUTS = {"fp32": LOOP_LAYOUT, "fp16": LOOP_LAYOUT, "int8-dynamic": CHUNKED_LAYOUT, "int8": CHUNKED_LAYOUT}


def rnn_layout(precision: str, portable: bool = False) -> str:
    """How a TFLite precision's SavedModel traces the LSTMs (:data:`PRECISION_LAYOUTS`; ``loop``
    for any other, such as int4, which quantizes the fp32 file's graph). ``portable`` full int8
    is ``unrolled``: no ``WHILE`` (whose carried tensors the quantizer leaves float), integer
    kernels only, for delegates that run nothing else."""
    if portable and precision == "int8":
        return UNROLLED_LAYOUT
    return PRECISION_LAYOUTS.get(precision, LOOP_LAYOUT)


@dataclass
class ExportPlan:
    """Everything an export will write, resolved from the arguments and ``config.export``."""

    formats: list[str]
    #: every precision asked for, ordered (ONNX may skip some: :attr:`skipped`)
    precisions: list[str]
    tflite_precisions: list[str]
    onnx_precisions: list[str]
    batch: int
    opset: int
    atol: float
    tolerances: dict[str, float]
    validation_windows: int
    calibration_windows: int
    #: ``{"format", "precision", "reason"}`` of each requested combination not produced.
    skipped: list[dict[str, str]] = field(default_factory=list)
    #: story mode's graphs (per precision one more TFLite file, one ONNX file each; :mod:`.story_build`)
    story_graphs: list[str] = field(default_factory=list)
    #: story mode's optional frame + story graph (one more TFLite signature, one more ONNX file
    #: per precision: :mod:`.onnx_frame_story`)
    frame_story_graph: str | None = None
    #: static int8 (ONNX) calibration: minmax / entropy / percentile
    calibration_method: str = CALIBRATION_METHODS[0]
    #: int4: weights per scale
    int4_block_size: int = INT4_BLOCK_SIZES[0]
    #: no ONNX contrib (``com.microsoft``) ops; TFLite full int8 without loops (:func:`rnn_layout`)
    portable: bool = False

    def rnn_layouts(self) -> dict[str, list[str]]:
        """``{layout: [TFLite precisions]}``: one SavedModel per LSTM layout in use."""
        needed: dict[str, list[str]] = {}
        for precision in self.tflite_precisions:
            needed.setdefault(rnn_layout(precision, self.portable), []).append(precision)
        return needed

    def file_count(self) -> int:
        """Files listed in the manifest (or rejected) when every conversion succeeds."""
        story = len(self.story_graphs)
        return ((len(TFLITE_GRAPHS) + bool(story)) * len(self.tflite_precisions)
                + (len(ONNX_GRAPHS) + story + self._onnx_frame_story()) * len(self.onnx_precisions))

    def _onnx_frame_story(self) -> int:
        """ONNX files per precision that join the frame and story graphs (0 or 1)."""
        return int(bool(self.story_graphs and self.frame_story_graph))

    def total_steps(self) -> int:
        """Progress steps: reference, SavedModels, TFLite files, ONNX conversions (fp32 is always
        converted: int8-dynamic quantizes it) and quantizations, validated backend layouts."""
        onnx_steps = 0
        story = len(self.story_graphs)
        if self.onnx_precisions:
            derived = [p for p in self.onnx_precisions if p != "fp32"]
            onnx_steps = ((len(ONNX_GRAPHS) + story) * (1 + len(derived))
                          + self._onnx_frame_story() * len(self.onnx_precisions))
        validations = (2 + bool(story)) * len(self.tflite_precisions) + (1 + bool(story)) * len(self.onnx_precisions)
        tflite_files = (len(TFLITE_GRAPHS) + bool(story)) * len(self.tflite_precisions)
        return 1 + len(self.rnn_layouts()) + tflite_files + onnx_steps + validations

    def effective_config(self, config: Config) -> Config:
        """``config`` with its ``export`` section set to what this plan does."""
        return config.replace(
            **{
                "export.formats": list(self.formats),
                "export.quantize": [q for q, p in PRECISIONS.items() if p in self.precisions],
                "export.batch": self.batch,
                "export.opset": self.opset,
                "export.atol": self.atol,
                "export.validation_windows": self.validation_windows,
                "export.calibration_method": self.calibration_method,
                "export.int4_block_size": self.int4_block_size,
                "export.portable": self.portable,
            }
        )


def distribution_version(dist: str, missing: str = "not installed") -> str:
    """The installed version of the distribution ``dist``, else ``missing``."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return missing


def _check_numbers(plan: ExportPlan) -> None:
    """:class:`UserError` for a batch, opset, atol, tolerance or window count out of range."""
    low, high = OPSET_RANGE
    if plan.batch < 1:
        raise UserError(f"--batch must be >= 1, got {plan.batch}")
    if not low <= plan.opset <= high:
        tf2onnx = distribution_version("tf2onnx", "?")
        raise UserError(f"--opset must be between {low} and {high} (tf2onnx {tf2onnx}), got {plan.opset}")
    if not plan.atol > 0:
        raise UserError(f"--atol must be > 0, got {plan.atol}")
    for name, value in plan.tolerances.items():
        if name not in TFLITE_PRECISIONS or not value > 0:
            raise UserError(
                f"--tolerance {name}={value}: precision must be one of {', '.join(TFLITE_PRECISIONS)}, value > 0"
            )
    if plan.validation_windows < 1 or plan.calibration_windows < 1:
        raise UserError("--validation-windows and --calibration-windows must be >= 1")
    if plan.calibration_method not in CALIBRATION_METHODS:
        raise UserError(
            f"--calibration-method: unknown method {plan.calibration_method!r} "
            f"(choose from {', '.join(CALIBRATION_METHODS)})"
        )
    if plan.int4_block_size not in INT4_BLOCK_SIZES:
        raise UserError(
            f"--int4-block-size: {plan.int4_block_size} is not a block size int4 supports "
            f"(choose from {', '.join(map(str, INT4_BLOCK_SIZES))})"
        )


#: Why ONNX int4 is left out of a ``--portable`` export (also in the manifest's skipped list).
PORTABLE_INT4_REASON = (
    "ONNX int4 exists only as the com.microsoft MatMulNBits contrib op (standard int4 "
    f"DequantizeLinear with a block size needs opset {ONNX_STANDARD_INT4_OPSET}, beyond tf2onnx's "
    f"{ONNX_OPSET_MIN}-{ONNX_OPSET_MAX}), which --portable refuses; use the TFLite int4 file"
)


def _split_onnx(precisions: list[str], portable: bool = False) -> tuple[list[str], list[dict[str, str]]]:
    """(the ONNX precisions produced, the skipped ones with why)."""
    produced, skipped = [], []
    for p in precisions:
        if p == "int4" and portable:
            skipped.append({"format": "onnx", "precision": p, "reason": PORTABLE_INT4_REASON})
        elif p in ONNX_PRECISIONS:
            produced.append(p)
        else:
            skipped.append({
                "format": "onnx",
                "precision": p,
                "reason": f"ONNX {p} is not produced by this exporter (ONNX: fp32 and int8-dynamic); "
                "use the TFLite file of that precision",
            })
    return produced, skipped


def default_calibration_windows(validation_windows: int) -> int:
    """Calibration windows when not given: at least :data:`DEFAULT_CALIBRATION_WINDOWS`."""
    return max(DEFAULT_CALIBRATION_WINDOWS, validation_windows)


def make_plan(
    config: Config,
    *,
    formats: ListArg = None,
    quantize: ListArg = None,
    batch: int | None = None,
    opset: int | None = None,
    atol: float | None = None,
    tolerances: dict[str, float] | None = None,
    validation_windows: int | None = None,
    calibration_windows: int | None = None,
    calibration_method: str | None = None,
    int4_block_size: int | None = None,
    portable: bool | None = None,
) -> ExportPlan:
    """The checked :class:`ExportPlan`; ``None`` arguments default to ``config.export``.

    :class:`UserError` for an unknown format / quantization, an out-of-range number, or a
    request that produces no file (ONNX only, at precisions ONNX does not get).
    """
    ex = config.export
    formats_ = parse_formats(formats, ex.formats)
    precisions = parse_quantize(quantize, ex.quantize)
    n_val = int(validation_windows if validation_windows is not None else ex.validation_windows)
    portable_ = bool(portable if portable is not None else getattr(ex, "portable", False))
    onnx_precisions, skipped = _split_onnx(precisions, portable_) if "onnx" in formats_ else ([], [])
    plan = ExportPlan(
        formats=formats_,
        precisions=precisions,
        tflite_precisions=precisions if "tflite" in formats_ else [],
        onnx_precisions=onnx_precisions,
        batch=int(batch if batch is not None else ex.batch),
        opset=int(opset if opset is not None else ex.opset),
        atol=float(atol if atol is not None else ex.atol),
        tolerances={**ex.tolerances, **(tolerances or {})},
        validation_windows=n_val,
        calibration_windows=int(
            calibration_windows if calibration_windows is not None else default_calibration_windows(n_val)
        ),
        skipped=skipped,
        calibration_method=str(
            calibration_method if calibration_method is not None else getattr(ex, "calibration_method", "minmax")
        ).lower(),
        int4_block_size=int(int4_block_size if int4_block_size is not None else getattr(ex, "int4_block_size", 32)),
        portable=portable_,
    )
    _check_numbers(plan)
    if plan.file_count() == 0:
        raise UserError("nothing to export: --portable ONNX has no int4 (add another precision or --format tflite)")
    return plan


def check_int4_block(model: Any, plan: ExportPlan) -> None:
    """:class:`UserError` (naming ``--int4-block-size``) when int4 is planned and the block size
    does not divide the input dim of the logits projection, the weights int4 is for (about 90%
    of the bytes a decoder step reads). Other weights it does not divide stay float."""
    if "int4" not in plan.precisions:
        return
    kernel = getattr(getattr(model, "logits_proj", None), "kernel", None)
    if kernel is None:
        return
    dim = int(kernel.shape[0])
    if dim % plan.int4_block_size:
        fits = [str(b) for b in INT4_BLOCK_SIZES if dim % b == 0]
        raise UserError(
            f"--int4-block-size: {plan.int4_block_size} does not divide {dim}, the input dim of the logits "
            f"projection (model.decoder_hidden_dim); use {' or '.join(fits) if fits else 'a model whose decoder_hidden_dim is a multiple of 32'}"
        )
