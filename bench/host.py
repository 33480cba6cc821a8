"""The machine a bench ran on: its CPU model and the versions of the runtimes the run imported.

``platform.processor()`` is empty on Linux, and a figure without the CPU behind it cannot be
compared: on two 2-core machines the same seed-size int8 step took 0.14 ms (AMD EPYC, 32 MiB
last-level cache) and 0.50 ms (Intel Xeon, its 480 MiB L3 slower to read from than the EPYC's).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from storyedge.bench.results import Host

#: the runtimes whose versions a report records (those the run imported)
VERSIONED_MODULES = ("numpy", "ai_edge_litert", "onnxruntime", "tensorflow", "keras")
PROC_CPUINFO = Path("/proc/cpuinfo")
#: seconds ``sysctl`` may take on macOS before the model is left unknown
SYSCTL_TIMEOUT_S = 2.0


def cpu_model(cpuinfo: Path = PROC_CPUINFO) -> str:
    """The CPU's model name: ``/proc/cpuinfo``'s ``model name`` on Linux (arm64 kernels that have
    none: its ``Hardware`` / ``CPU part`` lines are not names, so ``platform.processor()``), the
    brand string on macOS, else ``platform.processor()`` ('' where nothing says)."""
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return " ".join(value.split())
    if sys.platform == "darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                 timeout=SYSCTL_TIMEOUT_S, check=False)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    return platform.processor()


def host_info() -> Host:
    """The machine and the versions of the runtimes this run imported."""
    versions: dict[str, str] = {"python": platform.python_version()}
    for module in VERSIONED_MODULES:
        mod = sys.modules.get(module)
        if mod is not None:
            versions[module] = getattr(mod, "__version__", "?")
    if versions.get("ai_edge_litert") == "?":
        try:
            versions["ai_edge_litert"] = version("ai-edge-litert")
        except PackageNotFoundError:
            pass
    return Host(platform.platform(), platform.machine(), cpu_model(), os.cpu_count(), versions)

