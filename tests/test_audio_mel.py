"""Official mel front end vs the fixture made with the official ``extract_batch_mel``."""
import pytest
import torch

from vssflow_core.audio.mel import MelParams, log_mel_spectrogram, mel_basis
from vssflow_core.audio.resample import resample
from vssflow_core.errors import VSSFlowError

@pytest.fixture(scope="module")
def mel_fx(official_fixtures):
    from safetensors.torch import load_file

    return load_file(str(official_fixtures / "mel.safetensors"))


def test_mel_basis_equals_librosa_slaney(mel_fx):
    import torchaudio.functional as AF

    assert torch.equal(mel_basis(), mel_fx["extra.mel_basis"])
    ta = AF.melscale_fbanks(513, 0.0, 8000.0, 64, 16000, norm="slaney", mel_scale="slaney").T
    torch.testing.assert_close(mel_basis(), ta, atol=1e-7, rtol=1e-5)  # torchaudio's float32 result
    assert torch.get_default_dtype() == torch.float32


def test_log_mel_matches_official(mel_fx):
    padded, mel = log_mel_spectrogram(mel_fx["input.waveform"], return_wave=True)
    assert padded.shape == (2, 160864) and mel.shape == (2, 1000, 64)
    assert (padded - mel_fx["output.waveform"]).abs().max() <= 1e-6
    # float32 FFT kernels differ across CPUs by a few ulps of log-mel values up to ~11.5 in magnitude
    torch.testing.assert_close(mel, mel_fx["output.log_mel"], atol=1e-5, rtol=3e-6)


def test_log_mel_inside_training_step(official_fixtures):
    from safetensors.torch import load_file

    t = load_file(str(official_fixtures / "vaflow_condition.safetensors"))
    mel = log_mel_spectrogram(t["input.audio_waveform"])  # [B, 1, T] accepted
    assert (mel - t["training.log_mel"]).abs().max() <= 1e-5


def test_mel_is_scale_invariant_and_pads_with_minus_11():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1, 16000, generator=g)
    a = log_mel_spectrogram(w)
    b = log_mel_spectrogram(3.0 * w + 0.2)  # mean removal + peak normalisation
    assert a.shape == (1, 100, 64)
    assert (a - b).abs().max() < 1e-3
    c = log_mel_spectrogram(w, target_frames=120)
    assert c.shape == (1, 120, 64) and torch.all(c[:, 100:] == -11.0)
    assert log_mel_spectrogram(w, target_frames=50).shape == (1, 50, 64)


def test_mel_bad_input():
    with pytest.raises(VSSFlowError, match="16000 Hz"):
        log_mel_spectrogram(torch.zeros(1, 44100), sample_rate=44100)
    with pytest.raises(VSSFlowError, match="mono"):
        log_mel_spectrogram(torch.zeros(1, 2, 16000))
    with pytest.raises(VSSFlowError, match="NaN"):
        log_mel_spectrogram(torch.full((1, 16000), float("nan")))
    with pytest.raises(VSSFlowError, match="samples"):
        log_mel_spectrogram(torch.zeros(1, 100))


def test_resample_rates_and_errors():
    t = torch.arange(22050) / 22050
    w = torch.sin(2 * torch.pi * 440 * t)[None]
    r = resample(w, 22050, 16000)
    assert r.shape == (1, 16000)
    # the tone survives: its spectrum peaks at 440 Hz
    spec = torch.fft.rfft(r[0]).abs()
    assert abs(int(spec.argmax()) - 440) <= 1
    assert resample(w, 16000, 16000) is w
    with pytest.raises(VSSFlowError, match="sr_out"):
        resample(w, 22050, 0)
    with pytest.raises(VSSFlowError, match="sr_in"):
        resample(w, 22050.5, 16000)
    with pytest.raises(VSSFlowError, match="sr_in"):
        resample(w, float("nan"), 16000)
    assert MelParams().pad == 432
