"""Validation caption quality during training: greedy captions of the first
``training.quality_windows`` validation windows, scored every epoch (exact match and BLEU-4, from
:mod:`storyedge.captions`).

The captions come from the model being trained, through the same static ``tf.function`` graphs
the exporter converts (:class:`~storyedge.runtime.tf_reference.TFReferenceBackend`, built once:
it reads the live weights), so an epoch's figure is what the exported model would write.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from storyedge.captions.generate import texts, window_captions
from storyedge.captions.scores import CaptionScores
from storyedge.captions.scoring import check_references, score_captions
from storyedge.data.pipeline import WindowArrays
from storyedge.runtime.tf_reference import TFReferenceBackend
from storyedge.training.history import QUALITY_FIELDS



@dataclass
class EpochQuality:
    """One epoch's validation caption quality."""

    scores: CaptionScores
    seconds: float

    def record(self) -> dict[str, float]:
        """The history fields (exact match as a fraction, BLEU-4 in 0-100)."""
        return dict(zip(QUALITY_FIELDS, (self.scores.exact_match, self.scores.bleu4)))


class ValidationCaptions:
    """Greedy validation captions of a model, scored against the validation references."""

    def __init__(self, model: Any, tokenizer: Any, validation: WindowArrays, windows: int, use_reason: bool,
                 max_caption_len: int, batch: int) -> None:
        subset = validation.take(windows)
        self.windows = len(subset)
        self.tokenizer = tokenizer
        self.references = texts(tokenizer, [row[1:] for row in subset.target])
        check_references(self.references, "validation")
        self.inputs = {"frames": subset.frames, "captions": subset.captions}
        if use_reason:
            self.inputs["reason"] = subset.reason
        self.batch = min(self.windows, batch)
        self.max_new = max_caption_len - 1
        self._backend = TFReferenceBackend(model, self.batch, name="training")

    def score(self) -> EpochQuality:
        """Greedy captions with the current weights, scored."""
        start = time.monotonic()
        ids = window_captions(self._backend, self.inputs, batch=self.batch, bos_id=self.tokenizer.bos_id,
                              eos_id=self.tokenizer.eos_id, max_new=self.max_new)
        scores = score_captions(texts(self.tokenizer, ids), self.references, "validation")
        return EpochQuality(scores, time.monotonic() - start)

