"""Key compatibility at full size: the sizes inferred from the FULL-size official key listing
(``full_size_keys.json``, shapes only) are the official ones, and the module built from them (on the
meta device, no memory) has exactly the listed keys and shapes: VAE [128, 256, 512] / 32 groups,
vocoder 1024 ch, CLIP ViT-B/16 (12 heads), Synchformer 768 x 12 (12 heads), RawNet3 C=1024."""
import json

import pytest
import torch

from vssflow_core.audio.hifigan import HifiGan
from vssflow_core.audio.vae import MelVAE
from vssflow_core.features.official._weights import strip_prefixes
from vssflow_core.features.official.clip import ClipImageEncoder
from vssflow_core.features.official.rawnet3 import RawNet3
from vssflow_core.features.official.synchformer import SynchformerVisual


@pytest.fixture(scope="module")
def listing(official_fixtures):
    return json.loads((official_fixtures / "full_size_keys.json").read_text())


def _meta(keys, prefix=""):
    return {k[len(prefix):]: torch.empty(shape, device="meta") for k, shape, _ in keys if k.startswith(prefix)}


def _same_keys_and_shapes(module, sd):
    got = {k: list(v.shape) for k, v in module.state_dict().items()}
    want = {k: list(v.shape) for k, v in sd.items()}
    assert got == want, (sorted(set(got) ^ set(want))[:10], [k for k in got if k in want and got[k] != want[k]][:10])


def test_full_vae_keys(listing):
    sd = _meta(listing["vaflow_full"]["keys"], "vae.")
    cfg = MelVAE.config_from_state_dict(sd)
    assert cfg.block_out_channels == (128, 256, 512) and cfg.norm_num_groups == 32
    assert cfg.latent_channels == 8 and cfg.layers_per_block == 2
    with torch.device("meta"):
        _same_keys_and_shapes(MelVAE(cfg), sd)


def test_full_vocoder_keys(listing):
    sd = _meta(listing["vaflow_full"]["keys"], "vocoder.")
    cfg = HifiGan.config_from_state_dict(sd)
    assert cfg.upsample_initial_channel == 1024 and cfg.upsample_rates == (5, 4, 2, 2, 2)
    assert cfg.resblock_kernel_sizes == (3, 7, 11) and cfg.hop_length == 160
    with torch.device("meta"):
        _same_keys_and_shapes(HifiGan(cfg), sd)


def test_full_clip_keys(listing):
    sd = strip_prefixes(_meta(listing["vaflow_full"]["keys"]), "visual.", ["image_encoder."])
    sizes = ClipImageEncoder.sizes_from_state_dict(sd)
    assert sizes == dict(width=768, layers=12, patch=16, grid=14, output_dim=512)
    with torch.device("meta"):
        enc = ClipImageEncoder(**sizes)
    assert enc.visual.transformer.resblocks[0].attn.num_heads == 12
    _same_keys_and_shapes(enc, sd)


def test_full_synchformer_keys(listing):
    sd = _meta(listing["synchformer_full"]["keys"])
    sizes = SynchformerVisual.sizes_from_state_dict(sd)
    assert sizes == dict(dim=768, depth=12, mlp_ratio=4, patch=16, img_size=224, tubelet=2, frames=16)
    with torch.device("meta"):
        m = SynchformerVisual(**sizes)
    assert m.vfeat_extractor.blocks[0].attn.heads == 12
    _same_keys_and_shapes(m, sd)


def test_full_rawnet3_keys(listing):
    sd = _meta(listing["rawnet3_full"]["keys"])
    sizes = RawNet3.sizes_from_state_dict(sd)
    assert sizes == dict(C=1024, n_out=256, scale=8, sinc_kernel=251)
    with torch.device("meta"):
        _same_keys_and_shapes(RawNet3(**sizes), sd)
