"""LiteRT's ``CompiledModel`` API with XNNPACK's weight cache: how the LiteRT backend runs a file.

XNNPACK packs every constant weight into its own layout when a graph is prepared. Without a
weight cache it packs a weight once per op that reads it; LiteRT's Python ``Interpreter`` offers
no cache. A TFLite LSTM ``WHILE`` body that runs u time steps has u ops reading the same
recurrent kernel (:data:`storyedge.export.plan.LOOP_STEPS`), so the interpreter holds u packed
copies of it and streams all of them through the cache every iteration. A ``CompiledModel``
created with ``xnnpack_weight_cache_path`` packs each weight once (:data:`IN_MEMORY_WEIGHT_CACHE`:
an anonymous in-memory file, nothing written to disk). At the seed size the int8-dynamic
encoder runs 7-11% faster that way and the full-int8 one (unrolled LSTMs: one copy per time
step) 42% faster (see the README's *Latency*). The decoder step is left to the ``Interpreter``
(:mod:`storyedge.runtime.litert`): a ``CompiledModel`` run costs more per call.

The cache packs a weight once for *all* its readers, and an int8 product's packing holds its
requantization scales: a file whose readers of one weight are quantized differently (a
full-int8 export made before the exporter made them agree) is loaded without the cache, so it
computes what the ``Interpreter`` does (:func:`storyedge.tflite_schema.weight_cache_safe`).

:class:`CompiledSignature` calls one signature by name with numpy arrays like
:class:`~storyedge.runtime.litert_signature.FastSignature` does an ``Interpreter``'s; LiteRT's
environment and compiler-plugin discovery log to the process's stderr, which
:func:`load_compiled_model` captures (and reports only when loading fails).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from storyedge.errors import UserError
from storyedge.runtime.litert_signature import open_interpreter
from storyedge.tflite_schema import weight_cache_safe

#: XNNPACK's weight cache in memory (``xnnpack_weight_cache_path``): each weight packed once.
IN_MEMORY_WEIGHT_CACHE = ":memory:"
_environment: Any = None
#: the models :func:`load_compiled_model` made and the signatures run on them, closed quietly
#: at exit (see :func:`_close_quietly`)
_models: weakref.WeakSet[Any] = weakref.WeakSet()
_signatures: "weakref.WeakSet[CompiledSignature]" = weakref.WeakSet()
#: the models :func:`load_compiled_model` made without the weight cache
_uncached: weakref.WeakSet[Any] = weakref.WeakSet()


def compiled_model_available() -> bool:
    """Whether the installed ai-edge-litert has the ``CompiledModel`` API with CPU options."""
    try:
        from ai_edge_litert.compiled_model import CompiledModel  # noqa: F401  # lazy: optional runtime
        from ai_edge_litert.options import Options  # lazy: optional runtime
    except ImportError:
        return False
    return hasattr(Options(), "cpu_options")


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[list[str]]:
    """Send what native code writes to file descriptor 2 into the yielded list (its text, once
    the block ends) instead of the terminal."""
    captured: list[str] = []
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to redirect (a detached process): nothing to capture
        yield captured
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode(errors="replace"))


def _shared_environment() -> Any:
    """One LiteRT environment for the process (each creation probes accelerators and plugins)."""
    global _environment
    if _environment is None:
        import ai_edge_litert  # lazy: optional runtime
        from ai_edge_litert.environment import Environment, EnvironmentOptions  # lazy: optional runtime

        # the runtime libraries ship inside the package, as CompiledModel's own default finds them
        runtime = os.path.dirname(os.path.abspath(ai_edge_litert.__file__))
        _environment = Environment.create(options=EnvironmentOptions(runtime_path=runtime))
    return _environment


def load_compiled_model(path: Path, threads: int | None) -> Any:
    """A CPU ``CompiledModel`` of the ``.tflite`` at ``path`` with the in-memory weight cache
    (without it where the file is not :func:`~storyedge.tflite_schema.weight_cache_safe`: see
    :func:`runs_without_weight_cache`); :class:`UserError` naming the file when LiteRT cannot
    load it."""
    from ai_edge_litert.compiled_model import CompiledModel  # lazy: optional runtime
    from ai_edge_litert.options import Options  # lazy: optional runtime

    # the Interpreter verifies the flatbuffer (cheap: it prepares nothing); CompiledModel does
    # not, and a truncated file crashes the process there
    open_interpreter(path, threads)
    options = Options()
    options.cpu_options.num_threads = threads or 0  # 0: LiteRT chooses
    cached = weight_cache_safe(Path(path).read_bytes())
    if cached:
        options.cpu_options.xnnpack_weight_cache_path = IN_MEMORY_WEIGHT_CACHE
    model = error = None
    with native_stderr_captured() as log:
        try:
            model = CompiledModel.from_file(str(path), environment=_shared_environment(), options=options)
        except Exception as exc:  # noqa: BLE001 - LiteRT raises RuntimeError/ValueError on bad files
            error = exc
    if model is None:
        detail = str(error).splitlines()[0][:160] or (log[0].strip().splitlines() or ["unknown error"])[-1][:160]
        raise UserError(f"{path}: LiteRT cannot load this file ({detail})")
    _models.add(model)
    if not cached:
        _uncached.add(model)
    return model


def runs_without_weight_cache(model: Any) -> bool:
    """Whether :func:`load_compiled_model` made ``model`` without the weight cache (its file's
    int8 products over one weight are quantized differently)."""
    return model in _uncached


@atexit.register
def _close_quietly() -> None:
    """At exit, close the signatures' buffers, the models and the environment with their native
    logs captured, then discard what native code writes to stderr from here on: LiteRT logs every
    accelerator it destroys, also those of an environment its buffers create for themselves and
    release only in static destructors, which would otherwise be the last lines a command prints.
    (Python has printed any uncaught error before atexit handlers run.)"""
    global _environment
    if _environment is None:
        return
    with native_stderr_captured():
        for signature in list(_signatures):
            signature.release()
        for model in list(_models):
            model.close()
        _environment.close()
        _environment = None
    sys.stderr.flush()
    with contextlib.suppress(OSError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)


def _buffer_functions() -> tuple[Any, Any] | None:
    """ai-edge-litert's raw tensor-buffer write / read (private; None where absent)."""
    try:
        from ai_edge_litert import _pywrap_litert_tensor_buffer_wrapper as raw  # lazy: optional runtime
    except ImportError:
        return None
    write, read = getattr(raw, "WriteTensorBuffer", None), getattr(raw, "ReadTensorToBuffer", None)
    return (write, read) if write and read else None


class CompiledSignature:
    """One signature of a ``CompiledModel`` called with numpy inputs by name → outputs by name.

    Input and output buffers are created when the input shapes change (the first call, a new
    batch: the model's inputs are resized) and reused otherwise; outputs are fresh arrays each
    call. Where ai-edge-litert exposes them, the raw buffer and run bindings are called directly
    (:attr:`direct`): the public wrappers re-check every array and rebuild every list on each
    call.
    """

    def __init__(self, model: Any, key: str) -> None:
        self._model, self._key = model, key
        self._index = model.get_signature_index(key)
        signature = model.get_signature_list()[key]
        self._input_names: list[str] = list(signature["inputs"])
        self._output_names: list[str] = list(signature["outputs"])
        details = model.get_input_tensor_details(key)
        self._input_dtype_names = {n: str(details[n]["dtype"]) for n in self._input_names}
        self.input_dtypes: dict[str, np.dtype] = {n: np.dtype(d) for n, d in self._input_dtype_names.items()}
        self._input_list = [(n, self.input_dtypes[n]) for n in self._input_names]
        self._shapes = {n: tuple(details[n]["shape"]) for n in self._input_names}
        self._allocated: tuple[tuple[int, ...], ...] | None = None
        self._run = getattr(getattr(model, "_model", None), "RunByIndex", None)
        self._raw = _buffer_functions()
        self._inputs: list[Any] = []
        self._outputs: list[Any] = []
        self._input_capsules: list[Any] = []
        self._output_capsules: list[Any] = []
        self._output_specs: list[tuple[str, tuple[int, ...], np.dtype, str]] = []
        _signatures.add(self)

    def release(self) -> None:
        """Destroy the buffers (the next call creates them again)."""
        for buffer in self._inputs + self._outputs:
            buffer.destroy()
        self._inputs, self._outputs, self._allocated = [], [], None

    @property
    def direct(self) -> bool:
        """Whether calls use ai-edge-litert's raw bindings (else its public wrappers)."""
        return self._run is not None and self._raw is not None

    def _allocate(self, shapes: dict[str, tuple[int, ...]]) -> None:
        model, key = self._model, self._key
        for name, shape in shapes.items():
            if shape != self._shapes[name]:
                model.resize_input_tensor_by_name(key, name, list(shape))
                self._shapes[name] = shape
        self._inputs = [model.create_input_buffer_by_name(key, n) for n in self._input_names]
        self._outputs = [model.create_output_buffer_by_name(key, n) for n in self._output_names]
        self._input_capsules = [b.capsule for b in self._inputs]
        self._output_capsules = [b.capsule for b in self._outputs]
        details = model.get_output_tensor_details(key)
        self._output_specs = [(n, tuple(details[n]["shape"]), np.dtype(str(details[n]["dtype"])),
                               str(details[n]["dtype"])) for n in self._output_names]

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = [np.asarray(feeds[n], dtype=dtype) for n, dtype in self._input_list]
        shapes = tuple(v.shape for v in values)
        if shapes == self._allocated:
            return self._invoke(values)
        with native_stderr_captured():  # the first run sets LiteRT up, and logs it
            self._allocate(dict(zip(self._input_names, shapes)))
            outputs = self._invoke(values)
        self._allocated = shapes
        return outputs

    def _invoke(self, values: list[np.ndarray]) -> dict[str, np.ndarray]:
        if not self.direct:
            for buffer, value in zip(self._inputs, values):
                buffer.write(value)
            self._model.run_by_index(self._index, self._inputs, self._outputs)
            return {n: buffer.read(int(np.prod(shape)), dtype).reshape(shape)
                    for buffer, (n, shape, dtype, _) in zip(self._outputs, self._output_specs)}
        write, read = self._raw
        for capsule, (name, _), value in zip(self._input_capsules, self._input_list, values):
            write(capsule, value.reshape(-1), self._input_dtype_names[name])
        self._run(self._index, self._input_capsules, self._output_capsules)
        outputs = {}
        for capsule, (name, shape, dtype, dtype_name) in zip(self._output_capsules, self._output_specs):
            outputs[name] = array = np.empty(shape, dtype)
            read(capsule, array.reshape(-1), dtype_name)
        return outputs
