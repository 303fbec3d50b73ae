"""build_codec + the official AudioLDM codec end to end (latent -> waveform as official inference)."""
import pytest
import torch

from vssflow_core.audio.codec import AudioCodec, build_codec, split_prefixed
from vssflow_core.config import CodecConfig
from vssflow_core.errors import VSSFlowError

@pytest.fixture(scope="module")
def tensors(official_fixtures):
    from safetensors.torch import load_file

    t = load_file(str(official_fixtures / "vaflow_condition.safetensors"))
    return split_prefixed(t, "weights.")  # the Lightning state_dict: vae.*, vocoder.*, vaflow.*, ...


@pytest.fixture(scope="module")
def codec(tensors):
    return build_codec(CodecConfig(), tensors)


def test_codec_attributes(codec):
    assert isinstance(codec, AudioCodec)
    assert codec.sample_rate == 16000 and codec.latent_channels == 128 and codec.latent_rate_hz == 25.0
    assert codec.samples_per_latent == 640 and codec.latent_length(16001) == 26


def test_decode_matches_official_inference(codec, official_fixtures):
    """Official validation_step_: first 128 channels -> VAE layout -> vae.decode -> vocoder."""
    from safetensors.torch import load_file

    from vssflow_core.audio.vae import unpack_latent

    s = load_file(str(official_fixtures / "sampling.safetensors"))
    latent = s["output.euler4.final_latent"][:, :128]
    with torch.no_grad():
        mel = codec.vae.decode(unpack_latent(latent))
    # float32 rounding of the 4000-token attention + ~20 convs: measured 1.4e-5 (see test_audio_vae.py)
    torch.testing.assert_close(mel, s["output.euler4.mel"], atol=3e-5, rtol=1e-4)
    # the vocoder is convolutional: 120 mel frames reproduce the first 100 frames' samples
    wave = codec.vocode(s["output.euler4.mel"][:, 0, :120])
    assert wave.shape == (2, 120 * 160)
    torch.testing.assert_close(wave[:, :16000], s["output.euler4.waveform"][:, :16000], atol=1e-5, rtol=1e-4)


def test_encode_shapes_and_determinism(codec):
    g = torch.Generator().manual_seed(1)
    wave = torch.randn(1, 2000, generator=g) * 0.1  # padded to 2560 samples = 4 latent frames
    z = codec.encode(wave)
    assert z.shape == (1, 128, 4) and torch.isfinite(z).all()
    assert torch.equal(z, codec.encode(wave))
    zs = codec.encode(wave, sample=True, generator=torch.Generator().manual_seed(0))
    assert zs.shape == z.shape and not torch.equal(zs, z)
    out = codec.decode(z)
    assert out.shape == (1, 4 * 640) and out.abs().max() <= 1.0


def test_codec_state_dict_roundtrip_and_dtype(codec):
    """codec.state_dict() has the checkpoint names (vae.*, vocoder.*), so it rebuilds the codec."""
    c64 = build_codec(CodecConfig(), codec.state_dict()).to(torch.float64)
    z = torch.randn(1, 128, 2, generator=torch.Generator().manual_seed(2))
    out64 = c64.decode(z)
    assert out64.dtype == torch.float32 and out64.shape == (1, 1280)  # library audio is float32
    assert c64.encode(torch.zeros(1, 640) + 0.1).dtype == torch.float64
    torch.testing.assert_close(out64.float(), codec.decode(z), atol=1e-4, rtol=1e-3)


def test_codec_bad_input(codec, tensors):
    with pytest.raises(VSSFlowError, match=r"\[B, T\]"):
        codec.encode(torch.zeros(1, 2, 16000))
    with pytest.raises(VSSFlowError, match="NaN"):
        codec.encode(torch.full((1, 16000), float("nan")))
    with pytest.raises(VSSFlowError, match=r"\[B, 128, L\]"):
        codec.decode(torch.zeros(1, 64, 10))
    with pytest.raises(VSSFlowError, match="tensors=None"):
        build_codec(CodecConfig(), None)
    with pytest.raises(VSSFlowError, match="no vocoder"):
        build_codec(CodecConfig(), {k: v for k, v in tensors.items() if not k.startswith("vocoder.")})
    with pytest.raises(VSSFlowError, match="unknown codec kind"):
        build_codec(CodecConfig(kind="bogus"), tensors)
