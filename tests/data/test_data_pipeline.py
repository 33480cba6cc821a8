"""encode_windows (numpy, no TensorFlow) and make_tf_dataset."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import datasets
import numpy as np
import pytest
from data_testutil import generic_dataset, generic_story
from PIL import Image

from storyedge.config import DatasetConfig
from storyedge.data.pipeline import WindowArrays, encode_windows, make_tf_dataset, normalize_frames
from storyedge.errors import DataError
from storyedge.tokenizer import StoryTokenizer

CFG = DatasetConfig(seq_len=3, image_size=16, max_caption_len=16, max_reason_len=24)


@pytest.fixture(scope="module")
def train_arrays(tiny_synthetic: datasets.DatasetDict, tokenizer: StoryTokenizer) -> WindowArrays:
    return encode_windows(tiny_synthetic["train"], tokenizer, CFG)


def test_shapes_and_dtypes(train_arrays: WindowArrays, tiny_synthetic: datasets.DatasetDict) -> None:
    expected_n = sum(n - 3 for n in tiny_synthetic["train"]["frame_count"])
    a = train_arrays
    assert len(a) == expected_n
    assert a.frames.shape == (expected_n, 3, 16, 16, 3) and a.frames.dtype == np.float32
    assert a.captions.shape == (expected_n, 3, 16) and a.captions.dtype == np.int32
    assert a.reason.shape == (expected_n, 24) and a.reason.dtype == np.int32
    assert a.target.shape == (expected_n, 16) and a.target.dtype == np.int32
    assert len(a.story_ids) == len(a.target_text) == expected_n
    assert a.frames.min() >= -1.0 and a.frames.max() <= 1.0
    assert a.frames.min() < -0.8 and a.frames.max() > 0.8  # dark background, bright shapes


def test_window_order_and_content(
    train_arrays: WindowArrays, tiny_synthetic: datasets.DatasetDict, tokenizer: StoryTokenizer
) -> None:
    first = tiny_synthetic["train"][0]
    n0 = first["frame_count"]
    assert train_arrays.story_ids[: n0 - 3] == [first["story_id"]] * (n0 - 3)
    assert list(train_arrays.starts[: n0 - 3]) == list(range(n0 - 3))
    # window 1 of story 0: frames/captions 1..3, target caption 4
    w = 1
    for j in range(3):
        expected = np.asarray(first["frames"][1 + j].convert("RGB").resize((16, 16), Image.BILINEAR))
        np.testing.assert_array_equal(train_arrays.frames[w, j], expected.astype(np.float32) / 127.5 - 1)
        assert list(train_arrays.captions[w, j]) == tokenizer.encode_caption(first["captions"][1 + j], 16)
    assert train_arrays.target_text[w] == first["captions"][4]
    assert tokenizer.decode(train_arrays.target[w][1:]) == first["captions"][4]
    assert list(train_arrays.reason[w]) == tokenizer.encode_text(first["reason"], 24)


def test_target_framing(train_arrays: WindowArrays, tokenizer: StoryTokenizer) -> None:
    for row in train_arrays.target:
        assert row[0] == tokenizer.bos_id
        eos = list(row).index(tokenizer.eos_id)
        assert 1 < eos < 16
        assert all(t == tokenizer.pad_id for t in row[eos + 1 :])
        assert tokenizer.pad_id not in row[:eos]


def test_long_captions_are_truncated_but_keep_eos(tokenizer: StoryTokenizer) -> None:
    story = generic_story("long", 4)
    story["captions"][3] = " ".join(["caption number"] * 30)
    arrays = encode_windows(generic_dataset([story]), tokenizer, DatasetConfig(seq_len=3, max_caption_len=8))
    assert arrays.target.shape == (1, 8)
    assert arrays.target[0, 0] == tokenizer.bos_id and arrays.target[0, -1] == tokenizer.eos_id


def test_max_windows_takes_the_first(train_arrays: WindowArrays, tiny_synthetic: datasets.DatasetDict, tokenizer: StoryTokenizer) -> None:
    few = encode_windows(tiny_synthetic["train"], tokenizer, CFG, max_windows=5)
    assert len(few) == 5
    np.testing.assert_array_equal(few.frames, train_arrays.frames[:5])
    np.testing.assert_array_equal(few.target, train_arrays.target[:5])
    taken = train_arrays.take(5)
    np.testing.assert_array_equal(taken.frames, few.frames)
    assert taken.frame_pool.shape[0] < train_arrays.frame_pool.shape[0]


def test_encode_errors(tokenizer: StoryTokenizer) -> None:
    with pytest.raises(DataError, match=r"no story has at least k\+1 = 4"):
        encode_windows(generic_dataset([generic_story("a", 3)]), tokenizer, CFG)
    with pytest.raises(DataError, match="no stories"):
        encode_windows(generic_dataset([generic_story("a", 3)]).select([]), tokenizer, CFG)


def test_normalize_frames_range() -> None:
    pixels = np.array([0, 127, 128, 255], dtype=np.uint8)
    out = normalize_frames(pixels)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [-1.0, 127 / 127.5 - 1, 128 / 127.5 - 1, 1.0], atol=1e-6)


def test_encode_windows_does_not_import_tensorflow() -> None:
    code = textwrap.dedent(
        """
        import sys
        from storyedge.config import DatasetConfig
        from storyedge.data import encode_windows, generate_synthetic_dataset
        from storyedge.tokenizer import train_wordpiece
        ds = generate_synthetic_dataset(3, seed=0, frame_size=16)["train"]
        tok = train_wordpiece([c for caps in ds["captions"] for c in caps], vocab_size=100)
        arrays = encode_windows(ds, tok, DatasetConfig(image_size=8))
        assert len(arrays) >= 2, len(arrays)
        assert "tensorflow" not in sys.modules, "tensorflow was imported"
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


def test_tf_dataset_training_batches(train_arrays: WindowArrays) -> None:
    ds = make_tf_dataset(train_arrays, batch_size=8, shuffle=True, seed=1)
    spec = ds.element_spec
    assert spec["frames"].shape.as_list() == [8, 3, 16, 16, 3]
    assert spec["target"].shape.as_list() == [8, 16]
    batches = list(ds.as_numpy_iterator())
    assert len(batches) == len(train_arrays) // 8
    for b in batches:
        assert b["frames"].shape == (8, 3, 16, 16, 3) and b["frames"].dtype == np.float32
        assert b["captions"].shape == (8, 3, 16) and b["reason"].shape == (8, 24)
        assert b["target"].dtype == np.int32
    # same seed → same order; each batch's frames match their windows exactly
    again = list(make_tf_dataset(train_arrays, batch_size=8, shuffle=True, seed=1).as_numpy_iterator())
    np.testing.assert_array_equal(batches[0]["target"], again[0]["target"])
    frames_by_target = {}
    for i in range(len(train_arrays)):
        frames_by_target.setdefault(train_arrays.captions[i].tobytes() + train_arrays.target[i].tobytes(), []).append(i)
    b = batches[0]
    for j in range(8):
        key = b["captions"][j].tobytes() + b["target"][j].tobytes()
        assert any(np.array_equal(b["frames"][j], train_arrays.frames[i]) for i in frames_by_target[key])


def test_tf_dataset_eval_keeps_order_and_last_batch(train_arrays: WindowArrays) -> None:
    ds = make_tf_dataset(train_arrays, batch_size=8, shuffle=False, seed=0)
    batches = list(ds.as_numpy_iterator())
    assert len(batches) == -(-len(train_arrays) // 8)
    assert batches[-1]["target"].shape[0] == len(train_arrays) - 8 * (len(batches) - 1)
    np.testing.assert_array_equal(np.concatenate([b["target"] for b in batches]), train_arrays.target)
    np.testing.assert_array_equal(np.concatenate([b["frames"] for b in batches]), train_arrays.frames)


def test_tf_dataset_too_few_windows_for_a_training_batch(train_arrays: WindowArrays) -> None:
    with pytest.raises(DataError, match="fewer than one batch"):
        make_tf_dataset(train_arrays.take(3), batch_size=8, shuffle=True, seed=0)
