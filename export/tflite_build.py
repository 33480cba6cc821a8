"""The TFLite files of an export: one SavedModel per LSTM layout in use, then per precision the
encoder, decoder-step and multi-signature files converted from it, each checked (builtins only,
documented IO) and listed in the context.

LSTMs are WHILE loops except for full int8, which needs them unrolled (see :mod:`.graphs`).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from storyedge.errors import CheckFailed
from storyedge.export import tflite as tfl
from storyedge.export import validation as val
from storyedge.export.context import WORK_DIR, ExportContext, check_io, file_name
from storyedge.export.native import quiet_native_output, release_memory
from storyedge.export.plan import TFLITE_GRAPHS, TFLITE_STORY_FILE
from storyedge.export.story_build import story_samples

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
                samples = val.representative_samples(ctx.reference, ctx.cset, ctx.tokenizer.pad_id)
                if ctx.plan.story_graphs:
                    samples += story_samples(ctx.reference, ctx.cset)
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
    ctx.add_file(rel, FORMAT, graph, precision, keys, seconds, ops=info.ops, float_ops=float_ops)
    del content
    release_memory()
    ctx.progress.done(rel, seconds)
