"""``manifest.json``: everything a runtime needs to decode an export without storyedge.

Written by ``storyedge export`` next to the files, read by ``storyedge bench`` / ``generate``.
TensorFlow-free (json + hashlib only) so the runtime-only bench path can use it.

Layout of an export directory::

    manifest.json
    tokenizer/                         BertTokenizerFast-loadable
    reference/model.weights.h5         the Keras weights (TF reference backend), + config.yaml
    tflite/encoder.fp32.tflite         one file per graph and precision ...
    tflite/decoder_step.fp32.tflite
    tflite/multi.fp32.tflite           ... plus one multi-signature file (both signatures)
    onnx/encoder.fp32.onnx
    onnx/decoder_step.fp32.onnx
    rejected/                          files that failed validation (never listed as good)

The graphs' inputs and outputs are listed per file (``signatures``). How a decoder is driven is
declared once in ``decoder`` (:class:`DecoderSpec`): the step's ``token`` input and ``logits``
output, its **state** (each tensor's initial value and the step output that replaces it) and the
inputs **carried** unchanged from the encoder. A runtime needs nothing else, so a decoder with
other state (a KV cache, a position counter) needs no runtime code.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from storyedge.atomic import atomic_write
from storyedge.constants import EXPORT_FORMATS as FORMATS
from storyedge.constants import QUANTIZE_PRECISIONS as PRECISIONS
from storyedge.errors import UserError
from storyedge.schema import check_schema, known_fields

# Re-exported: FORMATS and PRECISIONS (``--quantize`` name → precision label) are imported from
# here by the exporter.

MANIFEST_FILE = "manifest.json"
#: 2.0: the decoder's state is declared (``decoder``); 1 (an int) had a fixed h / c / context state.
#: 2.1: per-file ``coverage`` (what computes in integer / fp16 / float, weight bytes per dtype,
#: portability) and ``vocab_shortlist``; 2.0 manifests (no coverage) are read as they are.
#: 2.2: story mode's graphs (``story``, optional: 2.0 / 2.1 manifests read as exports without them).
#: 2.3: story mode's optional ``frame_story_graph`` (the frame and story graphs in one call) and
#: the reason graph's outputs feeding the frame / story graph inputs of the same name (``reason_heads``).
SCHEMA_VERSION = "2.3"
#: :attr:`Coverage.compute` classes, in report order.
COMPUTE_CLASSES = ("integer", "hybrid", "fp16", "float", "convert")
#: How a state tensor starts: copied from an encoder output, zeros, or a constant.
STATE_INITS = ("encoder", "zeros", "constant")


@dataclass
class TensorInfo:
    """One graph input or output."""

    name: str
    shape: list[int]
    dtype: str


@dataclass
class SignatureInfo:
    """Inputs and outputs of one graph (``encoder`` or ``decoder_step``)."""

    inputs: list[TensorInfo]
    outputs: list[TensorInfo]


@dataclass
class StateTensor:
    """One decoder state tensor: fed to the step as ``name``, replaced by its output ``update``."""

    name: str
    shape: list[int]
    dtype: str
    #: ``encoder`` (the encoder output ``source``), ``zeros`` or ``constant`` (every element ``value``).
    init: str
    update: str
    source: str | None = None
    value: float = 0.0

    def initial(self, encoder_outputs: dict[str, np.ndarray]) -> np.ndarray:
        """The tensor's value before the first step."""
        if self.init == "encoder":
            return np.asarray(encoder_outputs[str(self.source)], dtype=self.dtype)
        fill = 0.0 if self.init == "zeros" else self.value
        return np.full(self.shape, fill, dtype=self.dtype)


@dataclass
class CarriedInput:
    """A decoder-step input taken from the encoder output ``source`` once, then fed unchanged."""

    name: str
    source: str


@dataclass
class DecoderSpec:
    """How a runtime drives ``decoder_step`` (see the module doc).

    The rule for every decoder: the step returns, as ``<name>_out``, everything it needs next.
    ``step_weights``: the weights one step reads (``matrix_params`` quantisable, ``vector_params``
    fp32, ``embedding_row``), for the roofline floor.
    """

    state: list[StateTensor]
    carried: list[CarriedInput] = field(default_factory=list)
    token: str = "token"
    logits: str = "logits"
    step_weights: dict[str, int] = field(default_factory=dict)

    def initial_state(self, encoder_outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The step's non-token inputs before the first step, from the encoder's outputs."""
        state = {t.name: t.initial(encoder_outputs) for t in self.state}
        state.update({c.name: np.asarray(encoder_outputs[c.source]) for c in self.carried})
        return state

    def advance(self, state: dict[str, np.ndarray], step_outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The next state: each state tensor replaced by its update output, carried inputs kept."""
        nxt = dict(state)
        nxt.update({t.name: step_outputs[t.update] for t in self.state})
        return nxt

    def check(self, encoder: "SignatureInfo", step: "SignatureInfo") -> None:
        """:class:`UserError` naming the tensor when the declaration does not match the signatures."""
        enc_out = {t.name: t for t in encoder.outputs}
        step_in = {t.name: t for t in step.inputs}
        step_out = {t.name: t for t in step.outputs}
        for name, where, have in ((self.token, "decoder_step input", step_in), (self.logits, "decoder_step output", step_out)):
            if name not in have:
                raise UserError(f"decoder {name}: not a {where} of the exported graph")
        for t in self.state:
            _check_tensor(t.name, t.shape, step_in, "decoder_step input")
            _check_tensor(t.update, t.shape, step_out, f"decoder_step output (the update of state {t.name})")
            if t.init == "encoder":
                _check_tensor(str(t.source), t.shape, enc_out, f"encoder output (the initial value of state {t.name})")
            elif t.init not in STATE_INITS:
                raise UserError(f"decoder state {t.name}: unknown init {t.init!r} (one of {', '.join(STATE_INITS)})")
        for c in self.carried:
            _check_tensor(c.source, step_in[c.name].shape if c.name in step_in else None, enc_out,
                          f"encoder output (carried into {c.name})")
        declared = {self.token, *(t.name for t in self.state), *(c.name for c in self.carried)}
        undeclared = sorted(set(step_in) - declared)
        if undeclared:
            raise UserError(f"decoder_step input {undeclared[0]}: neither state nor carried in the manifest's decoder")


def _check_tensor(name: str, shape: list[int] | None, have: dict[str, "TensorInfo"], where: str) -> None:
    if name not in have:
        raise UserError(f"decoder {name}: declared in the manifest but not a {where}")
    if shape is not None and list(have[name].shape) != list(shape):
        raise UserError(f"decoder {name}: shape {list(have[name].shape)} of the {where} differs from the declared {list(shape)}")


@dataclass
class StorySpec:
    """How a runtime encodes a story frame by frame (story mode), declared by the model.

    The single ``encoder`` re-encodes all k frames (and the reason) for every caption. Story
    mode splits it into graphs whose composition is the encoder: ``frame_graph`` (one frame +
    its caption → one fused vector, cached per frame), ``reason_graph`` (the reason → its vector,
    once per story; only with a reason) and ``story_graph`` (the last k fused vectors stacked on
    axis 1, + the reason vector → the encoder's outputs, so :class:`DecoderSpec` starts from it
    unchanged). ``frame_inputs`` / ``reason_inputs`` map a graph input to the encoder input it is
    taken from (for the frame graph: that input's frame i, axis 1). The reason graph's outputs
    feed the frame / story graph inputs of the same name (``frame_reason`` / ``story_reason``).

    ``frame_story_graph`` (optional; where a format has it) runs the frame graph and the story
    graph in one call for the newest frame of a window: the frame graph's inputs + the k-1
    earlier fused vectors (``earlier_fused``, stacked on axis 1) + the story graph's reason input
    → the new fused vector (``fused``) and the encoder's outputs.
    """

    window: int
    frame_graph: str
    story_graph: str
    frame_inputs: dict[str, str]
    fused: str
    story_fused: str
    reason_graph: str | None = None
    reason_inputs: dict[str, str] = field(default_factory=dict)
    reason_output: str | None = None
    #: frame / story graph input fed the reason graph's output of that name (None: that graph takes none)
    frame_reason: str | None = None
    story_reason: str | None = None
    frame_story_graph: str | None = None
    earlier_fused: str | None = None

    @property
    def graphs(self) -> list[str]:
        """The story-mode graphs every format has, in the order a story runs them."""
        return [g for g in (self.reason_graph, self.frame_graph, self.story_graph) if g]

    @property
    def all_graphs(self) -> list[str]:
        """:attr:`graphs` and the optional ``frame_story_graph``."""
        return self.graphs + ([self.frame_story_graph] if self.frame_story_graph else [])

    def with_graphs(self, available: set[str]) -> "StorySpec":
        """This spec for a format holding ``available`` graphs: without the optional one it lacks."""
        if self.frame_story_graph is None or self.frame_story_graph in available:
            return self
        return replace(self, frame_story_graph=None, earlier_fused=None)


@dataclass
class Coverage:
    """What one exported file really is (see :mod:`storyedge.export.coverage`).

    ``compute``: class → {op: count}. ``integer``: integer kernels on quantized activations
    (full-int8 TFLite, QDQ-fused or ``*Integer`` / ``DynamicQuantize*`` ONNX ops);
    ``hybrid``: quantized weights with float activations (dynamic range, int4 weight-only);
    ``fp16``: the op computes on float16 tensors; ``float``: float32 math, whatever the weights
    are stored in (TFLite fp16 dequantizes its fp16 weights at load and computes in float32);
    ``convert``: Quantize / Dequantize / Cast between those.
    """

    compute: dict[str, dict[str, int]] = field(default_factory=dict)
    #: dtype → bytes of the constant weights stored in it (int4: packed, two per byte)
    weight_bytes: dict[str, int] = field(default_factory=dict)
    #: dtype → number of weight elements stored in it
    weight_elements: dict[str, int] = field(default_factory=dict)
    #: TFLite: builtin ops only; ONNX: standard-domain ops only (no ``com.microsoft`` contrib op)
    portable: bool = True
    #: op → count of the ops that make the file non-portable
    nonportable_ops: dict[str, int] = field(default_factory=dict)
    #: 4-bit weights: ``elements``, ``payload_bytes``, ``scale_bytes``, ``zero_point_bytes``, ``blocks``
    int4: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def count(self, cls: str) -> int:
        """How many ops compute as ``cls``."""
        return sum(self.compute.get(cls, {}).values())


@dataclass
class ExportedFile:
    """One exported file: which graph(s), at which precision, and how it validated."""

    path: str  # relative to the export directory
    format: str  # tflite | onnx
    graph: str  # encoder | decoder_step | multi | decoder_step_shortlist
    precision: str  # fp32 | fp16 | int8-dynamic | int8
    signatures: dict[str, SignatureInfo]  # "encoder" and/or "decoder_step"
    size_bytes: int
    sha256: str
    #: {"max_abs_diff": {output: float}, "atol": float, "passed": bool, "windows": int}
    validation: dict[str, Any] = field(default_factory=dict)
    #: int8: builtin ops that stayed float (e.g. LSTM kernels the quantizer can't handle).
    float_ops: list[str] = field(default_factory=list)
    #: Op (TFLite builtin / ONNX op_type) → count, for the record.
    ops: dict[str, int] = field(default_factory=dict)
    #: What computes in integer / fp16 / float, weight bytes per dtype, portability (schema 2.1).
    coverage: Coverage | None = None


@dataclass
class Manifest:
    """The manifest of an export directory."""

    storyedge_version: str
    batch: int
    config: dict[str, Any]
    tokenizer: dict[str, Any]  # {"dir": "tokenizer", "fingerprint": ..., pad/unk/bos/eos ids, vocab_size}
    versions: dict[str, str]
    source: dict[str, Any]  # {"checkpoint": path, "meta": {...}} or {"random_init": true}
    files: list[ExportedFile]
    decoder: DecoderSpec
    reference: dict[str, str] = field(default_factory=dict)  # {"weights": ..., "config": ...}
    created: str = ""
    multi_vs_separate: dict[str, Any] = field(default_factory=dict)
    #: Files that failed export validation, moved under ``rejected/`` (never in ``files``, so
    #: never offered as a backend); their ``validation`` says why.
    rejected: list[ExportedFile] = field(default_factory=list)
    schema_version: str = SCHEMA_VERSION
    #: ``--vocab-shortlist``: ``{"ids": [...], "size", "source", "vocab_size"}``; logit i of a
    #: ``decoder_step_shortlist`` file is token ``ids[i]`` (empty: no shortlisted step)
    vocab_shortlist: dict[str, Any] = field(default_factory=dict)
    #: story mode's graphs (absent in exports made before story mode: then none is offered)
    story: StorySpec | None = None

    def file(self, fmt: str, graph: str, precision: str) -> ExportedFile | None:
        """The file entry for a (format, graph, precision), if exported."""
        for entry in self.files:
            if (entry.format, entry.graph, entry.precision) == (fmt, graph, precision):
                return entry
        return None

    def signature(self, graph: str) -> SignatureInfo | None:
        """The IO of ``graph`` (``encoder`` / ``decoder_step``) from the first file carrying it."""
        for entry in self.files:
            if graph in entry.signatures:
                return entry.signatures[graph]
        return None

    def to_json(self) -> str:
        """The manifest as JSON text."""
        return json.dumps(asdict(self), indent=2, sort_keys=False)

    @classmethod
    def from_json(cls, text: str, path: str | Path = MANIFEST_FILE) -> "Manifest":
        """Parse and check a manifest; :class:`UserError` naming ``path`` when it is not one this
        version reads (another schema MAJOR, malformed, or a declared decoder state that does not
        match the decoder_step signature)."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UserError(f"{path}: malformed manifest ({exc})") from None
        check_schema(data, SCHEMA_VERSION, "export manifest", path, marks=("files", "config"))
        try:
            data = known_fields(cls, data)
            files = [_file_entry(f) for f in data.pop("files")]
            rejected = [_file_entry(f) for f in data.pop("rejected", [])]
            decoder = _decoder_spec(data.pop("decoder"))
            story = data.pop("story", None)
            story = StorySpec(**known_fields(StorySpec, story)) if story else None
            manifest = cls(files=files, rejected=rejected, decoder=decoder, story=story, **data)
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{path}: malformed manifest ({type(exc).__name__}: {exc})") from None
        encoder, step = manifest.signature("encoder"), manifest.signature("decoder_step")
        if encoder is not None and step is not None:
            try:
                decoder.check(encoder, step)
            except UserError as exc:
                raise UserError(f"{path}: {exc}") from None
        return manifest


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(export_dir: str | Path, manifest: Manifest) -> Path:
    """Write ``manifest.json`` atomically (temp file + rename)."""
    return atomic_write(Path(export_dir) / MANIFEST_FILE, manifest.to_json())


def read_manifest(export_dir: str | Path) -> Manifest:
    """Parse ``manifest.json``; :class:`UserError` when missing, malformed or of another schema."""
    path = Path(export_dir) / MANIFEST_FILE
    if not path.is_file():
        raise UserError(f"{export_dir}: no {MANIFEST_FILE} (not an export directory; run `storyedge export`)")
    return Manifest.from_json(path.read_text(), path)


def _tensors(items: list[dict[str, Any]]) -> list[TensorInfo]:
    return [TensorInfo(**known_fields(TensorInfo, t)) for t in items]


def _file_entry(f: dict[str, Any]) -> ExportedFile:
    signatures = {
        k: SignatureInfo(inputs=_tensors(s["inputs"]), outputs=_tensors(s["outputs"]))
        for k, s in f["signatures"].items()
    }
    coverage = f.get("coverage")
    if isinstance(coverage, dict):
        coverage = Coverage(**known_fields(Coverage, coverage))
    return ExportedFile(**{**known_fields(ExportedFile, f), "signatures": signatures, "coverage": coverage})


def _decoder_spec(d: dict[str, Any]) -> DecoderSpec:
    d = known_fields(DecoderSpec, d)
    return DecoderSpec(
        **{
            **d,
            "state": [StateTensor(**known_fields(StateTensor, t)) for t in d["state"]],
            "carried": [CarriedInput(**known_fields(CarriedInput, c)) for c in d.get("carried", [])],
        }
    )


def verify_files(export_dir: str | Path, manifest: Manifest, paths: list[str] | None = None) -> None:
    """Check that each listed file exists with the manifest's size and sha256.

    :class:`UserError` on the first missing, truncated or modified file.
    """
    export_dir = Path(export_dir)
    for entry in manifest.files:
        if paths is not None and entry.path not in paths:
            continue
        path = export_dir / entry.path
        if not path.is_file():
            raise UserError(f"{path}: listed in {MANIFEST_FILE} but missing")
        size = path.stat().st_size
        if size != entry.size_bytes:
            raise UserError(
                f"{path}: size {size} bytes differs from the manifest's {entry.size_bytes} "
                "(truncated or replaced file)"
            )
        if sha256_file(path) != entry.sha256:
            raise UserError(f"{path}: sha256 differs from the manifest (corrupted or replaced file)")
