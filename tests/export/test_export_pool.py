"""TFLite conversions in worker processes (storyedge.export.tflite_pool)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storyedge.errors import CheckFailed
from storyedge.export.tflite_build import PendingFile, _converted
from storyedge.export.tflite_pool import MAX_AUTO_WORKERS, Conversions, auto_workers


def test_auto_workers_take_the_config_else_the_cores_and_never_exceed_the_jobs() -> None:
    assert auto_workers(3, 10) == 3
    assert auto_workers(8, 2) == 2
    assert auto_workers(None, 100) == min(os.cpu_count() or 1, MAX_AUTO_WORKERS)
    assert auto_workers(None, 1) == 1 and auto_workers(2, 0) == 1


def _saved_model(path: Path) -> Path:
    tf = pytest.importorskip("tensorflow")

    class Double(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="x")])
        def serve(self, x):  # noqa: ANN001, ANN202 - a tf.function signature
            return {"y": tf.matmul(x, tf.ones([4, 3])) * 2.0}

    module = Double()
    tf.saved_model.save(module, str(path), signatures={"serve": module.serve})
    return path


def test_a_worker_converts_the_same_bytes_as_this_process_and_reports_failures(tmp_path: Path) -> None:
    saved = _saved_model(tmp_path / "saved")
    here, there = Conversions(1), Conversions(2)
    try:
        mine = here.submit(saved, ("serve",), "int8-dynamic", None, tmp_path / "here.tflite")
        theirs = there.submit(saved, ("serve",), "int8-dynamic", None, tmp_path / "there.tflite")
        broken = there.submit(tmp_path / "missing", ("serve",), "fp32", None, tmp_path / "broken.tflite")
        assert mine.result() > 0 and theirs.result() > 0
        assert (tmp_path / "here.tflite").read_bytes() == (tmp_path / "there.tflite").read_bytes()
        with pytest.raises(CheckFailed, match=r"TFLite conversion of encoder \(fp32\) failed: .*missing"):
            _converted(PendingFile("encoder", ("serve",), "fp32", broken))
        assert not (tmp_path / "broken.tflite").exists()
    finally:
        here.close()
        there.close()
