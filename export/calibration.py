"""Calibration data for the statically quantized files (TFLite full int8, ONNX static int8).

Both formats calibrate on the same samples (:func:`calibration_samples`, made once per export):
the encoder's inputs on calibration windows, and for the decoder step the ``(token, state)``
tuples the TF reference meets when teacher-forced along each window's target caption; for story
mode's graphs (when exported) the feeds each meets when the reference encodes the calibration
windows frame by frame (:func:`storyedge.export.story_build.story_calls`). A
stateful step cannot be calibrated on its own outputs: its state inputs must have the ranges a
real caption gives them, which only a reference run produces.

The reference runs :data:`CHUNK_ROWS` calibration rows at a time (a TF reference of that batch)
and each sample is cut back to the export's batch, in the order and with the steps a run of each
batch alone gives: at the seed size the 32 calibration windows' 673 samples took 14-17 s one
window at a time, in the export process, ahead of its ONNX conversions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from storyedge.export import validation as val
from storyedge.export.story_build import story_calls

if TYPE_CHECKING:  # pragma: no cover
    from storyedge.export.context import ExportContext
    from storyedge.model.story_model import StoryModel
    from storyedge.runtime.backend import Backend

Sample = tuple[str, dict[str, np.ndarray]]
#: Calibration rows the TF reference runs at once (more would only grow the CNN's activations).
CHUNK_ROWS = 32
#: ``--calibration-method`` → onnxruntime ``CalibrationMethod`` member name.
ORT_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


def calibration_samples(ctx: "ExportContext") -> list[Sample]:
    """The export's calibration samples, computed on first use and kept on the context."""
    cached = getattr(ctx, "_calibration_samples", None)
    if cached is None:
        cached = reference_samples(ctx.model, ctx.cset, ctx.tokenizer.pad_id, bool(ctx.plan.story_graphs))
        ctx._calibration_samples = cached  # noqa: SLF001 - a per-export cache, owned here
    return cached


def reference_samples(model: "StoryModel", cset: val.ValidationSet, pad_id: int, story: bool,
                      chunk_rows: int | None = None) -> list[Sample]:
    """The calibration samples of ``cset``'s batches as a reference of their batch size gives
    them batch by batch (the encoder's inputs; the decoder step's, teacher-forced; with ``story``
    the story graphs' calls), computed by a TF reference over ``chunk_rows`` (default
    :data:`CHUNK_ROWS`) rows at a time: the encoder's and decoder step's samples of every batch,
    then the story graphs' of every batch."""
    # lazy: the TF reference imports TensorFlow
    from storyedge.runtime.tf_reference import TFReferenceBackend

    batch = len(cset.targets[0])
    per_chunk = max(1, min(len(cset), (chunk_rows or CHUNK_ROWS) // batch))  # batches per reference run
    reference = TFReferenceBackend(model, per_chunk * batch, name="calibration reference")
    steps: list[Sample] = []
    calls: list[Sample] = []
    for first in range(0, len(cset), per_chunk):
        kept = min(per_chunk, len(cset) - first)
        chosen = list(range(first, first + kept)) + [first + kept - 1] * (per_chunk - kept)  # the last chunk padded
        inputs = {name: np.concatenate([cset.batches[i][name] for i in chosen]) for name in cset.batches[0]}
        targets = np.concatenate([cset.targets[i] for i in chosen])
        steps += _teacher_forced(reference, inputs, targets, pad_id, batch, kept)
        if story:  # per batch: the calls with the frame + story graph, then those without
            recorded = story_calls(reference, inputs, True) + story_calls(reference, inputs, False)
            calls += [(graph, _rows(feeds, g, batch)) for g in range(kept) for graph, feeds in recorded]
    return steps + calls


def _rows(arrays: dict[str, np.ndarray], group: int, batch: int) -> dict[str, np.ndarray]:
    """Batch ``group`` (rows ``group * batch`` onwards) of every array."""
    return {k: np.ascontiguousarray(v[group * batch:(group + 1) * batch]) for k, v in arrays.items()}


def _teacher_forced(reference: "Backend", inputs: dict[str, np.ndarray], targets: np.ndarray, pad_id: int,
                    batch: int, kept: int) -> list[Sample]:
    """Per batch of the chunk (the first ``kept``): its encoder sample, then its decoder step
    samples teacher-forced along its targets up to the first step whose tokens are all padding."""
    state = reference.encode(inputs)
    per_batch: list[list[Sample]] = [[("encoder", _rows(inputs, g, batch))] for g in range(kept)]
    ended = [False] * kept
    for t in range(targets.shape[1] - 1):
        token = np.ascontiguousarray(targets[:, t]).astype(np.int32)
        ended = [done or bool(np.all(token[g * batch:(g + 1) * batch] == pad_id)) for g, done in enumerate(ended)]
        if all(ended):
            break
        feeds = {reference.decoder.token: token, **state}
        for g in range(kept):
            if not ended[g]:
                per_batch[g].append(("decoder_step", _rows(feeds, g, batch)))
        _, state = reference.step(token, state)
    return [sample for samples in per_batch for sample in samples]


def graph_feeds(samples: list[Sample], graph: str, input_names: list[str]) -> list[dict[str, np.ndarray]]:
    """The samples of ``graph`` as feed dicts holding exactly ``input_names``."""
    return [{n: np.ascontiguousarray(inputs[n]) for n in input_names} for key, inputs in samples if key == graph]


def ort_data_reader(feeds: list[dict[str, np.ndarray]]) -> Any:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over ``feeds`` (rewindable)."""
    # lazy: onnxruntime is a heavy optional runtime
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._index = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self._index >= len(feeds):
                return None
            self._index += 1
            return feeds[self._index - 1]

        def rewind(self) -> None:
            self._index = 0

    return _Reader()


def ort_method(name: str) -> Any:
    """The onnxruntime ``CalibrationMethod`` of a ``--calibration-method`` name."""
    # lazy: onnxruntime is a heavy optional runtime
    from onnxruntime.quantization import CalibrationMethod

    return getattr(CalibrationMethod, ORT_METHODS[name])
