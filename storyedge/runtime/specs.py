"""Backend specs: the runnable (encoder, decoder_step) pairs an export offers, and their names.

The one naming rule (:func:`backend_name`): ``<format>-<precision>`` for separate encoder and
decoder files, ``-multi`` for one multi-signature file, ``-decoder`` for a quantised decoder step
paired with the fp32 encoder (its own encoder failed validation), and ``-<provider>`` for an ONNX
backend on an accelerator execution provider (``onnx-fp32-cuda``).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from storyedge.manifest import DecoderSpec, Manifest, StorySpec

#: Layouts of a backend's files, in the order a user is offered them.
LAYOUTS = ("separate", "multi", "decoder-only", "shortlist")
_LAYOUT_SUFFIX = {"separate": "", "multi": "-multi", "decoder-only": "-decoder", "shortlist": "-shortlist"}
#: The graph of a decoder step whose logits cover the manifest's ``vocab_shortlist`` ids only.
SHORTLIST_GRAPH = "decoder_step_shortlist"
#: ONNX Runtime providers that get their own backend instance next to the CPU one when present.
ACCELERATOR_PROVIDERS = (
    "CUDAExecutionProvider",
    "ROCMExecutionProvider",
    "CoreMLExecutionProvider",
    "DmlExecutionProvider",
)
CPU_PROVIDER = "CPUExecutionProvider"


@dataclass
class BackendSpec:
    """A runnable (encoder, decoder_step) pair from the manifest: one backend."""

    name: str
    format: str
    precision: str
    layout: str  # one of LAYOUTS
    encoder_path: Path
    decoder_path: Path  # same file as encoder_path for the multi layout
    size_bytes: int  # bytes on disk of the file(s) involved
    decoder: DecoderSpec
    #: shortlist layout: the vocabulary id of each logit (None: logits over the whole vocabulary)
    vocab_ids: np.ndarray | None = None
    #: story mode (:mod:`storyedge.runtime.story`): its spec and graph → file, when all were exported
    story: StorySpec | None = None
    story_paths: dict[str, Path] = field(default_factory=dict)


def backend_name(fmt: str, precision: str, layout: str = "separate") -> str:
    """``tflite-int8-dynamic-multi`` ... (see the module doc)."""
    return f"{fmt}-{precision}{_LAYOUT_SUFFIX[layout]}"


def provider_suffix(providers: list[str]) -> str:
    """``""`` on the CPU provider, else ``-cuda`` / ``-coreml`` ... from the first provider."""
    if providers == [CPU_PROVIDER]:
        return ""
    return "-" + providers[0].replace("ExecutionProvider", "").lower()


def backend_specs(export_dir: str | Path, manifest: Manifest) -> list[BackendSpec]:
    """Every runnable backend the manifest offers: a separate encoder + decoder_step pair per
    (format, precision), each multi-signature file, then the decoder-only pairs."""
    export_dir = Path(export_dir)
    specs: list[BackendSpec] = []
    seen: set[tuple[str, str]] = set()
    for entry in manifest.files:
        key = (entry.format, entry.precision)
        if entry.graph == "multi":
            path = export_dir / entry.path
            specs.append(BackendSpec(backend_name(*key, "multi"), *key, "multi", path, path,
                                     entry.size_bytes, manifest.decoder))
        elif key not in seen:
            encoder = manifest.file(entry.format, "encoder", entry.precision)
            decoder = manifest.file(entry.format, "decoder_step", entry.precision)
            if encoder and decoder:
                seen.add(key)
                specs.append(BackendSpec(backend_name(*key), *key, "separate", export_dir / encoder.path,
                                         export_dir / decoder.path, encoder.size_bytes + decoder.size_bytes,
                                         manifest.decoder))
    for spec in specs:
        attach_story(export_dir, manifest, spec)
    return specs + decoder_only_specs(export_dir, manifest, specs) + shortlist_specs(export_dir, manifest)


def shortlist_specs(export_dir: Path, manifest: Manifest) -> list[BackendSpec]:
    """Each shortlisted decoder step (``--vocab-shortlist``) paired with the encoder of its format
    and precision (else the format's fp32 encoder); reported beside the full-vocabulary backends."""
    ids = manifest.vocab_shortlist.get("ids") if manifest.vocab_shortlist else None
    if not ids:
        return []
    vocab_ids = np.asarray(ids, np.int32)
    out: list[BackendSpec] = []
    for entry in manifest.files:
        if entry.graph != SHORTLIST_GRAPH:
            continue
        encoder = manifest.file(entry.format, "encoder", entry.precision) or manifest.file(entry.format, "encoder", "fp32")
        if encoder is None:
            continue
        out.append(BackendSpec(
            backend_name(entry.format, entry.precision, "shortlist"), entry.format, entry.precision, "shortlist",
            export_dir / encoder.path, export_dir / entry.path, encoder.size_bytes + entry.size_bytes,
            manifest.decoder, vocab_ids,
        ))
    return out


def attach_story(export_dir: Path, manifest: Manifest, spec: BackendSpec) -> None:
    """Give ``spec`` the story-mode graphs of its format and precision (graph → the file holding
    its signature) when every one is in the manifest (one that failed validation leaves the
    backend without story mode; the optional frame + story graph is used where the format has it)."""
    story = manifest.story
    if story is None:
        return
    paths: dict[str, Path] = {}
    for entry in manifest.files:
        if (entry.format, entry.precision) == (spec.format, spec.precision):
            for graph in set(entry.signatures) & set(story.all_graphs):
                paths.setdefault(graph, export_dir / entry.path)
    if set(story.graphs) <= set(paths):
        spec.story, spec.story_paths = story.with_graphs(set(paths)), paths


def decoder_only_specs(export_dir: Path, manifest: Manifest, specs: list[BackendSpec]) -> list[BackendSpec]:
    """Decoder steps whose own encoder is not in the manifest (the exporter's validation rejected
    it), each paired with the fp32 encoder of the same format. Their step latency is the
    precision's, and their parity measures the decoder's quantisation alone (the encoder is fp32)."""
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
                backend_name(entry.format, entry.precision, "decoder-only"), entry.format, entry.precision,
                "decoder-only", export_dir / encoder.path, export_dir / entry.path,
                encoder.size_bytes + entry.size_bytes, manifest.decoder,
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
        import onnxruntime as ort  # lazy: ONNX Runtime is optional
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
        plans.append((spec, [CPU_PROVIDER] if spec.format == "onnx" else None))
        if spec.format == "onnx":
            plans.extend((spec, [p, CPU_PROVIDER]) for p in accel)
    return plans
