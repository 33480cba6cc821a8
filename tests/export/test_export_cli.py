"""``storyedge export`` through ``storyedge.app.cli.main``: exit codes, refusal, overwrite, rejection.

Conversions here are ONNX only (seconds); the full matrix is exported once in conftest.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from storyedge.app.cli import main


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(["export", *args])
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def _snapshot(directory: Path) -> dict[str, tuple[int, float]]:
    return {
        str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime)
        for p in directory.rglob("*")
        if p.is_file()
    }


def test_help_documents_io_and_tolerances(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["--help"], capsys)
    assert code == 0
    for text in ("-> h0 [B,H], c0 [B,H], context [B,C]", "logits [B,V], h_out, c_out", "multi-signature", "int8-dynamic", "--overwrite", "rejected/",
                 "--tolerance", "atol x 100"):
        assert text in out, text


def test_refuse_existing_out_then_overwrite(export_env, full_export: Path, tmp_path: Path, capsys) -> None:
    import shutil

    out = tmp_path / "existing"
    shutil.copytree(full_export, out)
    (out / "stray.txt").write_text("old run")
    before = _snapshot(out)
    args = ["--checkpoint", str(export_env.run_dir), "--out", str(out), "--format", "onnx",
            "--quantize", "none", "--no-progress", "--validation-windows", "2"]
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert "not empty" in err and "--overwrite" in err
    assert _snapshot(out) == before
    assert not list(tmp_path.glob("existing.*-*"))

    code, stdout, err = run_cli([*args, "--overwrite"], capsys)
    assert code == 0, err
    assert "onnx/encoder.fp32.onnx" in stdout and " ok" in stdout  # the final table
    assert not (out / "stray.txt").exists() and not (out / "tflite").exists()  # replaced as a whole
    manifest = json.loads((out / "manifest.json").read_text())
    assert [f["path"] for f in manifest["files"]] == ["onnx/encoder.fp32.onnx", "onnx/decoder_step.fp32.onnx"]
    assert manifest["source"]["validation"]["data"] == "validation split"
    assert not list(tmp_path.glob("existing.*-*"))


def test_forced_validation_failure_rejects_files(export_env, tmp_path: Path, capsys) -> None:
    """--atol 1e-12 fails every file, except int8-dynamic whose tolerance is overridden."""
    out = tmp_path / "strict"
    code, _, err = run_cli(
        ["--checkpoint", str(export_env.run_dir), "--out", str(out), "--format", "onnx",
         "--quantize", "none,int8-dynamic", "--atol", "1e-12", "--tolerance", "int8-dynamic=0.5",
         "--validation-windows", "1", "--validation-data", "synthetic", "--no-progress"],
        capsys,
    )
    assert code == 1
    assert "failed validation" in err and "REJECTED" in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert [f["path"] for f in manifest["files"]] == ["onnx/encoder.int8-dynamic.onnx", "onnx/decoder_step.int8-dynamic.onnx"]
    assert manifest["files"][0]["validation"]["base"] == 0.5
    rejected = {f["path"] for f in manifest["rejected"]}
    assert rejected == {"rejected/onnx/encoder.fp32.onnx", "rejected/onnx/decoder_step.fp32.onnx"}
    for f in manifest["rejected"]:
        assert f["validation"]["passed"] is False and f["validation"]["failing_outputs"]
        assert (out / f["path"]).is_file()
        assert f["validation"]["rejected_from"] == f["path"].removeprefix("rejected/")
    assert not (out / "onnx" / "encoder.fp32.onnx").exists()

    from storyedge.manifest import read_manifest, verify_files
    from storyedge.runtime import backend_specs

    specs = backend_specs(out, read_manifest(out))
    assert [s.name for s in specs] == ["onnx-int8-dynamic"]  # rejected files are never offered
    verify_files(out, read_manifest(out))


def test_missing_checkpoint_is_exit_2(tmp_path: Path, capsys, monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "storyedge.model.story_model", None)  # no model (TensorFlow) needed for that
    out = tmp_path / "x"
    code, _, err = run_cli(["--checkpoint", str(tmp_path / "nope"), "--out", str(out)], capsys)
    assert code == 2 and "checkpoint not found" in err
    assert not out.exists() and not list(tmp_path.glob("x.tmp-*"))


def test_incompatible_config_names_the_key(export_env, tmp_path: Path, capsys) -> None:
    from storyedge.config import load_config

    other = load_config(export_env.config_path).replace(**{"model.decoder_hidden_dim": 40})
    path = tmp_path / "other.yaml"
    other.save(path)
    out = tmp_path / "x"
    code, _, err = run_cli(["--checkpoint", str(export_env.run_dir), "--config", str(path), "--out", str(out)], capsys)
    assert code == 2
    assert "model.decoder_hidden_dim" in err
    assert not out.exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--format", "coreml"], "coreml"),
        (["--quantize", "int2"], "int2"),
        (["--tolerance", "int8"], "--tolerance"),
        (["--opset", "7"], "opset"),
    ],
)
def test_bad_arguments_are_exit_2(export_env, tmp_path: Path, capsys, extra: list[str], message: str) -> None:
    out = tmp_path / "x"
    code, stdout, err = run_cli(["--checkpoint", str(export_env.run_dir), "--out", str(out), *extra], capsys)
    assert code == 2
    assert message in err + stdout
    assert not out.exists()


def test_unwritable_out_dir_is_exit_2(export_env, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "plain_file"
    blocker.write_text("x")
    code, _, err = run_cli(["--checkpoint", str(export_env.run_dir), "--out", str(blocker / "sub" / "out")], capsys)
    assert code == 2 and "is not a directory" in err
    if Path("/proc/self").is_dir():  # not writable, even for root
        code, _, err = run_cli(["--checkpoint", str(export_env.run_dir), "--out", "/proc/storyedge-out"], capsys)
        assert code == 2 and "cannot write" in err


def test_out_dir_is_a_file_is_exit_2(export_env, tmp_path: Path, capsys) -> None:
    out = tmp_path / "file"
    out.write_text("not a dir")
    code, _, err = run_cli(["--checkpoint", str(export_env.run_dir), "--out", str(out)], capsys)
    assert code == 2 and "not a directory" in err
