"""``storyedge data synth`` / ``storyedge data info``."""

from __future__ import annotations

from pathlib import Path

import datasets
from click.testing import CliRunner

from storyedge.app.data_cli import data
from storyedge.errors import DataError


def test_synth_writes_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "syn"
    result = CliRunner().invoke(data, ["synth", "--out", str(out), "--stories", "10", "--seed", "1", "--frame-size", "32"])
    assert result.exit_code == 0, result.output
    assert f"to {out}" in result.output
    assert "train" in result.output and "8 stories" in result.output
    assert "validation" in result.output and "wall time" in result.output
    loaded = datasets.load_from_disk(str(out))
    assert {k: len(v) for k, v in loaded.items()} == {"train": 8, "validation": 1, "test": 1}
    assert loaded["train"][0]["frames"][0].size == (32, 32)

    again = CliRunner().invoke(data, ["synth", "--out", str(out), "--stories", "10"])
    assert isinstance(again.exception, DataError) and "already exists" in str(again.exception)
    replaced = CliRunner().invoke(data, ["synth", "--out", str(out), "--stories", "12", "--frame-size", "32", "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert sum(len(v) for v in datasets.load_from_disk(str(out)).values()) == 12


def test_info_prints_split_table(tmp_path: Path) -> None:
    config = tmp_path / "cfg.yaml"
    config.write_text(
        f"dataset:\n  name: synthetic\n  path: {tmp_path / 'syn'}\n  synthetic_stories: 10\n  seq_len: 4\n"
    )
    result = CliRunner().invoke(data, ["info", "--config", str(config)])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split() for line in result.output.splitlines() if line.strip()}
    train = lines["train"]
    assert train[1] == "8"  # stories
    windows, skipped = int(train[2]), int(train[3])
    counts = datasets.load_from_disk(str(tmp_path / "syn"))["train"]["frame_count"]
    assert windows == sum(max(0, n - 4) for n in counts)
    assert skipped == sum(n < 5 for n in counts)
    assert "k+1 = 5" in result.output
    # the embedded stories: their vocabulary and the data's PPL floor per eval split
    assert int(lines["vocabulary:"][1]) > 50
    for split in ("validation", "test"):
        floor_line = next(line for line in result.output.splitlines() if line.split()[:3] == [split, "PPL", "floor"])
        assert 1.0 < float(floor_line.split()[3]) < 1.5 and "oracle exact match" in floor_line
