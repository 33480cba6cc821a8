"""``storyedge generate``: write caption k+1 of a story with any backend, greedy or beam search.

The story is window ``--index N`` of a dataset split, or k images and k captions given on the
command line (``--images a.png b.png c.png --captions "..." "..." "..."``; the last k of each are
used). Backends: ``tf`` (a checkpoint's best model, or an export's reference weights),
``tflite`` / ``onnx`` (an export, at ``--precision``). TensorFlow is imported only for ``tf``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np

from storyedge.bench.runner import load_eval_windows
from storyedge.config import load_config
from storyedge.constants import EXPORT_FORMATS, TFLITE_PRECISIONS
from storyedge.devices import import_tensorflow
from storyedge.errors import UserError
from storyedge.app.generate_story import FEEDS, cli_story, generate_story, split_story
from storyedge.app.story_inputs import read_frames, story_inputs
from storyedge.run_dir import load_bundle
from storyedge.runtime import beam_search, build_reference, find_spec, load_backend, open_export
from storyedge.runtime.specs import CPU_PROVIDER, LAYOUTS

MULTI_VALUE_OPTIONS = ("--images", "--captions")


class _MultiValueCommand(click.Command):
    """Lets ``--images`` / ``--captions`` take several values (``--images a b c``): click options
    take one value each, so ``--images a b c`` is rewritten to ``--images a --images b --images c``
    (values run until the next ``--option``)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rewritten: list[str] = []
        current: str | None = None
        for arg in args:
            if arg in MULTI_VALUE_OPTIONS:
                current = arg
                continue
            if arg.startswith("--") or (arg.startswith("-") and len(arg) == 2 and not arg[1].isdigit()):
                current = None
                rewritten.append(arg)
                continue
            if current is not None:
                rewritten.extend([current, arg])
            else:
                rewritten.append(arg)
        return super().parse_args(ctx, rewritten)


@click.command("generate", cls=_MultiValueCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--exports", type=click.Path(path_type=Path), default=None, help="Export directory (tflite / onnx / tf).")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="Training run dir (or its best/ bundle): the tf backend with the trained weights.")
@click.option("--backend", "backend_kind", type=click.Choice(["tf", *EXPORT_FORMATS]), default=None,
              help="Runtime [default: tflite with --exports, tf with --checkpoint].")
@click.option("--precision", type=click.Choice(TFLITE_PRECISIONS), default="fp32",
              show_default=True, help="Exported precision (tflite / onnx).")
@click.option("--layout", type=click.Choice(LAYOUTS[:2]), default=None,
              help="Separate encoder/decoder files or the multi-signature file [default: separate if exported].")
@click.option("--config", "config_path", default=None,
              help="Config YAML: checked against the model; its dataset section is used for --index.")
@click.option("--index", type=int, default=None, help="Window N of the dataset split (prints its true caption too).")
@click.option("--split", default=None, help="Split for --index [default: bench.split].")
@click.option("--images", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="k frame images in story order (several values: --images a.png b.png c.png).")
@click.option("--captions", multiple=True, help="k captions, one per image (several values).")
@click.option("--reason", default="", help="Reason text (models with a reason encoder).")
@click.option("--beam", type=int, default=1, show_default=True, help="Beam width (1: greedy).")
@click.option("--length-penalty", type=float, default=1.0, show_default=True,
              help="Beam ranking: log-prob / length ** this (0: raw log-prob).")
@click.option("--max-len", type=int, default=None, help="Max generated tokens [default: max_caption_len - 1].")
@click.option("--threads", type=int, default=None, help="Runtime threads [default: bench.threads].")
@click.option("--provider", default=None, help="ONNX Runtime execution provider (default CPU).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option("--story", "story_mode", is_flag=True,
              help="Story mode: caption every frame after the first k (each frame encoded once; --index N is "
              "then story N of the split, --images the story's n images).")
@click.option("--feed", type=click.Choice(FEEDS), default="generated", show_default=True,
              help="Story mode: the captions later windows read: the generated ones or the story's own.")
def generate(
    exports: Path | None,
    checkpoint: Path | None,
    backend_kind: str | None,
    precision: str,
    layout: str | None,
    config_path: str | None,
    index: int | None,
    split: str | None,
    images: tuple[str, ...],
    captions: tuple[str, ...],
    reason: str,
    beam: int,
    length_penalty: float,
    max_len: int | None,
    threads: int | None,
    provider: str | None,
    as_json: bool,
    story_mode: bool = False,
    feed: str = "generated",
) -> None:
    """Write caption k+1 for a story (k frames + k captions) with any backend.

    \b
    storyedge generate --exports exports/quickstart --index 0
    storyedge generate --exports exports/quickstart --backend onnx --precision int8-dynamic --beam 4 --index 3
    storyedge generate --checkpoint runs/quickstart --images a.png b.png c.png \\
        --captions "a red circle starts moving left" "the red circle moves left" "the red circle moves left"
    storyedge generate --exports exports/quickstart --story --index 0 --feed generated
    """
    if beam < 1:
        raise UserError(f"--beam: must be >= 1, got {beam}")
    if (exports is None) == (checkpoint is None):
        raise UserError("give exactly one of --exports DIR or --checkpoint RUN_DIR")
    if (index is None) == (not images and not captions):
        raise UserError("give a story: --index N, or --images ... --captions ... (k of each)")
    backend_kind = backend_kind or ("tf" if checkpoint else "tflite")
    if checkpoint is not None and backend_kind != "tf":
        raise UserError(f"--backend {backend_kind} runs exported files: give --exports, not --checkpoint")
    expected = load_config(config_path) if config_path else None

    backend, config, tokenizer, batch = _open_backend(exports, checkpoint, backend_kind, precision, layout, expected,
                                               threads, provider)
    data_cfg = expected or config
    d = config.dataset
    if story_mode:
        if index is not None and index < 0:
            raise UserError(f"--index: must be >= 0, got {index}")
        if index is not None:
            story, texts = split_story(data_cfg, tokenizer, split or data_cfg.bench.split, index)
        else:
            story, texts = cli_story(config, tokenizer, list(images), list(captions), reason, feed)
        generate_story(backend, config, tokenizer, story, texts, batch, feed, beam, length_penalty,
                       max_len or d.max_caption_len - 1, as_json)
        return
    truth = None
    if index is not None:
        if index < 0:
            raise UserError(f"--index: must be >= 0, got {index}")
        inputs, context_captions, truth = _window_story(data_cfg, tokenizer, split or data_cfg.bench.split, index)
    else:
        inputs, context_captions = _cli_story(config, tokenizer, list(images), list(captions), reason)
    inputs = {k: np.repeat(v, batch, axis=0) for k, v in inputs.items()}
    state = backend.encode(inputs)
    max_new = max_len or d.max_caption_len - 1
    hyps = beam_search(backend, state, tokenizer.bos_id, tokenizer.eos_id, max_new, beam, length_penalty)
    best = hyps[0]
    result: dict[str, Any] = {
        "backend": backend.name,
        "beam": beam,
        "context": context_captions,
        "caption": tokenizer.decode(best.caption_ids(tokenizer.eos_id)),
        "tokens": best.tokens,
        "logprob": best.logprob,
        "score": best.score(length_penalty),
        "finished": best.finished,
    }
    if truth is not None:
        result["truth"] = truth
    if beam > 1:
        result["alternatives"] = [
            {"caption": tokenizer.decode(h.caption_ids(tokenizer.eos_id)), "score": h.score(length_penalty)}
            for h in hyps[1:beam]
        ]
    if as_json:
        click.echo(json.dumps(result))
        return
    for i, text in enumerate(context_captions, 1):
        click.echo(f"  {i}. {text}")
    click.echo(f"→ {len(context_captions) + 1}. {result['caption']}")
    click.echo(f"   ({backend.name}, {'greedy' if beam == 1 else f'beam {beam}'}, log-prob {best.logprob:.3f}, "
               f"score {result['score']:.3f})")
    if truth is not None:
        click.echo(f"   true caption: {truth}")


def _open_backend(
    exports: Path | None, checkpoint: Path | None, kind: str, precision: str, layout: str | None,
    expected: Any, threads: int | None, provider: str | None,
) -> tuple[Any, Any, Any, int]:
    """(backend, config, tokenizer, static batch)."""
    if checkpoint is not None:
        import_tensorflow(needed_for="--checkpoint runs the trained Keras model")
        from storyedge.runtime.tf_reference import TFReferenceBackend  # lazy: imports TensorFlow

        bundle = load_bundle(checkpoint, expected)
        return TFReferenceBackend(bundle.model, 1, name="tf"), bundle.config, bundle.tokenizer, 1
    export = open_export(exports, expected)
    threads = threads or export.config.bench.threads
    if kind == "tf":
        return build_reference(export), export.config, export.tokenizer, export.manifest.batch
    spec = find_spec(export, kind, precision, layout)
    providers = None
    if kind == "onnx":
        providers = [provider, CPU_PROVIDER] if provider and provider != CPU_PROVIDER else [CPU_PROVIDER]
    return load_backend(spec, threads, providers), export.config, export.tokenizer, export.manifest.batch


def _window_story(config: Any, tokenizer: Any, split: str, index: int) -> tuple[dict[str, np.ndarray], list[str], str]:
    windows = load_eval_windows(config, tokenizer, split, index + 1)
    n = len(windows["target"])
    if index >= n:
        raise UserError(f"--index {index}: split {split} has only {n} windows")
    inputs = {k: v[index: index + 1] for k, v in windows.items() if k != "target"}
    context = [tokenizer.decode(c[1:]) for c in windows["captions"][index]]
    return inputs, context, tokenizer.decode(windows["target"][index][1:])


def _cli_story(config: Any, tokenizer: Any, images: list[str], captions: list[str], reason: str) -> tuple[dict[str, np.ndarray], list[str]]:
    d = config.dataset
    k = d.seq_len
    if len(images) < k or len(captions) < k:
        raise UserError(
            f"this model reads k = {k} frames and captions; got {len(images)} image(s) and "
            f"{len(captions)} caption(s)"
        )
    images, captions = images[-k:], captions[-k:]
    return story_inputs(config, tokenizer, read_frames(images, d.image_size), captions, reason), captions
