"""The state one export works in (:class:`ExportContext`) and the files it has built.

The context is made once by :func:`storyedge.export.reference.open_context` (staging directory,
model, effective config, tokenizer, plan, reference backend, validation / calibration sets and
the reference's trace over them); the builders (:mod:`.tflite_build`, :mod:`.onnx_build`) add
:class:`BuiltFile` records and timings to it, :mod:`.validate_backends` judges them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from storyedge.config import Config
from storyedge.errors import CheckFailed
from storyedge.export.plan import ExportPlan
from storyedge.export.progress import Progress
from storyedge.export.validation import Trace, ValidationSet
from storyedge.manifest import ExportedFile, SignatureInfo, StorySpec, TensorInfo, sha256_file

if TYPE_CHECKING:  # pragma: no cover
    from storyedge.model.story_model import StoryModel
    from storyedge.runtime.backend import Backend
    from storyedge.tokenizer import StoryTokenizer

#: Scratch space inside the staging directory (SavedModels, unlisted fp32 ONNX), removed after use.
WORK_DIR = ".work"
REFERENCE_DIR = "reference"
REJECTED_DIR = "rejected"

#: ``{"inputs": {name: (shape, dtype)}, "outputs": {...}}`` of one graph as a runtime reads a file.
FoundIO = dict[str, dict[str, tuple[list[int], str]]]


@dataclass
class BuiltFile:
    """A file written into the staging directory, before validation."""

    entry: ExportedFile
    seconds: float


@dataclass
class ExportContext:
    """Everything the build, validation and manifest steps of one export share."""

    stage: Path
    model: "StoryModel"
    #: the config with its ``export`` section set to what the plan does (saved in the manifest)
    config: Config
    tokenizer: "StoryTokenizer"
    plan: ExportPlan
    progress: Progress
    signatures: dict[str, SignatureInfo]
    reference: "Backend"
    vset: ValidationSet
    cset: ValidationSet
    ref_trace: Trace
    ref_states: list[dict[str, np.ndarray]]
    built: list[BuiltFile] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    #: story mode's graphs as the model declares them (their files are built next to the encoder's)
    story: StorySpec | None = None

    def time(self, key: str, seconds: float) -> None:
        """Record how long ``key`` (a file's path, a SavedModel, a validation) took."""
        self.timings[key] = round(seconds, 2)

    def add_file(
        self, rel: str, fmt: str, graph: str, precision: str, keys: tuple[str, ...], seconds: float,
        ops: dict[str, int], float_ops: list[str] | None = None,
    ) -> ExportedFile:
        """List the written file ``stage/rel``: its manifest entry (size, sha256, signatures)."""
        path = self.stage / rel
        entry = ExportedFile(
            path=rel, format=fmt, graph=graph, precision=precision,
            signatures={k: self.signatures[k] for k in keys},
            size_bytes=path.stat().st_size, sha256=sha256_file(path),
            float_ops=list(float_ops or []), ops=ops,
        )
        self.built.append(BuiltFile(entry, seconds))
        self.time(rel, seconds)
        return entry

    def entries(self) -> dict[tuple[str, str, str], ExportedFile]:
        """``{(format, graph, precision): entry}`` of every built file."""
        return {(b.entry.format, b.entry.graph, b.entry.precision): b.entry for b in self.built}


def file_name(graph: str, precision: str, fmt: str) -> str:
    """``encoder.fp32.tflite`` ..."""
    return f"{graph}.{precision}.{fmt}"


def check_io(path: Path, found: FoundIO, expected: SignatureInfo, graph: str) -> None:
    """:class:`CheckFailed` unless a file's IO (as its runtime reads it) is the documented one."""
    for kind, infos in (("inputs", expected.inputs), ("outputs", expected.outputs)):
        want = {t.name: (list(t.shape), t.dtype) for t in infos}
        got = found.get(kind, {})
        if got != want:
            raise CheckFailed(f"{path.name}: {graph} {kind} {got} differ from the documented {want}")


def signature_infos(model: "StoryModel", batch: int) -> dict[str, SignatureInfo]:
    """The documented IO of both graphs with static shapes (whatever the decoder: from the model)."""
    # lazy: storyedge.model imports TensorFlow
    from storyedge.model.signatures import (
        decoder_input_specs,
        decoder_output_specs,
        encoder_input_specs,
        encoder_output_specs,
        story_input_specs,
        story_output_specs,
        story_spec,
    )

    def infos(specs: list[Any]) -> list[TensorInfo]:
        return [TensorInfo(s.name, [int(d) for d in s.shape], s.dtype.name) for s in specs]

    signatures = {
        "encoder": SignatureInfo(
            inputs=infos(encoder_input_specs(model, batch)), outputs=infos(encoder_output_specs(model, batch))
        ),
        "decoder_step": SignatureInfo(
            inputs=infos(decoder_input_specs(model, batch)), outputs=infos(decoder_output_specs(model, batch))
        ),
    }
    for graph in story_spec(model).all_graphs:
        signatures[graph] = SignatureInfo(
            inputs=infos(story_input_specs(model, graph, batch)), outputs=infos(story_output_specs(model, graph, batch))
        )
    return signatures
