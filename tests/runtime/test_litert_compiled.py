"""CompiledSignature / load_compiled_model: LiteRT's CompiledModel with XNNPACK's weight cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from storyedge.errors import UserError
from storyedge.runtime.litert_compiled import (
    CompiledSignature,
    compiled_model_available,
    load_compiled_model,
    native_stderr_captured,
)

from litert_testutil import WIDTH, reference, two_signature_tflite

pytestmark = pytest.mark.skipif(not compiled_model_available(), reason="this ai-edge-litert has no CompiledModel")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    workdir = tmp_path_factory.mktemp("compiled_signature")
    content = two_signature_tflite(workdir)
    path = workdir / "two.tflite"
    path.write_bytes(content)
    return path, content


def test_calls_equal_the_interpreter_with_both_signatures_of_one_model(model_file: tuple[Path, bytes]) -> None:
    path, content = model_file
    model = load_compiled_model(path, threads=1)
    step, scale = CompiledSignature(model, "step"), CompiledSignature(model, "scale")
    assert step.direct and scale.direct  # this ai-edge-litert exposes the raw bindings
    h = np.full((1, WIDTH), 0.25, np.float32)
    for i in range(4):  # the other signature of the same model runs in between
        feeds = {"h": h, "token": np.array([i], np.int32)}
        out, want = step(feeds), reference(content, "step", feeds)
        assert set(out) == {"h_out", "logits"}
        for name in out:
            assert out[name].shape == want[name].shape and out[name].dtype == np.float32
            np.testing.assert_array_equal(out[name], want[name])
        np.testing.assert_array_equal(scale({"x": out["h_out"]})["y"], out["h_out"] * 3.0 + 1.0)
        h = out["h_out"]


def test_a_new_batch_resizes_and_outputs_stay_the_callers(model_file: tuple[Path, bytes]) -> None:
    path, content = model_file
    step = CompiledSignature(load_compiled_model(path, threads=1), "step")
    rng = np.random.default_rng(0)
    kept = []
    for batch in (1, 3, 3, 1, 2):
        feeds = {"h": rng.standard_normal((batch, WIDTH)), "token": np.arange(batch)}  # float64 / int64: cast
        out = step(feeds)
        assert out["logits"].shape == (batch, WIDTH)
        want = reference(content, "step", {"h": feeds["h"].astype(np.float32), "token": feeds["token"].astype(np.int32)})
        np.testing.assert_array_equal(out["logits"], want["logits"])
        kept.append((out, {k: v.copy() for k, v in out.items()}))
    for out, copy in kept:  # later calls never wrote into an earlier call's outputs
        for name in out:
            np.testing.assert_array_equal(out[name], copy[name])


def test_the_public_wrappers_give_the_same_outputs(model_file: tuple[Path, bytes]) -> None:
    path, content = model_file
    step = CompiledSignature(load_compiled_model(path, threads=1), "step")
    step._run = None  # as on an ai-edge-litert without the raw bindings
    assert not step.direct
    for batch in (1, 2):
        feeds = {"h": np.ones((batch, WIDTH), np.float32), "token": np.arange(batch, dtype=np.int32)}
        np.testing.assert_array_equal(step(feeds)["logits"], reference(content, "step", feeds)["logits"])


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_file_litert_cannot_load_is_a_user_error_naming_it(
        model_file: tuple[Path, bytes], tmp_path: Path, damage: str) -> None:
    bad = tmp_path / "broken.tflite"
    # a truncated flatbuffer crashes CompiledModel itself: the file must be refused before it
    bad.write_bytes(b"not a flatbuffer" * 8 if damage == "garbage" else model_file[1][: len(model_file[1]) // 2])
    with pytest.raises(UserError, match="broken.tflite: LiteRT cannot load this file"):
        load_compiled_model(bad, threads=1)


def test_native_stderr_is_captured_and_restored(capfd: pytest.CaptureFixture[str]) -> None:
    with native_stderr_captured() as log:
        os.write(2, b"native noise\n")
    os.write(2, b"after\n")
    assert log == ["native noise\n"]
    assert capfd.readouterr().err == "after\n"
