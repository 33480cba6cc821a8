"""storyedge.runtime: run an export (or the TF reference) through one interface.

``Backend`` (``encode(inputs) -> state``, ``step(token, state) -> (logits, state)``) with its
LiteRT, ONNX Runtime and TF-reference implementations, greedy and beam decoding, and opening an
export directory. The decoder state is opaque: named tensors declared by the manifest.
TensorFlow-free except :mod:`storyedge.runtime.tf_reference` (imported only by
:func:`build_reference`), so ``storyedge bench --latency-only`` never imports it.
"""

from storyedge.runtime.backend import Backend, State, state_batch
from storyedge.runtime.decoding import Hypothesis, beam_search, greedy_decode, log_softmax
from storyedge.runtime.export_dir import ExportDir, build_reference, find_spec, load_backend, open_export
from storyedge.runtime.specs import BackendSpec, backend_name, backend_plans, backend_specs, select_specs
from storyedge.runtime.story import StoryEncoder, frame_slice, story_window_outputs

__all__ = [
    "Backend",
    "BackendSpec",
    "ExportDir",
    "Hypothesis",
    "State",
    "StoryEncoder",
    "backend_name",
    "backend_plans",
    "backend_specs",
    "beam_search",
    "build_reference",
    "find_spec",
    "frame_slice",
    "greedy_decode",
    "load_backend",
    "log_softmax",
    "open_export",
    "select_specs",
    "state_batch",
    "story_window_outputs",
]
