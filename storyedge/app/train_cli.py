"""``storyedge train``: the click command (TensorFlow is imported only when it runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from storyedge.config import SYNTHETIC_DATASET, load_config
from storyedge.constants import FUSION_MODES, STRATEGIES
from storyedge.devices import DEVICE_CHOICES, PRECISION_CHOICES
from storyedge.run_dir import CONFIG_FILE
from storyedge.training.run import run_training  # imports TensorFlow only when called
from storyedge.training.signals import TrainingInterrupted

#: CLI option → dotted config key.
OVERRIDES = {
    "save_dir": "training.save_dir",
    "epochs": "training.epochs",
    "batch_size": "dataset.batch_size",
    "lr": "training.lr",
    "fusion": "model.fusion",
    "max_seconds": "training.max_train_seconds",
}


def resolve_config(config_path: str | None, **options: Any):
    """The config file (default: the shipped quickstart.yaml) with the CLI overrides applied."""
    cfg = load_config(config_path)
    overrides = {OVERRIDES[k]: v for k, v in options.items() if k in OVERRIDES and v is not None}
    dataset = options.get("dataset")
    if dataset is not None:
        overrides["dataset.name"] = dataset
        if dataset != SYNTHETIC_DATASET:
            # the config's path is a local copy of *its* dataset (quickstart: the synthetic cache)
            overrides["dataset.path"] = None
    return cfg.replace(**overrides) if overrides else cfg


@click.command(name="train")
@click.option("--config", "config_path", metavar="PATH",
              help="YAML config file or shipped config name (default: quickstart.yaml).")
@click.option("--device", type=click.Choice(list(DEVICE_CHOICES)), default="auto", show_default=True,
              help="auto: CUDA / Metal GPU when TensorFlow sees one, else CPU. An explicit device "
                   "that is absent is an error.")
@click.option("--strategy", type=click.Choice(list(STRATEGIES)), default=None,
              help="tf.distribute strategy [training.strategy, default auto]: auto = mirrored when "
                   "TensorFlow sees more than one GPU, else default (one device); multi-worker reads "
                   "TF_CONFIG (one process per worker).")
@click.option("--precision", type=click.Choice(list(PRECISION_CHOICES)), default="float32",
              show_default=True, help="mixed_float16 needs a CUDA GPU (loss scaling is automatic).")
@click.option("--save-dir", metavar="DIR", help="Run directory [training.save_dir].")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs to train [training.epochs].")
@click.option("--batch-size", type=click.IntRange(min=1), help="Batch size [dataset.batch_size].")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Adam learning rate [training.lr].")
@click.option("--dataset", metavar="NAME_OR_PATH",
              help="'synthetic', a hub dataset name or a local directory [dataset.name].")
@click.option("--fusion", type=click.Choice(FUSION_MODES),
              help="Fusion mode; concat and text_only are ablations [model.fusion].")
@click.option("--resume", is_flag=True,
              help="Continue the run in --save-dir from its latest checkpoint (same optimizer "
                   "state, step counter and position in the epoch).")
@click.option("--max-seconds", type=click.FloatRange(min=0),
              help="Training time budget; the epoch in progress finishes [training.max_train_seconds].")
@click.option("--no-progress", is_flag=True, help="No progress bars (logs only).")
@click.pass_context
def train(ctx: click.Context, config_path: str | None, device: str, precision: str,
          resume: bool, no_progress: bool, strategy: str | None, **options: Any) -> None:
    """Train the fusion model and keep the best epoch (by validation loss).

    The run directory gets config.yaml, tokenizer/, checkpoints/, best/ (the bundle export and
    bench load), history.json / history.csv, curves.png, tensorboard/ and summary.json.
    Ctrl-C saves a checkpoint; continue with --resume. Under --strategy multi-worker only the
    chief writes the run directory, which every worker must see (shared storage) to --resume.
    """
    cfg = resolve_config(config_path, **options)
    try:
        run_training(cfg, device=device, precision=precision, resume=resume, progress=not no_progress,
                     strategy=strategy)
    except TrainingInterrupted as exc:
        run_dir = Path(cfg.training.save_dir)
        click.echo(
            f"interrupted at step {exc.step}: checkpoint saved ({exc.checkpoint}).\n"
            f"resume with: storyedge train --config {run_dir / CONFIG_FILE} "
            f"--save-dir {run_dir} --resume",
            err=True,
        )
        ctx.exit(130)

