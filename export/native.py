"""Taming the converters' native side: their fd-level chatter and their memory peaks."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import sys
import tempfile
from collections.abc import Iterator

log = logging.getLogger(__name__)

#: How much of the captured native output is echoed to stderr when the block fails.
FAILURE_ECHO_CHARS = 4000


@contextlib.contextmanager
def quiet_native_output() -> Iterator[None]:
    """Send what native code prints on fd 1 / 2 (converter chatter, absl warnings) to a temp
    file while the block runs: logged at debug level, and echoed to stderr when the block fails."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    failed = False
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            text = sink.read().decode(errors="replace")
            if text.strip():
                log.debug("native output:\n%s", text)
                if failed:
                    sys.stderr.write(text[-FAILURE_ECHO_CHARS:])


def release_memory() -> None:
    """Collect garbage and hand freed heap back to the OS (glibc ``malloc_trim``): converter
    peaks (GBs at the seed size) otherwise stay resident for the rest of the export."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
