"""``storyedge bench --random-init`` exports in a spawned child: its progress reaches the parent.

One spawned child at the tiny size (TensorFlow starts in it, ONNX fp32 only), bounded by an
alarm so a hung child fails the test instead of the session.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

#: Wall-clock bound of the child test (TF import + a tiny ONNX export: ~15 s on 2 busy cores).
CHILD_LIMIT_S = 180


class _Timeout(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise _Timeout(f"the random-init child took more than {CHILD_LIMIT_S} s")


@pytest.mark.skipif(not hasattr(signal, "SIGALRM"), reason="needs SIGALRM to bound the child")
def test_random_init_child_reports_per_file_progress(tmp_path: Path, make_tiny_config, capfd) -> None:
    from storyedge.app.random_init import random_init_export_isolated
    from storyedge.manifest import read_manifest

    config = make_tiny_config(tmp_path / "data", **{"export.validation_windows": 2})
    lines: list[str] = []
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CHILD_LIMIT_S)
    try:
        out = random_init_export_isolated(
            config, tmp_path / "exports", threads=1, echo=lines.append, stories=12, quantize="none",
            formats=["onnx"],
        )
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert out == tmp_path / "exports"
    manifest = read_manifest(out)
    assert [f.path for f in manifest.files] == ["onnx/encoder.fp32.onnx", "onnx/decoder_step.fp32.onnx"]
    pattern = re.compile(r"exported (\S+) \((\d+\.\d) s\) \[(\d+)/(\d+)\]")
    exported = [m for m in map(pattern.fullmatch, lines) if m]
    assert [m.group(1) for m in exported] == [f.path for f in manifest.files], lines
    assert [int(m.group(3)) for m in exported] == [2, 3] and {m.group(4) for m in exported} == {"4"}
    assert any(line.startswith("random init: tokenizer") for line in lines)  # the child's own echo
    stderr = capfd.readouterr().err  # the child writes to this process's stderr
    assert "absl::InitializeLog" not in stderr and not [
        line for line in stderr.splitlines() if line.startswith("I0000")], stderr  # TensorFlow's import lines
