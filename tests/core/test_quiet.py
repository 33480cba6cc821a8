"""storyedge.quiet: third-party output our users need not read is left out, the rest kept."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from storyedge.quiet import quiet_native_output, without_import_noise

NOISE = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1796616846.084716    8031 port.cc:153] oneDNN custom operations are on.\n"
    "I0000 00:00:1796616846.085041    8031 cudart_stub.cc:31] Could not find cuda drivers on your machine.\n"
)
KEPT = "W0000 00:00:1796616846.1 cuda_dnn.cc:1] a warning\nE0000 00:00:1796616846.2 x.cc:2] an error\nplain text\n"


def test_import_noise_drops_absl_info_lines_and_keeps_warnings_errors_and_the_rest() -> None:
    assert without_import_noise(NOISE + KEPT + NOISE) == KEPT
    assert without_import_noise("") == ""


def _run(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter with a module ``noisy`` that writes to fd 2 at import."""
    (tmp_path / "noisy.py").write_text(textwrap.dedent(f"""
        import os
        os.write(2, {(NOISE + KEPT).encode()!r})
        if os.environ.get("NOISY_FAILS"):
            raise RuntimeError("broken build")
        """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)


HOOKED = """
    import importlib.util, sys
    from storyedge.quiet import _QuietImportFinder
    sys.meta_path.insert(0, _QuietImportFinder("noisy"))
    assert importlib.util.find_spec("noisy") is not None  # asking whether it is there imports nothing
    try:
        import noisy
    except RuntimeError as exc:
        print("raised", exc)
    print("hook gone", not any(isinstance(f, _QuietImportFinder) for f in sys.meta_path))
"""


def test_a_quiet_import_prints_back_all_but_the_noise(tmp_path: Path) -> None:
    plain = _run("import noisy", tmp_path)
    assert plain.stderr == NOISE + KEPT  # the control: the module does print the noise
    quiet = _run(HOOKED, tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == KEPT
    assert quiet.stdout.splitlines() == ["hook gone True"]


def test_a_failed_quiet_import_prints_everything_back_and_raises(tmp_path: Path) -> None:
    os.environ["NOISY_FAILS"] = "1"
    try:
        failed = _run(HOOKED, tmp_path)
    finally:
        del os.environ["NOISY_FAILS"]
    assert failed.stdout.splitlines() == ["raised broken build", "hook gone True"]
    assert failed.stderr == NOISE + KEPT


def test_the_cli_imports_tensorflow_without_its_info_lines(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-m", "storyedge.app", "devices"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0 and "TensorFlow" in done.stdout
    assert "absl::InitializeLog" not in done.stderr and not [
        line for line in done.stderr.splitlines() if line.startswith("I0000")], done.stderr


def test_quiet_native_output_echoes_what_it_caught_when_the_block_fails(capfd) -> None:
    with quiet_native_output():
        os.write(2, b"converter chatter\n")
    assert capfd.readouterr().err == ""
    try:
        with quiet_native_output():
            os.write(2, b"why it failed\n")
            raise ValueError("conversion failed")
    except ValueError:
        pass
    assert capfd.readouterr().err == "why it failed\n"
