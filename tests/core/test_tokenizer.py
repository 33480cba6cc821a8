"""Tokenizer: round trip, special ids, caption framing, BertTokenizerFast compatibility."""

from pathlib import Path

import pytest

from storyedge.errors import UserError
from storyedge.tokenizer import StoryTokenizer, build_tokenizer, load_pretrained, pad_vocabulary, train_wordpiece

TEXTS = [
    "the red circle moves left",
    "the blue square bounces off the top wall",
    "a green triangle appears in the corner",
] * 20


@pytest.fixture(scope="module")
def tokenizer() -> StoryTokenizer:
    return train_wordpiece(TEXTS, vocab_size=200)


def test_special_ids_are_distinct_and_bert_named(tokenizer):
    ids = tokenizer.special_ids
    assert len({ids["pad_id"], ids["unk_id"], ids["bos_id"], ids["eos_id"]}) == 4
    assert ids["pad_id"] == 0  # [PAD] is trained first
    assert tokenizer.vocab_size == ids["vocab_size"] > 20


def test_caption_framing_and_padding(tokenizer):
    ids = tokenizer.encode_caption("the red circle moves left", max_len=10)
    assert len(ids) == 10
    assert ids[0] == tokenizer.bos_id
    eos_at = ids.index(tokenizer.eos_id)
    assert eos_at == 6  # five words, all in the vocabulary as whole pieces
    assert ids[eos_at + 1 :] == [tokenizer.pad_id] * 3


def test_long_caption_is_truncated_but_keeps_eos(tokenizer):
    ids = tokenizer.encode_caption(" ".join(["red circle"] * 20), max_len=6)
    assert len(ids) == 6 and ids[0] == tokenizer.bos_id and ids[-1] == tokenizer.eos_id


def test_round_trip(tokenizer):
    text = "the blue square bounces off the top wall"
    assert tokenizer.decode(tokenizer.encode_caption(text, 16)) == text


def test_unknown_word_maps_to_unk(tokenizer):
    assert tokenizer.unk_id in tokenizer.tokenize("zebra")


def test_save_load_and_bert_tokenizer_fast_compatibility(tokenizer, tmp_path):
    from transformers import BertTokenizerFast

    tokenizer.save(tmp_path)
    again = StoryTokenizer.load(tmp_path)
    assert again.fingerprint() == tokenizer.fingerprint()
    text = "a green triangle appears in the corner"
    hf = BertTokenizerFast.from_pretrained(str(tmp_path))
    assert hf(text)["input_ids"] == tokenizer.encode_caption(text, 9)[:9]
    assert hf.pad_token_id == tokenizer.pad_id and hf.cls_token_id == tokenizer.bos_id


def test_load_missing_dir_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no tokenizer found"):
        StoryTokenizer.load(tmp_path)


def test_bert_base_uncased_uncached_offline_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="not in the Hugging Face cache"):
        build_tokenizer("bert-base-uncased", [], 100)


def test_bert_base_uncased_loads_from_the_hf_cache(monkeypatch, tmp_path, tokenizer):
    """The real loading code reads a cached snapshot (here one we lay out as the hub client does)."""
    snapshot = tmp_path / "models--bert-base-uncased" / "snapshots" / "abc123"
    tokenizer.save(snapshot)
    (tmp_path / "models--bert-base-uncased" / "refs").mkdir()
    (tmp_path / "models--bert-base-uncased" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    loaded = load_pretrained("bert-base-uncased")
    assert loaded.source == "bert-base-uncased"
    assert loaded.fingerprint() == tokenizer.fingerprint()


def test_wordpiece_is_identical_across_processes():
    """Hash-seeded iteration order must not leak into the vocabulary (fixed seeds reproduce runs)."""
    import os
    import subprocess
    import sys

    code = (
        "from storyedge.tokenizer import train_wordpiece\n"
        "texts = ['the red circle moves left', 'the blue square bounces off the top wall',"
        " 'a green triangle appears', 'the red circle takes the blue square'] * 7\n"
        "print(train_wordpiece(texts, 60).fingerprint())\n"
    )
    prints = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        ).stdout.strip()
        for seed in (1, 2, 3)
    }
    assert len(prints) == 1


def test_wordpiece_vocabulary_prefers_frequent_words_and_covers_characters(tokenizer):
    vocab = tokenizer._tok.get_vocab()
    assert {"the", "red", "circle", "##e", "z"} - {"z"} <= set(vocab)
    base = 5 + 2 * len({c for t in TEXTS for c in t.replace(" ", "")})  # specials + chars + ##chars
    small = train_wordpiece(TEXTS, vocab_size=base + 1)
    assert small.vocab_size == base + 1
    assert "the" in small._tok.get_vocab()  # the single most frequent word gets the one free slot
    assert small.decode(small.encode_caption("the corner", 12)) == "the corner"  # pieces fall back to characters


def test_pad_vocabulary_keeps_every_id_and_reaches_v_exactly(tokenizer):
    padded = pad_vocabulary(tokenizer, 30522)
    assert padded.vocab_size == 30522 and len(padded._tok.get_vocab()) == 30522
    assert padded.special_ids == {**tokenizer.special_ids, "vocab_size": 30522}
    vocab = tokenizer._tok.get_vocab()
    assert {t: i for t, i in padded._tok.get_vocab().items() if t in vocab} == vocab  # real words keep their ids
    added = {t: i for t, i in padded._tok.get_vocab().items() if t not in vocab}
    assert sorted(added.values()) == list(range(tokenizer.vocab_size, 30522))
    assert set(added) == {f"[unused{n}]" for n in range(30522 - tokenizer.vocab_size)}
    for text in TEXTS[:3]:
        assert padded.encode_caption(text, 16) == tokenizer.encode_caption(text, 16)
        assert padded.decode(padded.encode_caption(text, 16)) == text


def test_unused_entries_are_never_produced_by_encoding(tokenizer):
    padded = pad_vocabulary(tokenizer, 1000)
    texts = [*TEXTS, "[unused0] [unused7]", "unused0", "##unused3", "the [unused12] zebra"]
    for text in texts:
        assert all(i < tokenizer.vocab_size for i in padded.tokenize(text)), text
        assert padded.tokenize(text) == tokenizer.tokenize(text)


def test_pad_vocabulary_same_size_is_the_tokenizer_and_smaller_is_an_error(tokenizer):
    assert pad_vocabulary(tokenizer, tokenizer.vocab_size) is tokenizer
    with pytest.raises(UserError, match=r"--vocab-size 10 is smaller than the trained WordPiece vocabulary"):
        pad_vocabulary(tokenizer, 10, "--vocab-size")


def test_padded_tokenizer_saves_loads_and_fingerprints_apart(tokenizer, tmp_path):
    from transformers import BertTokenizerFast

    padded = pad_vocabulary(tokenizer, 500)
    padded.save(tmp_path)
    again = StoryTokenizer.load(tmp_path)
    assert again.vocab_size == 500 and again.fingerprint() == padded.fingerprint() != tokenizer.fingerprint()
    assert len((tmp_path / "vocab.txt").read_text().splitlines()) == 500
    text = "the red circle moves left"
    assert BertTokenizerFast.from_pretrained(str(tmp_path))(text)["input_ids"] == tokenizer.encode_caption(text, 7)


def test_build_tokenizer_pads_a_wordpiece_and_refuses_padding_bert():
    built = build_tokenizer("wordpiece", TEXTS, 200, pad_to_vocab_size=4096)
    assert built.vocab_size == 4096
    assert built.tokenize("the red circle") == train_wordpiece(TEXTS, 200).tokenize("the red circle")
    assert build_tokenizer("wordpiece", TEXTS, 200).vocab_size < 200
    with pytest.raises(UserError, match="only pads a trained vocabulary"):
        build_tokenizer("bert-base-uncased", [], 100, pad_to_vocab_size=30522)
