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

Graph inputs/outputs (stable names): ``encoder``: frames [B,k,S,S,3] float32, captions [B,k,L]
int32, reason [B,R] int32 (only with use_reason) → h0, c0 [B,H], context [B,C] float32.
``decoder_step``: token [B] int32, h, c [B,H], context [B,C] → logits [B,V], h_out, c_out [B,H].
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from storyedge.constants import EXPORT_FORMATS as FORMATS
from storyedge.constants import QUANTIZE_PRECISIONS as PRECISIONS
from storyedge.errors import UserError

# Re-exported: FORMATS and PRECISIONS (``--quantize`` name → precision label) are imported from
# here by the exporter.

MANIFEST_FILE = "manifest.json"
SCHEMA_VERSION = 1
GRAPHS = ("encoder", "decoder_step", "multi")


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
class ExportedFile:
    """One exported file: which graph(s), at which precision, and how it validated."""

    path: str  # relative to the export directory
    format: str  # tflite | onnx
    graph: str  # encoder | decoder_step | multi
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
    reference: dict[str, str] = field(default_factory=dict)  # {"weights": ..., "config": ...}
    created: str = ""
    multi_vs_separate: dict[str, Any] = field(default_factory=dict)
    #: Files that failed export validation, moved under ``rejected/`` (never in ``files``, so
    #: never offered as a backend); their ``validation`` says why.
    rejected: list[ExportedFile] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def file(self, fmt: str, graph: str, precision: str) -> ExportedFile | None:
        """The file entry for a (format, graph, precision), if exported."""
        for entry in self.files:
            if (entry.format, entry.graph, entry.precision) == (fmt, graph, precision):
                return entry
        return None


@dataclass
class BackendSpec:
    """A runnable (encoder, decoder_step) pair from the manifest: one bench backend."""

    name: str  # e.g. "tflite-fp32", "tflite-int8-dynamic-multi", "onnx-fp32"
    format: str
    precision: str
    layout: str  # separate | multi
    encoder_path: Path
    decoder_path: Path  # same file as encoder_path for the multi layout
    size_bytes: int  # bytes on disk of the file(s) involved


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(export_dir: str | Path, manifest: Manifest) -> Path:
    """Write ``manifest.json`` atomically (temp file + rename)."""
    path = Path(export_dir) / MANIFEST_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(manifest), indent=2, sort_keys=False))
    os.replace(tmp, path)
    return path


def read_manifest(export_dir: str | Path) -> Manifest:
    """Parse ``manifest.json``; :class:`UserError` when missing or malformed."""
    path = Path(export_dir) / MANIFEST_FILE
    if not path.is_file():
        raise UserError(f"{export_dir}: no {MANIFEST_FILE} (not an export directory; run `storyedge export`)")
    try:
        data = json.loads(path.read_text())
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"schema_version {data.get('schema_version')!r} != {SCHEMA_VERSION}")
        files = [_file_entry(f) for f in data.pop("files")]
        rejected = [_file_entry(f) for f in data.pop("rejected", [])]
        return Manifest(files=files, rejected=rejected, **data)
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: malformed manifest ({exc})") from None


def _file_entry(f: dict[str, Any]) -> ExportedFile:
    return ExportedFile(
        **{
            **f,
            "signatures": {
                k: SignatureInfo(
                    inputs=[TensorInfo(**t) for t in s["inputs"]],
                    outputs=[TensorInfo(**t) for t in s["outputs"]],
                )
                for k, s in f["signatures"].items()
            },
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


def backend_specs(export_dir: str | Path, manifest: Manifest) -> list[BackendSpec]:
    """Every runnable backend the manifest offers: a separate encoder + decoder_step pair per
    (format, precision), and each multi-signature file."""
    export_dir = Path(export_dir)
    specs: list[BackendSpec] = []
    seen: set[tuple[str, str]] = set()
    for entry in manifest.files:
        key = (entry.format, entry.precision)
        if entry.graph == "multi":
            specs.append(
                BackendSpec(
                    f"{entry.format}-{entry.precision}-multi", entry.format, entry.precision, "multi",
                    export_dir / entry.path, export_dir / entry.path, entry.size_bytes,
                )
            )
        elif key not in seen:
            encoder = manifest.file(entry.format, "encoder", entry.precision)
            decoder = manifest.file(entry.format, "decoder_step", entry.precision)
            if encoder and decoder:
                seen.add(key)
                specs.append(
                    BackendSpec(
                        f"{entry.format}-{entry.precision}", entry.format, entry.precision, "separate",
                        export_dir / encoder.path, export_dir / decoder.path,
                        encoder.size_bytes + decoder.size_bytes,
                    )
                )
    return specs
