"""The ONNX files of an export: fp32 per graph through tf2onnx (always converted: every other
precision is derived from it; kept in scratch space when fp32 itself was not asked for), then
fp16 / int8-dynamic / int8 (static, QDQ) / int4 per graph (:mod:`.onnx_quantize`); each checked
(checker, LSTM nodes, documented IO, no contrib op under ``--portable``), its coverage recorded
(:mod:`.coverage`) and listed.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from storyedge.errors import CheckFailed
from storyedge.export import onnx_quantize as oq
from storyedge.export.calibration import calibration_samples, graph_feeds
from storyedge.export.coverage import onnx_coverage
from storyedge.export.context import WORK_DIR, ExportContext, check_io, file_name
from storyedge.export.native import release_memory
from storyedge.export.onnx_frame_story import join_frame_story
from storyedge.export.plan import ONNX_GRAPHS
from storyedge.export.story_build import story_lstm_counts
from storyedge.quiet import quiet_native_output

if TYPE_CHECKING:  # pragma: no cover
    from storyedge.manifest import Coverage, StorySpec

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
    for precision in ctx.plan.onnx_precisions:
        if precision != "fp32":
            for graph in graphs:
                build_onnx_derived(ctx, graph, precision, fp32_paths[graph], lstms[graph])
        if ctx.plan.frame_story_graph and ctx.story is not None:
            build_onnx_frame_story(ctx, ctx.story, precision, lstms)
    shutil.rmtree(ctx.stage / WORK_DIR / FORMAT, ignore_errors=True)


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
    rel = f"{FORMAT if listed else f'{WORK_DIR}/{FORMAT}'}/{file_name(graph, 'fp32', FORMAT)}"
    path = ctx.stage / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))
    del proto
    release_memory()
    check_io(path, ox.onnx_io(path), ctx.signatures[graph], graph)
    seconds = time.perf_counter() - t0
    if listed:
        entry = ctx.add_file(rel, FORMAT, graph, "fp32", (graph,), seconds, ops=ops)
        entry.coverage = _coverage(path)
    ctx.progress.done(rel if listed else None, seconds if listed else None)
    return path


def _coverage(path: Path) -> "Coverage":
    # lazy: onnx is a heavy optional runtime
    import onnx

    return onnx_coverage(onnx.load(str(path)))


#: What each derived precision's progress line says it does.
ACTIONS = {"fp16": "convert to float16", "int8-dynamic": "quantize (dynamic)", "int8": "quantize (static, calibrated)",
           "int4": "quantize (4-bit weights)"}


def _derive(ctx: ExportContext, graph: str, precision: str, src: Path, dst: Path) -> list[str]:
    """Write ``dst`` at ``precision`` from the fp32 file ``src``; returns coverage notes."""
    # lazy: onnx_export imports TensorFlow via storyedge.model
    from storyedge.export import onnx_export as ox

    if precision == "fp16":
        oq.to_fp16(src, dst)
        return []
    if precision == "int8-dynamic":
        if ctx.plan.portable:
            oq.to_int8_dynamic_portable(src, dst)
            return ["--portable: LSTM nodes kept float (no com.microsoft DynamicQuantizeLSTM)"]
        ox.quantize_onnx_dynamic(src, dst, decoder_step=graph == "decoder_step")
        return []
    if precision == "int8":
        names = [t.name for t in ctx.signatures[graph].inputs]
        feeds = graph_feeds(calibration_samples(ctx), graph, names)
        oq.to_int8_static(src, dst, feeds, ctx.plan.calibration_method, float_state=graph == "decoder_step",
                          contrib_ops=not ctx.plan.portable)
        notes = [f"static int8 calibrated on {len(feeds)} sample(s) ({ctx.plan.calibration_method})"]
        if ctx.plan.portable:
            notes.append("--portable: LSTM nodes kept float and a step's products QDQ (no com.microsoft "
                         "DynamicQuantizeLSTM / MatMulNBits)")
        return notes
    if precision == "int4":
        skipped = oq.to_int4(src, dst, ctx.plan.int4_block_size)
        notes = [oq.INT4_NOTE, f"block size {ctx.plan.int4_block_size}"]
        if skipped:
            notes.append(f"{len(skipped)} MatMul weight(s) kept float: the block size does not divide their input dim")
        return notes
    raise ValueError(f"unknown ONNX precision {precision!r}")


def build_onnx_derived(ctx: ExportContext, graph: str, precision: str, fp32_path: Path, lstms: int) -> None:
    """Derive ``graph`` at ``precision`` from its fp32 file, check, record coverage and list it."""
    # lazy: onnx is a heavy optional runtime; onnx_export imports TensorFlow via storyedge.model
    import onnx

    from storyedge.export import onnx_export as ox

    ctx.progress.stage(f"{FORMAT} {graph} {precision}: {ACTIONS[precision]}")
    t0 = time.perf_counter()
    rel = f"{FORMAT}/{file_name(graph, precision, FORMAT)}"
    path = ctx.stage / rel
    with quiet_native_output():
        notes = _derive(ctx, graph, precision, fp32_path, path)
    proto = onnx.load(str(path))
    ops = ox.check_onnx(proto, graph, lstms, precision)
    coverage = onnx_coverage(proto)
    coverage.notes = notes + coverage.notes
    del proto
    if ctx.plan.portable and not coverage.portable:
        raise CheckFailed(
            f"ONNX {graph} ({precision}): --portable, but the file needs contrib op(s) "
            f"{', '.join(coverage.nonportable_ops)}"
        )
    check_io(path, ox.onnx_io(path), ctx.signatures[graph], graph)
    seconds = time.perf_counter() - t0
    entry = ctx.add_file(rel, FORMAT, graph, precision, (graph,), seconds, ops=ops)
    entry.coverage = coverage
    ctx.progress.done(rel, seconds)
    release_memory()


def build_onnx_frame_story(ctx: ExportContext, story: "StorySpec", precision: str, lstms: dict[str, int]) -> None:
    """The frame + story graph at ``precision`` from its listed frame and story files
    (:mod:`.onnx_frame_story`), checked like a converted graph and listed."""
    # lazy: onnx is a heavy optional runtime; onnx_export imports TensorFlow via storyedge.model
    import onnx

    from storyedge.export import onnx_export as ox

    graph = str(story.frame_story_graph)
    ctx.progress.stage(f"{FORMAT} {graph} {precision}: join the frame and story graphs")
    t0 = time.perf_counter()
    files = ctx.entries()
    frame, story_file = files[(FORMAT, story.frame_graph, precision)], files[(FORMAT, story.story_graph, precision)]
    rel = f"{FORMAT}/{file_name(graph, precision, FORMAT)}"
    path = ctx.stage / rel
    shared = join_frame_story(ctx.stage / frame.path, ctx.stage / story_file.path, path, story)
    proto = onnx.load(str(path))  # the shared weights read back from the frame and story files
    ops = ox.check_onnx(proto, graph, lstms[story.frame_graph] + lstms[story.story_graph], precision)
    coverage = onnx_coverage(proto)
    del proto
    inherited = frame.coverage.notes if frame.coverage else []  # how the frame graph was quantized
    coverage.notes = [f"{shared} weight tensor(s) read in place from {Path(frame.path).name} and "
                      f"{Path(story_file.path).name} (no second copy)", *inherited, *coverage.notes]
    check_io(path, ox.onnx_io(path), ctx.signatures[graph], graph)
    seconds = time.perf_counter() - t0
    entry = ctx.add_file(rel, FORMAT, graph, precision, (graph,), seconds, ops=ops)
    entry.coverage = coverage
    ctx.progress.done(rel, seconds)
