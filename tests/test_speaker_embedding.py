"""Speaker reference -> 256-d embedding: any rate/channels, silence and too-short references."""

import shutil
import subprocess

import numpy as np
import pytest
import torch

pytest.importorskip("resemblyzer")
sf = pytest.importorskip("soundfile")

from vssflow_core.errors import VSSFlowError  # noqa: E402
from vssflow_core.features.speaker import speaker_embedding  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng (apt) makes the test speech")


def _say(tmp_path, text, voice, pitch=50):
    out = tmp_path / f"{voice.replace('+', '_')}_{pitch}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-w", str(out), text], check=True)
    wave, sr = sf.read(out, dtype="float32")
    return wave, sr


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    d = tmp_path_factory.mktemp("voices")
    a = _say(d, "The quick brown fox jumps over the lazy dog, then runs into the forest.", "en-us+m3")
    a2 = _say(d, "Another sentence entirely, spoken by the same voice with other words.", "en-us+m3")
    b = _say(d, "The quick brown fox jumps over the lazy dog, then runs into the forest.", "en-us+f3", 85)
    return a, a2, b


def test_embedding_shape_and_speaker_similarity(voices):
    (a, sr), (a2, _), (b, _) = voices
    ea = speaker_embedding(torch.from_numpy(a)[None], sr)
    assert isinstance(ea, torch.Tensor) and ea.shape == (256,) and ea.dtype == torch.float32
    assert abs(float(ea.norm()) - 1.0) < 1e-3
    ea2 = speaker_embedding(a2[None], sr)
    eb = speaker_embedding(b[None], sr)
    assert float(ea @ ea2) > float(ea @ eb) + 0.1  # same voice, other words beats other voice, same words


def test_rate_and_channels_do_not_change_the_embedding(voices):
    import torchaudio.functional as AF

    (a, sr), _, _ = voices
    ref = speaker_embedding(a[None], sr)
    stereo = speaker_embedding(np.stack([a, a * 0.5]), sr)
    w48 = AF.resample(torch.from_numpy(a), sr, 48000)
    hi = speaker_embedding(w48[None].repeat(2, 1), 48000)
    w8 = AF.resample(torch.from_numpy(a), sr, 8000)
    lo = speaker_embedding(w8, 8000)
    int16 = speaker_embedding((a * 32767).astype(np.int16), sr)
    assert float(ref @ stereo) > 0.98 and float(ref @ hi) > 0.98 and float(ref @ int16) > 0.99
    assert float(ref @ lo) > 0.8  # 8 kHz loses the band above 4 kHz


def test_silent_or_short_reference_warns_and_gives_none(voices):
    (a, sr), _, _ = voices
    with pytest.warns(UserWarning, match="silent"):
        assert speaker_embedding(np.zeros((1, 3 * 16000), np.float32), 16000) is None
    with pytest.warns(UserWarning, match="too short"):
        assert speaker_embedding(a[None, : sr // 2], sr) is None
    noise_floor = np.random.default_rng(0).normal(0, 0.002, (1, 3 * 16000)).astype(np.float32)  # -54 dBFS
    with pytest.warns(UserWarning, match="silent"):
        assert speaker_embedding(noise_floor, 16000) is None
    pauses = np.zeros(4 * sr, np.float32)
    pauses[sr: sr + int(0.4 * sr)] = a[int(0.5 * sr): int(0.9 * sr)]  # 0.4 s of speech in 4 s
    with pytest.warns(UserWarning, match="of detected speech"):
        assert speaker_embedding(pauses, sr) is None
    with pytest.raises(VSSFlowError, match="sample_rate"):
        speaker_embedding(a[None], 0)
    broken = a[None].copy()
    broken[0, 100] = np.nan
    with pytest.raises(VSSFlowError, match="NaN or infinite"):
        speaker_embedding(broken, sr)
