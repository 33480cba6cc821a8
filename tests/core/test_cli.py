"""Top-level CLI: every command is listed and has --help; errors become one line + exit 2."""

import subprocess
import sys

import pytest

from storyedge.app.cli import SUBCOMMANDS, main

COMMANDS = ["bench", "data", "devices", "export", "generate", "quickstart", "train"]


def run_main(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_help_lists_every_command(capsys):
    code, out, _ = run_main(["--help"], capsys)
    assert code == 0
    listed = [line.split()[0] for line in out.split("Commands:")[1].strip().splitlines()]
    assert listed == COMMANDS
    assert set(SUBCOMMANDS) | {"devices"} == set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    code, out, _ = run_main([command, "--help"], capsys)
    assert code == 0
    assert "not yet available" not in out
    assert out.startswith(f"Usage: storyedge {command}")


def test_unknown_command_is_a_usage_error(capsys):
    code, _, err = run_main(["trian"], capsys)
    assert code == 2 and "No such command 'trian'" in err


def test_devices_prints_the_decision(capsys):
    code, out, _ = run_main(["devices"], capsys)
    assert code == 0
    assert "CPU: /physical_device:CPU:0" in out
    assert out.strip().splitlines()[-1].startswith("device: cpu (/CPU:0) - auto: TensorFlow")


def test_absent_device_is_one_line_exit_2():
    proc = subprocess.run(
        [sys.executable, "-m", "storyedge.app.cli", "devices", "--device", "cuda"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    error_lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert error_lines == [
        error_lines[0]
    ] and "--device cuda: TensorFlow" in error_lines[0] and "sees no GPU" in error_lines[0]
    assert "Traceback" not in proc.stderr


def test_help_does_not_import_tensorflow():
    code = (
        "import sys; from storyedge.app.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'tensorflow' not in sys.modules, 'help imported tensorflow'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
