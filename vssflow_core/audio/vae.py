"""AudioLDM-layout mel VAE (a KL autoencoder over log-mel "images"), key-compatible with diffusers.

Parameter names are those of diffusers' ``AutoencoderKL`` (``encoder.down_blocks.0.resnets.0.conv1``,
``encoder.mid_block.attentions.0.to_q``, ``quant_conv``, ``post_quant_conv``, ``decoder.up_blocks...``),
which is how they sit under ``vae.`` inside an official VSSFlow checkpoint. Written from the
architecture description, no diffusers import.

Shapes (official AudioLDM2 VAE): mel ``[B, 1, T, 64]`` (time-major) <-> latent ``[B, 8, T/4, 16]``;
for 10 s, ``T = 1000`` and the latent is ``[B, 8, 250, 16]``. The DiT sees it packed to
``[B, 128, 250]`` with channel ``f * 8 + c`` (:func:`pack_latent` / :func:`unpack_latent`).

Sizes are read from the weights (:meth:`MelVAE.from_state_dict`); the GroupNorm group count is the one
value the weights cannot tell (see :func:`default_norm_groups`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from vssflow_core.errors import VSSFlowError

GN_EPS = 1e-6


@dataclass(frozen=True)
class VAEConfig:
    """Sizes of the AudioLDM-layout AutoencoderKL (official: [128, 256, 512], 2 layers, 8 latent ch, 32 groups)."""

    block_out_channels: tuple[int, ...] = (128, 256, 512)
    layers_per_block: int = 2
    latent_channels: int = 8
    in_channels: int = 1
    out_channels: int = 1
    norm_num_groups: int = 32

    @property
    def downsample_factor(self) -> int:
        """How many times smaller the latent is than the mel along each axis (2 per down block after the first)."""
        return 2 ** (len(self.block_out_channels) - 1)


def default_norm_groups(channels) -> int:
    """GroupNorm group count for a VAE whose widths are ``channels``.

    The weights do not store it. AudioLDM uses 32; a smaller model uses the largest power of two
    (<= 32) that divides every width and leaves at least 2 channels per group (the reduced fixture
    [16, 32, 32] -> 8).
    """
    g = 32
    while g > 1 and not all(c % g == 0 and c // g >= 2 for c in channels):
        g //= 2
    return g


class ResnetBlock(nn.Module):
    """GroupNorm-SiLU-Conv3x3 twice, plus a (1x1-projected) shortcut; diffusers ``ResnetBlock2D`` keys."""

    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=GN_EPS)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, cout, eps=GN_EPS)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, cin, H, W]`` -> ``[B, cout, H, W]``."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class SpatialSelfAttention(nn.Module):
    """Single-head self-attention over all H*W positions with a residual (diffusers mid-block ``Attention``)."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, channels, eps=GN_EPS)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> ``[B, C, H, W]`` (H*W tokens of width C attend to each other)."""
        b, c, h, w = x.shape
        t = self.group_norm(x.reshape(b, c, h * w)).transpose(1, 2)  # [B, HW, C]
        q, k, v = self.to_q(t)[:, None], self.to_k(t)[:, None], self.to_v(t)[:, None]
        o = F.scaled_dot_product_attention(q, k, v)[:, 0]
        o = self.to_out[0](o).transpose(1, 2).reshape(b, c, h, w)
        return o + x


class MidBlock(nn.Module):
    """Resnet, self-attention, resnet at the lowest resolution (diffusers ``UNetMidBlock2D`` keys);
    ``[B, C, H, W]`` -> ``[B, C, H, W]``."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(channels, channels, groups), ResnetBlock(channels, channels, groups)])
        self.attentions = nn.ModuleList([SpatialSelfAttention(channels, groups)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x)
        x = self.attentions[0](x)
        return self.resnets[1](x)


class _ConvHolder(nn.Module):
    """Holds the ``conv`` of a down/upsampler under diffusers' key (``downsamplers.0.conv``)."""

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=stride, padding=0 if stride == 2 else 1)


class DownBlock(nn.Module):
    """``layers`` resnets, then (``downsample``) a stride-2 conv halving H and W (diffusers ``DownEncoderBlock2D``);
    ``[B, cin, H, W]`` -> ``[B, cout, H/2, W/2]`` (``[B, cout, H, W]`` without downsampling)."""

    def __init__(self, cin: int, cout: int, layers: int, groups: int, downsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(cin if i == 0 else cout, cout, groups) for i in range(layers)])
        self.downsamplers = nn.ModuleList([_ConvHolder(cout, 2)]) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for r in self.resnets:
            x = r(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0].conv(F.pad(x, (0, 1, 0, 1)))  # asymmetric pad, stride-2 conv
        return x


class UpBlock(nn.Module):
    """``layers`` resnets, then (``upsample``) nearest x2 and a 3x3 conv (diffusers ``UpDecoderBlock2D``);
    ``[B, cin, H, W]`` -> ``[B, cout, 2H, 2W]`` (``[B, cout, H, W]`` without upsampling)."""

    def __init__(self, cin: int, cout: int, layers: int, groups: int, upsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(cin if i == 0 else cout, cout, groups) for i in range(layers)])
        self.upsamplers = nn.ModuleList([_ConvHolder(cout, 1)]) if upsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for r in self.resnets:
            x = r(x)
        if self.upsamplers is not None:
            x = self.upsamplers[0].conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return x


class Encoder(nn.Module):
    """Log-mel image -> Gaussian moments: ``[B, in_channels, T, M]`` -> ``[B, 2 * latent_channels, T/f, M/f]``
    (mean then logvar; ``f = config.downsample_factor``, 4 for AudioLDM)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        ch, g = cfg.block_out_channels, cfg.norm_num_groups
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)
        self.down_blocks = nn.ModuleList(
            DownBlock(ch[max(i - 1, 0)], ch[i], cfg.layers_per_block, g, i < len(ch) - 1) for i in range(len(ch))
        )
        self.mid_block = MidBlock(ch[-1], g)
        self.conv_norm_out = nn.GroupNorm(g, ch[-1], eps=GN_EPS)
        self.conv_out = nn.Conv2d(ch[-1], 2 * cfg.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for blk in self.down_blocks:
            x = blk(x)
        x = self.mid_block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class Decoder(nn.Module):
    """Latent -> log-mel image: ``[B, latent_channels, T/f, M/f]`` -> ``[B, out_channels, T, M]``."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        ch, g = tuple(reversed(cfg.block_out_channels)), cfg.norm_num_groups
        self.conv_in = nn.Conv2d(cfg.latent_channels, ch[0], 3, padding=1)
        self.mid_block = MidBlock(ch[0], g)
        self.up_blocks = nn.ModuleList(
            UpBlock(ch[max(i - 1, 0)], ch[i], cfg.layers_per_block + 1, g, i < len(ch) - 1) for i in range(len(ch))
        )
        self.conv_norm_out = nn.GroupNorm(g, ch[-1], eps=GN_EPS)
        self.conv_out = nn.Conv2d(ch[-1], cfg.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.mid_block(self.conv_in(z))
        for blk in self.up_blocks:
            x = blk(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class MelVAE(nn.Module):
    """AudioLDM-layout ``AutoencoderKL`` (encode to a diagonal Gaussian, decode a latent).

    ``scaling_factor`` is not applied (the official VSSFlow forces it to 1.0).
    """

    def __init__(self, cfg: VAEConfig = VAEConfig()):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quant_conv = nn.Conv2d(2 * cfg.latent_channels, 2 * cfg.latent_channels, 1)
        self.post_quant_conv = nn.Conv2d(cfg.latent_channels, cfg.latent_channels, 1)

    def _check_mel(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.dim() == 3:
            mel = mel[:, None]
        f = self.config.downsample_factor
        if mel.dim() != 4 or mel.shape[1] != self.config.in_channels or mel.shape[2] % f or mel.shape[3] % f:
            raise VSSFlowError(
                f"MelVAE.encode: mel must be [B, {self.config.in_channels}, T, n_mels] (or [B, T, n_mels]) with T and "
                f"n_mels multiples of {f}, got {list(mel.shape)}; pad the time axis with -11 (official pad value)"
            )
        return mel

    def encode(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior of a log-mel batch.

        Args:
            mel: ``[B, 1, T, n_mels]`` or ``[B, T, n_mels]`` (T and n_mels multiples of 4).
        Returns:
            ``(mean, logvar)``, each ``[B, latent_channels, T/4, n_mels/4]``; logvar clamped to [-30, 20].
        """
        moments = self.quant_conv(self.encoder(self._check_mel(mel)))
        mean, logvar = moments.chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent ``[B, latent_channels, T/4, F/4]`` -> log-mel ``[B, 1, T, F]``."""
        c = self.config.latent_channels
        if z.dim() != 4 or z.shape[1] != c:
            raise VSSFlowError(f"MelVAE.decode: latent must be [B, {c}, T/4, n_mels/4], got {list(z.shape)}")
        return self.decoder(self.post_quant_conv(z))

    @staticmethod
    def config_from_state_dict(sd: Mapping[str, torch.Tensor], norm_num_groups: int | None = None) -> VAEConfig:
        """Infer a :class:`VAEConfig` from diffusers-named weights (no ``vae.`` prefix)."""
        need = ["encoder.conv_in.weight", "decoder.conv_in.weight", "decoder.conv_out.weight"]
        missing = [k for k in need if k not in sd]
        if missing:
            raise VSSFlowError(f"MelVAE: VAE weights are missing {missing} (expected diffusers AutoencoderKL key names)")
        n_blocks = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"encoder\.down_blocks\.(\d+)\.", k)))
        ch = tuple(int(sd[f"encoder.down_blocks.{i}.resnets.0.conv1.weight"].shape[0]) for i in range(n_blocks))
        layers = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"encoder\.down_blocks\.0\.resnets\.(\d+)\.", k)))
        return VAEConfig(
            block_out_channels=ch,
            layers_per_block=layers,
            latent_channels=int(sd["decoder.conv_in.weight"].shape[1]),
            in_channels=int(sd["encoder.conv_in.weight"].shape[1]),
            out_channels=int(sd["decoder.conv_out.weight"].shape[0]),
            norm_num_groups=norm_num_groups or default_norm_groups(ch),
        )

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor], norm_num_groups: int | None = None) -> "MelVAE":
        """Build from diffusers-named weights (sizes inferred) and load them strictly."""
        model = cls(cls.config_from_state_dict(sd, norm_num_groups))
        load_strict(model, sd, "vae.")
        return model.eval()


def load_strict(model: nn.Module, sd: Mapping[str, torch.Tensor], prefix: str = "") -> None:
    """``load_state_dict(strict=True)`` with a readable VSSFlowError listing missing, unexpected and
    mis-shaped keys (shown with ``prefix``)."""
    own = model.state_dict()
    missing = sorted(k for k in own if k not in sd)
    unexpected = sorted(k for k in sd if k not in own)
    shapes = sorted(
        f"{prefix}{k}: expected {list(own[k].shape)}, got {list(sd[k].shape)}"
        for k in own if k in sd and tuple(own[k].shape) != tuple(sd[k].shape)
    )
    if missing or unexpected or shapes:
        def show(keys):
            keys = [f"{prefix}{k}" for k in keys]
            return ", ".join(keys[:12]) + (f" ... (+{len(keys) - 12} more)" if len(keys) > 12 else "")

        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys: {show(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys: {show(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} mis-shaped: " + "; ".join(shapes[:12]))
        raise VSSFlowError(f"{type(model).__name__}: weights do not match: " + " | ".join(parts))
    model.load_state_dict(dict(sd), strict=True)


def pack_latent(z: torch.Tensor) -> torch.Tensor:
    """VAE latent ``[B, C, L, F]`` -> DiT channels ``[B, F*C, L]`` (channel index ``f * C + c``, official)."""
    b, c, l, f = z.shape
    return z.permute(0, 3, 1, 2).reshape(b, f * c, l)


def unpack_latent(x: torch.Tensor, latent_channels: int = 8) -> torch.Tensor:
    """Inverse of :func:`pack_latent`: ``[B, F*C, L]`` -> ``[B, C, L, F]``."""
    b, fc, l = x.shape
    if fc % latent_channels:
        raise VSSFlowError(f"unpack_latent: {fc} channels is not a multiple of latent_channels={latent_channels}")
    return x.reshape(b, fc // latent_channels, latent_channels, l).permute(0, 2, 3, 1)
