"""The opaque decoder state: a backend whose state has other names than the LSTM's (a memory, a
step counter advanced through its ``<name>_out``, a carried context) runs through decoding,
parity and latency unchanged; a declaration that does not match its signature is refused."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
from bench_testutil import ToyBackend, toy_decoder, toy_windows

from storyedge.bench.latency import measure_latency
from storyedge.bench.parity import run_parity
from storyedge.errors import UserError
from storyedge.manifest import SCHEMA_VERSION, DecoderSpec, ExportedFile, Manifest, SignatureInfo, StateTensor, TensorInfo
from storyedge.runtime import beam_search, greedy_decode, state_batch


def _inputs(n: int = 1) -> dict[str, np.ndarray]:
    return {k: v[:n] for k, v in toy_windows(n).items() if k != "target"}


def test_state_is_what_the_declaration_says() -> None:
    backend = ToyBackend()
    backend.decoder = toy_decoder(6, batch=2)  # exports have a static batch: the declaration says which
    state = backend.encode(_inputs(2))
    assert set(state) == {"memory", "pos", "ctx"}
    assert state["pos"].tolist() == [0, 0] and state["pos"].dtype == np.int32
    assert state_batch(state) == 2
    ctx = state["ctx"].copy()
    for step in range(1, 4):
        _, state = backend.step(np.array([4, 5], np.int32), state)
        assert state["pos"].tolist() == [step, step]  # advanced through pos_out
    assert np.array_equal(state["ctx"], ctx)  # carried unchanged
    assert backend.step_calls == 3


def test_the_counter_changes_the_logits() -> None:
    backend = ToyBackend()
    state = backend.encode(_inputs())
    frozen = {**state, "pos": state["pos"] + 5}
    a, _ = backend.step(np.array([4], np.int32), state)
    b, _ = backend.step(np.array([4], np.int32), frozen)
    assert np.abs(a - b).max() > 1e-3


def test_decoding_parity_and_latency_run_on_foreign_state() -> None:
    backend = ToyBackend()
    state = backend.encode(_inputs())
    greedy = greedy_decode(backend, state, bos_id=2, eos_id=3, max_new=6)[0]
    assert beam_search(backend, state, 2, 3, max_new=6, beam=1)[0].tokens == greedy.tokens
    wide = beam_search(backend, state, 2, 3, max_new=6, beam=3)[0]
    assert wide.score() >= greedy.score() - 1e-9
    windows = toy_windows(4)
    run = run_parity(ToyBackend("ref"), [ToyBackend("copy")], windows, batch=2, pad_id=0, bos_id=2, eos_id=3, max_new=6)
    assert run.results[1].ppl_ratio == 1.0 and run.results[1].greedy_agreement == 1.0
    latency = measure_latency(backend, _inputs(), bos_id=2, caption_tokens=4, warmup=0, runs=2)
    assert latency.step.count == 8


def _signatures(step_out: list[TensorInfo] | None = None) -> tuple[SignatureInfo, SignatureInfo]:
    encoder = SignatureInfo([TensorInfo("frames", [1, 2, 4, 4, 3], "float32")],
                            [TensorInfo("memory0", [1, 6], "float32"), TensorInfo("ctx", [1, 1], "float32")])
    step = SignatureInfo(
        [TensorInfo("tok", [1], "int32"), TensorInfo("memory", [1, 6], "float32"), TensorInfo("pos", [1], "int32"),
         TensorInfo("ctx", [1, 1], "float32")],
        step_out if step_out is not None else
        [TensorInfo("scores", [1, 11], "float32"), TensorInfo("memory_out", [1, 6], "float32"),
         TensorInfo("pos_out", [1], "int32")],
    )
    return encoder, step


def test_a_matching_declaration_passes() -> None:
    toy_decoder(6).check(*_signatures())


def test_a_missing_update_output_is_named() -> None:
    encoder, step = _signatures([TensorInfo("scores", [1, 11], "float32"), TensorInfo("memory_out", [1, 6], "float32")])
    with pytest.raises(UserError, match=r"decoder pos_out: declared in the manifest but not a decoder_step output"):
        toy_decoder(6).check(encoder, step)


def test_a_shape_that_differs_is_named() -> None:
    spec = toy_decoder(6)
    spec.state[0] = StateTensor("memory", [1, 7], "float32", init="encoder", source="memory0", update="memory_out")
    with pytest.raises(UserError, match=r"decoder memory: shape \[1, 6\] .* differs from the declared \[1, 7\]"):
        spec.check(*_signatures())


def test_an_undeclared_step_input_is_named() -> None:
    spec = DecoderSpec(state=toy_decoder(6).state, carried=[], token="tok", logits="scores")
    with pytest.raises(UserError, match="decoder_step input ctx: neither state nor carried"):
        spec.check(*_signatures())


def _manifest_json(**changes: object) -> str:
    encoder, step = _signatures()
    manifest = Manifest(
        storyedge_version="0", batch=1, config={}, tokenizer={}, versions={}, source={},
        files=[], decoder=toy_decoder(6),
    )
    data = json.loads(manifest.to_json())
    data["files"] = [asdict(ExportedFile("tflite/multi.fp32.tflite", "tflite", "multi", "fp32",
                                         {"encoder": encoder, "decoder_step": step}, 1, "x"))]
    data.update(changes)
    return json.dumps(data)


def test_manifest_round_trip_and_newer_minor() -> None:
    manifest = Manifest.from_json(_manifest_json())
    assert manifest.decoder == toy_decoder(6)
    assert manifest.schema_version == SCHEMA_VERSION
    newer = Manifest.from_json(_manifest_json(schema_version="2.7", added_later={"x": 1}))
    assert newer.decoder.state[1].update == "pos_out"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"schema_version": 1}, "schema_version 1 is from an older storyedge"),
        ({"schema_version": "3.0"}, "schema_version 3.0 is not readable by this storyedge"),
        ({"schema_version": None}, "not a storyedge export manifest"),
    ],
)
def test_manifest_of_another_schema_is_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(UserError, match=message):
        Manifest.from_json(_manifest_json(**changes), "x/manifest.json")


def test_manifest_whose_state_does_not_match_its_signature_is_refused() -> None:
    data = json.loads(_manifest_json())
    data["decoder"]["state"][1]["update"] = "position_out"
    with pytest.raises(UserError, match="x/manifest.json: decoder position_out: declared in the manifest but not"):
        Manifest.from_json(json.dumps(data), "x/manifest.json")
