"""Word-level placement metric of scripts/check_real_inputs.py on hand-built tracks with known answers."""
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from vssflow_core.errors import VSSFlowError

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("check_real_inputs", ROOT / "scripts" / "check_real_inputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


S = _script()


def test_spoken_word_track_uses_frame_times_half_open():
    # 25 Hz: frame k at k * 0.04 s. Word 0 over [0.08, 0.20) -> frames 2..4; word 1 over [0.20, 0.21)
    # -> frame 5 only; word 2 over [0.22, 0.23) holds no grid time -> no frame.
    track = S.spoken_word_track([(0.08, 0.20), (0.20, 0.21), (0.22, 0.23)], [0, 1, 2], 8)
    assert track.tolist() == [-1, -1, 0, 0, 0, 1, -1, -1]


def test_scores_right_placement_is_perfect():
    spoken = np.array([-1, 0, 0, 0, 1, 1, -1, 2, 2, -1])
    start_s = np.array([1, 4, 7]) / 25.0
    out = S.word_placement_scores(spoken, spoken.copy(), start_s)
    assert out["word_frame_acc"] == 1.0 and out["word_frame_acc_near"] == 1.0 and out["frames"] == 7
    assert out["onset_median_abs_ms"] == 0.0 and out["onset_words"] == 3 and out["unplaced_words"] == 0


def test_scores_late_placement_counts_known_errors():
    # heard:  . 0 0 0 1 1 . 2 2 .      placed one frame late: . . 0 0 0 1 1 . 2 2
    spoken = np.array([-1, 0, 0, 0, 1, 1, -1, 2, 2, -1])
    placed = np.array([-1, -1, 0, 0, 0, 1, 1, -1, 2, 2])
    start_s = np.array([1, 4, 7]) / 25.0
    out = S.word_placement_scores(spoken, placed, start_s)
    # right on frames 2, 3, 5, 8 of the 7 heard frames 1, 2, 3, 4, 5, 7, 8
    assert out["word_frame_acc"] == round(4 / 7, 3)
    # within +-2 frames every placed value (the pause at frame 1 too: heard at frame 0) is heard
    assert out["word_frame_acc_near"] == 1.0
    assert out["onset_median_abs_ms"] == 40.0 and out["onset_median_ms"] == 40.0


def test_scores_swapped_words_and_unplaced_word():
    spoken = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    placed = np.array([1, 1, 1, 1, 0, 0, 0, 0])  # the two words swapped: wrong everywhere
    start_s = np.array([0.0, 4 / 25.0, 0.5])  # word 2 heard (start 0.5 s) but never placed
    out = S.word_placement_scores(spoken, placed, start_s)
    assert out["word_frame_acc"] == 0.0
    assert out["word_frame_acc_near"] == 0.5  # frames 2, 3 (word 1 heard at 4) and 4, 5 (word 0 heard at 3) of 8
    assert math.isclose(out["onset_median_abs_ms"], 160.0) and out["onset_median_ms"] == 0.0
    assert out["onset_words"] == 2 and out["unplaced_words"] == 1


def test_scores_refuse_tracks_of_different_length():
    with pytest.raises(ValueError, match="differ in length"):
        S.word_placement_scores(np.zeros(3), np.zeros(4), np.zeros(1))


def test_match_words_by_index_and_by_difflib():
    assert S.match_words(["Hello,", "World."], ["hello", "world"]) == [(0, 0), (1, 1)]
    # Whisper heard an extra word and missed one
    pairs = S.match_words(["a", "big", "red", "dog"], ["a", "very", "big", "dog"])
    assert pairs == [(0, 0), (1, 2), (3, 3)]


def test_placed_word_track_traces_ids_to_words():
    words, ids, word_of = S.transcript_words("Hi, go.")
    assert words == ["Hi,", "go."]
    # <blank> HH AY <blank> G OW <blank>
    assert word_of == [-1, 0, 0, -1, 1, 1, -1]
    track = np.zeros(12, dtype=np.int64)
    track[2:10] = [ids[0], ids[1], ids[2], ids[2], ids[3], ids[4], ids[5], ids[6]]
    placed = S.placed_word_track(ids, word_of, track, 2, 10)
    assert placed.tolist() == [-1, -1, -1, 0, 0, 0, -1, 1, 1, -1, -1, -1]


def test_transcript_words_refuses_words_spoken_otherwise_in_context():
    # an unknown all-capital word is spelled inside mixed-case text, read as a word alone
    with pytest.raises(VSSFlowError, match="converted one by one"):
        S.transcript_words("Meet the ZORB team")


def _track(level_db_by_frame: np.ndarray, sr: int = 1000) -> np.ndarray:
    """A waveform [F * sr / 25] whose 25 Hz frames have the given loudness (dB; -200 = digital silence)."""
    hop = sr // 25
    amp = np.where(level_db_by_frame > -150, 10 ** (level_db_by_frame / 20) * math.sqrt(2), 0.0)
    t = np.arange(hop) / sr
    return np.concatenate([a * np.sin(2 * np.pi * 100 * t) for a in amp]).astype(np.float32)


def test_cut_loudness_is_against_the_loud_frames_not_the_silence():
    # Sparse sound effects: silence with five 4-frame sounds at -20 dB, one of them at the cut (frame 50).
    levels = np.full(100, -200.0)
    for start in (10, 30, 48, 70, 85):
        levels[start:start + 4] = -20.0
    energy = np.ones(100)
    out = S.sound_report(_track(levels), 1000, energy, np.array([50]))
    assert abs(out["cut_loudness_db"]) < 1.0  # as loud as the other sounds, not +80 dB over the silence

    # The same track with a bang at the cut, 20 dB over the other sounds.
    levels[49:52] = 0.0
    out = S.sound_report(_track(levels), 1000, energy, np.array([50]))
    assert 19.0 < out["cut_loudness_db"] < 21.0
