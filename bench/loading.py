"""Open an export directory and create its backends, with every input check a user can trip.

TensorFlow-free except :func:`build_reference` (imports the model lazily), so the runtime-only
latency path (``storyedge bench --latency-only``) never imports TensorFlow.

Checks (each a one-line :class:`~storyedge.errors.UserError`, exit 2): no ``manifest.json`` /
malformed manifest; a listed file missing, truncated or modified (size + sha256 against the
manifest); the ``tokenizer/`` directory not the one the manifest was written with
(fingerprint); ``--config`` given and not compatible with the export's config (a graph-changing
key differs); a runtime not installed or a file it cannot load.
"""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storyedge.bench.backends import Backend, load_backend
from storyedge.config import Config, config_from_dict, load_config
from storyedge.errors import ConfigError, UserError
from storyedge.manifest import BackendSpec, Manifest, backend_specs, read_manifest, verify_files
from storyedge.run_dir import check_compatible
from storyedge.tokenizer import StoryTokenizer

if TYPE_CHECKING:  # pragma: no cover
    from storyedge.bench.tf_backend import TFReferenceBackend

log = logging.getLogger(__name__)

#: ONNX Runtime providers that get their own backend instance next to the CPU one when present.
ACCELERATOR_PROVIDERS = (
    "CUDAExecutionProvider",
    "ROCMExecutionProvider",
    "CoreMLExecutionProvider",
    "DmlExecutionProvider",
)


@dataclass
class ExportDir:
    """A checked export directory; ``specs``: every manifest pair (:func:`backend_specs`) then the
    decoder-only backends (:func:`decoder_only_specs`)."""

    path: Path
    manifest: Manifest
    config: Config
    tokenizer: StoryTokenizer
    specs: list[BackendSpec] = field(default_factory=list)

    @property
    def vocab_size(self) -> int:
        """V of the graphs (the decoder's logits width; the tokenizer's size as a fallback)."""
        for entry in self.manifest.files:
            sig = entry.signatures.get("decoder_step")
            if sig:
                for out in sig.outputs:
                    if out.name == "logits":
                        return int(out.shape[-1])
        return self.tokenizer.vocab_size


def open_export(
    export_dir: str | Path, expected_config: Config | None = None, verify: bool = True
) -> ExportDir:
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
    tok_dir = path / str(manifest.tokenizer.get("dir", "tokenizer"))
    tokenizer = StoryTokenizer.load(tok_dir)
    expected = manifest.tokenizer.get("fingerprint")
    if expected and tokenizer.fingerprint() != expected:
        raise UserError(
            f"{tok_dir}: tokenizer differs from the one this export was made with "
            f"(fingerprint {tokenizer.fingerprint()[:12]} != manifest {str(expected)[:12]})"
        )
    if verify:
        verify_files(path, manifest)
    specs = backend_specs(path, manifest)
    return ExportDir(path, manifest, config, tokenizer, specs + decoder_only_specs(path, manifest, specs))


def decoder_only_specs(export_dir: Path, manifest: Manifest, specs: list[BackendSpec]) -> list[BackendSpec]:
    """Decoder steps whose own encoder is not in the manifest (the exporter's validation rejected
    it), each paired with the fp32 encoder of the same format: ``<format>-<precision>-decoder``,
    layout ``decoder-only``. Their step latency is the precision's, and their parity measures the
    decoder's quantisation alone (the encoder is fp32)."""
    have = {(s.format, s.precision) for s in specs}
    extra: list[BackendSpec] = []
    for entry in manifest.files:
        if entry.graph != "decoder_step" or (entry.format, entry.precision) in have:
            continue
        encoder = manifest.file(entry.format, "encoder", "fp32")
        if encoder is None:
            continue
        extra.append(
            BackendSpec(
                f"{entry.format}-{entry.precision}-decoder", entry.format, entry.precision, "decoder-only",
                export_dir / encoder.path, export_dir / entry.path, encoder.size_bytes + entry.size_bytes,
            )
        )
    return extra


def select_specs(specs: list[BackendSpec], patterns: str | None) -> list[BackendSpec]:
    """Filter by comma-separated ``fnmatch`` patterns on the backend name (None: all)."""
    if not patterns:
        return list(specs)
    wanted = [p.strip() for p in patterns.split(",") if p.strip()]
    return [s for s in specs if any(fnmatch.fnmatch(s.name, p) for p in wanted)]


def extra_providers() -> list[str]:
    """Accelerator providers of the installed onnxruntime (empty when it is absent)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    available = ort.get_available_providers()
    return [p for p in ACCELERATOR_PROVIDERS if p in available]


def backend_plans(specs: list[BackendSpec]) -> list[tuple[BackendSpec, list[str] | None]]:
    """(spec, providers) per backend instance: every spec once (ONNX on CPU), plus one instance
    per accelerator provider for each ONNX spec."""
    plans: list[tuple[BackendSpec, list[str] | None]] = []
    accel = extra_providers() if any(s.format == "onnx" for s in specs) else []
    for spec in specs:
        plans.append((spec, ["CPUExecutionProvider"] if spec.format == "onnx" else None))
        if spec.format == "onnx":
            plans.extend((spec, [p, "CPUExecutionProvider"]) for p in accel)
    return plans


def create_backend(spec: BackendSpec, threads: int | None, providers: list[str] | None) -> Backend:
    """:func:`load_backend` with the runtime's absence as a clear one-line error."""
    return load_backend(spec, threads, providers)


def import_tensorflow() -> Any:
    """Import TensorFlow for the reference, or a one-line error pointing at ``--latency-only``."""
    try:
        import tensorflow as tf
    except ImportError:
        raise UserError(
            "TensorFlow is not installed: the TF reference (and so parity) needs it; "
            "run with --latency-only to time the exported files alone"
        ) from None
    return tf


def reference_config(export: ExportDir) -> Config:
    """The reference model's config: ``reference/config.yaml`` when present, else the manifest's."""
    rel = export.manifest.reference.get("config")
    if rel and (export.path / rel).is_file():
        return load_config(export.path / rel)
    return export.config


def build_reference(export: ExportDir, batch: int | None = None) -> "TFReferenceBackend":
    """The TF reference rebuilt from ``reference/`` (weights + config) with the export's tokenizer."""
    import_tensorflow()
    from storyedge.bench.tf_backend import TFReferenceBackend
    from storyedge.model.story_model import build_model

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
    order = {"separate": 0, "multi": 1, "decoder-only": 2}
    matches.sort(key=lambda s: order.get(s.layout, 3))
    if not matches:
        have = ", ".join(s.name for s in export.specs) or "none"
        raise UserError(f"{export.path}: no {fmt} {precision} export here (backends: {have})")
    return matches[0]
