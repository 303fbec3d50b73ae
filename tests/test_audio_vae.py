"""AudioLDM-layout VAE and 16 kHz HiFi-GAN vs the fixtures made with diffusers/transformers.

Tolerance note (measured): the VAE decode differs from the fixture by 1.6e-5 at a peak of 2.2. The
fixture itself is 1.3e-5 away from a float64 evaluation of the same network (our float32 path: 2.0e-5),
so this is float32 rounding of a 4000-token attention and ~20 conv layers, not a model difference.
VAE decode outputs are compared with atol=3e-5, rtol=1e-4; everything else with atol=1e-5, rtol=1e-4
(the fixture README's suggestion).
"""
import pytest
import torch

from vssflow_core.audio.codec import split_prefixed
from vssflow_core.audio.hifigan import HifiGan
from vssflow_core.audio.vae import MelVAE, default_norm_groups, pack_latent, unpack_latent
from vssflow_core.errors import VSSFlowError

@pytest.fixture(scope="module")
def vv(official_fixtures):
    from safetensors.torch import load_file

    return load_file(str(official_fixtures / "vae_vocoder.safetensors"))


@pytest.fixture(scope="module")
def vae(vv):
    return MelVAE.from_state_dict(split_prefixed(vv, "weights.vae."))


def test_vae_config_inferred(vae):
    c = vae.config
    assert c.block_out_channels == (16, 32, 32) and c.layers_per_block == 2
    assert c.latent_channels == 8 and c.norm_num_groups == 8
    assert default_norm_groups((128, 256, 512)) == 32


def test_vae_decode_matches(vae, vv):
    with torch.no_grad():
        mel = vae.decode(vv["input.latent"])
    torch.testing.assert_close(mel, vv["output.vae_decode"], atol=3e-5, rtol=1e-4)


def test_vae_encode_matches(vae, vv):
    with torch.no_grad():
        mean, logvar = vae.encode(vv["input.mel"])
    assert mean.shape == (2, 8, 250, 16)
    torch.testing.assert_close(mean, vv["output.vae_posterior_mean"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(logvar, vv["output.vae_posterior_logvar"], atol=1e-5, rtol=1e-4)


def test_vocoder_matches(vv):
    voc = HifiGan.from_state_dict(split_prefixed(vv, "weights.vocoder."))
    assert voc.config.upsample_rates == (5, 4, 2, 2, 2) and voc.config.upsample_initial_channel == 64
    with torch.no_grad():
        # convolutional: the first 120 frames reproduce the first 100 frames' samples exactly
        wave = voc(vv["input.mel"][:, :120])
    assert wave.shape == (2, 120 * 160 + 32)
    torch.testing.assert_close(wave[:, :16000], vv["output.vocoder_waveform"][:, :16000], atol=1e-5, rtol=1e-4)


def test_pack_is_frequency_major_and_invertible():
    z = torch.randn(2, 8, 5, 16)
    x = pack_latent(z)
    assert x.shape == (2, 128, 5)
    assert torch.equal(x[:, 3 * 8 + 2], z[:, 2, :, 3])  # channel f*8 + c
    assert torch.equal(unpack_latent(x), z)


def test_vae_training_latent_packing(official_fixtures):
    """VAE posterior sample mean + std*eps, packed, equals the official training target x_1."""
    from safetensors.torch import load_file

    t = load_file(str(official_fixtures / "vaflow_condition.safetensors"))
    vae = MelVAE.from_state_dict(split_prefixed(t, "weights.vae."))
    with torch.no_grad():
        mean, logvar = vae.encode(t["training.log_mel"])
    x1 = pack_latent(mean + torch.exp(0.5 * logvar) * t["training.vae_eps"])
    torch.testing.assert_close(x1, t["training.x_1_audio"], atol=1e-5, rtol=1e-4)


def test_missing_and_misshaped_keys_are_listed(vv):
    sd = split_prefixed(vv, "weights.vae.")
    broken = dict(sd)
    del broken["decoder.mid_block.attentions.0.to_q.weight"]
    with pytest.raises(VSSFlowError, match=r"missing 1 keys: vae\.decoder\.mid_block\.attentions\.0\.to_q\.weight"):
        MelVAE.from_state_dict(broken)
    broken = dict(sd)
    broken["encoder.mid_block.attentions.0.to_k.bias"] = torch.zeros(5)
    with pytest.raises(VSSFlowError, match="mis-shaped"):
        MelVAE.from_state_dict(broken)
    voc = split_prefixed(vv, "weights.vocoder.")
    voc["extra.weight"] = torch.zeros(1)
    with pytest.raises(VSSFlowError, match=r"unexpected 1 keys: vocoder\.extra\.weight"):
        HifiGan.from_state_dict(voc)


def test_vae_bad_shapes(vae):
    with pytest.raises(VSSFlowError, match="multiples of 4"):
        vae.encode(torch.zeros(1, 1, 10, 64))
    with pytest.raises(VSSFlowError, match="latent must be"):
        vae.decode(torch.zeros(1, 4, 10, 16))
