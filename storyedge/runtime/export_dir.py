"""Open an export directory and create its backends, with every input check a user can trip.

TensorFlow-free except :func:`build_reference` (imports the model lazily), so the runtime-only
latency path (``storyedge bench --latency-only``) never imports TensorFlow.

Checks (each a one-line :class:`~storyedge.errors.UserError`, exit 2): no ``manifest.json`` /
malformed manifest / a declared decoder state that does not match its signature; a listed file
missing, truncated or modified (size + sha256 against the manifest); the ``tokenizer/``
directory not the one the manifest was written with (fingerprint); ``--config`` given and not
compatible with the export's config (a graph-changing key differs); a runtime not installed or a
file it cannot load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from storyedge.config import Config, config_from_dict, load_config
from storyedge.constants import TOKENIZER_DIR
from storyedge.devices import import_tensorflow
from storyedge.errors import ConfigError, UserError
from storyedge.manifest import Manifest, read_manifest, verify_files
from storyedge.run_dir import check_compatible
from storyedge.runtime.backend import Backend
from storyedge.runtime.litert import TFLiteBackend
from storyedge.runtime.onnxrt import OnnxBackend
from storyedge.runtime.specs import LAYOUTS, BackendSpec, backend_specs
from storyedge.tokenizer import StoryTokenizer

#: What needs TensorFlow when it is missing (the one-line error).
REFERENCE_NEEDS_TF = "the TF reference (and so parity) needs it; --latency-only times the exported files alone"

if TYPE_CHECKING:  # pragma: no cover - the reference backend imports TensorFlow
    from storyedge.runtime.tf_reference import TFReferenceBackend


@dataclass
class ExportDir:
    """A checked export directory; ``specs``: every backend it offers (:func:`backend_specs`)."""

    path: Path
    manifest: Manifest
    config: Config
    tokenizer: StoryTokenizer
    specs: list[BackendSpec] = field(default_factory=list)

    @property
    def vocab_size(self) -> int:
        """V of the graphs (the decoder's logits width; the tokenizer's size as a fallback)."""
        step = self.manifest.signature("decoder_step")
        for out in step.outputs if step else []:
            if out.name == self.manifest.decoder.logits:
                return int(out.shape[-1])
        return self.tokenizer.vocab_size


def open_export(export_dir: str | Path, expected_config: Config | None = None, verify: bool = True) -> ExportDir:
    """Read and check an export directory (see module doc)."""
    path = Path(export_dir)
    if not path.is_dir():
        raise UserError(f"{path}: export directory not found")
    manifest = read_manifest(path)
    try:
        config = config_from_dict(manifest.config, f"{path}/manifest.json config")
    except ConfigError as exc:
        raise UserError(f"{path}: the manifest's config is not valid here ({exc})") from None
    if expected_config is not None:
        check_compatible(config, expected_config, f"export {path}")
    tok_dir = path / str(manifest.tokenizer.get("dir", TOKENIZER_DIR))
    tokenizer = StoryTokenizer.load(tok_dir)
    expected = manifest.tokenizer.get("fingerprint")
    if expected and tokenizer.fingerprint() != expected:
        raise UserError(
            f"{tok_dir}: tokenizer differs from the one this export was made with "
            f"(fingerprint {tokenizer.fingerprint()[:12]} != manifest {str(expected)[:12]})"
        )
    if verify:
        verify_files(path, manifest)
    return ExportDir(path, manifest, config, tokenizer, backend_specs(path, manifest))


def load_backend(spec: BackendSpec, threads: int | None = None, providers: list[str] | None = None) -> Backend:
    """The backend for an exported (encoder, decoder_step) pair."""
    backend: Backend
    if spec.format == "tflite":
        backend = TFLiteBackend(spec, threads)
    elif spec.format == "onnx":
        backend = OnnxBackend(spec, threads, providers)
    else:
        raise UserError(f"unknown backend format {spec.format!r}")
    backend.vocab_ids = spec.vocab_ids
    return backend


def reference_config(export: ExportDir) -> Config:
    """The reference model's config: ``reference/config.yaml`` when present, else the manifest's."""
    rel = export.manifest.reference.get("config")
    if rel and (export.path / rel).is_file():
        return load_config(export.path / rel)
    return export.config


def build_reference(export: ExportDir, batch: int | None = None) -> "TFReferenceBackend":
    """The TF reference rebuilt from ``reference/`` (weights + config) with the export's tokenizer."""
    import_tensorflow(needed_for=REFERENCE_NEEDS_TF)
    # lazy: the model and the reference backend import TensorFlow
    from storyedge.model.story_model import build_model
    from storyedge.runtime.tf_reference import TFReferenceBackend

    rel = export.manifest.reference.get("weights")
    if not rel:
        raise UserError(f"{export.path}: the manifest lists no reference weights (reference/)")
    weights = export.path / rel
    if not weights.is_file():
        raise UserError(f"{weights}: reference weights listed in the manifest are missing")
    model = build_model(reference_config(export), export.vocab_size, export.tokenizer.pad_id)
    try:
        model.load_weights(str(weights))
    except Exception as exc:  # noqa: BLE001 - h5 errors vary; the user needs one line
        raise UserError(
            f"{weights}: cannot load the reference weights ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:160] if str(exc) else ''})"
        ) from None
    return TFReferenceBackend(model, batch or export.manifest.batch)


def find_spec(export: ExportDir, fmt: str, precision: str, layout: str | None = None) -> BackendSpec:
    """The backend spec of a (format, precision[, layout]); separate preferred when not given."""
    matches = [s for s in export.specs if s.format == fmt and s.precision == precision]
    if layout:
        matches = [s for s in matches if s.layout == layout]
    matches.sort(key=lambda s: LAYOUTS.index(s.layout))
    if not matches:
        have = ", ".join(s.name for s in export.specs) or "none"
        raise UserError(f"{export.path}: no {fmt} {precision} export here (backends: {have})")
    return matches[0]
