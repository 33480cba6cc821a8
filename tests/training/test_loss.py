"""Padding-masked cross-entropy and perplexity."""

import math

import numpy as np
import pytest
import tensorflow as tf

from storyedge.training.loss import masked_loss, masked_nll_sum, perplexity

PAD = 0


def _case(seed: int = 0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(3, 5, 7)).astype(np.float32) * 3
    labels = np.array(
        [[4, 2, 6, 0, 0], [1, 1, 0, 0, 0], [3, 5, 2, 6, 1]], dtype=np.int32
    )  # 0 = pad
    return logits, labels


def _hand_nll(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean over non-pad positions of -log softmax(logits)[label], in float64."""
    total, count = 0.0, 0
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1]):
            if labels[b, t] == PAD:
                continue
            row = logits[b, t].astype(np.float64)
            log_z = math.log(sum(math.exp(v) for v in row))
            total += log_z - row[labels[b, t]]
            count += 1
    return total / count


def test_masked_loss_equals_hand_computed_nll():
    logits, labels = _case()
    loss = float(masked_loss(logits, labels, PAD))
    assert loss == pytest.approx(_hand_nll(logits, labels), rel=1e-5)
    total, count = masked_nll_sum(logits, labels, PAD)
    assert float(count) == np.count_nonzero(labels)
    assert float(total) / float(count) == pytest.approx(loss, rel=1e-6)


def test_logits_at_pad_positions_do_not_change_the_loss():
    logits, labels = _case()
    before = float(masked_loss(logits, labels, PAD))
    changed = logits.copy()
    changed[labels == PAD] = np.random.default_rng(1).normal(size=changed[labels == PAD].shape) * 50
    assert float(masked_loss(changed, labels, PAD)) == pytest.approx(before, rel=1e-7)
    # even non-finite values at padded positions do not leak into the loss
    changed[labels == PAD] = np.nan
    assert float(masked_loss(changed, labels, PAD)) == pytest.approx(before, rel=1e-7)
    # while a change at a real position does change it
    changed[0, 0, 4] += 5.0
    assert float(masked_loss(changed, labels, PAD)) != pytest.approx(before, rel=1e-3)


def test_loss_is_token_weighted_not_a_mean_of_row_means():
    logits, labels = _case()
    per_row = [_hand_nll(logits[i : i + 1], labels[i : i + 1]) for i in range(3)]
    loss = float(masked_loss(logits, labels, PAD))
    weights = np.count_nonzero(labels, axis=1)
    assert loss == pytest.approx(float(np.average(per_row, weights=weights)), rel=1e-5)
    assert loss != pytest.approx(float(np.mean(per_row)), rel=1e-3)


def test_all_padding_gives_zero_loss_and_count():
    logits, labels = _case()
    total, count = masked_nll_sum(logits, np.zeros_like(labels), PAD)
    assert float(total) == 0.0 and float(count) == 0.0
    assert float(masked_loss(logits, np.zeros_like(labels), PAD)) == 0.0


def test_float16_logits_are_scored_in_float32():
    logits, labels = _case()
    loss16 = float(masked_loss(tf.constant(logits, tf.float16), labels, PAD))
    assert loss16 == pytest.approx(_hand_nll(logits.astype(np.float16), labels), rel=1e-4)


@pytest.mark.parametrize("loss", [0.0, 0.5, 1.7, 6.0, 30.0])
def test_perplexity_is_exp_of_loss(loss):
    assert perplexity(loss) == pytest.approx(math.exp(loss), rel=1e-12)


def test_perplexity_of_an_overflowing_or_nan_loss():
    assert perplexity(1000.0) == math.inf
    assert math.isnan(perplexity(float("nan")))
