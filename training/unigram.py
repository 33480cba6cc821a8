"""Unigram baseline: the perplexity of predicting every target token from its train frequency.

Counted on exactly the tokens the model is scored on: ``target[:, 1:]`` (the leading ``[BOS]`` is
given, never predicted) without padding, so the baseline's PPL and the model's PPL are
comparable token for token under the same tokenizer. Add-``alpha`` (Laplace) smoothing over the
whole vocabulary keeps a validation token unseen in train finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class UnigramBaseline:
    """Smoothed unigram log-probabilities fitted on train targets."""

    log_probs: np.ndarray  # [V] float64
    train_tokens: int

    def nll(self, targets: np.ndarray, pad_id: int) -> tuple[float, int]:
        """(sum of NLL, token count) over the predicted, non-pad tokens of ``targets`` [N, L]."""
        labels = predicted_tokens(targets, pad_id)
        return float(-self.log_probs[labels].sum()), int(labels.size)

    def perplexity(self, targets: np.ndarray, pad_id: int) -> float:
        """exp(mean NLL) over the predicted, non-pad tokens of ``targets``."""
        total, count = self.nll(targets, pad_id)
        if count == 0:
            raise ValueError("no target tokens to score")
        return math.exp(total / count)


def predicted_tokens(targets: np.ndarray, pad_id: int) -> np.ndarray:
    """The tokens a decoder predicts: ``targets[:, 1:]`` without padding (1-D int array)."""
    labels = np.asarray(targets)[:, 1:].reshape(-1)
    return labels[labels != pad_id].astype(np.int64)


def fit_unigram(
    train_targets: np.ndarray, vocab_size: int, pad_id: int, alpha: float = 1.0
) -> UnigramBaseline:
    """Token frequencies of the train targets, add-``alpha`` smoothed over ``vocab_size``.

    ``pad_id`` is never predicted, so it gets no probability mass.
    """
    labels = predicted_tokens(train_targets, pad_id)
    counts = np.bincount(labels, minlength=vocab_size).astype(np.float64) + alpha
    counts[pad_id] = 0.0
    with np.errstate(divide="ignore"):
        log_probs = np.log(counts / counts.sum())
    return UnigramBaseline(log_probs=log_probs, train_tokens=int(labels.size))


def unigram_perplexity(
    train_targets: np.ndarray,
    eval_targets: np.ndarray,
    vocab_size: int,
    pad_id: int,
    alpha: float = 1.0,
) -> float:
    """PPL on ``eval_targets`` of the unigram model fitted on ``train_targets``."""
    return fit_unigram(train_targets, vocab_size, pad_id, alpha).perplexity(eval_targets, pad_id)
