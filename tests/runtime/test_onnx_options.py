"""The ONNX Runtime session options every backend session gets."""

from __future__ import annotations

from pathlib import Path

import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from storyedge.runtime.onnxrt import (  # noqa: E402
    FORCE_SPINNING_STOP,
    SPIN_DURATION_US,
    STEP_SPIN_US,
    OnnxBackend,
    _profiled,
    bounded_spin,
    session_options,
)
from storyedge.runtime.specs import BackendSpec  # noqa: E402

from bench_testutil import toy_decoder  # noqa: E402


def entry(options, key: str) -> str | None:
    """A session config entry, None where the options have none."""
    try:
        return options.get_session_config_entry(key)
    except RuntimeError:  # ONNX Runtime raises for a key it was not given
        return None


def test_sessions_stop_spinning_after_a_run_and_keep_the_thread_count() -> None:
    options = session_options(ort, 2)
    assert entry(options, FORCE_SPINNING_STOP) == "1" and entry(options, SPIN_DURATION_US) is None
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 1)
    assert session_options(ort, None).intra_op_num_threads == 0  # ONNX Runtime chooses


def test_a_bounded_spin_replaces_the_stop_where_onnx_runtime_bounds_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ort, "__version__", "1.26.0")
    options = session_options(ort, 2, 100)
    assert entry(options, SPIN_DURATION_US) == "100" and entry(options, FORCE_SPINNING_STOP) is None
    # before 1.26 the key means nothing and the threads would spin about a million pauses
    monkeypatch.setattr(ort, "__version__", "1.25.1")
    options = session_options(ort, 2, 100)
    assert entry(options, FORCE_SPINNING_STOP) == "1" and entry(options, SPIN_DURATION_US) is None


@pytest.mark.parametrize(("version", "bounded"), [
    ("1.22.0", False), ("1.25.1", False), ("1.26.0", True), ("1.32.0", True), ("1.26.0.dev20260501", True),
    ("2.0.0", True), ("0.30.0", False),
])
def test_bounded_spin_reads_the_release(version: str, bounded: bool) -> None:
    assert bounded_spin(version) is bounded


def test_a_profiled_session_has_the_same_options(tmp_path: Path) -> None:
    options = _profiled(ort, 2, tmp_path / "profiles", "encoder")
    assert options.enable_profiling and options.profile_file_prefix == str(tmp_path / "profiles" / "encoder")
    assert options.get_session_config_entry(FORCE_SPINNING_STOP) == "1" and options.intra_op_num_threads == 2
    assert not _profiled(ort, 2, None, "encoder").enable_profiling


def identity_model(path: Path) -> Path:
    """A one-node ONNX file (``x`` → ``y``)."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_only_the_step_session_spins_between_runs(tmp_path: Path) -> None:
    spec = BackendSpec("onnx-fp32", "onnx", "fp32", "separate", identity_model(tmp_path / "encoder.onnx"),
                       identity_model(tmp_path / "decoder_step.onnx"), 1, toy_decoder(4))
    backend = OnnxBackend(spec, threads=2)
    encoder, step = backend._encoder.get_session_options(), backend._decoder.get_session_options()
    assert entry(encoder, FORCE_SPINNING_STOP) == "1" and entry(encoder, SPIN_DURATION_US) is None
    if bounded_spin(ort.__version__):
        assert entry(step, SPIN_DURATION_US) == str(STEP_SPIN_US) and entry(step, FORCE_SPINNING_STOP) is None
    else:
        assert entry(step, FORCE_SPINNING_STOP) == "1" and entry(step, SPIN_DURATION_US) is None
    assert step.intra_op_num_threads == encoder.intra_op_num_threads == 2
