"""Hugging Face hub availability, checked fast: an offline flag, or one TCP connect.

The hub clients retry for tens of seconds on a dead network before failing; the tokenizer and
dataset loaders ask here first and fall back to the cache (or a clear error) at once.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

_TRUTHY = {"1", "true", "yes", "on"}


def offline_env(variables: tuple[str, ...] = ("HF_HUB_OFFLINE",)) -> bool:
    """Whether any of the hub's offline environment flags is set to a true value."""
    return any(os.environ.get(var, "").strip().lower() in _TRUTHY for var in variables)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub host (``HF_ENDPOINT`` or huggingface.co) accepts a TCP connection."""
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or ""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False
