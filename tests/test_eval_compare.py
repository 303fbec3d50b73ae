"""eval-compare: metrics recomputed from eval's per-clip records, bootstrap intervals and verdicts."""
import json

import numpy as np
import pytest

from vssflow_core.errors import VSSFlowError
from vssflow_core import cli
from vssflow_core.train import compare


def _records(seed: int = 0, onset_hits: int = 3, dim: int = 6) -> list[dict]:
    """12 clips: 4 speech (WER counts, lip offsets), 8 sound (onsets, class, embeddings)."""
    rng = np.random.default_rng(seed)
    recs = [{"id": f"s{i}", "kind": "speech", "wer_counts": [i % 3, 6], "cer_counts": [i % 4, 25],
             "lip_offset": [0, -1, 2, 1][i]} for i in range(4)]
    for i in range(8):
        recs.append({"id": f"f{i}", "kind": "sfx", "onset_counts": [min(onset_hits, 4), 4, 5], "class_ok": i % 4 != 0,
                     "emb": rng.normal(size=dim).tolist(), "real_emb": (rng.normal(size=dim) + 0.3).tolist()})
    return recs


def test_metrics_of_records_match_the_definitions():
    m = compare.metrics_of(_records())
    assert m["wer"] == pytest.approx((0 + 1 + 2 + 0) / 24) and m["cer"] == pytest.approx((0 + 1 + 2 + 3) / 100)
    assert m["lip_offset_ok_frac"] == 0.75
    assert m["onset_f1"] == pytest.approx(2 * 24 / (32 + 40))
    assert m["class_acc"] == 0.75 and m["fd"] > 0


def test_one_file_gives_intervals_around_the_value():
    table = compare.compare(_records(), resamples=60)
    assert set(table) == {"wer", "cer", "lip_offset_ok_frac", "onset_f1", "class_acc", "fd"}
    for row in table.values():
        lo, hi = row["a_ci"]
        assert lo <= hi and "verdict" not in row
    assert table["wer"]["a_ci"][0] < table["wer"]["a"] < table["wer"]["a_ci"][1]  # per-clip WER varies
    assert table["onset_f1"]["a_ci"] == pytest.approx((table["onset_f1"]["a"],) * 2)  # every clip is the same
    assert all(row["finite_draws"] == 60 for row in table.values())


def test_paired_verdicts():
    a = _records()
    same = compare.compare(a, _records(), resamples=60)
    assert all(row["verdict"] == "same within 2 %" and row["rel_change"] == 0 for row in same.values())
    better = compare.compare(a, _records(onset_hits=4), resamples=60)["onset_f1"]
    assert better["rel_change"] > 0 and better["verdict"] == "better"
    worse = compare.compare(a, _records(onset_hits=2), resamples=60)["onset_f1"]
    assert worse["verdict"] == "worse"
    b = _records()
    b[0]["wer_counts"] = [1, 6]  # one more word wrong on one clip: a change the 12 clips cannot resolve
    assert compare.compare(a, b, resamples=200)["wer"]["verdict"] == "not resolved"
    assert compare.verdict(-0.08, 0.015, True, 2.0) == "no worse than 2 %"  # maybe better, at most 1.5 % worse
    assert compare.verdict(-0.015, 0.08, False, 2.0) == "no worse than 2 %"  # higher is better: the low end counts
    assert compare.verdict(-0.08, 0.025, True, 2.0) == "not resolved"
    assert compare.verdict(-0.015, 0.018, True, 2.0) == "same within 2 %"
    fd = compare.compare(a, _records(seed=1), resamples=40)["fd"]  # other embeddings: FD differs
    assert fd["rel_change"] != 0 and fd["rel_ci"][0] <= fd["rel_ci"][1]


def test_files_must_hold_the_same_clips(tmp_path):
    b = _records()[1:]
    with pytest.raises(VSSFlowError, match="different clips"):
        compare.compare(_records(), b, resamples=20)


def test_cli_errors_and_json(tmp_path, capsys):
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"wer": 0.5}))
    for argv, message in (([str(old)], "older eval"), ([str(tmp_path / "missing.json")], "does not exist"),
                          ([str(old), "--margin", "-1"], "--margin")):
        assert cli.main(["eval-compare", *argv]) == 2
        assert message in capsys.readouterr().err
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"clips": _records()}))
    b.write_text(json.dumps({"clips": _records(onset_hits=4)}))
    out = tmp_path / "table.json"
    assert cli.main(["eval-compare", str(a), str(b), "--resamples", "40", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "onset_f1" in printed and "better" in printed
    assert json.loads(out.read_text())["table"]["onset_f1"]["verdict"] == "better"


def test_chunks_of_one_run_read_as_one(tmp_path, capsys):
    recs = _records()
    parts = [tmp_path / "a_000.json", tmp_path / "a_006.json"]
    parts[0].write_text(json.dumps({"clips": recs[:6]}))
    parts[1].write_text(json.dumps({"clips": recs[6:]}))
    joined = ",".join(str(p) for p in parts)
    assert compare.load_records(joined) == recs
    whole = tmp_path / "b.json"
    whole.write_text(json.dumps({"clips": recs}))
    assert cli.main(["eval-compare", joined, str(whole), "--resamples", "20"]) == 0
    assert "(12 clips" in capsys.readouterr().out
    with pytest.raises(VSSFlowError, match="clip s0 is in both"):
        compare.load_records(f"{parts[0]},{parts[0]}")


def test_a_report_that_appeared_during_the_run_is_kept(tmp_path, capsys):
    """eval/diagnose/bench refuse an existing --json at the start; a file that appears while they work
    is not overwritten: the results go to the next free name beside it. eval-compare replaces its own."""
    from vssflow_core.train.report import write_json_report

    target = tmp_path / "out.json"
    target.write_text("someone else's")
    written = write_json_report(target, {"wer": np.float32(0.25)})
    assert target.read_text() == "someone else's"
    assert written == tmp_path / "out_00001_.json" and json.loads(written.read_text()) == {"wer": 0.25}
    assert "not overwriting" in capsys.readouterr().out
    assert write_json_report(target, {"wer": 0.5}, replace=True) == target
    assert json.loads(target.read_text()) == {"wer": 0.5}
