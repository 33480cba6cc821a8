"""The ONNX Runtime backend: two inference sessions with a chosen thread count and providers."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from storyedge.errors import UserError
from storyedge.runtime.backend import Backend
from storyedge.runtime.specs import BackendSpec, provider_suffix

_ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(int32)": np.int32, "tensor(int64)": np.int64}
#: Each session has its own intra-op threads, which by default spin after a ``run`` waiting for
#: more work, taking a core from the next session's ``run``. With this entry they stop when a run
#: ends. Seed size, fp32, 2 threads, encoder + 32 steps a caption: encoder p50 39-43 → 21 ms,
#: step mean 4.1 → 3.2 ms, caption p50 172-177 → 122 ms.
FORCE_SPINNING_STOP = "session.force_spinning_stop"
#: How long a session's idle intra-op threads spin for more work before they sleep (ONNX Runtime
#: :data:`BOUNDED_SPIN_VERSION` and later; before it they spin about a million pauses).
SPIN_DURATION_US = "session.intra_op.spin_duration_us"
BOUNDED_SPIN_VERSION = (1, 26)
#: The decoder step's threads spin this long after each step instead of sleeping at once: the
#: next step's ``run`` then finds them awake, not waking them, and they are asleep before a
#: caption's encoder needs the core. Seed size, 2 threads, captions of 32 steps, interleaved
#: against sleeping at once: static int8 step p50 0.541 → 0.498 ms, caption 24.5 → 23.1 ms,
#: story-mode caption 21.1 → 19.9 ms (int8-dynamic 0.532 → 0.495 ms, fp32 1.501 → 1.451 ms),
#: encoders unchanged; 200 µs measured the same as 100, 400 µs slowed the encoder, and unbounded
#: spinning took the static-int8 encoder from 5.8 to 9.7 ms.
STEP_SPIN_US = 100


class OnnxBackend(Backend):
    """``encoder`` and ``decoder_step`` ``.onnx`` files on the given execution providers."""

    format = "onnx"

    def __init__(self, spec: BackendSpec, threads: int | None = None, providers: list[str] | None = None,
                 profile_dir: Path | None = None) -> None:
        try:
            import onnxruntime as ort  # lazy: ONNX Runtime is optional (LiteRT-only users)
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
        self.name = spec.name + provider_suffix(self.providers)
        self.precision, self.threads = spec.precision, threads
        self.size_bytes, self.decoder = spec.size_bytes, spec.decoder
        start = time.perf_counter()
        self._encoder = self._session(ort, spec.encoder_path, _profiled(ort, threads, profile_dir, "encoder"))
        step_options = _profiled(ort, threads, profile_dir, "decoder_step", STEP_SPIN_US)
        self._decoder = self._session(ort, spec.decoder_path, step_options)
        self.load_seconds = time.perf_counter() - start
        self._encoder_io = _io(self._encoder)
        self._decoder_io = _io(self._decoder)
        self.story, self._story_paths = spec.story, dict(spec.story_paths)
        self._options = session_options(ort, threads)  # the story-mode graphs' sessions
        self._story_sessions: dict[str, tuple[Any, Any]] = {}

    def run_graph(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A story-mode graph; its session is created on first use."""
        if graph not in self._story_paths:
            return super().run_graph(graph, feeds)
        session, io = self._story_session(graph)
        return _run(session, io, feeds)

    def graph_input_shape(self, graph: str, name: str) -> tuple[int, ...] | None:
        """The input's shape as the story-mode graph's session reads it (None: no such graph or
        input, or a dimension left symbolic)."""
        if graph not in self._story_paths:
            return None
        session, _ = self._story_session(graph)
        dims = next((i.shape for i in session.get_inputs() if _strip_port(i.name) == name), None)
        return tuple(dims) if dims is not None and all(isinstance(d, int) for d in dims) else None

    def _story_session(self, graph: str) -> tuple[Any, Any]:
        """The session of a story-mode graph in this backend's files, created on first use."""
        if graph not in self._story_sessions:
            import onnxruntime as ort  # lazy: ONNX Runtime is optional (checked in __init__)

            session = self._session(ort, self._story_paths[graph], self._options)
            self._story_sessions[graph] = (session, _io(session))
        return self._story_sessions[graph]

    def _session(self, ort: Any, path: Path, options: Any) -> Any:
        try:
            return ort.InferenceSession(str(path), sess_options=options, providers=self.providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph types
            raise UserError(f"{path}: ONNX Runtime cannot load this file ({str(exc).splitlines()[0][:160]})") from None

    def run_encoder(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return _run(self._encoder, self._encoder_io, inputs)

    def end_profiling(self) -> dict[str, Path]:
        """Created with ``profile_dir``: stop ONNX Runtime's profiler → ``{graph: its JSON file}``."""
        return {"encoder": Path(self._encoder.end_profiling()), "decoder_step": Path(self._decoder.end_profiling())}

    def run_step(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return _run(self._decoder, self._decoder_io, feeds)


def session_options(ort: Any, threads: int | None, spin_us: int | None = None) -> Any:
    """Options of every session a backend creates: ``threads`` intra-op threads (one inter-op)
    that stop spinning when a run ends (:data:`FORCE_SPINNING_STOP`), or with ``spin_us`` spin
    that long for the next run first (:data:`SPIN_DURATION_US`) where ONNX Runtime bounds the spin."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if spin_us is not None and bounded_spin(ort.__version__):
        options.add_session_config_entry(SPIN_DURATION_US, str(spin_us))
    else:
        options.add_session_config_entry(FORCE_SPINNING_STOP, "1")
    return options


def bounded_spin(version: str) -> bool:
    """Whether ONNX Runtime ``version`` bounds its threads' spin by :data:`SPIN_DURATION_US`."""
    release = tuple(int(part) for part in re.findall(r"\d+", version)[:2])
    return release >= BOUNDED_SPIN_VERSION


def _profiled(ort: Any, threads: int | None, profile_dir: Path | None, graph: str,
              spin_us: int | None = None) -> Any:
    """:func:`session_options`, with ONNX Runtime's profiler on (JSON under ``profile_dir``) when
    one is given."""
    options = session_options(ort, threads, spin_us)
    if profile_dir is not None:
        Path(profile_dir).mkdir(parents=True, exist_ok=True)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(profile_dir) / graph)
    return options


def _strip_port(name: str) -> str:
    return name.split(":")[0]


def _io(session: Any) -> tuple[dict[str, tuple[str, Any]], list[str]]:
    """(graph input name → (short name, dtype), short output names) of a session."""
    inputs = {n.name: (_strip_port(n.name), _ONNX_DTYPES[n.type]) for n in session.get_inputs()}
    return inputs, [_strip_port(o.name) for o in session.get_outputs()]


def _run(session: Any, io: tuple[dict[str, tuple[str, Any]], list[str]], values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    inputs, outputs = io
    feeds = {full: np.asarray(values[short], dtype=t) for full, (short, t) in inputs.items()}
    return dict(zip(outputs, session.run(None, feeds)))
