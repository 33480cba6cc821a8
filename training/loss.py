"""Padding-masked sparse cross-entropy and perplexity.

The model predicts ``target[:, 1:]`` from ``target[:, :-1]``; every target position that holds
``pad_id`` is ignored. The loss is the mean token NLL over the *real* target tokens of a batch
(token-weighted, not a mean of per-row means), and perplexity is ``exp(loss)``.

:func:`masked_nll_sum` returns the (sum, count) pair so that callers can aggregate exactly over
many batches (validation: sum of sums / sum of counts over the whole split).
"""

from __future__ import annotations

import math
from typing import Any

import tensorflow as tf

#: exp() of a loss above this overflows a float64; perplexity is then reported as inf.
_MAX_EXP = 709.0


def masked_nll_sum(logits: Any, labels: Any, pad_id: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Sum of the NLL over non-pad labels and the number of non-pad labels (both float32).

    ``logits`` [B, T, V] (any float dtype: cast to float32 so mixed precision is stable),
    ``labels`` [B, T] int.
    """
    labels = tf.cast(labels, tf.int32)
    logits = tf.cast(logits, tf.float32)
    real = tf.not_equal(labels, pad_id)
    nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    # where, not multiply: a non-finite value at a pad position must not leak (nan * 0 = nan)
    total = tf.reduce_sum(tf.where(real, nll, tf.zeros_like(nll)))
    return total, tf.reduce_sum(tf.cast(real, tf.float32))


def masked_loss(logits: Any, labels: Any, pad_id: int) -> tf.Tensor:
    """Mean NLL over the non-pad labels of the batch (0 when there are none)."""
    total, count = masked_nll_sum(logits, labels, pad_id)
    return total / tf.maximum(count, 1.0)


def split_target(target: Any) -> tuple[Any, Any]:
    """``(decoder inputs target[:, :-1], labels target[:, 1:])`` of a ``[BOS] ... [EOS]`` target."""
    return target[:, :-1], target[:, 1:]


def perplexity(loss: float) -> float:
    """``exp(loss)``; ``inf`` when that overflows, ``nan`` for a nan loss."""
    loss = float(loss)
    if math.isnan(loss):
        return math.nan
    return math.exp(loss) if loss < _MAX_EXP else math.inf
