"""Taming the converters' native side: their memory peaks (their fd-level chatter:
:func:`storyedge.quiet.quiet_native_output`)."""

from __future__ import annotations

import ctypes
import gc


def release_memory() -> None:
    """Collect garbage and hand freed heap back to the OS (glibc ``malloc_trim``): converter
    peaks (GBs at the seed size) otherwise stay resident for the rest of the export."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
