"""Small hand-built ONNX graphs for the quantization tests: save one, run one. Import it after
``pytest.importorskip("onnx")`` / ``("onnxruntime")``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

#: The opset and IR version every installed converter and ONNX Runtime reads.
OPSET, IR_VERSION = 17, 9


def save_graph(graph: Any, path: Path) -> None:
    """``graph`` as a standard-domain model at ``path``."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.save(model, str(path))


def run(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The outputs of the model at ``path`` on ONNX Runtime's CPU provider."""
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
