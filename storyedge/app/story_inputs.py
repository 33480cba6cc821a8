"""The model inputs of a story given on the command line: image files, caption texts, a reason."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from storyedge.errors import UserError


def read_frames(paths: list[str], image_size: int) -> np.ndarray:
    """The images at ``paths``, resized and normalised as in training: ``[n, S, S, 3]``.

    An unreadable file is a one-line :class:`UserError` naming it.
    """
    from storyedge.data.pipeline import normalize_frames, resize_frame  # lazy: storyedge.data imports datasets

    frames = []
    for path in paths:
        try:
            with Image.open(path) as image:
                frames.append(resize_frame(image, image_size))
        except (UnidentifiedImageError, OSError) as exc:
            raise UserError(f"{path}: not a readable image ({exc})") from None
    return normalize_frames(np.stack(frames))


def story_inputs(config: Any, tokenizer: Any, frames: np.ndarray, captions: list[str],
                 reason: str) -> dict[str, np.ndarray]:
    """A batch of one: ``{frames [1, ...], captions [1, len(captions), L], reason [1, R]}``; the
    reason only where the model reads one."""
    d = config.dataset
    inputs = {
        "frames": frames[None],
        "captions": np.asarray([[tokenizer.encode_caption(c, d.max_caption_len) for c in captions]], np.int32),
    }
    if config.model.use_reason:
        inputs["reason"] = np.asarray([tokenizer.encode_text(reason, d.max_reason_len)], np.int32)
    return inputs
