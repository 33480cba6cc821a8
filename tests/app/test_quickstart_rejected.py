"""A quickstart whose export rejects files still benches the accepted ones, then exits 1."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from click.testing import CliRunner

from storyedge.app import quickstart as qs
from storyedge.errors import CheckFailed


def test_rejected_exports_are_benched_then_the_run_fails(monkeypatch, tmp_path: Path) -> None:
    calls: list[str] = []
    monkeypatch.setattr(qs, "data_stage", lambda cfg: calls.append("data"))
    monkeypatch.setattr(qs, "train_stage", lambda cfg, device: calls.append("train"))
    monkeypatch.setattr(qs, "ablation_stage", lambda *a, **k: None)

    def export(*args, **kwargs):
        raise CheckFailed("1 exported file(s) failed validation and were moved to exports/rejected")

    monkeypatch.setattr(qs, "export_from_checkpoint", export)
    monkeypatch.setattr(qs, "bench_stage", lambda *a: (calls.append("bench"), (SimpleNamespace(), None))[1])
    monkeypatch.setattr(qs, "final_screen", lambda *a: "final screen")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(qs.quickstart, ["--no-ablation"])
    assert calls == ["data", "train", "bench"]
    assert "final screen" in result.output
    assert "failed validation" in result.output
    assert isinstance(result.exception, CheckFailed)


def test_reused_exports_with_rejected_files_fail_again(monkeypatch, tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    exports.mkdir()
    (exports / qs.MANIFEST_FILE).write_text("{}")
    monkeypatch.setattr(qs, "read_manifest", lambda path: SimpleNamespace(rejected=[object()]))
    monkeypatch.setattr(qs, "verify_files", lambda *a: None)
    cfg = qs.load_config(None)
    failure = qs.export_stage(cfg, tmp_path / "run", exports, force=False)
    assert isinstance(failure, CheckFailed) and "rejected" in str(failure)
