"""``--vocab-shortlist FILE|auto``: extra decoder-step files whose logits cover a token shortlist.

At the seed size the logits projection is 15.6M of a step's 20.5M weights; a step that scores
only the S tokens a corpus uses reads ``H x S`` of them instead. The shortlisted step is the same
graph with the projection's kernel and bias columns taken at the shortlist's ids (the model's
own weights, so its logits equal the full step's at those ids); it is exported *beside* the
full-vocabulary files (``<format>/decoder_step_shortlist.<precision>.<ext>``, graph
``decoder_step_shortlist``), paired at run time with the same format and precision's encoder
(backend ``<format>-<precision>-shortlist``), and never replaces them. The ids, in ascending
order, are the manifest's ``vocab_shortlist.ids``: logit ``i`` of a shortlisted step is token
``ids[i]``, which the runtime's decoding maps back (:meth:`storyedge.runtime.Backend.token_ids`).

``auto``: every id of the training split's captions framed as the model sees them
(``[BOS] … [EOS]`` + padding), plus the tokenizer's special ids. ``FILE``: token ids as a JSON
list or separated by whitespace / commas. Precisions: fp32, fp16 and int8-dynamic (TFLite),
fp32 and int8-dynamic (ONNX); static int8 has no shortlisted step (its calibration is the full
step's). Each file is validated like the others against the reference step's logits at the
shortlist's ids; one that fails goes to ``rejected/``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from storyedge.config import Config
from storyedge.errors import UserError
from storyedge.export import onnx_quantize as oq
from storyedge.export import tflite as tfl
from storyedge.export import validation as val
from storyedge.export.context import REJECTED_DIR, WORK_DIR, ExportContext, check_io, file_name, signature_infos
from storyedge.export.native import release_memory
from storyedge.manifest import ExportedFile, Manifest, sha256_file
from storyedge.quiet import quiet_native_output
from storyedge.runtime import load_backend
from storyedge.runtime.specs import SHORTLIST_GRAPH, BackendSpec, backend_name

if TYPE_CHECKING:  # pragma: no cover
    from storyedge.model.story_model import StoryModel
    from storyedge.tokenizer import StoryTokenizer

AUTO = "auto"
#: precisions that get a shortlisted step, per format
SHORTLIST_PRECISIONS = {"tflite": ("fp32", "fp16", "int8-dynamic"), "onnx": ("fp32", "int8-dynamic")}
VALIDATION_THREADS = 2


# ------------------------------------------------------------------------------- the ids


def parse_ids_file(path: Path, vocab_size: int) -> list[int]:
    """Token ids of a shortlist file (a JSON list, or ids separated by whitespace / commas)."""
    if not path.is_file():
        raise UserError(f"--vocab-shortlist {path}: file not found (give a file of token ids, or 'auto')")
    text = path.read_text().strip()
    try:
        raw = json.loads(text) if text.startswith("[") else text.replace(",", " ").split()
        ids = [int(x) for x in raw]
    except (ValueError, TypeError):
        raise UserError(f"--vocab-shortlist {path}: not a list of integer token ids") from None
    bad = [i for i in ids if not 0 <= i < vocab_size]
    if bad:
        raise UserError(f"--vocab-shortlist {path}: token id {bad[0]} outside the vocabulary [0, {vocab_size})")
    if not ids:
        raise UserError(f"--vocab-shortlist {path}: no token ids in the file")
    return ids


def training_caption_ids(config: Config, tokenizer: "StoryTokenizer") -> set[int]:
    """Every id of the training split's captions, framed and padded as the model sees them."""
    # lazy: the data layer imports datasets
    from storyedge.data.loading import load_story_splits

    train = load_story_splits(config.dataset)["train"]
    length = config.dataset.max_caption_len
    ids: set[int] = set()
    for captions in train["captions"]:
        for text in captions:
            ids.update(int(i) for i in tokenizer.encode_caption(text or "", length))
    return ids


def resolve_shortlist(arg: str | Path, config: Config, tokenizer: "StoryTokenizer",
                      vocab_size: int) -> tuple[np.ndarray, str]:
    """(sorted unique int32 ids incl. the special ids, where they came from)."""
    if str(arg) == AUTO:
        ids, source = training_caption_ids(config, tokenizer), "auto: the training captions' token ids"
    else:
        ids, source = set(parse_ids_file(Path(arg), vocab_size)), f"file {arg}"
    ids.update(int(i) for i in tokenizer.special_ids.values() if isinstance(i, int) and 0 <= i < vocab_size)
    return np.asarray(sorted(ids), np.int32), source


# ------------------------------------------------------------------------------ the graphs


@contextlib.contextmanager
def shortlisted(model: "StoryModel", ids: np.ndarray) -> Iterator[Any]:
    """``model`` tracing with its logits projection cut to the columns ``ids`` (and ``vocab_size``
    = len(ids)); yields the cut Dense (track it in an export archive). Restored on exit."""
    # lazy: Keras / TensorFlow
    import keras

    full = model.logits_proj
    kernel, bias = (np.asarray(w) for w in full.get_weights())
    cut = keras.layers.Dense(len(ids), name="logits_proj_shortlist")
    cut.build((None, kernel.shape[0]))
    cut.set_weights([kernel[:, ids], bias[ids]])
    vocab = model.vocab_size
    # A built Keras layer refuses new sublayers through setattr; the swap is for tracing only.
    object.__setattr__(model, "logits_proj", cut)
    object.__setattr__(model, "vocab_size", int(len(ids)))
    try:
        yield cut
    finally:
        object.__setattr__(model, "logits_proj", full)
        object.__setattr__(model, "vocab_size", vocab)


def _tflite_saved_model(ctx: ExportContext, cut: Any) -> Path:
    # lazy: TensorFlow / Keras
    import keras

    from storyedge.model.signatures import DECODER_STEP_ENDPOINT, decoder_input_specs, decoder_step_fn

    saved = ctx.stage / WORK_DIR / "saved_model_shortlist"
    archive = keras.export.ExportArchive()
    archive.track(ctx.model)
    archive.track(cut)
    archive.add_endpoint(DECODER_STEP_ENDPOINT, decoder_step_fn(ctx.model, ctx.plan.batch),
                         input_signature=decoder_input_specs(ctx.model, ctx.plan.batch))
    with quiet_native_output():
        archive.write_out(str(saved), verbose=False)
    return saved


def build_files(ctx: ExportContext, ids: np.ndarray) -> list[tuple[ExportedFile, float]]:
    """Every shortlisted step file of the plan, written and IO-checked (not yet validated)."""
    built: list[tuple[ExportedFile, float]] = []
    with shortlisted(ctx.model, ids) as cut:
        signature = signature_infos(ctx.model, ctx.plan.batch)["decoder_step"]
        tflite = [p for p in ctx.plan.tflite_precisions if p in SHORTLIST_PRECISIONS["tflite"]]
        if tflite:
            saved = _tflite_saved_model(ctx, cut)
            for precision in tflite:
                t0 = time.perf_counter()
                ctx.progress.stage(f"tflite {SHORTLIST_GRAPH} {precision}: convert")
                with quiet_native_output():
                    content = tfl.convert_tflite(saved, ["decoder_step"], precision, None)
                rel = f"tflite/{file_name(SHORTLIST_GRAPH, precision, 'tflite')}"
                (ctx.stage / rel).write_bytes(content)
                info = tfl.inspect_tflite(content)
                tfl.check_builtins_only(ctx.stage / rel, info)
                check_io(ctx.stage / rel, tfl.tflite_io(ctx.stage / rel).get("decoder_step", {}), signature,
                         "decoder_step")
                built.append((_entry(ctx, rel, "tflite", precision, signature, info.ops), time.perf_counter() - t0))
                release_memory()
        onnx_precisions = [p for p in ctx.plan.onnx_precisions if p in SHORTLIST_PRECISIONS["onnx"]]
        if onnx_precisions:
            built += _onnx_files(ctx, onnx_precisions, signature)
    shutil.rmtree(ctx.stage / WORK_DIR, ignore_errors=True)
    return built


def _onnx_files(ctx: ExportContext, precisions: list[str], signature: Any) -> list[tuple[ExportedFile, float]]:
    # lazy: onnx and the converter import TensorFlow
    import onnx

    from storyedge.export import onnx_export as ox

    out = []
    t0 = time.perf_counter()
    ctx.progress.stage(f"onnx {SHORTLIST_GRAPH} fp32: convert")
    with quiet_native_output():
        proto = ox.convert_onnx(ctx.model, "decoder_step", ctx.plan.batch, ctx.plan.opset)
    fp32 = ctx.stage / WORK_DIR / file_name(SHORTLIST_GRAPH, "fp32", "onnx")
    fp32.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(fp32))
    for precision in precisions:
        rel = f"onnx/{file_name(SHORTLIST_GRAPH, precision, 'onnx')}"
        path = ctx.stage / rel
        if precision == "fp32":
            shutil.copy2(fp32, path)
        else:
            with quiet_native_output():
                if ctx.plan.portable:
                    oq.to_int8_dynamic_portable(fp32, path)
                else:
                    ox.quantize_onnx_dynamic(fp32, path, decoder_step=True)
        ops = ox.check_onnx(onnx.load(str(path)), "decoder_step", 0, precision)
        check_io(path, ox.onnx_io(path), signature, "decoder_step")
        out.append((_entry(ctx, rel, "onnx", precision, signature, ops), time.perf_counter() - t0))
        t0 = time.perf_counter()
    return out


def _entry(ctx: ExportContext, rel: str, fmt: str, precision: str, signature: Any, ops: dict[str, int]) -> ExportedFile:
    path = ctx.stage / rel
    return ExportedFile(path=rel, format=fmt, graph=SHORTLIST_GRAPH, precision=precision,
                        signatures={"decoder_step": signature}, size_bytes=path.stat().st_size,
                        sha256=sha256_file(path), ops=dict(ops))


# ----------------------------------------------------------------------------- validation


def _reference_at(trace: val.Trace, ids: np.ndarray, logits: str) -> val.Trace:
    """The reference trace with its step logits taken at the shortlist's ids."""
    steps = [[{**out, logits: out[logits][..., ids]} for out in batch] for batch in trace.steps]
    return val.Trace(encoder=trace.encoder, steps=steps)


def validate(ctx: ExportContext, entry: ExportedFile, ids: np.ndarray, manifest: Manifest) -> dict[str, Any]:
    """The file's validation record: its step against the reference step's logits at ``ids``."""
    encoder = manifest.file(entry.format, "encoder", entry.precision) or manifest.file(entry.format, "encoder", "fp32")
    enc_path = ctx.stage / encoder.path if encoder is not None else ctx.stage / entry.path
    spec = BackendSpec(backend_name(entry.format, entry.precision, "shortlist"), entry.format, entry.precision,
                       "shortlist", enc_path, ctx.stage / entry.path, entry.size_bytes, ctx.reference.decoder,
                       vocab_ids=ids)
    reference = _reference_at(ctx.ref_trace, ids, ctx.reference.decoder.logits)
    try:
        backend = load_backend(spec, threads=VALIDATION_THREADS)
        trace = val.run_trace(backend, ctx.vset, initial_states=ctx.ref_states, encoder=False)
        comparison = val.compare_decoder(reference, trace, ctx.vset, ctx.tokenizer.pad_id)
    except Exception as exc:  # noqa: BLE001 - a runtime that cannot run it fails its validation
        comparison = val.Comparison(errors=[f"decoder_step run: {type(exc).__name__}: {str(exc)[:200]}"])
    return val.judge([comparison], entry.precision, ctx.plan.atol, ctx.plan.tolerances, ctx.vset)


def add_shortlist(ctx: ExportContext, manifest: Manifest, ids: np.ndarray, source: str) -> None:
    """Build, validate and list (or reject) the shortlisted steps; record the ids in ``manifest``."""
    planned = sum(len([p for p in ps if p in SHORTLIST_PRECISIONS[f]])
                  for f, ps in (("tflite", ctx.plan.tflite_precisions), ("onnx", ctx.plan.onnx_precisions)))
    ctx.progress.total += planned
    ctx.progress.bar.total = ctx.progress.total
    for entry, seconds in build_files(ctx, ids):
        entry.validation = validate(ctx, entry, ids, manifest)
        ctx.time(entry.path, seconds)
        if entry.validation.get("passed"):
            manifest.files.append(entry)
        else:
            target = ctx.stage / REJECTED_DIR / entry.path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(ctx.stage / entry.path), target)
            entry.validation["rejected_from"] = entry.path
            entry.path = f"{REJECTED_DIR}/{entry.path}"
            manifest.rejected.append(entry)
        ctx.progress.done(entry.path, seconds)
    manifest.vocab_shortlist = {"ids": [int(i) for i in ids], "size": int(len(ids)), "source": source,
                                "vocab_size": int(ctx.model.vocab_size)}
