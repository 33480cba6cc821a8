"""What the exporter reports while it works: a tqdm bar on stderr and typed events for a listener.

Every step of an export (writing the reference, each SavedModel, each converted file, each
backend validated) is one unit of the bar. A listener (``export_model(on_progress=...)``, e.g.
the ``--random-init`` child process forwarding them to its parent) gets every
:class:`ProgressEvent`: the stage text when a step starts, the step count when it ends (with the
file's path and seconds when the step wrote a file), and every note.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

log = logging.getLogger(__name__)

#: The bar's description is cut to this many characters.
STAGE_TEXT_WIDTH = 60
#: :attr:`ProgressEvent.kind` values.
STAGE, STEP, NOTE = "stage", "step", "note"


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report: ``stage`` (a step starts: ``text``), ``step`` (a step ended: ``done``
    of ``total``; ``path`` / ``seconds`` when it wrote a file) or ``note`` (a message)."""

    kind: str
    text: str
    done: int
    total: int
    path: str | None = None
    seconds: float | None = None


Listener = Callable[[ProgressEvent], Any]


@dataclass
class Progress:
    """The export's progress: drives the bar, tells the listener, keeps the notes."""

    bar: Any
    total: int
    enabled: bool
    listener: Listener | None = None
    notes: list[str] = field(default_factory=list)
    done_steps: int = 0
    current: str = ""

    def _tell(self, kind: str, text: str, path: str | None = None, seconds: float | None = None) -> None:
        if self.listener is not None:
            self.listener(ProgressEvent(kind, text, self.done_steps, self.total, path, seconds))

    def stage(self, text: str) -> None:
        """A step starts."""
        self.current = text
        self.bar.set_description_str(text[:STAGE_TEXT_WIDTH])
        self._tell(STAGE, text)

    def done(self, path: str | None = None, seconds: float | None = None) -> None:
        """The current step ended (``path``: the file it wrote, in ``seconds``)."""
        self.done_steps += 1
        self.bar.update(1)
        self._tell(STEP, self.current, path, seconds)

    def echo(self, text: str) -> None:
        """A line for the user: above the bar when it is shown, else logged."""
        if self.enabled:
            tqdm.write(text, file=sys.stderr)
        else:
            log.info(text)

    def note(self, text: str) -> None:
        """A message kept for the record, shown and told to the listener."""
        self.notes.append(text)
        self.echo(text)
        self._tell(NOTE, text)

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()


def make_progress(total: int, enabled: bool, listener: Listener | None = None) -> Progress:
    """A :class:`Progress` of ``total`` steps; the bar (stderr) only when ``enabled``."""
    bar = tqdm(total=total, unit="step", file=sys.stderr, disable=not enabled, leave=enabled, dynamic_ncols=True)
    return Progress(bar, total, enabled, listener)
