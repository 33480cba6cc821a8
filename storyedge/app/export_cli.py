"""``storyedge export``: the click command (TensorFlow is imported only when it runs)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from storyedge.config import load_config
from storyedge.errors import UserError
from storyedge.export.exporter import (
    VALIDATION_DATA,
    check_out_dir,
    export_from_checkpoint,
    parse_formats,
    parse_quantize,
)
from storyedge.export.plan import DEFAULT_CALIBRATION_WINDOWS, OPSET_RANGE
from storyedge.export.report import format_table
from storyedge.constants import CALIBRATION_METHODS, INT4_BLOCK_SIZES
from storyedge.manifest import FORMATS, PRECISIONS

HELP = """Export the trained model's encoder and decoder step to TFLite and/or ONNX, validated.

\b
Per format and precision, two static-shape graphs (batch --batch, default 1):
  encoder       frames [B,k,S,S,3] f32, captions [B,k,L] i32, reason [B,R] i32 (use_reason only)
                -> h0 [B,H], c0 [B,H], context [B,C]
  decoder_step  token [B] i32, h [B,H], c [B,H], context [B,C] -> logits [B,V], h_out, c_out
model.decoder: transformer: the encoder gives cross_k_i / cross_v_i per layer; the step takes
  token, position [B] i32, k_cache_i / v_cache_i and the cross K/V -> logits, position_out,
  k_cache_i_out, v_cache_i_out (the manifest's decoder section declares the state)
plus, for TFLite, one multi-signature file holding both over shared weights.

\b
Written to --out (atomically, via OUT.tmp-<pid>):
  manifest.json  tokenizer/  reference/ (Keras weights + config.yaml)
  tflite/{encoder,decoder_step,multi}.<precision>.tflite   (builtin ops only, never Flex)
  onnx/{encoder,decoder_step}.<precision>.onnx             (opset --opset, LSTM nodes)
  rejected/      files that failed validation (exit 1)

\b
--quantize (comma-separated): none (fp32), fp16 (float16 weights), int8-dynamic
(dynamic-range int8 weights), int8 (full integer / ONNX QDQ static int8, calibrated on
windows after the validation ones: encoder inputs and the decoder's (token, state) as the TF
reference meets them teacher-forced; ONNX method --calibration-method), int4 (4-bit blockwise
weights, --int4-block-size per scale: TFLite via ai-edge-quantizer, ONNX via the com.microsoft
MatMulNBits op). Every file's manifest entry has its coverage: ops computing in integer /
fp16 / float, weight bytes per dtype, and whether it is portable (TFLite builtins only; ONNX
standard domain only). --portable refuses ONNX contrib ops: the int8 and int8-dynamic LSTMs
stay float, the decoder steps' products stay MatMulInteger / QDQ (not 8-bit MatMulNBits) and
ONNX int4 is skipped; TFLite full int8 unrolls its LSTMs (no WHILE loops, whose carried state
stays float: integer kernels only, for accelerators that run nothing else, at about twice the
loops' CPU time).

\b
Validation: the TF reference and every exported file run the same validation windows
(encoder outputs; decoder steps teacher-forced along the target). A file passes when every
output's max |diff| is within its tolerance:
  fp32           atol                           (--atol, default export.atol = 1e-4)
  fp16           atol x 100  x max|reference|   (1% of the output's magnitude at the default)
  int8-dynamic   atol x 2000 x max|reference|   (20%)
  int8           atol x 6000 x max|reference|   (60%: a coarse check; the bench's PPL gates judge)
  int4           atol x 6000 x max|reference|   (60%, as int8)
--tolerance PRECISION=BASE replaces "atol x factor" for one precision. Over tolerance (or a
file the runtime cannot run): it moves to rejected/, the table is printed, exit status 1.
"""


@click.command(name="export", help=HELP, short_help="Export encoder + decoder step to TFLite / ONNX.")
@click.option("--checkpoint", required=True, metavar="RUN_DIR",
              help="Run directory (its best/ bundle) or a bundle directory.")
@click.option("--out", "out_dir", required=True, metavar="DIR", help="Export directory to write.")
@click.option("--format", "fmt", type=click.Choice([*FORMATS, "all"]),
              help="Formats to write [export.formats; 'all' = tflite + onnx].")
@click.option("--quantize", metavar="LIST",
              help="Comma-separated: none, fp16, int8-dynamic, int8 [export.quantize].")
@click.option("--config", "config_path", metavar="PATH",
              help="Config the checkpoint must be compatible with; its export / dataset sections "
                   "are used (default: the checkpoint's own config).")
@click.option("--batch", type=click.IntRange(min=1), help="Static batch size of the graphs [export.batch].")
@click.option("--opset", type=click.IntRange(*OPSET_RANGE), help="ONNX opset [export.opset].")
@click.option("--atol", type=click.FloatRange(min=0, min_open=True),
              help="fp32 tolerance on every output; quantized tolerances scale from it [export.atol].")
@click.option("--tolerance", "tolerance", multiple=True, metavar="PRECISION=BASE",
              help="Override one precision's base tolerance (fp32, fp16, int8-dynamic, int8). Repeatable.")
@click.option("--validation-windows", type=click.IntRange(min=1),
              help="Validation windows compared against the TF reference [export.validation_windows].")
@click.option("--calibration-windows", type=click.IntRange(min=1),
              help=f"Windows for full-int8 calibration (after the validation ones) [{DEFAULT_CALIBRATION_WINDOWS}].")
@click.option("--calibration-method", metavar="METHOD",
              help=f"How ONNX static int8 turns calibration activations into ranges: {', '.join(CALIBRATION_METHODS)} "
                   "[export.calibration_method].")
@click.option("--int4-block-size", type=int, metavar="N",
              help=f"int4 weights per scale: {', '.join(map(str, INT4_BLOCK_SIZES))}; must divide "
                   "model.decoder_hidden_dim [export.int4_block_size].")
@click.option("--portable", is_flag=True, default=None,
              help="No ONNX contrib (com.microsoft) ops: int8 / int8-dynamic LSTMs stay float, the steps' "
                   "products MatMulInteger / QDQ, ONNX int4 skipped; TFLite int8 LSTMs unrolled, no "
                   "WHILE loops [export.portable].")
@click.option("--validation-data", type=click.Choice(list(VALIDATION_DATA)), default=VALIDATION_DATA[0],
              show_default=True,
              help="split: windows of the dataset's validation split; synthetic: random inputs of "
                   "the right shapes (no dataset needed; said so in the manifest).")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --out (swapped in at the end).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--story-mode/--no-story-mode", "story_mode", default=None,
              help="Also export story mode's per-frame / reason / story graphs [export.story_mode].")
@click.option("--vocab-shortlist", metavar="FILE|auto", default=None,
              help="Also export decoder steps whose logits cover only these token ids (FILE: ids as a JSON list "
                   "or whitespace/comma separated; auto: the ids the training captions use), beside the "
                   "full-vocabulary files; the bench reports them as <format>-<precision>-shortlist.")
def export(
    checkpoint: str,
    out_dir: str,
    fmt: str | None,
    quantize: str | None,
    config_path: str | None,
    batch: int | None,
    opset: int | None,
    atol: float | None,
    tolerance: tuple[str, ...],
    validation_windows: int | None,
    calibration_windows: int | None,
    calibration_method: str | None,
    int4_block_size: int | None,
    portable: bool | None,
    validation_data: str,
    overwrite: bool,
    no_progress: bool,
    vocab_shortlist: str | None,
    story_mode: bool | None = None,
) -> None:
    """``storyedge export`` (see :data:`HELP`): argument checks first, then the export and its table."""
    check_out_dir(out_dir, overwrite)
    if quantize is not None:
        parse_quantize(quantize, [])
    if fmt is not None:
        parse_formats(fmt, [])
    _check_quantization_options(calibration_method, int4_block_size)
    tolerances = _parse_tolerances(tolerance)
    if vocab_shortlist is not None and vocab_shortlist != "auto" and not Path(vocab_shortlist).is_file():
        raise UserError(f"--vocab-shortlist {vocab_shortlist}: file not found (give a file of token ids, or 'auto')")
    config = load_config(config_path) if config_path else None

    start = time.perf_counter()
    manifest = export_from_checkpoint(
        checkpoint,
        out_dir,
        config,
        formats=fmt,
        quantize=quantize,
        batch=batch,
        opset=opset,
        atol=atol,
        tolerances=tolerances,
        validation_data=validation_data,
        validation_windows=validation_windows,
        calibration_windows=calibration_windows,
        calibration_method=calibration_method,
        int4_block_size=int4_block_size,
        portable=portable or None,
        overwrite=overwrite,
        progress=not no_progress,
        story_mode=story_mode,
        vocab_shortlist=vocab_shortlist,
    )
    click.echo(format_table(manifest))
    click.echo(f"wrote {out_dir} ({len(manifest.files)} files) in {time.perf_counter() - start:.1f}s")


def _check_quantization_options(calibration_method: str | None, int4_block_size: int | None) -> None:
    """One-line :class:`UserError` for an unknown method / block size, before the checkpoint loads
    (whether the block size divides the model's weights is checked once the model is loaded)."""
    if calibration_method is not None and calibration_method.lower() not in CALIBRATION_METHODS:
        raise UserError(f"--calibration-method: unknown method {calibration_method!r} "
                        f"(choose from {', '.join(CALIBRATION_METHODS)})")
    if int4_block_size is not None and int4_block_size not in INT4_BLOCK_SIZES:
        raise UserError(f"--int4-block-size: {int4_block_size} is not a block size int4 supports "
                        f"(choose from {', '.join(map(str, INT4_BLOCK_SIZES))})")


def _parse_tolerances(items: tuple[str, ...]) -> dict[str, float]:
    """``PRECISION=BASE`` items (``--tolerance``) → ``{precision label: base}``."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = PRECISIONS.get(name.strip(), name.strip())
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not sep or name not in PRECISIONS.values() or not number > 0:
            raise UserError(
                f"--tolerance {item!r}: expected PRECISION=BASE with PRECISION one of "
                f"{', '.join(PRECISIONS.values())} and BASE > 0"
            )
        out[name] = number
    return out
