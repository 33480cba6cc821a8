"""The TFLite files of an export: one SavedModel per LSTM layout in use, then per precision the
encoder, decoder-step and multi-signature files converted from it, each checked (builtins only,
documented IO) and listed in the context.

LSTMs are WHILE loops except for full int8, which needs them unrolled (see :mod:`.graphs`).
int4 is quantized from the fp32 flatbuffer of the same graph (:mod:`.tflite_int4`). Every file's
coverage (:mod:`.coverage`) goes into its manifest entry.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from storyedge.errors import CheckFailed
from storyedge.export import tflite as tfl
from storyedge.export.calibration import calibration_samples
from storyedge.export.coverage import tflite_coverage
from storyedge.export.context import WORK_DIR, ExportContext, check_io, file_name
from storyedge.export.native import quiet_native_output, release_memory
from storyedge.export.tflite_int4 import quantize_int4
from storyedge.export.plan import TFLITE_GRAPHS, TFLITE_STORY_FILE

FORMAT = "tflite"
#: How much of a converter error's last line the :class:`CheckFailed` quotes.
ERROR_CHARS = 400


def build_tflite(ctx: ExportContext) -> None:
    """Every TFLite file of the plan (nothing when it has no TFLite precision)."""
    if not ctx.plan.tflite_precisions:
        return
    samples: list[tfl.Sample] | None = None
    (ctx.stage / FORMAT).mkdir()
    for rnn_layout, precisions in ctx.plan.rnn_layouts().items():
        saved = write_saved_model(ctx, rnn_layout)
        for precision in precisions:
            if precision == "int8" and samples is None:
                samples = calibration_samples(ctx)
            for graph, keys in TFLITE_GRAPHS.items():
                build_tflite_file(ctx, saved, graph, keys, precision, samples)
            if ctx.plan.story_graphs:
                build_tflite_file(ctx, saved, TFLITE_STORY_FILE, tuple(ctx.plan.story_graphs), precision, samples)
    shutil.rmtree(ctx.stage / WORK_DIR, ignore_errors=True)


def write_saved_model(ctx: ExportContext, rnn_layout: str) -> Path:
    """The model's SavedModel (endpoints ``encoder`` / ``decoder_step``) with ``rnn_layout`` LSTMs."""
    # lazy: the graph switches and the export archive import TensorFlow / Keras
    from storyedge.export.graphs import tflite_rnn_layout
    from storyedge.model.signatures import make_export_archive

    ctx.progress.stage(f"tflite: SavedModel ({rnn_layout} LSTMs)")
    t0 = time.perf_counter()
    saved = ctx.stage / WORK_DIR / f"saved_model_{rnn_layout}"
    with tflite_rnn_layout(ctx.model, rnn_layout), quiet_native_output():
        archive = make_export_archive(ctx.model, ctx.plan.batch)
        archive.write_out(str(saved), verbose=False)
    ctx.time(f"saved_model ({rnn_layout} LSTMs)", time.perf_counter() - t0)
    ctx.progress.done()
    return saved


def _convert(saved: Path, graph: str, keys: tuple[str, ...], precision: str,
             representative: Callable[[], Iterator[tfl.Sample]] | None) -> bytes:
    """The converter's flatbuffer; its failure as :class:`CheckFailed` quoting its last line."""
    try:
        with quiet_native_output():
            return tfl.convert_tflite(saved, list(keys), precision, representative)
    except Exception as exc:  # noqa: BLE001 - the converter raises ConverterError & co
        lines = str(exc).strip().splitlines()
        raise CheckFailed(
            f"TFLite conversion of {graph} ({precision}) failed: "
            f"{lines[-1][:ERROR_CHARS] if lines else type(exc).__name__}"
        ) from exc


def build_tflite_file(
    ctx: ExportContext, saved: Path, graph: str, keys: tuple[str, ...], precision: str,
    samples: list[tfl.Sample] | None,
) -> None:
    """Convert, write, check (builtins only, IO per signature) and list one ``.tflite`` file."""
    ctx.progress.stage(f"tflite {graph} {precision}: convert")
    t0 = time.perf_counter()
    representative = (lambda: iter(samples)) if precision == "int8" and samples is not None else None
    notes: list[str] = []
    if precision == "int4":
        content, notes = _int4(ctx, saved, graph, keys)
    else:
        content = _convert(saved, graph, keys, precision, representative)
    rel = f"{FORMAT}/{file_name(graph, precision, FORMAT)}"
    path = ctx.stage / rel
    path.write_bytes(content)
    info = tfl.inspect_tflite(content)
    tfl.check_builtins_only(path, info)
    io = tfl.tflite_io(path)
    for key in keys:
        check_io(path, io.get(key, {}), ctx.signatures[key], key)
    seconds = time.perf_counter() - t0
    float_ops = sorted(info.float_ops) if precision == "int8" else []
    entry = ctx.add_file(rel, FORMAT, graph, precision, keys, seconds, ops=info.ops, float_ops=float_ops)
    entry.coverage = tflite_coverage(content)
    entry.coverage.notes = notes + entry.coverage.notes
    del content
    release_memory()
    ctx.progress.done(rel, seconds)


def _int4(ctx: ExportContext, saved: Path, graph: str, keys: tuple[str, ...]) -> tuple[bytes, list[str]]:
    """The int4 flatbuffer of ``graph`` (from its fp32 file when this export wrote one) and notes."""
    fp32 = ctx.stage / FORMAT / file_name(graph, "fp32", FORMAT)
    content = fp32.read_bytes() if fp32.is_file() else _convert(saved, graph, keys, "fp32", None)
    block = ctx.plan.int4_block_size
    try:
        with quiet_native_output():
            quantized, left = quantize_int4(content, block)
    except CheckFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - ai-edge-quantizer raises ValueError & co
        lines = str(exc).strip().splitlines()
        raise CheckFailed(
            f"TFLite int4 quantization of {graph} failed: {lines[-1][:ERROR_CHARS] if lines else type(exc).__name__}"
        ) from exc
    notes = [f"int4 blockwise (block size {block}) on fully-connected weights (ai-edge-quantizer)"]
    if left:
        notes.append(f"{len(left)} fully-connected weight(s) kept float: the block size does not divide their input dim")
    return quantized, notes
