"""Device choice matrix with TensorFlow's device lists and the platform faked."""

import sys
import types

import pytest

from storyedge import devices
from storyedge.devices import configure_device, import_tensorflow, select_device
from storyedge.errors import UserError


class FakeDevice:
    def __init__(self, name: str) -> None:
        self.name = name


def fake_tf(gpus: int) -> types.SimpleNamespace:
    listing = {
        "GPU": [FakeDevice(f"/physical_device:GPU:{i}") for i in range(gpus)],
        "CPU": [FakeDevice("/physical_device:CPU:0")],
    }
    growth: list = []
    visible: list = []
    config = types.SimpleNamespace(
        list_physical_devices=lambda kind: listing[kind],
        experimental=types.SimpleNamespace(set_memory_growth=lambda d, on: growth.append((d.name, on))),
        set_visible_devices=lambda devs, kind: visible.append((devs, kind)),
    )
    return types.SimpleNamespace(__version__="2.99.0", config=config, growth=growth, visible=visible)


@pytest.fixture(autouse=True)
def no_import_warnings(monkeypatch):
    monkeypatch.setattr(devices, "IMPORT_WARNINGS", [])


@pytest.mark.parametrize(
    "system, machine, gpus, expected",
    [
        ("Linux", "x86_64", 1, "cuda"),
        ("Windows", "AMD64", 2, "cuda"),
        ("Darwin", "arm64", 1, "metal"),
        ("Linux", "x86_64", 0, "cpu"),
        ("Darwin", "arm64", 0, "cpu"),
        ("Darwin", "x86_64", 0, "cpu"),
    ],
)
def test_auto_matrix(system, machine, gpus, expected):
    decision = select_device("auto", tf=fake_tf(gpus), system=system, machine=machine)
    assert decision.device == expected
    assert decision.tf_device == ("/CPU:0" if expected == "cpu" else "/GPU:0")
    assert decision.reason.startswith("auto: TensorFlow 2.99.0")
    assert f"{system}-{machine}" in decision.reason


def test_auto_on_metal_says_plugin():
    decision = select_device("auto", tf=fake_tf(1), system="Darwin", machine="arm64")
    assert "tensorflow-metal" in decision.reason and "GPU:0" in decision.reason


def test_explicit_cpu_even_with_gpu():
    decision = select_device("cpu", tf=fake_tf(1), system="Linux", machine="x86_64")
    assert decision.device == "cpu" and decision.gpus == ["/physical_device:GPU:0"]


@pytest.mark.parametrize("requested", ["cuda", "metal"])
def test_explicit_gpu_absent_is_a_user_error(requested):
    with pytest.raises(UserError, match=f"--device {requested}: TensorFlow 2.99.0 sees no GPU"):
        select_device(requested, tf=fake_tf(0), system="Linux", machine="x86_64")


def test_explicit_metal_on_linux_gpu_is_a_user_error():
    with pytest.raises(UserError, match="the GPU here is cuda"):
        select_device("metal", tf=fake_tf(1), system="Linux", machine="x86_64")


def test_unknown_device():
    with pytest.raises(UserError, match="--device: must be one of"):
        select_device("tpu", tf=fake_tf(0))


def test_plugin_failure_falls_back_to_cpu_with_a_warning(monkeypatch):
    """The first import fails the way tensorflow-metal 1.2.0 does on TF >= 2.20; the retry
    (plugin loading disabled) succeeds, and auto then resolves to the CPU with the warning."""
    loader = types.ModuleType("tensorflow.python.framework.load_library")
    loader.load_pluggable_device_library = lambda path: (_ for _ in ()).throw(OSError("boom"))
    loader.load_library = loader.load_pluggable_device_library
    monkeypatch.setitem(sys.modules, "tensorflow.python.framework.load_library", loader)
    tf_without_gpu = fake_tf(0)
    calls = []

    def importer():
        calls.append(1)
        try:
            loader.load_pluggable_device_library("/site-packages/tensorflow-plugins/libmetal_plugin.dylib")
        except OSError:
            raise RuntimeError(
                "NotFoundError: dlopen(libmetal_plugin.dylib): Symbol not found: _TF_GetInputPropertiesList"
            ) from None
        return tf_without_gpu

    tf = import_tensorflow(importer)
    assert tf is tf_without_gpu and len(calls) == 2
    assert len(devices.IMPORT_WARNINGS) == 1 and "continuing on the CPU" in devices.IMPORT_WARNINGS[0]
    decision = select_device("auto", tf=tf, system="Darwin", machine="arm64")
    assert decision.device == "cpu" and decision.warnings == devices.IMPORT_WARNINGS
    assert "device plugin failed to load" in decision.reason


def test_non_plugin_import_errors_propagate():
    def importer():
        raise ImportError("No module named 'tensorflow'")

    with pytest.raises(ImportError):
        import_tensorflow(importer)


def test_configure_turns_on_memory_growth(monkeypatch):
    tf = fake_tf(2)
    decision = select_device("auto", tf=tf, system="Linux", machine="x86_64")
    configure_device(decision, "float32", tf=tf)
    assert tf.growth == [("/physical_device:GPU:0", True), ("/physical_device:GPU:1", True)]


def test_mixed_precision_needs_cuda():
    tf = fake_tf(0)
    decision = select_device("cpu", tf=tf, system="Linux", machine="x86_64")
    with pytest.raises(UserError, match="mixed_float16: needs a CUDA GPU"):
        configure_device(decision, "mixed_float16", tf=tf)


def test_real_tensorflow_on_this_machine_is_cpu():
    decision = select_device("auto")
    assert decision.device == "cpu"
    assert decision.tf_version
