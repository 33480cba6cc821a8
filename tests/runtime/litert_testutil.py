"""A tiny two-signature ``.tflite`` for the LiteRT signature runners' tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

WIDTH = 4


def two_signature_tflite(workdir: Path) -> bytes:
    """One ``.tflite`` with two signatures: ``step`` (batch any, state fed back) and ``scale``."""
    import tensorflow as tf

    weights = np.linspace(-1.0, 1.0, WIDTH * WIDTH, dtype=np.float32).reshape(WIDTH, WIDTH)

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, WIDTH], tf.float32, name="h"),
                                      tf.TensorSpec([None], tf.int32, name="token")])
        def step(self, h: Any, token: Any) -> dict[str, Any]:
            x = tf.tanh(tf.matmul(h, weights) + tf.cast(token, tf.float32)[:, None])
            return {"h_out": x, "logits": 2.0 * x}

        @tf.function(input_signature=[tf.TensorSpec([1, WIDTH], tf.float32, name="x")])
        def scale(self, x: Any) -> dict[str, Any]:
            return {"y": x * 3.0 + 1.0}

    module = Model()
    saved = workdir / "saved"
    tf.saved_model.save(module, str(saved), signatures={"step": module.step, "scale": module.scale})
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved), signature_keys=["step", "scale"])
    return converter.convert()


def interpreter(content: bytes) -> Any:
    """A one-thread LiteRT ``Interpreter`` of ``content``."""
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=content, num_threads=1)


def reference(content: bytes, key: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The outputs of signature ``key`` through a fresh interpreter's ``SignatureRunner``."""
    return interpreter(content).get_signature_runner(key)(**feeds)
