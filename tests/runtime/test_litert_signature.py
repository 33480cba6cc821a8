"""FastSignature: a LiteRT signature run by tensor index once its input shapes are allocated."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from storyedge.runtime.litert_signature import FastSignature

from litert_testutil import WIDTH, interpreter as _interpreter, reference as _reference, two_signature_tflite


@pytest.fixture(scope="module")
def two_signature_model(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return two_signature_tflite(tmp_path_factory.mktemp("fast_signature"))


class _CountingRunner:
    """A SignatureRunner that counts the calls which go through it."""

    def __init__(self, runner: Any) -> None:
        self.runner, self.calls = runner, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.runner, name)

    def __call__(self, **kwargs: np.ndarray) -> dict[str, np.ndarray]:
        self.calls += 1
        return self.runner(**kwargs)


def test_direct_calls_equal_the_runner_and_skip_it_while_shapes_hold(two_signature_model: bytes) -> None:
    interpreter = _interpreter(two_signature_model)
    step, scale = FastSignature(interpreter, "step"), FastSignature(interpreter, "scale")
    assert step.direct and scale.direct  # this ai-edge-litert exposes what the direct path needs
    counting = step._runner = _CountingRunner(step._runner)
    reference = _interpreter(two_signature_model).get_signature_runner("step")
    h = want = np.full((1, WIDTH), 0.25, np.float32)
    for i in range(6):  # the other signature of the same interpreter runs in between
        token = np.array([i], np.int32)
        out, expected = step({"h": h, "token": token}), reference(h=want, token=token)
        np.testing.assert_array_equal(out["logits"], expected["logits"])
        np.testing.assert_array_equal(scale({"x": out["h_out"]})["y"], out["h_out"] * 3.0 + 1.0)
        h, want = out["h_out"], expected["h_out"]
    assert counting.calls == 1  # only the first call allocated


def test_outputs_are_copies_that_later_calls_leave_alone(two_signature_model: bytes) -> None:
    step = FastSignature(_interpreter(two_signature_model), "step")
    h = np.zeros((1, WIDTH), np.float32)
    step({"h": h, "token": np.array([0], np.int32)})
    first = step({"h": h, "token": np.array([1], np.int32)})
    kept = {k: v.copy() for k, v in first.items()}
    step({"h": h, "token": np.array([5], np.int32)})
    for name, value in kept.items():
        np.testing.assert_array_equal(first[name], value)


def test_a_new_batch_goes_through_the_runner_again(two_signature_model: bytes) -> None:
    step = FastSignature(_interpreter(two_signature_model), "step")
    counting = step._runner = _CountingRunner(step._runner)
    rng = np.random.default_rng(0)
    for batch in (1, 3, 3, 1, 1):
        feeds = {"h": rng.standard_normal((batch, WIDTH)).astype(np.float32), "token": np.arange(batch, dtype=np.int32)}
        out = step(feeds)
        assert out["logits"].shape == (batch, WIDTH)
        np.testing.assert_allclose(out["logits"], _reference(two_signature_model, "step", feeds)["logits"], rtol=0, atol=0)
    assert counting.calls == 3  # batch 1, then 3, then 1 again


def test_inputs_are_cast_to_the_signature_dtypes(two_signature_model: bytes) -> None:
    step = FastSignature(_interpreter(two_signature_model), "step")
    feeds64 = {"h": np.full((1, WIDTH), 0.5), "token": np.array([2])}  # float64 / int64
    feeds = {"h": np.full((1, WIDTH), 0.5, np.float32), "token": np.array([2], np.int32)}
    for _ in range(2):  # the runner's call, then the direct one
        np.testing.assert_array_equal(step(feeds64)["logits"], _reference(two_signature_model, "step", feeds)["logits"])


def test_without_the_private_handles_every_call_uses_the_runner(two_signature_model: bytes) -> None:
    step = FastSignature(_interpreter(two_signature_model), "step")
    step._wrapper = None  # as on an ai-edge-litert whose SignatureRunner lacks them
    counting = step._runner = _CountingRunner(step._runner)
    feeds = {"h": np.ones((1, WIDTH), np.float32), "token": np.array([1], np.int32)}
    for _ in range(3):
        np.testing.assert_array_equal(step(feeds)["logits"], _reference(two_signature_model, "step", feeds)["logits"])
    assert not step.direct and counting.calls == 3


