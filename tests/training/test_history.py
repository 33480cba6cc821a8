"""history.json / history.csv / curves.png."""

import csv
import json
import math

from storyedge.training.history import History


def _record(epoch: int, val_loss: float) -> dict:
    return {
        "epoch": epoch, "step": 10 * epoch, "train_loss": 2.0 / epoch,
        "train_ppl": math.exp(2.0 / epoch), "val_loss": val_loss, "val_ppl": math.exp(val_loss),
        "tokens_per_s": 100.0, "epoch_seconds": 1.5, "elapsed_seconds": 1.5 * epoch,
    }


def test_history_files_round_trip(tmp_path):
    history = History(unigram_ppl=12.5)
    for epoch, loss in [(1, 2.0), (2, 1.2), (3, 1.4)]:
        history.append(_record(epoch, loss))
    history.save(tmp_path)
    data = json.loads((tmp_path / "history.json").read_text())
    assert data["unigram_val_ppl"] == 12.5
    assert [r["val_loss"] for r in data["epochs"]] == [2.0, 1.2, 1.4]
    rows = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[1]["val_ppl"]) == math.exp(1.2)
    png = (tmp_path / "curves.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    assert History.load(tmp_path).best()["epoch"] == 2


def test_the_data_floor_is_saved_beside_the_unigram_baseline(tmp_path):
    floor = {"split": "validation", "windows": 9, "floor_ppl": 1.1, "oracle_exact_match": 0.7}
    history = History([_record(1, 0.5)], unigram_ppl=12.5, data_floor=floor)
    history.save(tmp_path, curves=False)
    data = json.loads((tmp_path / "history.json").read_text())
    assert data["data_floor_ppl"] == 1.1 and data["oracle_exact_match"] == 0.7
    assert data["data_floor"] == floor
    assert History.load(tmp_path).floor_ppl == 1.1
    History([_record(1, 0.5)]).save(tmp_path, curves=False)  # no floor: no keys
    assert "data_floor_ppl" not in json.loads((tmp_path / "history.json").read_text())


def test_truncate_drops_epochs_a_resumed_checkpoint_has_not_finished(tmp_path):
    history = History([_record(e, 1.0 / e) for e in (1, 2, 3)])
    history.truncate(2)
    assert [r["epoch"] for r in history.records] == [1, 2]


def test_non_finite_values_are_written_as_null(tmp_path):
    history = History()
    history.append({**_record(1, 1.0), "train_loss": float("nan"), "train_ppl": float("nan")})
    history.save(tmp_path)
    data = json.loads((tmp_path / "history.json").read_text())
    assert data["epochs"][0]["train_loss"] is None
