"""The TFLite files of an export: one SavedModel per LSTM layout in use, then per precision the
encoder, decoder-step and story files converted from it and the multi-signature file merged from
the first two, each checked (builtins only, documented IO) and listed in the context.

LSTMs are WHILE loops except for full int8, which needs them unrolled (see :mod:`.graphs`).
The conversions run side by side in worker processes (:mod:`.tflite_pool`), started by
:func:`start_tflite` and collected, in order, by :func:`finish_tflite`. The multi-signature file
is not converted: it is assembled from the encoder and decoder-step files of its precision
(:mod:`.tflite_merge`), each signature computing exactly what its own file does.
int4 is quantized from the fp32 flatbuffer of the same graph (:mod:`.tflite_int4`). Every file's
coverage (:mod:`.coverage`) goes into its manifest entry.
"""

from __future__ import annotations

import shutil
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from storyedge.errors import CheckFailed
from storyedge.export import tflite as tfl
from storyedge.export.calibration import calibration_samples
from storyedge.export.coverage import tflite_coverage
from storyedge.export.context import WORK_DIR, ExportContext, check_io, file_name
from storyedge.export.native import release_memory
from storyedge.export.tflite_int4 import quantize_int4
from storyedge.export.tflite_merge import merge_signatures
from storyedge.export.tflite_pool import Conversions, auto_workers, convert_to_file
from storyedge.export.plan import TFLITE_GRAPHS, TFLITE_STORY_FILE, rnn_layout
from storyedge.quiet import quiet_native_output

FORMAT = "tflite"
#: How much of a converter error's last line the :class:`CheckFailed` quotes.
ERROR_CHARS = 400
#: The precision whose conversions take longest (full int8: calibration and quantization, 3-4x
#: an fp32 file at the seed size): its layout's SavedModel is written and converted first, so
#: the workers finish together.
SLOWEST_PRECISION = "int8"


@dataclass
class PendingFile:
    """A TFLite file whose conversion has started (:class:`~.tflite_pool.Conversions`), or one
    to merge from the single-signature files ``parts`` once they are in."""

    graph: str
    keys: tuple[str, ...]
    precision: str
    converted: "Future[float] | None"
    parts: tuple[str, ...] = ()


@dataclass
class TFLiteBuild:
    """The TFLite side of an export between :func:`start_tflite` and :func:`finish_tflite`."""

    conversions: Conversions
    pending: list[PendingFile] = field(default_factory=list)
    #: int4 files: quantized from their fp32 flatbuffer once the conversions are in
    int4: list[tuple[Path, str, tuple[str, ...]]] = field(default_factory=list)

    def __enter__(self) -> "TFLiteBuild":
        return self

    def __exit__(self, *exc: object) -> None:
        self.conversions.close()  # workers stopped, unfinished conversions cancelled


def tflite_files(ctx: ExportContext) -> list[tuple[str, tuple[str, ...]]]:
    """(graph, signature keys) of every TFLite file of one precision."""
    files = list(TFLITE_GRAPHS.items())
    if ctx.plan.story_graphs:  # with the optional frame + story graph: one more signature, no more weights
        graphs = ctx.story.all_graphs if ctx.story is not None else ctx.plan.story_graphs
        files.append((TFLITE_STORY_FILE, tuple(graphs)))
    return files


def merged_from(keys: tuple[str, ...], files: list[tuple[str, tuple[str, ...]]]) -> tuple[str, ...]:
    """The single-signature graphs of ``files`` a file of several signatures ``keys`` is merged
    from, one per key; empty when it must be converted (a key no single file holds)."""
    single = {graph_keys[0]: graph for graph, graph_keys in files if len(graph_keys) == 1}
    if len(keys) < 2 or any(key not in single for key in keys):
        return ()
    return tuple(single[key] for key in keys)


def start_tflite(ctx: ExportContext) -> TFLiteBuild:
    """Trace the SavedModels and start every conversion of the plan (none without a TFLite precision).

    The conversions run in worker processes (``export.workers``) while this process goes on
    with the next SavedModel and, after this returns, the ONNX graphs. Use the result as a
    context manager (its workers stop on exit) and collect it with :func:`finish_tflite`."""
    converted = [p for p in ctx.plan.tflite_precisions if p != "int4"]
    files = tflite_files(ctx)
    jobs = len(converted) * sum(not merged_from(keys, files) for _, keys in files)
    build = TFLiteBuild(Conversions(auto_workers(ctx.config.export.workers, jobs)))
    if not ctx.plan.tflite_precisions:
        return build
    (ctx.stage / FORMAT).mkdir()
    slowest = rnn_layout(SLOWEST_PRECISION, ctx.plan.portable)
    layouts = sorted(ctx.plan.rnn_layouts().items(), key=lambda item: item[0] != slowest)
    try:
        for layout, precisions in layouts:
            saved = write_saved_model(ctx, layout)
            for precision in precisions:
                samples = calibration_samples(ctx) if precision == "int8" else None
                for graph, keys in files:
                    if precision == "int4":
                        build.int4.append((saved, graph, keys))
                        continue
                    parts = merged_from(keys, files)
                    if parts:
                        build.pending.append(PendingFile(graph, keys, precision, None, parts))
                        continue
                    mine = [(k, v) for k, v in samples if k in keys] if samples is not None else None
                    path = ctx.stage / _rel(graph, precision)
                    build.pending.append(PendingFile(graph, keys, precision,
                                                     build.conversions.submit(saved, keys, precision, mine, path,
                                                                              ctx.plan.portable)))
    except BaseException:
        build.conversions.close()
        raise
    return build


def finish_tflite(ctx: ExportContext, build: TFLiteBuild) -> None:
    """Wait for each started conversion in turn and check and list its file, then the int4 files."""
    if build.pending:
        merged = sum(item.converted is None for item in build.pending)
        ctx.progress.stage(f"tflite: converting {len(build.pending) - merged} files, {build.conversions.workers} "
                           f"at a time" + (f", {merged} merged" if merged else ""))
    order = ctx.plan.tflite_precisions
    for item in sorted(build.pending, key=lambda i: order.index(i.precision)):  # listed in the plan's order
        seconds = _merged(ctx, item) if item.parts else _converted(item)  # the parts are listed before
        list_tflite_file(ctx, item.graph, item.keys, item.precision, seconds)
    build.conversions.close()
    for saved, graph, keys in build.int4:
        ctx.progress.stage(f"tflite {graph} int4: quantize")
        t0 = time.perf_counter()
        content, notes = _int4(ctx, saved, graph, keys)
        list_tflite_file(ctx, graph, keys, "int4", time.perf_counter() - t0, content, notes)
    shutil.rmtree(ctx.stage / WORK_DIR / FORMAT, ignore_errors=True)


def write_saved_model(ctx: ExportContext, rnn_layout: str) -> Path:
    """The model's SavedModel (endpoints ``encoder`` / ``decoder_step``) with ``rnn_layout`` LSTMs."""
    # lazy: the graph switches and the export archive import TensorFlow / Keras
    from storyedge.export.graphs import tflite_rnn_layout
    from storyedge.model.signatures import make_export_archive

    ctx.progress.stage(f"tflite: SavedModel ({rnn_layout} LSTMs)")
    t0 = time.perf_counter()
    saved = ctx.stage / WORK_DIR / FORMAT / f"saved_model_{rnn_layout}"
    with tflite_rnn_layout(ctx.model, rnn_layout), quiet_native_output():
        archive = make_export_archive(ctx.model, ctx.plan.batch)
        archive.write_out(str(saved), verbose=False)
    ctx.time(f"saved_model ({rnn_layout} LSTMs)", time.perf_counter() - t0)
    ctx.progress.done()
    return saved


def _conversion_failed(graph: str, precision: str, exc: BaseException) -> CheckFailed:
    lines = str(exc).strip().splitlines()
    return CheckFailed(f"TFLite conversion of {graph} ({precision}) failed: "
                       f"{lines[-1][:ERROR_CHARS] if lines else type(exc).__name__}")


def _converted(item: PendingFile) -> float:
    """A started conversion's seconds; its failure as :class:`CheckFailed` quoting its last line."""
    assert item.converted is not None
    try:
        return item.converted.result()
    except Exception as exc:  # noqa: BLE001 - the converter's message, from whichever process ran it
        raise _conversion_failed(item.graph, item.precision, exc) from exc


def _merged(ctx: ExportContext, item: PendingFile) -> float:
    """Write a file merged from its single-signature parts (already written); its seconds."""
    t0 = time.perf_counter()
    contents = [(ctx.stage / _rel(part, item.precision)).read_bytes() for part in item.parts]
    (ctx.stage / _rel(item.graph, item.precision)).write_bytes(merge_signatures(contents))
    del contents
    release_memory()
    return time.perf_counter() - t0


def _rel(graph: str, precision: str) -> str:
    return f"{FORMAT}/{file_name(graph, precision, FORMAT)}"


def list_tflite_file(
    ctx: ExportContext, graph: str, keys: tuple[str, ...], precision: str, seconds: float,
    content: bytes | None = None, notes: list[str] | None = None,
) -> None:
    """Check (builtins only, IO per signature) and list one ``.tflite`` file: ``content``
    written there first, else the file a conversion wrote."""
    rel = _rel(graph, precision)
    path = ctx.stage / rel
    if content is None:
        content = path.read_bytes()
    else:
        path.write_bytes(content)
    info = tfl.inspect_tflite(content)
    tfl.check_builtins_only(path, info)
    io = tfl.tflite_io(path)
    for key in keys:
        check_io(path, io.get(key, {}), ctx.signatures[key], key)
    float_ops = sorted(info.float_ops) if precision == "int8" else []
    entry = ctx.add_file(rel, FORMAT, graph, precision, keys, seconds, ops=info.ops, float_ops=float_ops)
    entry.coverage = tflite_coverage(content)
    entry.coverage.notes = list(notes or []) + entry.coverage.notes
    del content
    release_memory()
    ctx.progress.done(rel, seconds)


def _int4(ctx: ExportContext, saved: Path, graph: str, keys: tuple[str, ...]) -> tuple[bytes, list[str]]:
    """The int4 flatbuffer of ``graph`` (from its fp32 file when this export wrote one) and notes."""
    fp32 = ctx.stage / FORMAT / file_name(graph, "fp32", FORMAT)
    if not fp32.is_file():  # an int4 export without fp32: its float flatbuffer, converted here
        fp32 = ctx.stage / WORK_DIR / FORMAT / file_name(graph, "fp32", FORMAT)
        try:
            convert_to_file(str(saved), keys, "fp32", None, str(fp32))
        except Exception as exc:  # noqa: BLE001 - as a worker's failure
            raise _conversion_failed(graph, "fp32", exc) from exc
    content = fp32.read_bytes()
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
