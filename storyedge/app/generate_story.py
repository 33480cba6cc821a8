"""``storyedge generate --story``: caption every frame of a story after the first k, in story mode.

Each frame is encoded once (the per-frame graph, its fused vector cached) and the reason once
per story; per caption only the story graph runs over the last k cached frames, then the
decoder. ``--feed generated`` encodes each written caption for the windows that follow (a story
told by the model), ``--feed given`` the story's own captions (each caption judged alone).
"""

from __future__ import annotations

import json
from typing import Any

import click
import numpy as np

from storyedge.app.story_inputs import read_frames, story_inputs
from storyedge.errors import UserError
from storyedge.runtime import beam_search
from storyedge.runtime.story import caption_story, story_spec_of

FEEDS = ("generated", "given")


def split_story(config: Any, tokenizer: Any, split: str, index: int) -> tuple[dict[str, np.ndarray], list[str]]:
    """Story ``index`` of ``split`` (in the split's order): ``{frames [1, n-1, ...], captions
    [1, n, L], reason [1, R]}`` (frame n's image is not needed) and its n caption texts."""
    from storyedge.data.loading import load_split_windows  # lazy: storyedge.data imports datasets

    windows = load_split_windows(config.dataset, tokenizer, split)
    order = list(dict.fromkeys(windows.story_ids))
    if index >= len(order):
        raise UserError(f"--index {index}: split {split} has only {len(order)} stories")
    rows = [i for i, sid in enumerate(windows.story_ids) if sid == order[index]]
    rows.sort(key=lambda i: int(windows.starts[i]))
    k = windows.k
    frame_ids = [int(windows.frame_index[rows[0], j]) for j in range(k)]
    frame_ids += [int(windows.frame_index[i, k - 1]) for i in rows[1:]]
    caption_ids = [windows.captions[rows[0], j] for j in range(k)]
    caption_ids += [windows.captions[i, k - 1] for i in rows[1:]] + [windows.target[rows[-1]]]
    from storyedge.data.pipeline import normalize_frames  # lazy: storyedge.data imports datasets

    inputs = {
        "frames": normalize_frames(windows.frame_pool[frame_ids])[None],
        "captions": np.asarray(caption_ids, np.int32)[None],
        "reason": windows.reason[rows[0]][None],
    }
    return inputs, [tokenizer.decode(c[1:]) for c in caption_ids]


def cli_story(config: Any, tokenizer: Any, images: list[str], captions: list[str], reason: str,
              feed: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """The story given on the command line: n images, and k captions (``generated``) or at
    least n-1 (``given``); caption n, when given, is shown as the true one."""
    d = config.dataset
    k, n = d.seq_len, len(images)
    need = k if feed == "generated" else n - 1
    if n < k + 1 or len(captions) < need:
        raise UserError(
            f"--story reads n >= k + 1 = {k + 1} images and {'k' if feed == 'generated' else 'n - 1'} captions "
            f"(--feed {feed}); got {n} image(s) and {len(captions)} caption(s)"
        )
    frames = read_frames(images[:-1], d.image_size)  # the last frame's own image is never read
    texts = list(captions[:n])
    return story_inputs(config, tokenizer, frames, texts, reason), texts


def generate_story(backend: Any, config: Any, tokenizer: Any, inputs: dict[str, np.ndarray], texts: list[str],
                   batch: int, feed: str, beam: int, length_penalty: float, max_new: int, as_json: bool) -> None:
    """Caption the story's frames k+1 .. n and print them (text or one JSON object)."""
    story_spec_of(backend)  # a one-line error when the export has no story-mode graphs
    k = config.dataset.seq_len
    inputs = {key: np.repeat(v, batch, axis=0) for key, v in inputs.items()}
    reason = inputs.get("reason") if config.model.use_reason else None

    def decode(state: Any) -> list[int]:
        best = beam_search(backend, state, tokenizer.bos_id, tokenizer.eos_id, max_new, beam, length_penalty)[0]
        return best.caption_ids(tokenizer.eos_id)

    written = caption_story(backend, inputs["frames"], inputs["captions"], reason, decode,
                            tokenizer.special_ids, feed)
    rows = []
    for j, tokens, seconds in written:
        row: dict[str, Any] = {"frame": j + 1, "caption": tokenizer.decode(tokens), "tokens": tokens,
                               "ms": round(seconds * 1e3, 3)}
        if j < len(texts):
            row["truth"] = texts[j]
        rows.append(row)
    if as_json:
        click.echo(json.dumps({"backend": backend.name, "feed": feed, "beam": beam, "context": texts[:k],
                               "captions": rows}))
        return
    for i, text in enumerate(texts[:k], 1):
        click.echo(f"  {i}. {text}")
    for row in rows:
        click.echo(f"→ {row['frame']}. {row['caption']}" + (f"   (true: {row['truth']})" if "truth" in row else ""))
    mean = sum(r["ms"] for r in rows) / len(rows)
    click.echo(f"   ({backend.name}, story mode, --feed {feed}, {'greedy' if beam == 1 else f'beam {beam}'}, "
               f"{len(rows)} caption(s), {mean:.1f} ms each: one new frame + decoding)")
