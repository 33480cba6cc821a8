"""The exporter: a Keras story model → validated TFLite / ONNX files + ``manifest.json``.

:func:`export_model` (any in-memory model: a trained bundle, or the bench's random-init seed
model) and :func:`export_from_checkpoint` (a run / bundle directory) write the export directory
laid out as in :mod:`storyedge.manifest`::

    OUT/manifest.json
    OUT/tokenizer/                        BertTokenizerFast-loadable
    OUT/reference/model.weights.h5        + config.yaml: the TF reference (bench, parity)
    OUT/tflite/{encoder,decoder_step,multi}.{fp32,fp16,int8-dynamic,int8,int4}.tflite
    OUT/onnx/{encoder,decoder_step}.{fp32,fp16,int8-dynamic,int8,int4}.onnx
    OUT/rejected/<format>/...             files that failed validation (manifest "rejected")

The steps, one module each: the plan (:mod:`.plan`: arguments resolved and checked), the
staging directory (:mod:`.outdir`), reference + tokenizer + validation data (:mod:`.reference`),
the TFLite and ONNX files (:mod:`.tflite_build`, :mod:`.onnx_build`), validation of every
backend layout (:mod:`.validate_backends`), rejection (:mod:`.rejection`) and the manifest
(:mod:`.manifest_build`); :mod:`.progress` reports them.

Atomic: everything is built in ``OUT.tmp-<pid>`` next to ``OUT`` and renamed to ``OUT`` at the
end (with ``overwrite``, the old ``OUT`` is swapped out only then), so a crash never leaves a
complete-looking ``OUT``. An existing non-empty ``OUT`` without ``overwrite`` is a
:class:`UserError` before anything is done. Files failing validation are moved to ``rejected/``,
the directory is still finalised (so the table and manifest can be inspected) and then
:class:`CheckFailed` is raised (CLI exit 1).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storyedge.config import Config
from storyedge.constants import EXPORT_TOTAL_TIMING
from storyedge.errors import CheckFailed, DataError, UserError
from storyedge.export.context import REJECTED_DIR, WORK_DIR, ExportContext
from storyedge.export.manifest_build import assemble_manifest
from storyedge.export.onnx_build import build_onnx
from storyedge.export.outdir import check_out_dir, staging_dir
from storyedge.export.plan import (
    ListArg,
    check_int4_block,
    default_calibration_windows,
    make_plan,
    parse_formats,
    parse_quantize,
)
from storyedge.export.progress import Listener, make_progress
from storyedge.export.reference import open_context
from storyedge.export.rejection import reject_failed
from storyedge.export.shortlist import add_shortlist, resolve_shortlist
from storyedge.export.story_build import frame_story_graph_name, story_graph_names
from storyedge.export.report import format_table
from storyedge.export.tflite_build import finish_tflite, start_tflite
from storyedge.export.validate_backends import validate_backends
from storyedge.manifest import Manifest, write_manifest
from storyedge.run_dir import load_bundle

if TYPE_CHECKING:  # pragma: no cover
    from storyedge.data.pipeline import WindowArrays
    from storyedge.model.story_model import StoryModel
    from storyedge.tokenizer import StoryTokenizer

#: Dataset keys a ``--config`` given to :func:`export_from_checkpoint` sets for the validation data.
VALIDATION_DATA_KEYS = ("name", "path", "schema", "frames_key", "captions_key", "reason_key",
                        "validation_fraction", "synthetic_stories", "synthetic_seed")
#: Export keys a ``--config`` given to :func:`export_from_checkpoint` sets.
EXPORT_KEYS = ("formats", "quantize", "batch", "opset", "atol", "tolerances", "validation_windows",
               "calibration_method", "int4_block_size", "portable", "story_mode")
VALIDATION_DATA = ("split", "synthetic")


def export_model(
    model: "StoryModel",
    config: Config,
    tokenizer: "StoryTokenizer",
    out_dir: str | Path,
    *,
    formats: ListArg = None,
    quantize: ListArg = None,
    batch: int | None = None,
    opset: int | None = None,
    atol: float | None = None,
    tolerances: dict[str, float] | None = None,
    validation: "WindowArrays | None" = None,
    validation_windows: int | None = None,
    calibration_windows: int | None = None,
    calibration_method: str | None = None,
    int4_block_size: int | None = None,
    portable: bool | None = None,
    overwrite: bool = False,
    source: dict[str, Any] | None = None,
    reference_dir: str | Path | None = None,
    progress: bool = True,
    on_progress: Listener | None = None,
    story_mode: bool | None = None,
    vocab_shortlist: str | Path | None = None,
) -> Manifest:
    """Export ``model`` to ``out_dir``; returns the written :class:`Manifest`.

    ``formats`` (``tflite``, ``onnx``, ``all``), ``quantize`` (``none``, ``fp16``,
    ``int8-dynamic``, ``int8``, ``int4``), ``batch``, ``opset``, ``atol`` and ``validation_windows`` default
    to ``config.export``. ``validation``: windows of the validation split (the first
    ``validation_windows`` validate; the next ``calibration_windows`` calibrate full-int8); None
    → synthetic random inputs of the right shapes (said so in the manifest). ``tolerances``:
    ``{precision: base}`` overriding ``atol × factor`` (see :mod:`.validation`).
    ``calibration_method`` (``minmax``, ``entropy``, ``percentile``: ONNX static int8),
    ``int4_block_size`` (32, 64, 128, 256) and ``portable`` (no ONNX contrib ops) default to
    ``config.export``. ``reference_dir``: a bundle directory whose ``model.weights.h5`` / ``config.yaml`` are copied
    to ``reference/`` (else the model's weights are saved there). ``source``: provenance
    recorded in the manifest. ``progress``: the bar on stderr; ``on_progress``: called with every
    :class:`~storyedge.export.progress.ProgressEvent` (stage text, steps done / total, files).
    ``story_mode`` (default ``config.export.story_mode``): also the story-mode graphs
    (:mod:`.story_build`).
    ``vocab_shortlist``: ``auto`` or a file of token ids: shortlisted decoder steps beside the
    full ones (see :mod:`storyedge.export.shortlist`).

    Raises :class:`UserError` for bad arguments / an unwritable or non-empty ``out_dir`` (nothing
    written) and :class:`CheckFailed` after writing when a file fails validation (in
    ``rejected/``) or a converter produced non-builtin ops (nothing written).
    """
    plan = make_plan(config, formats=formats, quantize=quantize, batch=batch, opset=opset, atol=atol,
                     tolerances=tolerances, validation_windows=validation_windows,
                     calibration_windows=calibration_windows, calibration_method=calibration_method,
                     int4_block_size=int4_block_size, portable=portable)
    check_int4_block(model, plan)
    if config.export.story_mode if story_mode is None else story_mode:
        plan.story_graphs = story_graph_names(model)
        plan.frame_story_graph = frame_story_graph_name(model)
    out = check_out_dir(out_dir, overwrite)
    shortlist = (resolve_shortlist(vocab_shortlist, config, tokenizer, model.vocab_size)
                 if vocab_shortlist is not None else None)
    prog = make_progress(plan.total_steps(), progress, on_progress)
    for s in plan.skipped:
        prog.note(f"note: skipping onnx {s['precision']}: {s['reason']}")
    started = time.perf_counter()
    try:
        with staging_dir(out, overwrite) as stage:
            ctx = open_context(stage, model, plan.effective_config(config), tokenizer, plan, prog,
                               validation=validation, reference_dir=reference_dir)
            manifest = build_export(ctx, source or {})
            if shortlist is not None:
                add_shortlist(ctx, manifest, *shortlist)
            ctx.time(EXPORT_TOTAL_TIMING, time.perf_counter() - started)
            manifest.source.setdefault("export", {})["seconds"] = ctx.timings
            write_manifest(stage, manifest)
    finally:
        prog.close()
    if manifest.rejected:
        raise CheckFailed(
            f"{len(manifest.rejected)} exported file(s) failed validation and were moved to "
            f"{out / REJECTED_DIR}:\n{format_table(manifest, only_rejected=True)}"
        )
    return manifest


def build_export(ctx: ExportContext, source: dict[str, Any]) -> Manifest:
    """Build, validate and sort every file of the plan in ``ctx.stage``; returns the manifest."""
    with start_tflite(ctx) as tflite:  # converting in worker processes while this one builds the ONNX files
        build_onnx(ctx)
        onnx_files = len(ctx.built)
        finish_tflite(ctx, tflite)
    ctx.built[:] = ctx.built[onnx_files:] + ctx.built[:onnx_files]  # TFLite files first, as listed before
    shutil.rmtree(ctx.stage / WORK_DIR, ignore_errors=True)  # both builders' scratch space
    records = validate_backends(ctx)
    good, rejected = reject_failed(ctx.stage, ctx.built, records)
    return assemble_manifest(ctx, source, good, rejected)


def load_validation_windows(config: Config, tokenizer: "StoryTokenizer", count: int) -> "WindowArrays":
    """The first ``count`` windows of the configured dataset's validation split."""
    from storyedge.data.loading import load_split_windows  # lazy: imports datasets

    return load_split_windows(config.dataset, tokenizer, "validation", count)


def export_from_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path,
    config: Config | None = None,
    *,
    formats: ListArg = None,
    quantize: ListArg = None,
    batch: int | None = None,
    opset: int | None = None,
    atol: float | None = None,
    tolerances: dict[str, float] | None = None,
    validation_data: str = "split",
    validation_windows: int | None = None,
    calibration_windows: int | None = None,
    calibration_method: str | None = None,
    int4_block_size: int | None = None,
    portable: bool | None = None,
    overwrite: bool = False,
    progress: bool = True,
    on_progress: Listener | None = None,
    story_mode: bool | None = None,
    vocab_shortlist: str | Path | None = None,
) -> Manifest:
    """Export the best model of a run directory (or bundle directory) ``checkpoint``.

    ``config``: when given, the checkpoint must be compatible with it (:func:`check_compatible`,
    else :class:`UserError` naming the key) and its ``export`` / ``dataset`` sections are used;
    else the bundle's own config. ``validation_data``: ``split`` (windows of the dataset's
    validation split) or ``synthetic`` (random inputs; no dataset needed).
    """
    if validation_data not in VALIDATION_DATA:
        raise UserError(f"--validation-data must be {' or '.join(VALIDATION_DATA)}, got {validation_data!r}")
    check_out_dir(out_dir, overwrite)
    bundle = load_bundle(checkpoint, expected_config=config)
    settings = config or bundle.config
    # validate the format / quantize arguments before the (slow) data loading
    parse_formats(formats, settings.export.formats)
    parse_quantize(quantize, settings.export.quantize)
    early = make_plan(settings, formats=formats, quantize=quantize, batch=batch, opset=opset, atol=atol,
                      tolerances=tolerances, validation_windows=validation_windows,
                      calibration_windows=calibration_windows, calibration_method=calibration_method,
                      int4_block_size=int4_block_size, portable=portable)
    check_int4_block(bundle.model, early)
    n_val = validation_windows if validation_windows is not None else settings.export.validation_windows
    n_cal = calibration_windows if calibration_windows is not None else default_calibration_windows(n_val)
    windows = None
    if validation_data == "split":
        data_config = bundle.config.replace(
            **{f"dataset.{k}": getattr(settings.dataset, k) for k in VALIDATION_DATA_KEYS}
        )
        try:
            windows = load_validation_windows(data_config, bundle.tokenizer, n_val + n_cal)
        except DataError as exc:
            raise DataError(
                f"{exc} (validation windows for the export; --validation-data synthetic validates on "
                "random inputs instead)"
            ) from None
    export_config = bundle.config.replace(**{f"export.{k}": getattr(settings.export, k) for k in EXPORT_KEYS})
    return export_model(
        bundle.model, export_config, bundle.tokenizer, out_dir,
        formats=formats, quantize=quantize, batch=batch, opset=opset, atol=atol, tolerances=tolerances,
        validation=windows, validation_windows=n_val, calibration_windows=n_cal,
        calibration_method=calibration_method, int4_block_size=int4_block_size, portable=portable, overwrite=overwrite,
        source={"checkpoint": str(bundle.path), "meta": bundle.meta},
        reference_dir=bundle.path, progress=progress, on_progress=on_progress, story_mode=story_mode,
        vocab_shortlist=vocab_shortlist,
    )


__all__ = [
    "build_export",
    "check_out_dir",
    "export_from_checkpoint",
    "export_model",
    "load_validation_windows",
    "parse_formats",
    "parse_quantize",
]
