"""Silencing third-party advice that is not meant for our users."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator


@contextmanager
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
