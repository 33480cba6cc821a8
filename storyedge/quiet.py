"""Silencing third-party output that is not meant for our users.

* :func:`quiet_root_logger`: onnxruntime's quantizers' advice on the root logger.
* :func:`quiet_native_output`: what native code (converters, absl) prints on fd 1 / 2.
* :func:`quiet_tensorflow_import`: the INFO lines TensorFlow's native libraries print while it is
  imported ("oneDNN custom operations are on", "Could not find cuda drivers", each twice).
  Since TensorFlow logs through absl, ``TF_CPP_MIN_LOG_LEVEL`` no longer silences them: they
  are written before absl is initialised.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

#: How much of the captured native output is echoed to stderr when the block fails.
FAILURE_ECHO_CHARS = 4000

#: Lines TensorFlow's import prints that only inform: absl's notice that it writes to stderr
#: before it is initialised, and absl INFO lines (``I`` + month and day). Warnings and errors
#: (``W`` / ``E`` lines) and anything else are printed back.
IMPORT_NOISE = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\) is called .*|I\d{4} .*")


@contextlib.contextmanager
def quiet_root_logger() -> Iterator[None]:
    """Raise the root logger to ERROR for the block: onnxruntime's quantizers log advice
    ("consider pre-processing", "quantization parameters ... not specified") on it."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


@contextlib.contextmanager
def captured_native_output(fds: Sequence[int] = (1, 2)) -> Iterator[list[str]]:
    """Send what is written to ``fds`` (native code included) to a temp file while the block
    runs; the list it yields gets the text once the block ends, however it ends."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in fds]
    captured: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as sink:
        for fd in fds:
            os.dup2(sink.fileno(), fd)
        try:
            yield captured
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip(fds, saved):
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            captured.append(sink.read().decode(errors="replace"))


@contextlib.contextmanager
def quiet_native_output() -> Iterator[None]:
    """Send what native code prints on fd 1 / 2 (converter chatter, absl warnings) to a temp
    file while the block runs: logged at debug level, and echoed to stderr when the block fails."""
    captured: list[str] = []
    failed = False
    try:
        with captured_native_output() as captured:
            yield
    except BaseException:
        failed = True
        raise
    finally:
        text = captured[0] if captured else ""
        if text.strip():
            log.debug("native output:\n%s", text)
            if failed:
                sys.stderr.write(text[-FAILURE_ECHO_CHARS:])


def without_import_noise(text: str) -> str:
    """``text`` less the lines :data:`IMPORT_NOISE` matches."""
    return "".join(line for line in text.splitlines(keepends=True) if not IMPORT_NOISE.fullmatch(line.rstrip("\n")))


class _QuietLoader(importlib.abc.Loader):
    """Runs the wrapped loader with stderr captured, then prints back what is not noise; the
    finder that made it leaves ``sys.meta_path`` then."""

    def __init__(self, loader: Any, finder: _QuietImportFinder) -> None:
        self.loader = loader
        self.finder = finder

    def __getattr__(self, name: str) -> Any:
        """The rest of the wrapped loader (``get_resource_reader``, ``is_package``...)."""
        return getattr(self.loader, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        if self.finder in sys.meta_path:
            sys.meta_path.remove(self.finder)
        captured: list[str] = []
        imported = False
        try:
            with captured_native_output((2,)) as captured:
                self.loader.exec_module(module)
            imported = True
        finally:
            text = captured[0] if captured else ""
            kept = without_import_noise(text) if imported else text  # all of it when the import failed
            if len(kept) < len(text):
                log.debug("%s import output:\n%s", module.__name__, text)
            sys.stderr.write(kept)


class _QuietImportFinder(importlib.abc.MetaPathFinder):
    """Finds the top-level module ``name`` on ``sys.path`` with a :class:`_QuietLoader`. It stays
    until the module is executed: libraries ask ``importlib.util.find_spec("tensorflow")`` to
    see whether it is installed, without importing it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(self, fullname: str, path: Any, target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader, self)
        return spec


def quiet_tensorflow_import() -> None:
    """Have TensorFlow's first import (whoever makes it) leave out its INFO lines; nothing
    when it is already imported or the hook is in place. TensorFlow is not imported here."""
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietImportFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietImportFinder("tensorflow"))
