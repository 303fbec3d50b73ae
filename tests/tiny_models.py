"""Tiny random-weight VSSFlow model files for pipeline, node and CLI tests (made in tmp dirs).

Two layouts share one tiny AudioLDM-style codec (16 kHz, 128-channel latent at 25 Hz):
``official`` (the tiny preset: official routing and front-end) and ``embedded`` (the embedded
front-end's condition keys: 6-d lips, phonemes, motion, appearance, speaker).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from vssflow_core.audio.hifigan import HifiGan, HifiGanConfig
from vssflow_core.audio.vae import MelVAE, VAEConfig
from vssflow_core.config import ConditionSpec, preset
from vssflow_core.model import VSSFlow
from vssflow_core.model.checkpoint import save_model_file


def embedded_like_conditions() -> tuple[ConditionSpec, ...]:
    return (
        ConditionSpec("lip", "lip_proj", 6, 8, "concat", 25.0, "nearest", "mlp2", 16),
        ConditionSpec("phone", "phone_embedding", 200, 4, "concat", 25.0, "nearest", "embedding", feature_key="phone_id"),
        ConditionSpec("motion", "motion_proj", 256, 8, "concat", 25.0, "nearest", "mlp2", 16),
        ConditionSpec("ref", "ref_proj", 256, 32, "cross", None, "nearest", "mlp2", 32, feature_key="ref_audio_ebd"),
        ConditionSpec("appearance", "appearance_proj", 768, 32, "cross", 10.0, "nearest", "mlp2", 32),
    )


def tiny_config(frontend: str = "official", duration_s: float = 10.0, steps: int = 2, solver: str = "euler"):
    cfg = preset("tiny")
    if frontend == "embedded":
        cfg = dataclasses.replace(cfg, name="tiny-embedded", conditions=embedded_like_conditions(), frontend="embedded")
    return dataclasses.replace(cfg, duration_s=duration_s, steps=steps, solver=solver, guidance_scale=2.0)


def tiny_codec_tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    """``vae.*`` + ``vocoder.*`` tensors of a tiny random codec (64 mels / 4 = 16 x 8 = 128 latent ch)."""
    torch.manual_seed(seed)
    vae = MelVAE(VAEConfig(block_out_channels=(8, 16, 16), layers_per_block=1, norm_num_groups=4))
    voc = HifiGan(HifiGanConfig(upsample_initial_channel=64, resblock_kernel_sizes=(3,),
                                resblock_dilation_sizes=((1, 3, 5),)))
    tensors = {f"vae.{k}": v for k, v in vae.state_dict().items()}
    tensors.update({f"vocoder.{k}": v for k, v in voc.state_dict().items()})
    return tensors


def make_model_file(path, frontend: str = "official", duration_s: float = 10.0, seed: int = 0, **kwargs) -> Path:
    """Save a tiny random model (+ codec) with CORE's save_model_file; returns the path."""
    torch.manual_seed(seed)
    model = VSSFlow(tiny_config(frontend, duration_s, **kwargs))
    return save_model_file(path, model, extra_tensors=tiny_codec_tensors(seed))


def one_thread():
    """Generator for an autouse fixture: torch on one thread (two threads on a shared 2-core machine
    run these small convolutions ~10x slower), restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
