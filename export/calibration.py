"""Calibration data for the statically quantized files (TFLite full int8, ONNX static int8).

Both formats calibrate on the same samples (:func:`calibration_samples`, made once per export):
the encoder's inputs on calibration windows, and for the decoder step the ``(token, state)``
tuples the TF reference meets when teacher-forced along each window's target caption; for story
mode's graphs (when exported) the feeds each meets when the reference encodes the calibration
windows frame by frame (:func:`storyedge.export.story_build.story_samples`). A
stateful step cannot be calibrated on its own outputs: its state inputs must have the ranges a
real caption gives them, which only a reference run produces.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from storyedge.export import validation as val
from storyedge.export.story_build import story_samples

if TYPE_CHECKING:  # pragma: no cover
    from storyedge.export.context import ExportContext

Sample = tuple[str, dict[str, np.ndarray]]
#: ``--calibration-method`` → onnxruntime ``CalibrationMethod`` member name.
ORT_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


def calibration_samples(ctx: "ExportContext") -> list[Sample]:
    """The export's calibration samples, computed on first use and kept on the context."""
    cached = getattr(ctx, "_calibration_samples", None)
    if cached is None:
        cached = val.representative_samples(ctx.reference, ctx.cset, ctx.tokenizer.pad_id)
        if ctx.plan.story_graphs:
            cached += story_samples(ctx.reference, ctx.cset)
        ctx._calibration_samples = cached  # noqa: SLF001 - a per-export cache, owned here
    return cached


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
