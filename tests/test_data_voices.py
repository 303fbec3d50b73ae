"""More training voices (flite / festival): phone timings, speaking rate, voice choice per clip,
and that the voices are different speakers to the voice front-end."""
import shutil

import numpy as np
import pytest

from vssflow_core.data import clips
from vssflow_core.data.cmu_voices import VOICES, _parse_psdur, _parse_segs, cmu_segments, synthesize_cmu
from vssflow_core.errors import VSSFlowError
from vssflow_core.features.lip_space import PHONEME_OPENING

SR = 22050
TEXT = "Please find the clean cookie in the garden."


def _installed(voice_id: str) -> bool:
    return shutil.which(VOICES[voice_id].engine) is not None


def test_cmu_phones_become_arpabet_segments():
    ends = _parse_psdur("pau:0.195 p:0.280 l:0.316 iy:0.491 ax:0.6 pau:0.7 pau:0.9 junk")
    assert ends[:2] == [("pau", 0.195), ("p", 0.28)] and len(ends) == 7
    assert cmu_segments(ends) == [("<blank>", 0.0, 0.195), ("P", 0.195, 0.28), ("L", 0.28, 0.316),
                                  ("IY", 0.316, 0.491), ("AH", 0.491, 0.6), ("<blank>", 0.6, 0.9)]
    assert _parse_segs("#\n0.1750 100 pau\n0.2700 100 p\nbad line\n") == [("pau", 0.175), ("p", 0.27)]


@pytest.mark.parametrize("voice_id", sorted(VOICES))
def test_voice_speaks_with_timings_and_rate(voice_id):
    if not _installed(voice_id):
        pytest.skip(f"{VOICES[voice_id].engine} is not installed")
    audio, segs = synthesize_cmu(voice_id, TEXT, 1.0, SR)
    assert audio.dtype == np.float32 and abs(float(np.abs(audio).max()) - 1.0) < 1e-5
    assert abs(segs[-1][2] - len(audio) / SR) < 0.06  # the timings cover the audio
    assert all(a < b for _, a, b in segs) and all(segs[i][2] == segs[i + 1][1] for i in range(len(segs) - 1))
    spoken = [s for s, _, _ in segs if s != "<blank>"]
    assert len(spoken) >= 25 and all(s in PHONEME_OPENING for s in spoken)  # every phone drives the mouth
    slow, _ = synthesize_cmu(voice_id, TEXT, 1.3, SR)
    assert len(slow) > 1.15 * len(audio)


def test_clip_voice_is_drawn_apart_from_the_content():
    if not _installed("awb"):
        pytest.skip("flite is not installed")
    pytest.importorskip("piper")
    base = clips.build_clip(3, 0, "speech", duration_s=4.0, use_real_sounds=False)
    other = clips.build_clip(3, 0, "speech", duration_s=4.0, use_real_sounds=False, voices=("awb",))
    assert base.voice == "joe" and other.voice == "awb"
    assert other.transcript == base.transcript and other.background_style == base.background_style
    assert not np.allclose(other.wave, base.wave)
    assert clips.manifest_row(other)["voice"] == "awb" and clips.manifest_row(clips.build_clip(
        3, 1, "sfx", duration_s=2.0, use_real_sounds=False))["voice"] is None
    picks = {clips.build_clip(9, i, "speech", duration_s=4.0, use_real_sounds=False, voices=("awb", "rms")).voice
             for i in range(6)}
    assert picks == {"awb", "rms"}


def test_unknown_voices_are_refused_by_name():
    from vssflow_core.data.generate import parse_voices

    assert parse_voices(" joe, awb ") == ("joe", "awb")
    with pytest.raises(VSSFlowError, match="bob.*choose from joe, slt"):
        parse_voices("joe,bob")
    with pytest.raises(VSSFlowError, match="unknown CMU voice"):
        synthesize_cmu("joe", TEXT, 1.0, SR)


def test_voices_are_different_speakers_to_the_voice_front_end():
    if not (_installed("awb") and _installed("slt")):
        pytest.skip("flite and festival are not installed")
    pytest.importorskip("resemblyzer")
    from vssflow_core.features.speaker import speaker_embedding

    second = "The yellow bike played in the summer and the dog ran home."
    emb = {(v, t): speaker_embedding(synthesize_cmu(v, t, 1.0, SR)[0], SR) for v in ("slt", "awb", "rms") for t in (TEXT, second)}
    same = [float(emb[(v, TEXT)] @ emb[(v, second)]) for v in ("slt", "awb", "rms")]
    cross = [float(emb[(a, TEXT)] @ emb[(b, second)]) for a in ("slt", "awb", "rms") for b in ("slt", "awb", "rms") if a != b]
    assert min(same) > max(cross) + 0.05, (same, cross)
