"""``--vocab-shortlist``: shortlisted decoder steps beside the full ones; decoding maps ids back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from storyedge.errors import UserError
from storyedge.export.shortlist import parse_ids_file, training_caption_ids
from storyedge.runtime import greedy_decode, load_backend, open_export
from storyedge.runtime.specs import SHORTLIST_GRAPH


@pytest.fixture(scope="module")
def shortlist_export(export_env: Any) -> Path:
    from storyedge.export import export_from_checkpoint

    out = export_env.root / "shortlist"
    export_from_checkpoint(export_env.run_dir, out, formats="all", quantize="none", validation_windows=2,
                           progress=False, vocab_shortlist="auto")
    return out


def test_auto_shortlist_is_the_training_captions_ids_beside_full_files(shortlist_export: Path, export_env: Any) -> None:
    export = open_export(shortlist_export)
    record = export.manifest.vocab_shortlist
    tok = export.tokenizer
    expected = training_caption_ids(export_env.config, tok) | {tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id}
    assert record["ids"] == sorted(expected) and record["size"] == len(expected) < tok.vocab_size
    assert record["vocab_size"] == tok.vocab_size == export.vocab_size  # the full step still defines V
    graphs = {(f.format, f.graph) for f in export.manifest.files}
    assert {("tflite", "decoder_step"), ("onnx", "decoder_step"), ("tflite", SHORTLIST_GRAPH),
            ("onnx", SHORTLIST_GRAPH)} <= graphs
    for f in export.manifest.files:
        if f.graph == SHORTLIST_GRAPH:
            assert f.validation["passed"], f.validation
            logits = next(t for t in f.signatures["decoder_step"].outputs if t.name == "logits")
            assert logits.shape == [1, len(expected)]
    names = [s.name for s in export.specs]
    assert "tflite-fp32" in names and "tflite-fp32-shortlist" in names and "onnx-fp32-shortlist" in names


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_shortlist_logits_and_greedy_map_back_to_vocabulary_ids(shortlist_export: Path, fmt: str) -> None:
    export = open_export(shortlist_export)
    spec = {s.name: s for s in export.specs}
    full, short = load_backend(spec[f"{fmt}-fp32"], threads=1), load_backend(spec[f"{fmt}-fp32-shortlist"], threads=1)
    ids = np.asarray(export.manifest.vocab_shortlist["ids"])
    assert np.array_equal(short.vocab_ids, ids) and full.vocab_ids is None
    rng = np.random.default_rng(0)
    d = export.config.dataset
    inputs = {"frames": rng.random((1, d.seq_len, d.image_size, d.image_size, 3), np.float32),
              "captions": rng.choice(ids, (1, d.seq_len, d.max_caption_len)).astype(np.int32),
              "reason": rng.choice(ids, (1, d.max_reason_len)).astype(np.int32)}
    bos, eos = export.tokenizer.bos_id, export.tokenizer.eos_id
    state_full, state_short = full.encode(inputs), short.encode(inputs)
    token = np.full((1,), bos, np.int32)
    for _ in range(4):  # same token fed to both: the shortlist's logits are the full ones at its ids
        lf, state_full = full.step(token, state_full)
        ls, state_short = short.step(token, state_short)
        np.testing.assert_allclose(ls, lf[:, ids], atol=1e-4)
        token = short.token_ids(ls.argmax(-1))
        assert token[0] == ids[lf[:, ids].argmax(-1)[0]]
    hyp = greedy_decode(short, short.encode(inputs), bos, eos, 6)[0]
    assert hyp.tokens and set(hyp.tokens) <= set(ids.tolist())
    # greedy over the full step restricted to the shortlist picks the same vocabulary ids
    state, token, want = full.encode(inputs), np.full((1,), bos, np.int32), []
    for _ in range(len(hyp.tokens)):
        logits, state = full.step(token, state)
        token = np.asarray([ids[logits[0, ids].argmax()]], np.int32)
        want.append(int(token[0]))
    assert hyp.tokens == want


def test_shortlist_file_is_checked(tmp_path: Path) -> None:
    good = tmp_path / "ids.txt"
    good.write_text("5, 3 9\n3")
    assert parse_ids_file(good, 10) == [5, 3, 9, 3]
    (tmp_path / "ids.json").write_text(json.dumps([1, 2]))
    assert parse_ids_file(tmp_path / "ids.json", 10) == [1, 2]
    for text, message in (("1 2 x", "not a list of integer"), ("1 12", "outside the vocabulary"), ("", "no token ids")):
        good.write_text(text)
        with pytest.raises(UserError, match=message):
            parse_ids_file(good, 10)
    with pytest.raises(UserError, match="file not found"):
        parse_ids_file(tmp_path / "missing.txt", 10)
