"""Device selection: ``auto | cpu | cuda | metal`` with the reason logged.

auto: a GPU visible to TensorFlow on macOS arm64 is Metal (the tensorflow-metal PluggableDevice),
elsewhere CUDA; none → CPU. An explicitly requested device that is absent is a
:class:`~storyedge.errors.UserError` (exit 2). A tensorflow-metal plugin that fails to load
(tensorflow-metal 1.2.0 with TF >= 2.20) must not crash: :func:`import_tensorflow` retries the
import with pluggable-device loading disabled and records a warning, so training runs on the CPU.

Everything TensorFlow-specific is passed in (``tf``, ``system``, ``machine``) so the decision
matrix is tested with faked device lists and platforms.
"""

from __future__ import annotations

import logging
import platform
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from storyedge.constants import DEVICES as DEVICE_CHOICES  # re-exported (training/cli.py)
from storyedge.errors import UserError

log = logging.getLogger(__name__)

PRECISION_CHOICES = ("float32", "mixed_float16")

#: Warnings raised while importing TensorFlow (e.g. a Metal plugin that failed to load).
IMPORT_WARNINGS: list[str] = []


@dataclass
class DeviceDecision:
    """The chosen device and why."""

    device: str
    tf_device: str
    reason: str
    tf_version: str
    platform: str
    gpus: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line for logs and ``storyedge devices``."""
        return f"device: {self.device} ({self.tf_device}) - {self.reason}"


def import_tensorflow(
    importer: Callable[[], types.ModuleType] | None = None, needed_for: str | None = None
) -> types.ModuleType:
    """Import TensorFlow, surviving a PluggableDevice (tensorflow-metal) that fails to load.

    The one way storyedge imports TensorFlow (lazily: the TF-free paths never call it).
    TensorFlow loads every library in ``site-packages/tensorflow-plugins`` during ``import``;
    a plugin built for another TF version raises there and the whole import fails. On such a
    failure the import is retried with plugin loading turned into a logged no-op, and a warning
    is recorded in :data:`IMPORT_WARNINGS` (the device then resolves to CPU). TensorFlow not
    installed at all is a :class:`UserError` saying what needed it (``needed_for``).
    """
    importer = importer or _import_tf_module
    try:
        return importer()
    except ModuleNotFoundError as exc:
        if exc.name != "tensorflow":
            raise
        raise UserError(f"TensorFlow is not installed{': ' + needed_for if needed_for else ''}") from None
    except Exception as exc:  # noqa: BLE001 - we only retry for plugin failures
        if not _is_plugin_failure(exc):
            raise
        message = (
            f"a TensorFlow device plugin failed to load ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:160]}); continuing on the CPU. tensorflow-metal 1.2.0 "
            "needs tensorflow 2.18: pip install 'storyedge[metal]'"
        )
        IMPORT_WARNINGS.append(message)
        log.warning(message)
        _disable_plugin_loading()
        return importer()


def _import_tf_module() -> types.ModuleType:
    import tensorflow  # lazy: TensorFlow is heavy and absent on runtime-only installs

    return tensorflow


def _is_plugin_failure(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(word in text for word in ("metal", "plugin", "pluggable", ".dylib"))


def _disable_plugin_loading() -> None:
    """Make TF's pluggable-device loaders no-ops for the retried import."""
    loader = sys.modules.get("tensorflow.python.framework.load_library")
    if loader is None:
        return

    def skip(library_location: str, *args: Any, **kwargs: Any) -> None:
        log.warning("skipping TensorFlow plugin library %s", library_location)

    loader.load_pluggable_device_library = skip  # type: ignore[attr-defined]
    loader.load_library = skip  # type: ignore[attr-defined]


def select_device(
    requested: str = "auto",
    tf: Any = None,
    system: str | None = None,
    machine: str | None = None,
) -> DeviceDecision:
    """Decide the device for ``requested`` given what TensorFlow sees."""
    if requested not in DEVICE_CHOICES:
        raise UserError(f"--device: must be one of {', '.join(DEVICE_CHOICES)}, got {requested!r}")
    tf = tf if tf is not None else import_tensorflow()
    system = system or platform.system()
    machine = machine or platform.machine()
    gpus = [getattr(d, "name", str(d)) for d in tf.config.list_physical_devices("GPU")]
    apple_silicon = system == "Darwin" and machine in ("arm64", "aarch64")
    gpu_kind = "metal" if apple_silicon else "cuda"
    base = dict(
        tf_version=tf.__version__,
        platform=f"{system}-{machine}",
        gpus=gpus,
        warnings=list(IMPORT_WARNINGS),
    )
    plugin_note = f" ({IMPORT_WARNINGS[-1]})" if IMPORT_WARNINGS else ""

    if requested == "cpu":
        return DeviceDecision("cpu", "/CPU:0", "requested explicitly", **base)
    if requested in ("cuda", "metal"):
        if not gpus:
            raise UserError(
                f"--device {requested}: TensorFlow {tf.__version__} sees no GPU on "
                f"{system}-{machine}{plugin_note}; use --device auto or cpu"
            )
        if requested != gpu_kind:
            raise UserError(
                f"--device {requested}: not available on {system}-{machine} "
                f"(the GPU here is {gpu_kind}); use --device auto or {gpu_kind}"
            )
        return DeviceDecision(
            requested, "/GPU:0", f"requested explicitly; TensorFlow sees {', '.join(gpus)}", **base
        )
    if gpus:
        how = "tensorflow-metal PluggableDevice" if gpu_kind == "metal" else "CUDA"
        reason = (
            f"auto: TensorFlow {tf.__version__} sees {len(gpus)} GPU(s) on {system}-{machine} "
            f"via {how}: {', '.join(gpus)}"
        )
        return DeviceDecision(gpu_kind, "/GPU:0", reason, **base)
    reason = f"auto: TensorFlow {tf.__version__} sees no GPU on {system}-{machine}{plugin_note}"
    return DeviceDecision("cpu", "/CPU:0", reason, **base)


def configure_device(decision: DeviceDecision, precision: str = "float32", tf: Any = None) -> None:
    """Apply the decision: GPU memory growth on, and the mixed-precision policy if asked.

    ``mixed_float16`` is only allowed on CUDA (Metal and CPU run float32).
    """
    if precision not in PRECISION_CHOICES:
        raise UserError(
            f"--precision: must be one of {', '.join(PRECISION_CHOICES)}, got {precision!r}"
        )
    if precision == "mixed_float16" and decision.device != "cuda":
        raise UserError(f"--precision mixed_float16: needs a CUDA GPU (device is {decision.device})")
    tf = tf if tf is not None else import_tensorflow()
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised: growth can no longer change
            pass
    if decision.device == "cpu" and decision.gpus:
        tf.config.set_visible_devices([], "GPU")
    import keras  # lazy: imports TensorFlow (after import_tensorflow above)

    keras.mixed_precision.set_global_policy(precision)


def device_report(tf: Any = None) -> str:
    """What TensorFlow sees and what auto would pick (the ``storyedge devices`` output)."""
    tf = tf if tf is not None else import_tensorflow()
    lines = [f"TensorFlow {tf.__version__} on {platform.system()}-{platform.machine()}"]
    for kind in ("CPU", "GPU"):
        found = tf.config.list_physical_devices(kind)
        names = ", ".join(getattr(d, "name", str(d)) for d in found) or "none"
        lines.append(f"  {kind}: {names}")
    for warning in IMPORT_WARNINGS:
        lines.append(f"  warning: {warning}")
    lines.append(select_device("auto", tf=tf).describe())
    return "\n".join(lines)


def set_tf_threads(tf: Any, threads: int) -> None:
    """Ask TensorFlow for ``threads`` intra-op threads; a no-op (logged at debug level) once
    TensorFlow's runtime has started, since it then keeps its thread pools."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        log.debug("TensorFlow already initialised: its thread settings stay as they are")
