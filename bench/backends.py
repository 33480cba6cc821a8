"""One backend interface for every runtime: ``encode(inputs) -> state``, ``step(token, state)``.

Parity, latency, export validation and generation are written once against :class:`Backend`.
This module imports only numpy; each runtime (``ai_edge_litert``, ``onnxruntime``) is imported
when a backend of that kind is created, and the TensorFlow reference lives in
:mod:`storyedge.bench.tf_backend`, so exported files can be benchmarked where TensorFlow is
not installed.

The decoder state is a dict ``{"h": [B,H], "c": [B,H], "context": [B,C]}``; ``encode`` takes a
dict with ``frames``, ``captions`` and (models with a reason encoder) ``reason``.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from storyedge.errors import UserError
from storyedge.manifest import BackendSpec

State = dict[str, np.ndarray]


class Backend(ABC):
    """A runnable encoder + decoder step."""

    name: str
    format: str
    precision: str
    #: Seconds spent creating the runtime session(s) / interpreter(s).
    load_seconds: float = 0.0
    #: Bytes on disk of the files it runs (0 for the in-memory TF reference).
    size_bytes: int = 0
    #: Thread count the runtime was asked to use (None: runtime default).
    threads: int | None = None

    @abstractmethod
    def encode(self, inputs: dict[str, np.ndarray]) -> State:
        """Run the encoder → the decoder's initial state."""

    @abstractmethod
    def step(self, token: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        """One decoder step: ``token`` [B] int32 → (logits [B,V] float32, next state)."""

    def describe(self) -> dict[str, Any]:
        """Static facts about the backend for reports."""
        return {
            "name": self.name,
            "format": self.format,
            "precision": self.precision,
            "threads": self.threads,
            "load_seconds": self.load_seconds,
            "size_bytes": self.size_bytes,
        }


def _state_from_encoder(outputs: dict[str, np.ndarray]) -> State:
    return {"h": outputs["h0"], "c": outputs["c0"], "context": outputs["context"]}


def _strip_port(name: str) -> str:
    return name.split(":")[0]


class TFLiteBackend(Backend):
    """LiteRT (``ai_edge_litert``) signature runners; XNNPACK is LiteRT's default CPU delegate."""

    format = "tflite"

    def __init__(self, spec: BackendSpec, threads: int | None = None) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise UserError("backend tflite: ai-edge-litert is not installed (pip install ai-edge-litert)") from None
        self.name, self.precision, self.threads = spec.name, spec.precision, threads
        self.size_bytes = spec.size_bytes
        start = time.perf_counter()
        self._encoder_interpreter = _litert_interpreter(Interpreter, spec.encoder_path, threads)
        self._decoder_interpreter = (
            self._encoder_interpreter
            if spec.decoder_path == spec.encoder_path
            else _litert_interpreter(Interpreter, spec.decoder_path, threads)
        )
        self._encoder = self._encoder_interpreter.get_signature_runner("encoder")
        self._decoder = self._decoder_interpreter.get_signature_runner("decoder_step")
        self._encoder_inputs = {
            name: detail["dtype"] for name, detail in self._encoder.get_input_details().items()
        }
        self._decoder_inputs = {
            name: detail["dtype"] for name, detail in self._decoder.get_input_details().items()
        }
        self.load_seconds = time.perf_counter() - start

    def encode(self, inputs: dict[str, np.ndarray]) -> State:
        feeds = {n: np.asarray(inputs[n], dtype=t) for n, t in self._encoder_inputs.items()}
        return _state_from_encoder(self._encoder(**feeds))

    def step(self, token: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        values = {"token": token, **state}
        feeds = {n: np.asarray(values[n], dtype=t) for n, t in self._decoder_inputs.items()}
        out = self._decoder(**feeds)
        return out["logits"], {"h": out["h_out"], "c": out["c_out"], "context": state["context"]}

    def ops(self) -> list[str]:
        """Builtin op names of the loaded graph(s) (for the Flex check)."""
        names: set[str] = set()
        for interpreter in {id(i): i for i in (self._encoder_interpreter, self._decoder_interpreter)}.values():
            names.update(op["op_name"] for op in interpreter._get_ops_details())
        return sorted(names)


def _litert_interpreter(interpreter_cls: Any, path: Path, threads: int | None) -> Any:
    try:
        # num_threads=None lets LiteRT choose; ai-edge-litert 2.3 rejects -1 (older versions' "default").
        return interpreter_cls(model_path=str(path), num_threads=threads if threads else None)
    except Exception as exc:  # noqa: BLE001 - LiteRT raises ValueError/RuntimeError on bad files
        raise UserError(f"{path}: LiteRT cannot load this file ({str(exc).splitlines()[0][:160]})") from None


class OnnxBackend(Backend):
    """ONNX Runtime sessions with a chosen thread count and execution providers."""

    format = "onnx"

    def __init__(
        self, spec: BackendSpec, threads: int | None = None, providers: list[str] | None = None
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("backend onnx: onnxruntime is not installed (pip install onnxruntime)") from None
        available = ort.get_available_providers()
        self.providers = providers or ["CPUExecutionProvider"]
        missing = [p for p in self.providers if p not in available]
        if missing:
            raise UserError(
                f"backend onnx: provider(s) {', '.join(missing)} not available "
                f"(this onnxruntime has {', '.join(available)})"
            )
        suffix = "" if self.providers == ["CPUExecutionProvider"] else "-" + self.providers[0].replace(
            "ExecutionProvider", ""
        ).lower()
        self.name, self.precision, self.threads = spec.name + suffix, spec.precision, threads
        self.size_bytes = spec.size_bytes
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        start = time.perf_counter()
        self._encoder = self._session(ort, spec.encoder_path, options)
        self._decoder = self._session(ort, spec.decoder_path, options)
        self.load_seconds = time.perf_counter() - start
        self._encoder_inputs = _onnx_io(self._encoder.get_inputs())
        self._decoder_inputs = _onnx_io(self._decoder.get_inputs())
        self._encoder_outputs = [_strip_port(o.name) for o in self._encoder.get_outputs()]
        self._decoder_outputs = [_strip_port(o.name) for o in self._decoder.get_outputs()]

    def _session(self, ort: Any, path: Path, options: Any) -> Any:
        try:
            return ort.InferenceSession(str(path), sess_options=options, providers=self.providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph types
            raise UserError(f"{path}: ONNX Runtime cannot load this file ({str(exc).splitlines()[0][:160]})") from None

    def encode(self, inputs: dict[str, np.ndarray]) -> State:
        feeds = {full: np.asarray(inputs[short], dtype=t) for full, (short, t) in self._encoder_inputs.items()}
        values = self._encoder.run(None, feeds)
        return _state_from_encoder(dict(zip(self._encoder_outputs, values)))

    def step(self, token: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        values = {"token": token, **state}
        feeds = {full: np.asarray(values[short], dtype=t) for full, (short, t) in self._decoder_inputs.items()}
        out = dict(zip(self._decoder_outputs, self._decoder.run(None, feeds)))
        return out["logits"], {"h": out["h_out"], "c": out["c_out"], "context": state["context"]}


_ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(int32)": np.int32, "tensor(int64)": np.int64}


def _onnx_io(nodes: list[Any]) -> dict[str, tuple[str, Any]]:
    return {n.name: (_strip_port(n.name), _ONNX_DTYPES[n.type]) for n in nodes}


def load_backend(
    spec: BackendSpec, threads: int | None = None, providers: list[str] | None = None
) -> Backend:
    """The backend for an exported (encoder, decoder_step) pair."""
    if spec.format == "tflite":
        return TFLiteBackend(spec, threads)
    if spec.format == "onnx":
        return OnnxBackend(spec, threads, providers)
    raise UserError(f"unknown backend format {spec.format!r}")
