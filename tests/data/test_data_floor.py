"""The data's PPL floor: closed form, merged token sequences, Monte-Carlo agreement, bad input."""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import datasets
import pytest

from storyedge.data.floor import data_floor, window_distribution
from storyedge.data.oracle import next_event_from_window
from storyedge.data.paraphrase import caption_options
from storyedge.data.synthetic import generate_synthetic_dataset
from storyedge.data.windows import iter_raw_rows
from storyedge.errors import DataError
from storyedge.tokenizer import StoryTokenizer, train_wordpiece

K, MAX_LEN = 3, 13


def _whole_word_tokenizer(ds: datasets.DatasetDict) -> StoryTokenizer:
    texts = [c for split in ds.values() for caps in split["captions"] for c in caps]
    return train_wordpiece(texts + [r for split in ds.values() for r in split["reason"]], vocab_size=2000)


@pytest.fixture(scope="module")
def stories() -> datasets.DatasetDict:
    """300 stories at 32 px: about 700 train windows of k = 3."""
    return generate_synthetic_dataset(300, seed=21, frame_size=32)


class OneTokenTokenizer:
    """Every caption encodes to [BOS] 7 [EOS]: all paraphrases merge into one outcome."""

    pad_id, bos_id, eos_id = 0, 1, 2

    def encode_caption(self, text: str, max_len: int) -> list[int]:
        return [1, 7, 2] + [0] * (max_len - 3)

    def encode_text(self, text: str, max_len: int) -> list[int]:
        return [0] * max_len


def test_window_distribution_is_the_paraphrase_distribution(tiny_synthetic: datasets.DatasetDict) -> None:
    tok = _whole_word_tokenizer(tiny_synthetic)
    row = next(iter_raw_rows(tiny_synthetic["train"]))
    captions, last = row["captions"][:K], row["frames"][K - 1]["bytes"]
    dist = window_distribution(captions, last, tok, MAX_LEN)
    event = next_event_from_window(captions, last)
    assert dist is not None and event is not None
    options = caption_options(event)
    # one outcome per paraphrase; its ids are the caption's words then [EOS], with its probability
    assert sorted(dist.values()) == sorted(o.prob for o in options)
    for option in options:
        ids = tuple(tok.encode_caption(option.text, MAX_LEN)[1:])
        ids = tuple(i for i in ids if i != tok.pad_id)
        assert len(ids) == len(option.text.split()) + 1 and ids[-1] == tok.eos_id
        assert dist[ids] == option.prob


def test_floor_closed_form_matches_a_hand_computation(stories: datasets.DatasetDict) -> None:
    tok = _whole_word_tokenizer(stories)
    floor = data_floor(stories["validation"], tok, K, MAX_LEN, "validation")
    entropies, tokens = [], []
    for row in iter_raw_rows(stories["validation"]):
        for s in range(len(row["captions"]) - K):
            event = next_event_from_window(row["captions"][s : s + K], row["frames"][s + K - 1]["bytes"])
            options = caption_options(event)
            entropies.append(-sum(o.prob * math.log(o.prob) for o in options))
            tokens.append(sum(o.prob * (len(o.text.split()) + 1) for o in options))  # + [EOS]
    assert floor.windows == len(entropies)
    assert floor.mean_entropy == pytest.approx(sum(entropies) / len(entropies), rel=1e-9)
    assert floor.mean_tokens == pytest.approx(sum(tokens) / len(tokens), rel=1e-9)
    assert floor.floor_ppl == pytest.approx(math.exp(sum(entropies) / sum(tokens)), rel=1e-9)


def test_floor_closed_form_agrees_with_monte_carlo(stories: datasets.DatasetDict) -> None:
    """Mean -log p(written caption) over the generator's own samples estimates the mean entropy."""
    tok = _whole_word_tokenizer(stories)
    floor = data_floor(stories["train"], tok, K, MAX_LEN, "train")
    assert floor.windows > 600
    assert math.isfinite(floor.mc_mean_entropy)  # every written caption is a possible outcome
    assert abs(floor.mean_entropy - floor.mc_mean_entropy) <= 3 * floor.mc_standard_error
    assert 0.0 < floor.mc_standard_error < 0.05
    # three templates per event at 0.7 / 0.2 / 0.1: 0.80 nats per caption, a low floor
    assert floor.mean_entropy == pytest.approx(0.8018, abs=1e-3)
    assert 1.05 < floor.floor_ppl < 1.2
    assert abs(floor.mc_floor_ppl - floor.floor_ppl) < 0.02
    em_se = math.sqrt(0.7 * 0.3 / floor.windows)
    assert abs(floor.oracle_exact_match - 0.7) <= 3 * em_se


def test_paraphrases_that_tokenise_alike_merge(stories: datasets.DatasetDict) -> None:
    floor = data_floor(stories["validation"], OneTokenTokenizer(), K, MAX_LEN, "validation")
    assert floor.mean_entropy == pytest.approx(0.0, abs=1e-12) and floor.floor_ppl == pytest.approx(1.0)
    assert floor.mean_tokens == pytest.approx(2.0)  # the token and [EOS]
    assert floor.oracle_exact_match == 1.0


def test_max_windows_takes_the_first(stories: datasets.DatasetDict) -> None:
    tok = _whole_word_tokenizer(stories)
    assert data_floor(stories["validation"], tok, K, MAX_LEN, "validation", max_windows=5).windows == 5


def test_an_eval_split_with_no_windows_is_an_error_naming_it(tiny_synthetic: datasets.DatasetDict) -> None:
    tok = _whole_word_tokenizer(tiny_synthetic)
    with pytest.raises(DataError, match="validation split has no windows"):
        data_floor(tiny_synthetic["validation"], tok, 7, MAX_LEN, "validation")
    empty = tiny_synthetic["test"].select([])
    with pytest.raises(DataError, match="test split has no windows"):
        data_floor(empty, tok, K, MAX_LEN, "test")


def test_a_window_from_elsewhere_is_an_error(tiny_synthetic: datasets.DatasetDict) -> None:
    rows = tiny_synthetic["validation"]
    other = rows.map(lambda r: {"captions": ["caption"] * len(r["captions"])})
    with pytest.raises(DataError, match="not a synthetic-world window"):
        data_floor(other, OneTokenTokenizer(), K, MAX_LEN, "validation")


def test_data_info_exits_2_naming_the_empty_eval_split(tmp_path: Path) -> None:
    from storyedge.app.cli import main

    config = tmp_path / "cfg.yaml"
    config.write_text(
        f"dataset:\n  name: synthetic\n  path: {tmp_path / 'syn'}\n  synthetic_stories: 10\n  seq_len: 7\n"
    )
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        with pytest.raises(SystemExit) as exit_info:
            main(["data", "info", "--config", str(config)])
    assert exit_info.value.code == 2
    text = err.getvalue()  # (above it: the progress bars of writing the dataset)
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "validation split has no windows" in errors[0] and "Traceback" not in text
