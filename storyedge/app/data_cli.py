"""``storyedge data``: generate the synthetic dataset, inspect the configured one."""

from __future__ import annotations

import re
import time
from typing import Any

import click
import numpy as np
from tqdm import tqdm

from storyedge.config import SYNTHETIC_DATASET, Config, load_config
from storyedge.errors import UserError
from storyedge.tokenizer import StoryTokenizer, build_tokenizer

#: A word, for counting word types (punctuation is not one).
WORD = re.compile(r"[a-z]+")
#: The splits the data floor is reported for (the ones models are scored on).
EVAL_SPLITS = ("validation", "test")


@click.group("data")
def data() -> None:
    """Datasets: generate the embedded synthetic stories, inspect the configured dataset."""


@data.command("synth")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Directory to write.")
@click.option("--stories", default=1200, show_default=True, type=int, help="Stories in all splits.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--frame-size", default=64, show_default=True, type=int, help="Frame side in pixels.")
@click.option("--overwrite", is_flag=True, help="Replace an existing directory.")
def synth(out: str, stories: int, seed: int, frame_size: int, overwrite: bool) -> None:
    """Generate the synthetic visual-stories dataset (save_to_disk layout) at OUT."""
    # lazy: storyedge.data imports datasets (slow), and `storyedge data --help` should not wait
    from storyedge.data.synthetic import split_sizes, write_synthetic_dataset

    if stories < 3:
        raise UserError(f"--stories: must be >= 3 (one story per split), got {stories}")
    sizes = split_sizes(stories)
    start = time.perf_counter()
    with tqdm(total=stories, desc="stories", unit="story") as bar:
        path = write_synthetic_dataset(
            out, stories, seed, frame_size=frame_size, overwrite=overwrite, progress=bar.update
        )
    elapsed = time.perf_counter() - start
    click.echo(f"wrote {stories} synthetic stories (seed {seed}, {frame_size}px) to {path}")
    for split, n in sizes.items():
        click.echo(f"  {split:<10} {n:>6} stories")
    click.echo(f"wall time: {elapsed:.1f} s")


@data.command("info")
@click.option(
    "--config",
    "config_path",
    default=None,
    help="Config YAML (path or shipped name); default: the quickstart config.",
)
@click.option(
    "--tokenizer",
    "tokenizer_dir",
    default=None,
    type=click.Path(file_okay=False, exists=True),
    help="A saved tokenizer (a run's tokenizer/ directory) for the data floor; default: the one "
    "training would build from this config.",
)
def info(config_path: str | None, tokenizer_dir: str | None) -> None:
    """Load the configured dataset and print per-split stories, windows and caption lengths;
    for the embedded synthetic stories also the vocabulary and the data's PPL floor."""
    # lazy: storyedge.data imports datasets (slow), and `storyedge data --help` should not wait
    from storyedge.data.loading import load_story_splits
    from storyedge.data.windows import count_windows

    cfg = load_config(config_path)
    d = cfg.dataset
    splits = load_story_splits(d)
    k = d.seq_len
    click.echo(f"dataset: {d.name}" + (f" ({d.path})" if d.path else "") + f"  k={k}")
    header = f"{'split':<10} {'stories':>8} {'windows':>8} {'skipped':>8}   caption words min/mean/p95/max"
    click.echo(header)
    for name, split in splits.items():
        stats = count_windows(split, k)
        lengths = np.array([len(c.split()) for caps in split["captions"] for c in caps], dtype=np.int64)
        if lengths.size:
            words = (
                f"{lengths.min()}/{lengths.mean():.1f}/{int(np.percentile(lengths, 95))}/{lengths.max()}"
            )
        else:
            words = "-"
        click.echo(
            f"{name:<10} {stats.stories:>8} {stats.windows:>8} {stats.skipped_stories:>8}   {words}"
        )
    click.echo(
        f"(skipped: stories shorter than k+1 = {k + 1} frames; captions are truncated to "
        f"dataset.max_caption_len = {d.max_caption_len} tokens incl. [BOS]/[EOS])"
    )
    if d.name == SYNTHETIC_DATASET:
        _synthetic_info(cfg, splits, tokenizer_dir)


def _synthetic_info(cfg: Config, splits: Any, tokenizer_dir: str | None) -> None:
    """Word types over every caption and reason, and the PPL floor of the eval splits."""
    from storyedge.data.floor import data_floor  # lazy: imports datasets (slow)
    from storyedge.training.prepare import tokenizer_texts  # lazy: imports datasets (slow)

    types = {
        word
        for split in splits.values()
        for texts in (*split["captions"], split["reason"])
        for text in texts
        for word in WORD.findall(text.lower())
    }
    click.echo(f"vocabulary: {len(types)} word types over the captions and reasons")
    if tokenizer_dir is not None:
        tokenizer = StoryTokenizer.load(tokenizer_dir)
    else:
        t = cfg.tokenizer
        tokenizer = build_tokenizer(t.name, tokenizer_texts(splits["train"]), t.vocab_size, t.lowercase)
    d = cfg.dataset
    click.echo(
        f"data floor (paraphrase entropy of caption k+1 given its window; {tokenizer.source}, "
        f"vocab {tokenizer.vocab_size}, [EOS] counted):"
    )
    for name in EVAL_SPLITS:
        f = data_floor(splits[name], tokenizer, d.seq_len, d.max_caption_len, name)
        click.echo(
            f"  {name:<10} PPL floor {f.floor_ppl:.3f} (Monte-Carlo {f.mc_floor_ppl:.3f}; entropy "
            f"{f.mean_entropy:.3f} nats, Monte-Carlo {f.mc_mean_entropy:.3f} ± {f.mc_standard_error:.3f}, "
            f"over {f.mean_tokens:.2f} tokens per caption; {f.windows} windows), "
            f"oracle exact match {f.oracle_exact_match:.1%}"
        )
