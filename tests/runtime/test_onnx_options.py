"""The ONNX Runtime session options every backend session gets."""

from __future__ import annotations

from pathlib import Path

import pytest

ort = pytest.importorskip("onnxruntime")

from storyedge.runtime.onnxrt import FORCE_SPINNING_STOP, _profiled, session_options  # noqa: E402


def test_sessions_stop_spinning_after_a_run_and_keep_the_thread_count() -> None:
    options = session_options(ort, 2)
    assert options.get_session_config_entry(FORCE_SPINNING_STOP) == "1"
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 1)
    assert session_options(ort, None).intra_op_num_threads == 0  # ONNX Runtime chooses


def test_a_profiled_session_has_the_same_options(tmp_path: Path) -> None:
    options = _profiled(ort, 2, tmp_path / "profiles", "encoder")
    assert options.enable_profiling and options.profile_file_prefix == str(tmp_path / "profiles" / "encoder")
    assert options.get_session_config_entry(FORCE_SPINNING_STOP) == "1" and options.intra_op_num_threads == 2
    assert not _profiled(ort, 2, None, "encoder").enable_profiling
