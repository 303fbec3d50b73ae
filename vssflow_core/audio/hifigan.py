"""16 kHz HiFi-GAN vocoder, key-compatible with transformers' ``SpeechT5HifiGan`` (AudioLDM2 vocoder).

Keys (under ``vocoder.`` in an official checkpoint): ``mean``, ``scale``, ``conv_pre``,
``upsampler.{i}``, ``resblocks.{i*K+j}.convs1/convs2.{n}``, ``conv_post``. Written from the architecture
description, no transformers import.

Input log-mel ``[B, T, 64]`` (time-major, as the official code calls it) -> waveform
``[B, 160*T + 32]`` at 16 kHz with the official upsample rates ``[5, 4, 2, 2, 2]``.

Sizes are read from the weights; the upsample strides and resblock dilations cannot be, and default to
the AudioLDM values.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from vssflow_core.audio.vae import load_strict
from vssflow_core.errors import VSSFlowError

LEAKY_SLOPE = 0.1


@dataclass(frozen=True)
class HifiGanConfig:
    """Sizes of the vocoder (defaults = AudioLDM2's 16 kHz vocoder)."""

    model_in_dim: int = 64
    sampling_rate: int = 16000
    upsample_initial_channel: int = 1024
    upsample_rates: tuple[int, ...] = (5, 4, 2, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 8, 4, 4)
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    normalize_before: bool = False

    @property
    def hop_length(self) -> int:
        """Samples per mel frame: the product of the upsampling rates (256 for V1)."""
        n = 1
        for r in self.upsample_rates:
            n *= r
        return n


class ResidualBlock(nn.Module):
    """Dilated conv pairs with residuals (``convs1`` dilated, ``convs2`` undilated)."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=(kernel_size * d - d) // 2) for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=(kernel_size - 1) // 2) for _ in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, channels, T]`` -> ``[B, channels, T]`` (the paddings keep the length)."""
        for c1, c2 in zip(self.convs1, self.convs2):
            h = c1(F.leaky_relu(x, LEAKY_SLOPE))
            h = c2(F.leaky_relu(h, LEAKY_SLOPE))
            x = x + h
        return x


class HifiGan(nn.Module):
    """HiFi-GAN generator: log-mel ``[B, T, n_mels]`` -> waveform ``[B, hop*T + extra]``."""

    def __init__(self, cfg: HifiGanConfig = HifiGanConfig()):
        super().__init__()
        self.config = cfg
        ch = cfg.upsample_initial_channel
        self.register_buffer("mean", torch.zeros(cfg.model_in_dim))
        self.register_buffer("scale", torch.ones(cfg.model_in_dim))
        self.conv_pre = nn.Conv1d(cfg.model_in_dim, ch, 7, padding=3)
        self.upsampler = nn.ModuleList(
            nn.ConvTranspose1d(ch // 2**i, ch // 2 ** (i + 1), k, stride=u, padding=(k - u) // 2)
            for i, (u, k) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes))
        )
        self.resblocks = nn.ModuleList(
            ResidualBlock(ch // 2 ** (i + 1), k, tuple(d))
            for i in range(len(cfg.upsample_rates))
            for k, d in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes)
        )
        self.conv_post = nn.Conv1d(ch // 2 ** len(cfg.upsample_rates), 1, 7, padding=3)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """Vocode.

        Args:
            mel: log-mel ``[B, T, n_mels]`` (or ``[T, n_mels]``), 100 frames/s for the official vocoder.
        Returns:
            waveform ``[B, hop*T + extra]`` (``[hop*T + extra]`` for unbatched input) in [-1, 1] at
            ``config.sampling_rate`` Hz; official: ``160*T + 32``.
        """
        batched = mel.dim() == 3
        if not batched:
            mel = mel[None]
        if mel.dim() != 3 or mel.shape[-1] != self.config.model_in_dim:
            raise VSSFlowError(f"HifiGan: mel must be [B, T, {self.config.model_in_dim}], got {list(mel.shape)}")
        if self.config.normalize_before:
            mel = (mel - self.mean) / self.scale
        x = self.conv_pre(mel.transpose(1, 2))
        k = len(self.config.resblock_kernel_sizes)
        for i, up in enumerate(self.upsampler):
            x = up(F.leaky_relu(x, LEAKY_SLOPE))
            acc = self.resblocks[i * k](x)
            for j in range(1, k):
                acc = acc + self.resblocks[i * k + j](x)
            x = acc / k
        x = torch.tanh(self.conv_post(F.leaky_relu(x)))  # default slope 0.01 here, as the reference
        wave = x[:, 0]
        return wave if batched else wave[0]

    @staticmethod
    def config_from_state_dict(
        sd: Mapping[str, torch.Tensor],
        upsample_rates: tuple[int, ...] | None = None,
        resblock_dilation_sizes: tuple[tuple[int, ...], ...] | None = None,
        sampling_rate: int = 16000,
    ) -> HifiGanConfig:
        """Infer a :class:`HifiGanConfig` from transformers-named weights (no ``vocoder.`` prefix)."""
        need = ["conv_pre.weight", "conv_post.weight", "upsampler.0.weight", "resblocks.0.convs1.0.weight"]
        missing = [k for k in need if k not in sd]
        if missing:
            raise VSSFlowError(f"HifiGan: vocoder weights are missing {missing} (expected SpeechT5HifiGan key names)")
        n_up = 1 + max(int(m.group(1)) for key in sd if (m := re.match(r"upsampler\.(\d+)\.weight", key)))
        n_res = 1 + max(int(m.group(1)) for key in sd if (m := re.match(r"resblocks\.(\d+)\.", key)))
        if n_res % n_up:
            raise VSSFlowError(f"HifiGan: {n_res} resblocks is not a multiple of {n_up} upsamplers")
        k = n_res // n_up
        kernels = tuple(int(sd[f"upsampler.{i}.weight"].shape[-1]) for i in range(n_up))
        default = HifiGanConfig()
        if upsample_rates is None:
            if kernels == default.upsample_kernel_sizes:
                upsample_rates = default.upsample_rates
            else:  # HiFi-GAN convention: kernel = 2 * stride
                upsample_rates = tuple(max(1, kk // 2) for kk in kernels)
        res_kernels = tuple(int(sd[f"resblocks.{j}.convs1.0.weight"].shape[-1]) for j in range(k))
        n_dil = 1 + max(int(m.group(1)) for key in sd if (m := re.match(r"resblocks\.0\.convs1\.(\d+)\.", key)))
        if resblock_dilation_sizes is None:
            resblock_dilation_sizes = tuple(tuple(default.resblock_dilation_sizes[0][:n_dil]) for _ in range(k))
        return HifiGanConfig(
            model_in_dim=int(sd["conv_pre.weight"].shape[1]),
            sampling_rate=sampling_rate,
            upsample_initial_channel=int(sd["conv_pre.weight"].shape[0]),
            upsample_rates=tuple(upsample_rates),
            upsample_kernel_sizes=kernels,
            resblock_kernel_sizes=res_kernels,
            resblock_dilation_sizes=tuple(tuple(d) for d in resblock_dilation_sizes),
        )

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor], **kwargs) -> "HifiGan":
        """Build from SpeechT5HifiGan-named weights (sizes inferred) and load them strictly."""
        model = cls(cls.config_from_state_dict(sd, **kwargs))
        load_strict(model, sd, "vocoder.")
        return model.eval()
