"""The exporter: a Keras story model → validated TFLite / ONNX files + ``manifest.json``.

:func:`export_model` (any in-memory model: a trained bundle, or the bench's random-init seed
model) and :func:`export_from_checkpoint` (a run / bundle directory) write the export directory
laid out as in :mod:`storyedge.manifest`::

    OUT/manifest.json
    OUT/tokenizer/                        BertTokenizerFast-loadable
    OUT/reference/model.weights.h5        + config.yaml: the TF reference (bench, parity)
    OUT/tflite/{encoder,decoder_step,multi}.{fp32,fp16,int8-dynamic,int8}.tflite
    OUT/onnx/{encoder,decoder_step}.{fp32,int8-dynamic}.onnx
    OUT/rejected/<format>/...             files that failed validation (manifest "rejected")

Atomic: everything is built in ``OUT.tmp-<pid>`` next to ``OUT`` and renamed to ``OUT`` at the
end (with ``overwrite``, the old ``OUT`` is swapped out only then), so a crash never leaves a
complete-looking ``OUT``. An existing non-empty ``OUT`` without ``overwrite`` is a
:class:`UserError` before anything is done. Files failing validation are moved to ``rejected/``,
the directory is still finalised (so the table and manifest can be inspected) and then
:class:`CheckFailed` is raised (CLI exit 1).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.metadata
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from storyedge import __version__
from storyedge.config import Config
from storyedge.errors import CheckFailed, DataError, UserError
from storyedge.manifest import (
    FORMATS,
    PRECISIONS,
    ExportedFile,
    Manifest,
    SignatureInfo,
    TensorInfo,
    sha256_file,
    write_manifest,
)
from storyedge.runtime.specs import BackendSpec, backend_name

if TYPE_CHECKING:  # pragma: no cover
    from storyedge.data.pipeline import WindowArrays
    from storyedge.model.story_model import StoryModel
    from storyedge.tokenizer import StoryTokenizer

log = logging.getLogger(__name__)

TFLITE_PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8")
ONNX_PRECISIONS = ("fp32", "int8-dynamic")
#: Calibration windows for full-integer TFLite when not given (taken after the validation ones).
DEFAULT_CALIBRATION_WINDOWS = 64
REFERENCE_DIR = "reference"
TOKENIZER_DIR = "tokenizer"
REJECTED_DIR = "rejected"
VALIDATION_THREADS = max(1, min(4, os.cpu_count() or 1))


# ------------------------------------------------------------------------------ arguments


def _split_list(value: str | list[str] | tuple[str, ...] | None, default: list[str]) -> list[str]:
    """A comma-separated string or a sequence → stripped, non-empty items (``None``: default)."""
    if value is None:
        return list(default)
    parts = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return [p.strip() for p in parts if p.strip()]


def parse_formats(formats: str | list[str] | tuple[str, ...] | None, default: list[str]) -> list[str]:
    """``tflite`` / ``onnx`` / ``all`` (or a list / comma list of them) → ordered formats."""
    items = _split_list(formats, default)
    out: list[str] = []
    for item in items:
        names = list(FORMATS) if item == "all" else [item]
        for name in names:
            if name not in FORMATS:
                raise UserError(f"unknown export format {item!r} (choose from tflite, onnx, all)")
            if name not in out:
                out.append(name)
    if not out:
        raise UserError("no export format given (tflite, onnx or all)")
    return [f for f in FORMATS if f in out]


def parse_quantize(quantize: str | list[str] | tuple[str, ...] | None, default: list[str]) -> list[str]:
    """``none,fp16,int8-dynamic,int8`` names (list or comma list) → precision labels, ordered."""
    items = _split_list(quantize, default)
    labels: list[str] = []
    for item in items:
        if item not in PRECISIONS:
            raise UserError(
                f"unknown quantization {item!r} (choose from {', '.join(PRECISIONS)}; comma-separated)"
            )
        if PRECISIONS[item] not in labels:
            labels.append(PRECISIONS[item])
    if not labels:
        raise UserError(f"no quantization given (one or more of {', '.join(PRECISIONS)})")
    order = list(PRECISIONS.values())
    return sorted(labels, key=order.index)


def check_out_dir(out_dir: str | Path, overwrite: bool) -> Path:
    """:class:`UserError` unless ``out_dir`` can be (re)written; nothing is left behind."""
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"--out {out}: directory exists and is not empty (pass --overwrite to replace it)")
    probe = out.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"--out {out}: {probe} is not a directory")
    try:  # os.access says yes to root on a read-only file system: try it
        tempfile.TemporaryDirectory(dir=probe, prefix=".storyedge-probe-").cleanup()
    except OSError as exc:
        raise UserError(f"--out {out}: cannot write under {probe} ({exc.strerror or exc})") from None
    return out


@contextlib.contextmanager
def staging_dir(out: Path, overwrite: bool) -> Iterator[Path]:
    """Yield ``OUT.tmp-<pid>``; on success rename it to ``OUT`` (swapping an old one out)."""
    stage = out.parent / f"{out.name}.tmp-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir()
    except OSError as exc:
        raise UserError(f"--out {out}: cannot create {stage} ({exc.strerror or exc})") from None
    try:
        yield stage
        _fsync_tree(stage)
        old = out.parent / f"{out.name}.old-{os.getpid()}"
        if out.exists():
            if any(out.iterdir()) and not overwrite:  # appeared meanwhile
                raise UserError(f"--out {out}: directory exists and is not empty (pass --overwrite to replace it)")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
        os.replace(stage, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def quiet_native_output() -> Iterator[None]:
    """Send what native code prints on fd 1 / 2 (converter chatter, absl warnings) to a temp
    file while the block runs: logged at debug level, and echoed to stderr when the block fails."""
    import tempfile

    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    failed = False
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            text = sink.read().decode(errors="replace")
            if text.strip():
                log.debug("native output:\n%s", text)
                if failed:
                    sys.stderr.write(text[-4000:])


def release_memory() -> None:
    """Collect garbage and hand freed heap back to the OS (glibc ``malloc_trim``): converter
    peaks (GBs at the seed size) otherwise stay resident for the rest of the export."""
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _fsync_tree(directory: Path) -> None:
    for file in directory.rglob("*"):
        if file.is_file():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())


# ------------------------------------------------------------------------------ helpers


def versions() -> dict[str, str]:
    """Versions of everything that shaped the files."""
    out = {"storyedge": __version__, "python": platform.python_version()}
    for dist, key in (
        ("tensorflow", "tensorflow"),
        ("keras", "keras"),
        ("tf2onnx", "tf2onnx"),
        ("onnx", "onnx"),
        ("onnxruntime", "onnxruntime"),
        ("ai-edge-litert", "ai-edge-litert"),
        ("numpy", "numpy"),
    ):
        try:
            out[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[key] = "not installed"
    return out


def signature_infos(model: "StoryModel", batch: int) -> dict[str, SignatureInfo]:
    """The documented IO of both graphs with static shapes."""
    from storyedge.model.signatures import decoder_input_specs, encoder_input_specs

    cfg = model.config
    hidden, context, vocab = cfg.model.decoder_hidden_dim, model.context_dim, model.vocab_size

    def infos(specs: list[Any]) -> list[TensorInfo]:
        return [TensorInfo(s.name, [int(d) for d in s.shape], s.dtype.name) for s in specs]

    return {
        "encoder": SignatureInfo(
            inputs=infos(encoder_input_specs(model, batch)),
            outputs=[
                TensorInfo("h0", [batch, hidden], "float32"),
                TensorInfo("c0", [batch, hidden], "float32"),
                TensorInfo("context", [batch, context], "float32"),
            ],
        ),
        "decoder_step": SignatureInfo(
            inputs=infos(decoder_input_specs(model, batch)),
            outputs=[
                TensorInfo("logits", [batch, vocab], "float32"),
                TensorInfo("h_out", [batch, hidden], "float32"),
                TensorInfo("c_out", [batch, hidden], "float32"),
            ],
        ),
    }


def _check_io(path: Path, found: dict[str, dict[str, tuple[list[int], str]]], expected: SignatureInfo, graph: str) -> None:
    for kind, infos in (("inputs", expected.inputs), ("outputs", expected.outputs)):
        want = {t.name: (list(t.shape), t.dtype) for t in infos}
        got = found.get(kind, {})
        if got != want:
            raise CheckFailed(f"{path.name}: {graph} {kind} {got} differ from the documented {want}")


def file_name(graph: str, precision: str, fmt: str) -> str:
    """``encoder.fp32.tflite`` ..."""
    return f"{graph}.{precision}.{fmt}"


@dataclass
class _Built:
    """A file written into the staging directory, before validation."""

    entry: ExportedFile
    seconds: float


@dataclass
class _Progress:
    bar: Any
    echo: Callable[[str], None]
    notes: list[str] = field(default_factory=list)

    def stage(self, text: str) -> None:
        self.bar.set_description_str(text[:60])

    def done(self) -> None:
        self.bar.update(1)

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.echo(text)


def _progress(total: int, enabled: bool) -> _Progress:
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="step", file=sys.stderr, disable=not enabled, leave=enabled, dynamic_ncols=True)

    def echo(text: str) -> None:
        if enabled:
            tqdm.write(text, file=sys.stderr)
        else:
            log.info(text)

    return _Progress(bar, echo)


# ------------------------------------------------------------------------------ public API


def export_model(
    model: "StoryModel",
    config: Config,
    tokenizer: "StoryTokenizer",
    out_dir: str | Path,
    *,
    formats: str | list[str] | None = None,
    quantize: str | list[str] | None = None,
    batch: int | None = None,
    opset: int | None = None,
    atol: float | None = None,
    tolerances: dict[str, float] | None = None,
    validation: "WindowArrays | None" = None,
    validation_windows: int | None = None,
    calibration_windows: int | None = None,
    overwrite: bool = False,
    source: dict[str, Any] | None = None,
    reference_dir: str | Path | None = None,
    progress: bool = True,
) -> Manifest:
    """Export ``model`` to ``out_dir``; returns the written :class:`Manifest`.

    ``formats`` (``tflite``, ``onnx``, ``all``), ``quantize`` (``none``, ``fp16``,
    ``int8-dynamic``, ``int8``), ``batch``, ``opset``, ``atol`` and ``validation_windows`` default
    to ``config.export``. ``validation``: windows of the validation split (the first
    ``validation_windows`` validate; the next ``calibration_windows`` calibrate full-int8); None
    → synthetic random inputs of the right shapes (said so in the manifest). ``tolerances``:
    ``{precision: base}`` overriding ``atol × factor`` (see :mod:`.validation`).
    ``reference_dir``: a bundle directory whose ``model.weights.h5`` / ``config.yaml`` are copied
    to ``reference/`` (else the model's weights are saved there). ``source``: provenance
    recorded in the manifest.

    Raises :class:`UserError` for bad arguments / an unwritable or non-empty ``out_dir`` (nothing
    written) and :class:`CheckFailed` after writing when a file fails validation (in
    ``rejected/``) or a converter produced non-builtin ops (nothing written).
    """
    ex = config.export
    formats_ = parse_formats(formats, ex.formats)
    precisions = parse_quantize(quantize, ex.quantize)
    batch = int(batch if batch is not None else ex.batch)
    opset = int(opset if opset is not None else ex.opset)
    atol = float(atol if atol is not None else ex.atol)
    n_val = int(validation_windows if validation_windows is not None else ex.validation_windows)
    n_cal = int(calibration_windows if calibration_windows is not None else max(DEFAULT_CALIBRATION_WINDOWS, n_val))
    if batch < 1:
        raise UserError(f"--batch must be >= 1, got {batch}")
    if not 13 <= opset <= 18:
        raise UserError(f"--opset must be between 13 and 18 (tf2onnx {_v('tf2onnx')}), got {opset}")
    if not atol > 0:
        raise UserError(f"--atol must be > 0, got {atol}")
    for name, value in (tolerances or {}).items():
        if name not in TFLITE_PRECISIONS or not value > 0:
            raise UserError(f"--tolerance {name}={value}: precision must be one of {', '.join(TFLITE_PRECISIONS)}, value > 0")
    if n_val < 1 or n_cal < 1:
        raise UserError("--validation-windows and --calibration-windows must be >= 1")
    out = check_out_dir(out_dir, overwrite)

    effective = config.replace(
        **{
            "export.formats": formats_,
            "export.quantize": [q for q, p in PRECISIONS.items() if p in precisions],
            "export.batch": batch,
            "export.opset": opset,
            "export.atol": atol,
            "export.validation_windows": n_val,
        }
    )
    skipped: list[dict[str, str]] = []
    onnx_precisions: list[str] = []
    if "onnx" in formats_:
        for p in precisions:
            if p in ONNX_PRECISIONS:
                onnx_precisions.append(p)
            else:
                skipped.append(
                    {
                        "format": "onnx",
                        "precision": p,
                        "reason": f"ONNX {p} is not produced by this exporter (ONNX: fp32 and int8-dynamic); "
                        "use the TFLite file of that precision",
                    }
                )
    tflite_precisions = precisions if "tflite" in formats_ else []
    n_files = 3 * len(tflite_precisions) + 2 * len(onnx_precisions)
    if n_files == 0:
        raise UserError("nothing to export: ONNX supports only --quantize none,int8-dynamic")
    saved_models = len({"unrolled" if p == "int8" else "loop" for p in tflite_precisions})
    total = 1 + saved_models + n_files + len(tflite_precisions) * 2 + len(onnx_precisions)
    prog = _progress(total, progress)
    for s in skipped:
        prog.note(f"note: skipping onnx {s['precision']}: {s['reason']}")
    timings: dict[str, float] = {}
    started = time.perf_counter()
    try:
        with staging_dir(out, overwrite) as stage:
            manifest = _export_into(
                stage, model, effective, tokenizer, formats_, tflite_precisions, onnx_precisions,
                batch, opset, atol, tolerances, validation, n_val, n_cal, source or {}, reference_dir,
                skipped, timings, prog,
            )
            timings["total"] = round(time.perf_counter() - started, 2)
            manifest.source.setdefault("export", {})["seconds"] = timings
            write_manifest(stage, manifest)
    finally:
        prog.bar.close()
    if manifest.rejected:
        from storyedge.export.report import format_table

        raise CheckFailed(
            f"{len(manifest.rejected)} exported file(s) failed validation and were moved to "
            f"{out / REJECTED_DIR}:\n{format_table(manifest, only_rejected=True)}"
        )
    return manifest


def _v(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _export_into(
    stage: Path,
    model: "StoryModel",
    config: Config,
    tokenizer: "StoryTokenizer",
    formats: list[str],
    tflite_precisions: list[str],
    onnx_precisions: list[str],
    batch: int,
    opset: int,
    atol: float,
    tolerances: dict[str, float] | None,
    validation: "WindowArrays | None",
    n_val: int,
    n_cal: int,
    source: dict[str, Any],
    reference_dir: str | Path | None,
    skipped: list[dict[str, str]],
    timings: dict[str, float],
    prog: _Progress,
) -> Manifest:
    from storyedge.runtime.tf_reference import TFReferenceBackend
    from storyedge.export import validation as val

    # -- tokenizer + reference ------------------------------------------------------------
    prog.stage("reference + tokenizer")
    tokenizer.save(stage / TOKENIZER_DIR)
    ref_dir = stage / REFERENCE_DIR
    ref_dir.mkdir()
    src = Path(reference_dir) if reference_dir is not None else None
    if src is not None and (src / "model.weights.h5").is_file():
        shutil.copy2(src / "model.weights.h5", ref_dir / "model.weights.h5")
    else:
        model.save_weights(str(ref_dir / "model.weights.h5"))
    if src is not None and (src / "config.yaml").is_file():
        shutil.copy2(src / "config.yaml", ref_dir / "config.yaml")
    else:
        config.save(ref_dir / "config.yaml")

    # -- validation + calibration data ------------------------------------------------------
    reference = TFReferenceBackend(model, batch)
    special = tokenizer.special_ids
    if validation is not None and len(validation) > 0:
        vset = val.from_windows(validation, config, batch, n_val)
        cal_start = n_val if len(validation) > n_val else 0
        cset = val.from_windows(validation, config, batch, min(n_cal, max(1, len(validation) - cal_start)), cal_start)
    else:
        vset = val.synthetic_set(config, model.vocab_size, special, batch, n_val, seed=0)
        cset = val.synthetic_set(config, model.vocab_size, special, batch, n_cal, seed=1)
    prog.echo(
        f"validating on {vset.windows} window(s) of {vset.data}"
        + (f"; int8 calibration on {cset.windows}" if "int8" in tflite_precisions else "")
    )
    ref_trace = val.run_trace(reference, vset)
    ref_states = val.reference_states(reference, ref_trace)
    prog.done()

    signatures = signature_infos(model, batch)
    built: list[_Built] = []

    # -- TFLite ------------------------------------------------------------------------------
    if tflite_precisions:
        from storyedge.export import tflite as tfl
        from storyedge.export.graphs import tflite_rnn_layout
        from storyedge.model.signatures import make_export_archive

        samples: list[tuple[str, dict]] | None = None
        (stage / "tflite").mkdir()
        # LSTMs as WHILE loops except for full int8, which needs them unrolled (see graphs.py):
        # one SavedModel per layout in use.
        needed: dict[str, list[str]] = {}
        for precision in tflite_precisions:
            needed.setdefault("unrolled" if precision == "int8" else "loop", []).append(precision)
        for rnn_layout, layout_precisions in needed.items():
            prog.stage(f"tflite: SavedModel ({rnn_layout} LSTMs)")
            t0 = time.perf_counter()
            saved = stage / ".work" / f"saved_model_{rnn_layout}"
            with tflite_rnn_layout(model, rnn_layout), quiet_native_output():
                archive = make_export_archive(model, batch)
                archive.write_out(str(saved), verbose=False)
            timings[f"saved_model ({rnn_layout} LSTMs)"] = round(time.perf_counter() - t0, 2)
            prog.done()
            for precision in layout_precisions:
                if precision == "int8" and samples is None:
                    samples = val.representative_samples(reference, cset, tokenizer.pad_id)
                for graph, keys in (
                    ("encoder", ["encoder"]),
                    ("decoder_step", ["decoder_step"]),
                    ("multi", ["encoder", "decoder_step"]),
                ):
                    prog.stage(f"tflite {graph} {precision}: convert")
                    t0 = time.perf_counter()
                    rep = (lambda: iter(samples)) if precision == "int8" else None  # noqa: B023
                    try:
                        with quiet_native_output():
                            content = tfl.convert_tflite(saved, keys, precision, rep)
                    except Exception as exc:  # noqa: BLE001 - the converter raises ConverterError & co
                        lines = str(exc).strip().splitlines()
                        raise CheckFailed(
                            f"TFLite conversion of {graph} ({precision}) failed: "
                            f"{lines[-1][:400] if lines else type(exc).__name__}"
                        ) from exc
                    rel = f"tflite/{file_name(graph, precision, 'tflite')}"
                    path = stage / rel
                    path.write_bytes(content)
                    info = tfl.inspect_tflite(content)
                    tfl.check_builtins_only(path, info)
                    io = tfl.tflite_io(path)
                    for key in keys:
                        _check_io(path, io.get(key, {}), signatures[key], key)
                    seconds = time.perf_counter() - t0
                    timings[rel] = round(seconds, 2)
                    entry = ExportedFile(
                        path=rel,
                        format="tflite",
                        graph=graph,
                        precision=precision,
                        signatures={k: signatures[k] for k in keys},
                        size_bytes=path.stat().st_size,
                        sha256=sha256_file(path),
                        float_ops=sorted(info.float_ops) if precision == "int8" else [],
                        ops=info.ops,
                    )
                    built.append(_Built(entry, seconds))
                    del content
                    release_memory()
                    prog.done()
        shutil.rmtree(stage / ".work", ignore_errors=True)

    # -- ONNX --------------------------------------------------------------------------------
    if onnx_precisions:
        import onnx

        from storyedge.export import onnx_export as ox
        from storyedge.export.graphs import encoder_lstm_count

        (stage / "onnx").mkdir()
        lstms = encoder_lstm_count(model)
        fp32_paths: dict[str, Path] = {}

        def record_onnx(rel: str, path: Path, graph: str, precision: str, ops: dict[str, int], seconds: float) -> None:
            """List one written ONNX file: its manifest entry (size, sha256, signature) and timing."""
            timings[rel] = round(seconds, 2)
            entry = ExportedFile(rel, "onnx", graph, precision, {graph: signatures[graph]},
                                 path.stat().st_size, sha256_file(path), ops=ops)
            built.append(_Built(entry, seconds))

        for graph in ("encoder", "decoder_step"):
            prog.stage(f"onnx {graph} fp32: convert")
            t0 = time.perf_counter()
            with quiet_native_output():
                proto = ox.convert_onnx(model, graph, batch, opset)
            ops = ox.check_onnx(proto, graph, lstms, "fp32")
            listed = "fp32" in onnx_precisions
            rel = f"onnx/{file_name(graph, 'fp32', 'onnx')}" if listed else f".work/{file_name(graph, 'fp32', 'onnx')}"
            path = stage / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            onnx.save(proto, str(path))
            del proto
            release_memory()
            fp32_paths[graph] = path
            _check_io(path, ox.onnx_io(path), signatures[graph], graph)
            if listed:
                record_onnx(rel, path, graph, "fp32", ops, time.perf_counter() - t0)
            prog.done()
        if "int8-dynamic" in onnx_precisions:
            for graph in ("encoder", "decoder_step"):
                prog.stage(f"onnx {graph} int8-dynamic: quantize")
                t0 = time.perf_counter()
                rel = f"onnx/{file_name(graph, 'int8-dynamic', 'onnx')}"
                path = stage / rel
                with quiet_native_output():
                    ox.quantize_onnx_dynamic(fp32_paths[graph], path)
                ops = ox.check_onnx(onnx.load(str(path)), graph, lstms, "int8-dynamic")
                _check_io(path, ox.onnx_io(path), signatures[graph], graph)
                record_onnx(rel, path, graph, "int8-dynamic", ops, time.perf_counter() - t0)
                prog.done()
        shutil.rmtree(stage / ".work", ignore_errors=True)

    # -- validation ----------------------------------------------------------------------------
    records: dict[str, dict[str, Any]] = {}
    by_key = {(b.entry.format, b.entry.graph, b.entry.precision): b.entry for b in built}
    layouts: list[tuple[str, str, str]] = []
    for fmt, precisions in (("tflite", tflite_precisions), ("onnx", onnx_precisions)):
        for precision in precisions:
            layouts.append((fmt, precision, "separate"))
            if fmt == "tflite":
                layouts.append((fmt, precision, "multi"))
    for fmt, precision, layout in layouts:
        prog.stage(f"validate {fmt} {precision} {layout}")
        t0 = time.perf_counter()
        if layout == "multi":
            multi = by_key[(fmt, "multi", precision)]
            enc_path = dec_path = stage / multi.path
            size = multi.size_bytes
        else:
            enc, dec = by_key[(fmt, "encoder", precision)], by_key[(fmt, "decoder_step", precision)]
            enc_path, dec_path, size = stage / enc.path, stage / dec.path, enc.size_bytes + dec.size_bytes
        spec = BackendSpec(backend_name(fmt, precision, layout), fmt, precision, layout, enc_path, dec_path,
                           size, reference.decoder)
        enc_cmp, dec_cmp = _validate_backend(spec, ref_trace, ref_states, vset, tokenizer.pad_id)
        if layout == "multi":
            records[multi.path] = val.judge([enc_cmp, dec_cmp], precision, atol, tolerances, vset)
        else:
            records[enc.path] = val.judge([enc_cmp], precision, atol, tolerances, vset)
            records[dec.path] = val.judge([dec_cmp], precision, atol, tolerances, vset)
        timings[f"validate {spec.name}"] = round(time.perf_counter() - t0, 2)
        prog.done()

    good: list[ExportedFile] = []
    rejected: list[ExportedFile] = []
    for item in built:
        entry = item.entry
        entry.validation = records[entry.path]
        if entry.validation["passed"]:
            good.append(entry)
            continue
        new_rel = f"{REJECTED_DIR}/{entry.path}"
        (stage / new_rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage / entry.path, stage / new_rel)
        entry.validation["rejected_from"] = entry.path
        entry.path = new_rel
        rejected.append(entry)
    for sub in ("tflite", "onnx"):
        d = stage / sub
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()

    multi_vs_separate: dict[str, Any] = {}
    for precision in tflite_precisions:
        m = by_key[("tflite", "multi", precision)]
        e, d = by_key[("tflite", "encoder", precision)], by_key[("tflite", "decoder_step", precision)]
        separate = e.size_bytes + d.size_bytes
        multi_vs_separate[f"tflite-{precision}"] = {
            "multi_bytes": m.size_bytes,
            "separate_bytes": separate,
            "saved_bytes": separate - m.size_bytes,
            "multi_over_separate": round(m.size_bytes / separate, 4),
        }

    src = dict(source)
    src["validation"] = {
        "data": vset.data,
        "windows": vset.windows,
        "batches": len(vset),
        "calibration_windows": cset.windows if "int8" in tflite_precisions else 0,
        "calibration_data": cset.data if "int8" in tflite_precisions else None,
        "tolerance_factors": dict(val.TOLERANCE_FACTORS),
        "tolerance_overrides": dict(tolerances or {}),
    }
    if skipped:
        src["skipped"] = skipped
    return Manifest(
        storyedge_version=__version__,
        batch=batch,
        config=config.to_dict(),
        tokenizer={"dir": TOKENIZER_DIR, "fingerprint": tokenizer.fingerprint(), "source": tokenizer.source,
                   **special},
        versions=versions(),
        source=src,
        files=good,
        decoder=reference.decoder,
        reference={"weights": f"{REFERENCE_DIR}/model.weights.h5", "config": f"{REFERENCE_DIR}/config.yaml"},
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        multi_vs_separate=multi_vs_separate,
        rejected=rejected,
    )


def _validate_backend(
    spec: BackendSpec,
    ref_trace: Any,
    ref_states: list[dict[str, np.ndarray]],
    vset: Any,
    pad_id: int,
) -> tuple[Any, Any]:
    """(encoder, decoder) comparisons of one backend. A runtime that fails to load or run a
    graph (e.g. a delegate refusing it) is recorded as that graph's error, not raised."""
    from storyedge.runtime import load_backend
    from storyedge.export import validation as val

    def failed(where: str, exc: BaseException) -> Any:
        lines = str(exc).strip().splitlines()
        return val.Comparison(errors=[f"{where}: {type(exc).__name__}: {lines[0][:300] if lines else ''}"])

    try:
        # threads given explicitly: TFLiteBackend maps None to -1, which ai-edge-litert 2.3 rejects
        backend = load_backend(spec, threads=VALIDATION_THREADS)
    except Exception as exc:  # noqa: BLE001 - any runtime error is a validation failure
        return failed("load", exc), failed("load", exc)
    try:
        enc_cmp = val.compare_encoder(ref_trace, val.run_trace(backend, vset, decoder=False))
    except Exception as exc:  # noqa: BLE001
        enc_cmp = failed("encoder run", exc)
    try:
        trace = val.run_trace(backend, vset, initial_states=ref_states, encoder=False)
        dec_cmp = val.compare_decoder(ref_trace, trace, vset, pad_id)
    except Exception as exc:  # noqa: BLE001
        dec_cmp = failed("decoder_step run", exc)
    return enc_cmp, dec_cmp


def load_validation_windows(config: Config, tokenizer: "StoryTokenizer", count: int) -> "WindowArrays":
    """The first ``count`` windows of the configured dataset's validation split."""
    from storyedge.data.loading import load_story_splits
    from storyedge.data.pipeline import encode_windows

    splits = load_story_splits(config.dataset)
    return encode_windows(splits["validation"], tokenizer, config.dataset, max_windows=count, split_name="validation")


def export_from_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path,
    config: Config | None = None,
    *,
    formats: str | list[str] | None = None,
    quantize: str | list[str] | None = None,
    batch: int | None = None,
    opset: int | None = None,
    atol: float | None = None,
    tolerances: dict[str, float] | None = None,
    validation_data: str = "split",
    validation_windows: int | None = None,
    calibration_windows: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Manifest:
    """Export the best model of a run directory (or bundle directory) ``checkpoint``.

    ``config``: when given, the checkpoint must be compatible with it (:func:`check_compatible`,
    else :class:`UserError` naming the key) and its ``export`` / ``dataset`` sections are used;
    else the bundle's own config. ``validation_data``: ``split`` (windows of the dataset's
    validation split) or ``synthetic`` (random inputs; no dataset needed).
    """
    from storyedge.run_dir import load_bundle

    if validation_data not in ("split", "synthetic"):
        raise UserError(f"--validation-data must be split or synthetic, got {validation_data!r}")
    check_out_dir(out_dir, overwrite)
    settings = config
    bundle = load_bundle(checkpoint, expected_config=config)
    settings = config or bundle.config
    # validate the format / quantize arguments before the (slow) data loading
    parse_formats(formats, settings.export.formats)
    parse_quantize(quantize, settings.export.quantize)
    n_val = validation_windows if validation_windows is not None else settings.export.validation_windows
    n_cal = calibration_windows if calibration_windows is not None else max(DEFAULT_CALIBRATION_WINDOWS, n_val)
    windows = None
    if validation_data == "split":
        data_config = bundle.config.replace(
            **{f"dataset.{k}": getattr(settings.dataset, k) for k in ("name", "path", "schema", "frames_key",
                                                                    "captions_key", "reason_key",
                                                                    "validation_fraction", "synthetic_stories",
                                                                    "synthetic_seed")}
        )
        try:
            windows = load_validation_windows(data_config, bundle.tokenizer, n_val + n_cal)
        except DataError as exc:
            raise DataError(
                f"{exc} (validation windows for the export; --validation-data synthetic validates on "
                "random inputs instead)"
            ) from None
    export_config = bundle.config.replace(**{f"export.{k}": getattr(settings.export, k) for k in (
        "formats", "quantize", "batch", "opset", "atol", "validation_windows")})
    return export_model(
        bundle.model,
        export_config,
        bundle.tokenizer,
        out_dir,
        formats=formats,
        quantize=quantize,
        batch=batch,
        opset=opset,
        atol=atol,
        tolerances=tolerances,
        validation=windows,
        validation_windows=n_val,
        calibration_windows=n_cal,
        overwrite=overwrite,
        source={"checkpoint": str(bundle.path), "meta": bundle.meta},
        reference_dir=bundle.path,
        progress=progress,
    )


__all__ = [
    "export_from_checkpoint",
    "export_model",
    "load_validation_windows",
    "parse_formats",
    "parse_quantize",
]
