"""The unigram baseline counts exactly the tokens the decoder is scored on."""

import math

import numpy as np
import pytest

from storyedge.training.unigram import fit_unigram, predicted_tokens, unigram_perplexity

PAD, BOS, EOS = 0, 2, 3
V = 8


def test_predicted_tokens_skip_bos_and_padding():
    targets = np.array([[BOS, 5, 6, EOS, PAD], [BOS, 7, EOS, PAD, PAD]])
    assert predicted_tokens(targets, PAD).tolist() == [5, 6, EOS, 7, EOS]


def test_unigram_perplexity_matches_hand_computation():
    train = np.array([[BOS, 5, 5, EOS, PAD], [BOS, 6, EOS, PAD, PAD]])  # 5 x2, 6 x1, EOS x2
    val = np.array([[BOS, 5, 7, EOS, PAD]])  # 7 never seen in train
    alpha = 1.0
    # add-one over the V-1 non-pad ids: total = 5 tokens + 7 * alpha
    denom = 5 + (V - 1) * alpha
    p = {5: (2 + alpha) / denom, 7: (0 + alpha) / denom, EOS: (2 + alpha) / denom}
    expected = math.exp(-(math.log(p[5]) + math.log(p[7]) + math.log(p[EOS])) / 3)
    assert unigram_perplexity(train, val, V, PAD, alpha) == pytest.approx(expected, rel=1e-12)


def test_pad_gets_no_mass_and_probabilities_sum_to_one():
    train = np.array([[BOS, 5, 5, EOS, PAD]])
    model = fit_unigram(train, V, PAD)
    probs = np.exp(model.log_probs)
    assert probs[PAD] == 0.0
    assert probs.sum() == pytest.approx(1.0)
    assert model.train_tokens == 3


def test_a_peaked_distribution_has_a_low_perplexity():
    train = np.array([[BOS] + [5] * 50 + [EOS]])
    val = np.array([[BOS, 5, 5, 5, 5, PAD]])
    assert unigram_perplexity(train, val, V, PAD, alpha=0.01) < 1.1
