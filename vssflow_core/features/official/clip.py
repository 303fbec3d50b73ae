"""CLIP ViT-B/16 visual tower as the official VSSFlow uses it (``video_feat``).

Official recipe (``feature/extract_clip.py``): frames at indices ``round(i * fps / 10)`` (10 fps, 100
frames for 10 s), each resized straight to 224x224 (bicubic, no crop, aspect ratio not kept), CLIP
mean/std normalisation, clips shorter than the window padded with black frames; the feature is the
CLS token of the last transformer block **before** ``ln_post`` and without projection, ``[N, 768]``.

Keys: ``visual.*`` (OpenAI ``ViT-B-16.pt`` layout); inside a VSSFlow Lightning checkpoint they sit under
``image_encoder.visual.*`` -- both are accepted. Heads = width // 64 (as the official loader derives).
"""
from __future__ import annotations

import math
import re
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vssflow_core.errors import VSSFlowError
from vssflow_core.features.official._weights import check_frames, load_strict, require, strip_prefixes

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_RATE_HZ = 10.0
CLIP_SIZE = 224


class _Block(nn.Module):
    """Pre-LN residual block: ``x + attn(ln_1(x))``, ``x + mlp(ln_2(x))`` with QuickGELU."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, 4 * width))
        self.mlp.add_module("c_proj", nn.Linear(4 * width, width))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [L, N, D]
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        h = self.mlp.c_fc(self.ln_2(x))
        return x + self.mlp.c_proj(h * torch.sigmoid(1.702 * h))


class _Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.resblocks = nn.Sequential(*[_Block(width, heads) for _ in range(layers)])


class VisionTower(nn.Module):
    """ViT image tower; :meth:`forward` returns all tokens ``[N, 1 + grid^2, width]`` (no ln_post/proj)."""

    def __init__(self, width: int = 768, layers: int = 12, heads: int = 12, patch: int = 16, grid: int = 14, output_dim: int = 512):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = _Transformer(width, layers, heads)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.zeros(width, output_dim))
        self.input_resolution = patch * grid

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.conv1(pixels)  # [N, D, g, g]
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # [N, g*g, D]
        cls = self.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype, device=x.device)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x).permute(1, 0, 2)  # [L, N, D]
        x = self.transformer.resblocks(x)
        return x.permute(1, 0, 2)


class ClipImageEncoder(nn.Module):
    """CLIP visual tower with ``visual.*`` keys (the official ``CLIPViT``)."""

    def __init__(self, width: int = 768, layers: int = 12, heads: int | None = None, patch: int = 16, grid: int = 14, output_dim: int = 512):
        super().__init__()
        self.visual = VisionTower(width, layers, heads or max(1, width // 64), patch, grid, output_dim)

    @property
    def width(self) -> int:
        """The vision transformer's width (channels per token)."""
        return self.visual.conv1.out_channels

    @staticmethod
    def sizes_from_state_dict(sd: Mapping[str, torch.Tensor]) -> dict:
        """Constructor arguments read from ``visual.*`` shapes (width, layers, patch, grid, output_dim)."""
        require(sd, ["visual.conv1.weight", "visual.positional_embedding", "visual.proj"], "ClipImageEncoder")
        conv = sd["visual.conv1.weight"]
        layers = len({m.group(1) for k in sd if (m := re.match(r"visual\.transformer\.resblocks\.(\d+)\.attn\.in_proj_weight$", k))})
        grid = round(math.sqrt(sd["visual.positional_embedding"].shape[0] - 1))
        return dict(width=int(conv.shape[0]), layers=layers, patch=int(conv.shape[-1]), grid=grid,
                    output_dim=int(sd["visual.proj"].shape[1]))

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor], heads: int | None = None) -> "ClipImageEncoder":
        """Build from ``visual.*`` / ``image_encoder.visual.*`` weights (other keys ignored), sizes inferred.

        Args:
            sd: state dict (OpenAI ``ViT-B-16.pt`` ``visual.*``, or a VSSFlow checkpoint).
            heads: attention heads; default ``width // 64`` as the official loader (12 for ViT-B/16).
        """
        sd = strip_prefixes(sd, "visual.", ["weights.", "image_encoder.", "model."])
        model = cls(heads=heads, **cls.sizes_from_state_dict(sd))
        load_strict(model, sd)
        return model.eval()

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels ``[N, 3, 224, 224]`` -> all tokens ``[N, 197, width]`` (no ln_post)."""
        if pixels.dim() != 4 or pixels.shape[1] != 3 or pixels.shape[-1] != self.visual.input_resolution:
            r = self.visual.input_resolution
            raise VSSFlowError(f"ClipImageEncoder: pixels must be [N, 3, {r}, {r}], got {list(pixels.shape)}")
        p = next(self.parameters())
        return self.visual(pixels.to(device=p.device, dtype=p.dtype))

    @torch.no_grad()
    def encode_cls(self, pixels: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        """CLS token before ``ln_post`` (what the official cached ``video_feat`` holds): ``[N, width]``."""
        out = [self.forward(pixels[i : i + batch_size])[:, 0] for i in range(0, pixels.shape[0], batch_size)]
        return torch.cat(out, dim=0)


def official_frame_indices(num_frames: int, source_fps: float, duration_s: float = 10.0, rate_hz: float = CLIP_RATE_HZ) -> list[int]:
    """Official frame selection: ``round(i * source_fps / rate)`` for ``i < duration * rate``, dropping
    indices past the end (the caller pads the rest with black frames)."""
    n = math.ceil(duration_s * rate_hz - 1e-6)
    idx = [round(i * source_fps / rate_hz) for i in range(n)]
    return [i for i in idx if 0 <= i <= num_frames - 1]


def resize_uint8(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of uint8 frames ``[T, H, W, 3]`` to ``size = (h, w)``.

    Uses Pillow (as the official CLIP transform) when available, else torch's antialiased bicubic.
    """
    h, w = size
    if frames.shape[1:3] == (h, w):
        return frames
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is normally present
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(h, w), mode="bicubic", antialias=True, align_corners=False)
        return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BICUBIC)) for f in frames])


def preprocess_frames(frames, size: int = CLIP_SIZE) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` -> CLIP pixels ``[T, 3, size, size]`` (straight resize, no crop; mean/std)."""
    frames = resize_uint8(check_frames(frames, "clip.preprocess_frames"), (size, size))
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def clip_features(encoder: ClipImageEncoder, frames, source_fps: float, duration_s: float = 10.0, batch_size: int = 32) -> torch.Tensor:
    """Official ``video_feat`` of a clip.

    Args:
        encoder: a loaded :class:`ClipImageEncoder`.
        frames: uint8 ``[T, H, W, 3]`` RGB at ``source_fps`` (frame k at time k / source_fps).
        source_fps: frame rate of ``frames`` (Hz).
        duration_s: window length (s); ``duration_s * 10`` features are returned.
    Returns:
        ``[ceil(duration_s * 10), width]`` float32, 10 Hz, CLS before ``ln_post``; frames past the end
        of the clip are black frames (as official, they give non-zero features).
    """
    frames = check_frames(frames, "clip_features")
    if not source_fps or source_fps <= 0:
        raise VSSFlowError(f"clip_features: source_fps must be > 0 Hz, got {source_fps}")
    n = math.ceil(duration_s * CLIP_RATE_HZ - 1e-6)  # = int(duration * 10) for the official whole seconds
    sel = frames[official_frame_indices(frames.shape[0], source_fps, duration_s)]
    if sel.shape[0] < n:
        sel = np.concatenate([sel, np.zeros((n - sel.shape[0],) + sel.shape[1:], np.uint8)], axis=0)
    pixels = preprocess_frames(sel[:n], encoder.visual.input_resolution)
    return encoder.encode_cls(pixels, batch_size).float().cpu()
