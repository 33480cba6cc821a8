"""TFLite conversions in worker processes, so that the files of one export convert side by side.

The TFLite converter runs on one core (MLIR passes, then the quantizer), and an export converts
up to four files per precision from the same SavedModel. :class:`Conversions` hands each
conversion to a pool of spawned worker processes that read the SavedModel from disk and write
the flatbuffer next to where the file belongs; the export process meanwhile traces the next
SavedModel and converts the ONNX graphs. ``workers`` 1 (or a single file) converts in this
process, as one call.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

from storyedge.export import tflite as tfl
from storyedge.export.native import release_memory
from storyedge.quiet import quiet_native_output, quiet_tensorflow_import

#: Worker processes at most when the config leaves it open (each holds TensorFlow and one
#: conversion's peak: about 2-3 GB at the seed size).
MAX_AUTO_WORKERS = 4


def auto_workers(configured: int | None, jobs: int) -> int:
    """Worker processes for ``jobs`` conversions: ``configured``, else one per core up to
    :data:`MAX_AUTO_WORKERS`; never more than the jobs."""
    wanted = configured if configured is not None else min(os.cpu_count() or 1, MAX_AUTO_WORKERS)
    return max(1, min(wanted, jobs))


def convert_to_file(saved: str, keys: tuple[str, ...], precision: str, samples: list[tfl.Sample] | None,
                    path: str, integer_only: bool = False) -> float:
    """Convert ``keys`` of the SavedModel ``saved`` at ``precision`` into ``path``
    (``integer_only``: see :func:`storyedge.export.tflite.convert_tflite`); the seconds it took.

    Runs in a worker (or in the export process). A converter error comes back as a
    :class:`RuntimeError` with the converter's message: its own exception types need not
    survive the trip between processes."""
    start = time.perf_counter()
    representative = (lambda: iter(samples)) if samples is not None else None
    try:
        with quiet_native_output():
            content = tfl.convert_tflite(saved, list(keys), precision, representative, integer_only)
    except Exception as exc:  # noqa: BLE001 - ConverterError & co, re-raised picklable
        raise RuntimeError(str(exc) or type(exc).__name__) from None
    Path(path).write_bytes(content)
    del content
    release_memory()
    return time.perf_counter() - start


def _quiet_worker() -> None:
    """Worker start-up: TensorFlow's C++ logging off before it is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    quiet_tensorflow_import()


class Conversions:
    """Conversions submitted now, collected in submission order by :meth:`result`."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def submit(self, saved: Path, keys: tuple[str, ...], precision: str, samples: list[tfl.Sample] | None,
               path: Path, integer_only: bool = False) -> "Future[float]":
        """Start converting (in this process when there is one worker: done on return)."""
        args = (str(saved), keys, precision, samples, str(path), integer_only)
        if self.workers <= 1:
            future: Future[float] = Future()
            try:
                future.set_result(convert_to_file(*args))
            except Exception as exc:  # noqa: BLE001 - delivered by result(), like a worker's
                future.set_exception(exc)
            return future
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"),
                                             initializer=_quiet_worker)
        return self._pool.submit(convert_to_file, *args)

    def close(self) -> None:
        """Stop the workers (pending conversions are cancelled)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
