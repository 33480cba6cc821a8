"""Ctrl-C handling for the loop (no TensorFlow import: the CLI catches these).

The first SIGINT only raises a flag that the loop checks after every step; a second one raises
``KeyboardInterrupt`` at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any


class TrainingInterrupted(Exception):
    """Ctrl-C during training; a checkpoint was written at ``checkpoint`` (step ``step``)."""

    def __init__(self, checkpoint: str, step: int) -> None:
        super().__init__(f"interrupted at step {step}; checkpoint {checkpoint}")
        self.checkpoint = checkpoint
        self.step = step


class SigintFlag:
    """Context manager: the first SIGINT sets ``raised``; the second raises KeyboardInterrupt.

    Installed only in the main thread (elsewhere ``signal`` cannot be used; a plain
    ``KeyboardInterrupt`` is then the only way in, which the loop handles too).
    """

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.raised = False
        self._echo = echo
        self._previous: Any = None
        self._installed = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True
        self._echo("interrupt: saving a checkpoint after this step (Ctrl-C again to stop now)")

    def __enter__(self) -> "SigintFlag":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False
