"""Story mode's graphs in an export: which ones, their int8 calibration samples, their validation.

The model declares how its encoder splits (:func:`storyedge.model.signatures.story_spec`):
``frame_encoder`` (one frame + caption → fused vector), ``reason_encoder`` (with a reason) and
``story_encoder`` (k fused vectors [+ reason vector] → the encoder's outputs). The builders
convert each at every precision next to the single encoder (which stays as it was): TFLite one
file per precision with one signature per graph, ``tflite/story.<precision>.tflite`` (one
conversion, one copy of the shared weights), ONNX one file per graph, ``onnx/<graph>.<precision>.onnx``.
The TFLite file also holds ``frame_story_encoder`` (the frame and story graphs in one call, for a
window's newest frame: one runtime call per caption, no second copy of any weight); ONNX has it as
``onnx/frame_story_encoder.<precision>.onnx``, a graph that reads its weights in place from the
frame and story files (:mod:`.onnx_frame_story`).

Validation, per format and precision: each validation window is encoded frame by frame through
the story graphs (:func:`storyedge.runtime.story_window_outputs`; where the file has the frame +
story graph, once through it and once through the frame and story graphs) and compared with the
TF reference's full-window encoder outputs under the precision's usual tolerance. Two more figures
go into the record: the same backend's story-mode outputs vs its own full-window encoder
(``story_vs_full_window``) and the TF reference's story mode vs its full window
(``reference_story_vs_full_window``); at fp32 both must be below :data:`STORY_PARITY_ATOL`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from storyedge.constants import STORY_PARITY_ATOL, STORY_VALIDATION_TIMING_SUFFIX, VALIDATION_TIMING_PREFIX
from storyedge.export import validation as val
from storyedge.export.context import ExportContext
from storyedge.export.plan import TFLITE_STORY_FILE
from storyedge.runtime import load_backend, story_window_outputs
from storyedge.runtime.specs import BackendSpec, backend_name

if TYPE_CHECKING:  # pragma: no cover
    from storyedge.model.story_model import StoryModel
    from storyedge.runtime.backend import Backend


def story_graph_names(model: "StoryModel") -> list[str]:
    """The story-mode graphs ``model`` declares, in run order."""
    from storyedge.model.signatures import story_spec  # lazy: imports TensorFlow

    return story_spec(model).graphs


def frame_story_graph_name(model: "StoryModel") -> str | None:
    """The optional frame + story graph ``model`` declares (None for a one-frame window)."""
    from storyedge.model.signatures import story_spec  # lazy: imports TensorFlow

    return story_spec(model).frame_story_graph


def story_lstm_counts(model: "StoryModel") -> dict[str, int]:
    """Keras LSTM layers per story-mode graph (each must become one ONNX ``LSTM`` node)."""
    # lazy: the model and the graph switches import TensorFlow / Keras
    import keras

    from storyedge.export.graphs import rnn_layers
    from storyedge.model.signatures import story_graph_layers

    def count(layer: Any) -> int:
        own = 1 if isinstance(layer, keras.layers.LSTM) else 0
        return own + sum(isinstance(r, keras.layers.LSTM) for r in rnn_layers(layer))

    return {g: sum(count(layer) for layer in story_graph_layers(model, g)) for g in story_graph_names(model)}


def story_calls(reference: "Backend", inputs: dict[str, np.ndarray], one_call: bool) -> list[tuple[str, dict[str, np.ndarray]]]:
    """Every story graph call (graph, feeds) the reference makes encoding the windows of
    ``inputs`` frame by frame (``one_call``: the newest frame through the frame + story graph)."""
    calls: list[tuple[str, dict[str, np.ndarray]]] = []
    story_window_outputs(_Recorder(reference, calls), inputs, one_call=one_call)  # type: ignore[arg-type]
    return calls


class _Recorder:
    """A backend stand-in recording each story graph's feeds before running it on ``backend``."""

    def __init__(self, backend: "Backend", samples: list[tuple[str, dict[str, np.ndarray]]]) -> None:
        self.backend, self.samples = backend, samples
        self.name, self.story, self.decoder = backend.name, backend.story, backend.decoder

    def run_graph(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.samples.append((graph, {k: np.ascontiguousarray(v) for k, v in feeds.items()}))
        return self.backend.run_graph(graph, feeds)

    def graph_input_shape(self, graph: str, name: str) -> tuple[int, ...] | None:
        return self.backend.graph_input_shape(graph, name)


def _max_diffs(a: list[dict[str, np.ndarray]], b: list[dict[str, np.ndarray]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for x, y in zip(a, b):
        for name in x:
            diff = float(np.max(np.abs(np.asarray(x[name], np.float64) - np.asarray(y[name], np.float64))))
            out[name] = max(out.get(name, 0.0), diff)
    return out


def reference_story_diffs(ctx: ExportContext) -> dict[str, float]:
    """The TF reference's story mode vs its full-window encoder over the validation windows."""
    story = [story_window_outputs(ctx.reference, inputs, one_call) for one_call in (True, False)
             for inputs in ctx.vset.batches]
    return _max_diffs(story, ctx.ref_trace.encoder * 2)


def validate_story(ctx: ExportContext, records: dict[str, dict[str, Any]], threads: int) -> None:
    """A validation record for every story-mode file (one progress step per format x precision)."""
    if ctx.story is None:
        return
    ref_diffs = reference_story_diffs(ctx)
    files = ctx.entries()
    for fmt, precisions in (("tflite", ctx.plan.tflite_precisions), ("onnx", ctx.plan.onnx_precisions)):
        for precision in precisions:
            ctx.progress.stage(f"validate {fmt} {precision} story mode")
            t0 = time.perf_counter()
            graphs = [TFLITE_STORY_FILE] if fmt == "tflite" else ctx.story.all_graphs
            entries = [files[(fmt, g, precision)] for g in graphs if (fmt, g, precision) in files]
            encoder = files[(fmt, "encoder", precision)]
            decoder = files[(fmt, "decoder_step", precision)]
            paths = {g: ctx.stage / e.path for e in entries for g in e.signatures}
            spec = BackendSpec(
                backend_name(fmt, precision), fmt, precision, "separate", ctx.stage / encoder.path,
                ctx.stage / decoder.path, encoder.size_bytes + decoder.size_bytes, ctx.reference.decoder,
                story=ctx.story.with_graphs(set(paths)), story_paths=paths,
            )
            record = _story_record(ctx, spec, ref_diffs, threads)
            for entry in entries:
                records[entry.path] = dict(record)
            ctx.time(f"{VALIDATION_TIMING_PREFIX}{spec.name}{STORY_VALIDATION_TIMING_SUFFIX}",
                     time.perf_counter() - t0)
            ctx.progress.done()


def _story_record(ctx: ExportContext, spec: BackendSpec, ref_diffs: dict[str, float], threads: int) -> dict[str, Any]:
    """The judged record of one backend's story graphs (see the module doc)."""
    cmp = val.Comparison()
    self_diffs: dict[str, float] = {}
    try:
        backend = load_backend(spec, threads=threads)
        full = [backend.run_encoder(inputs) for inputs in ctx.vset.batches]
        # both ways a backend with the frame + story graph encodes a window: one call, two graphs
        paths = (True, False) if backend.story is not None and backend.story.frame_story_graph else (True,)
        story = [story_window_outputs(backend, inputs, one_call) for one_call in paths for inputs in ctx.vset.batches]
        cmp = val.compare_encoder(val.Trace(encoder=ctx.ref_trace.encoder * len(paths)), val.Trace(encoder=story))
        self_diffs = _max_diffs(story, full * len(paths))
    except Exception as exc:  # noqa: BLE001 - any runtime error is a validation failure
        lines = str(exc).strip().splitlines()
        cmp.errors.append(f"story mode: {type(exc).__name__}: {lines[0][:300] if lines else ''}")
    record = val.judge([cmp], spec.precision, ctx.plan.atol, ctx.plan.tolerances, ctx.vset)
    record["story_vs_full_window"] = {k: float(f"{v:.6g}") for k, v in self_diffs.items()}
    record["reference_story_vs_full_window"] = {k: float(f"{v:.6g}") for k, v in ref_diffs.items()}
    record["story_parity_atol"] = STORY_PARITY_ATOL
    if spec.precision == "fp32":
        worst = max([*self_diffs.values(), *ref_diffs.values()], default=float("inf"))
        if not worst < STORY_PARITY_ATOL:
            record["passed"] = False
            record.setdefault("errors", []).append(
                f"story mode differs from the full-window encoder by {worst:.3g} (fp32 needs < {STORY_PARITY_ATOL:g})"
            )
    return record
