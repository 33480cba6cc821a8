"""The ONNX files of an export: fp32 per graph through tf2onnx (always converted: int8-dynamic is
quantized from it; kept in scratch space when fp32 itself was not asked for), then
int8-dynamic per graph; each checked (checker, LSTM nodes, documented IO) and listed.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from storyedge.export.context import WORK_DIR, ExportContext, check_io, file_name
from storyedge.export.native import quiet_native_output, release_memory
from storyedge.export.plan import ONNX_GRAPHS
from storyedge.export.story_build import story_lstm_counts

FORMAT = "onnx"


def build_onnx(ctx: ExportContext) -> None:
    """Every ONNX file of the plan (nothing when it has no ONNX precision)."""
    if not ctx.plan.onnx_precisions:
        return
    # lazy: the graph switches import TensorFlow / Keras
    from storyedge.export.graphs import encoder_lstm_count

    (ctx.stage / FORMAT).mkdir()
    lstms = {"encoder": encoder_lstm_count(ctx.model), "decoder_step": 0}
    if ctx.plan.story_graphs:
        lstms.update(story_lstm_counts(ctx.model))
    graphs = [*ONNX_GRAPHS, *ctx.plan.story_graphs]
    fp32_paths = {graph: build_onnx_fp32(ctx, graph, lstms[graph]) for graph in graphs}
    if "int8-dynamic" in ctx.plan.onnx_precisions:
        for graph in graphs:
            build_onnx_int8_dynamic(ctx, graph, fp32_paths[graph], lstms[graph])
    shutil.rmtree(ctx.stage / WORK_DIR, ignore_errors=True)


def build_onnx_fp32(ctx: ExportContext, graph: str, lstms: int) -> Path:
    """Convert and check ``graph`` at fp32; listed when the plan has fp32. Returns its path."""
    # lazy: onnx is a heavy optional runtime; onnx_export imports TensorFlow via storyedge.model
    import onnx

    from storyedge.export import onnx_export as ox

    ctx.progress.stage(f"{FORMAT} {graph} fp32: convert")
    t0 = time.perf_counter()
    with quiet_native_output():
        proto = ox.convert_onnx(ctx.model, graph, ctx.plan.batch, ctx.plan.opset)
    ops = ox.check_onnx(proto, graph, lstms, "fp32")
    listed = "fp32" in ctx.plan.onnx_precisions
    rel = f"{FORMAT if listed else WORK_DIR}/{file_name(graph, 'fp32', FORMAT)}"
    path = ctx.stage / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))
    del proto
    release_memory()
    check_io(path, ox.onnx_io(path), ctx.signatures[graph], graph)
    seconds = time.perf_counter() - t0
    if listed:
        ctx.add_file(rel, FORMAT, graph, "fp32", (graph,), seconds, ops=ops)
    ctx.progress.done(rel if listed else None, seconds if listed else None)
    return path


def build_onnx_int8_dynamic(ctx: ExportContext, graph: str, fp32_path: Path, lstms: int) -> None:
    """Quantize the fp32 file of ``graph`` (dynamic range), check and list it."""
    # lazy: onnx is a heavy optional runtime; onnx_export imports TensorFlow via storyedge.model
    import onnx

    from storyedge.export import onnx_export as ox

    ctx.progress.stage(f"{FORMAT} {graph} int8-dynamic: quantize")
    t0 = time.perf_counter()
    rel = f"{FORMAT}/{file_name(graph, 'int8-dynamic', FORMAT)}"
    path = ctx.stage / rel
    with quiet_native_output():
        ox.quantize_onnx_dynamic(fp32_path, path)
    ops = ox.check_onnx(onnx.load(str(path)), graph, lstms, "int8-dynamic")
    check_io(path, ox.onnx_io(path), ctx.signatures[graph], graph)
    seconds = time.perf_counter() - t0
    ctx.add_file(rel, FORMAT, graph, "int8-dynamic", (graph,), seconds, ops=ops)
    ctx.progress.done(rel, seconds)
