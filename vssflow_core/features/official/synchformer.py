"""Synchformer visual branch (MotionFormer with divided space-time attention) as VSSFlow uses it.

Official recipe (``feature/extract_synchformer.py``, MMAudio's extraction): frames at 25 fps, resize
short side to 224 (bicubic, antialiased) + centre crop 224, ``x/255`` then ``(x - 0.5) / 0.5``; clips
shorter than the window are zero-padded (black) before normalisation; 16-frame windows with stride 8;
each window gives 8 tokens (temporal patch 2) -> ``[S, 8, 768]`` (S = 30 for 10 s), i.e. 24 tokens/s.

Per window: 3D patch embedding (2x16x16) -> CLS + (spatial pos. embedding tiled over time + temporal
embedding) -> ``depth`` blocks [time attention, space attention, MLP] (the CLS token attends to all
tokens; every other token attends to the CLS token plus its own frame/column) -> drop CLS ->
LayerNorm -> per frame a pre-norm ``nn.TransformerEncoderLayer`` over [CLS_agg | 196 patches] whose
CLS output is the frame token.

Keys are the official ``vfeat_extractor.*`` names (``cls_token``, ``pos_embed``, ``temp_embed``,
``patch_embed.proj`` (unused, kept for key compatibility), ``patch_embed_3d.proj``,
``blocks.{i}.{norm1,attn,timeattn,norm2,mlp,norm3}``, ``norm``, ``spatial_attn_agg.*``).
The head count is not stored in the weights: default ``embed_dim // 64`` (12 for the official 768).
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

SYNC_FPS = 25.0
SYNC_SIZE = 224
SEGMENT = 16
STEP = 8


class _PatchEmbed(nn.Module):
    def __init__(self, conv: nn.Module):
        super().__init__()
        self.proj = conv


class _DividedAttention(nn.Module):
    """Multi-head attention where the CLS query sees every token and the other queries see the CLS
    token plus their own group (same frame for space attention, same patch for time attention)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, frames: int, patches: int, over_time: bool) -> torch.Tensor:
        b, n, d = x.shape
        h = self.heads
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = (t.reshape(b, n, h, d // h).permute(0, 2, 1, 3).reshape(b * h, n, d // h) for t in (q, k, v))
        q = q * self.scale
        cls_out = torch.softmax(q[:, :1] @ k.transpose(1, 2), dim=-1) @ v  # [bh, 1, dh]

        def group(t):  # [bh, f*n, dh] -> [bh*groups, members, dh]
            t = t.reshape(b * h, frames, patches, -1)
            if over_time:
                t = t.transpose(1, 2)  # groups = patches, members = frames
            return t.reshape(-1, t.shape[2], t.shape[3])

        qg, kg, vg = group(q[:, 1:]), group(k[:, 1:]), group(v[:, 1:])
        r = qg.shape[0] // (b * h)
        kg = torch.cat([k[:, :1].repeat_interleave(r, dim=0), kg], dim=1)
        vg = torch.cat([v[:, :1].repeat_interleave(r, dim=0), vg], dim=1)
        out = torch.softmax(qg @ kg.transpose(1, 2), dim=-1) @ vg  # [bh*groups, members, dh]
        if over_time:
            out = out.reshape(b * h, patches, frames, -1).transpose(1, 2)
        out = out.reshape(b * h, frames * patches, -1)
        out = torch.cat([cls_out, out], dim=1)  # [bh, n, dh]
        out = out.reshape(b, h, n, d // h).permute(0, 2, 1, 3).reshape(b, n, d)
        return self.proj(out)


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _DividedAttention(dim, heads)
        self.timeattn = _DividedAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, dim * mlp_ratio)
        self.norm3 = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor, frames: int, patches: int) -> torch.Tensor:
        x = x + self.timeattn(self.norm3(x), frames, patches, over_time=True)
        x = x + self.attn(self.norm1(x), frames, patches, over_time=False)
        return x + self.mlp(self.norm2(x))


class _SpatialAgg(nn.TransformerEncoderLayer):
    """Pre-norm transformer layer over one frame's patches with a learned CLS token; returns the CLS output."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__(
            d_model=dim, nhead=heads, dim_feedforward=mlp_ratio * dim, dropout=0.0, activation=nn.GELU(),
            layer_norm_eps=1e-6, batch_first=True, norm_first=True,
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, P, D] -> [N, D]
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return super().forward(x)[:, 0]


class MotionFormer(nn.Module):
    """The Synchformer video feature extractor (``vfeat_extractor``)."""

    def __init__(self, dim: int = 768, depth: int = 12, heads: int | None = None, mlp_ratio: int = 4,
                 patch: int = 16, img_size: int = SYNC_SIZE, tubelet: int = 2, frames: int = SEGMENT):
        super().__init__()
        heads = heads or max(1, dim // 64)
        self.grid = img_size // patch
        self.tubelet = tubelet
        self.img_size = img_size
        self.temporal_resolution = frames // tubelet
        n_patches = self.grid * self.grid
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n_patches + 1, dim))
        self.temp_embed = nn.Parameter(torch.zeros(1, self.temporal_resolution, dim))
        self.patch_embed = _PatchEmbed(nn.Conv2d(3, dim, patch, stride=patch))
        self.patch_embed_3d = _PatchEmbed(nn.Conv3d(3, dim, (tubelet, patch, patch), stride=(tubelet, patch, patch)))
        self.blocks = nn.ModuleList(_Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.spatial_attn_agg = _SpatialAgg(dim, heads, mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Windows ``[N, 3, 16, 224, 224]`` (channels before time) -> tokens ``[N, 8, D]``."""
        n = x.shape[0]
        x = self.patch_embed_3d.proj(x)  # [N, D, t, g, g]
        d, t = x.shape[1], x.shape[2]
        p = self.grid * self.grid
        x = x.flatten(2).transpose(1, 2)  # [N, t*p, D], frame-major
        pos = self.pos_embed[:, 1:].repeat(1, t, 1) + self.temp_embed.repeat_interleave(p, dim=1)
        x = torch.cat([self.cls_token.expand(n, -1, -1), x], dim=1)
        x = x + torch.cat([self.pos_embed[:, :1], pos], dim=1)
        for blk in self.blocks:
            x = blk(x, t, p)
        x = self.norm(x[:, 1:])  # [N, t*p, D]
        x = x.reshape(n * t, p, d)  # one sequence of patches per frame
        return self.spatial_attn_agg(x).reshape(n, t, d)


class SynchformerVisual(nn.Module):
    """Synchformer visual branch with the official ``vfeat_extractor.*`` keys."""

    def __init__(self, **kwargs):
        super().__init__()
        self.vfeat_extractor = MotionFormer(**kwargs)

    @staticmethod
    def sizes_from_state_dict(sd: Mapping[str, torch.Tensor]) -> dict:
        """Constructor arguments read from ``vfeat_extractor.*`` shapes (all but the head count)."""
        names = ["cls_token", "pos_embed", "temp_embed", "patch_embed_3d.proj.weight", "spatial_attn_agg.linear1.weight"]
        require(sd, [f"vfeat_extractor.{k}" for k in names], "SynchformerVisual")
        w3 = sd["vfeat_extractor.patch_embed_3d.proj.weight"]  # [D, 3, tubelet, p, p]
        dim, tubelet, patch = int(w3.shape[0]), int(w3.shape[2]), int(w3.shape[-1])
        depth = len({m.group(1) for k in sd if (m := re.match(r"vfeat_extractor\.blocks\.(\d+)\.", k))})
        grid = int(round((int(sd["vfeat_extractor.pos_embed"].shape[1]) - 1) ** 0.5))
        t_res = int(sd["vfeat_extractor.temp_embed"].shape[1])
        mlp_ratio = int(sd["vfeat_extractor.spatial_attn_agg.linear1.weight"].shape[0]) // dim
        return dict(dim=dim, depth=depth, mlp_ratio=mlp_ratio, patch=patch, img_size=grid * patch,
                    tubelet=tubelet, frames=t_res * tubelet)

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor], heads: int | None = None) -> "SynchformerVisual":
        """Build from a Synchformer state dict (``vfeat_extractor.*``; audio-branch and other keys are
        ignored, as the official loader does). Sizes inferred; ``heads`` default ``dim // 64``."""
        sd = strip_prefixes(sd, "vfeat_extractor.", ["weights.", "module.", "model.", "synchformer."])
        model = cls(heads=heads, **cls.sizes_from_state_dict(sd))
        load_strict(model, sd)
        return model.eval()

    def forward(self, vis: torch.Tensor) -> torch.Tensor:
        """``[B, S, 16, 3, 224, 224]`` normalised windows -> ``[B, S, 8, D]`` (the official ``Synchformer.forward``)."""
        m = self.vfeat_extractor
        frames = m.temporal_resolution * m.tubelet
        if vis.dim() != 6 or vis.shape[2:] != (frames, 3, m.img_size, m.img_size):
            raise VSSFlowError(
                f"SynchformerVisual: input must be [B, S, {frames}, 3, {m.img_size}, {m.img_size}], got {list(vis.shape)}"
            )
        b, s = vis.shape[:2]
        p = next(self.parameters())
        x = vis.to(device=p.device, dtype=p.dtype).reshape(b * s, *vis.shape[2:]).permute(0, 2, 1, 3, 4)
        return m(x).reshape(b, s, m.temporal_resolution, -1)


def encode_video(model: SynchformerVisual, x: torch.Tensor, batch_size: int = 40) -> torch.Tensor:
    """Official ``encode_video_with_sync``: ``x [B, T, 3, 224, 224]`` -> ``[B, S, 8, D]`` with
    ``S = (T - 16) // 8 + 1`` windows of 16 frames, stride 8."""
    if x.dim() != 5 or x.shape[1] < SEGMENT:
        raise VSSFlowError(f"synchformer.encode_video: x must be [B, T>={SEGMENT}, 3, 224, 224], got {list(x.shape)}")
    b, t = x.shape[:2]
    s = (t - SEGMENT) // STEP + 1
    wins = torch.stack([x[:, i * STEP : i * STEP + SEGMENT] for i in range(s)], dim=1)  # [B, S, 16, 3, H, W]
    wins = wins.reshape(b * s, 1, *wins.shape[2:])
    with torch.no_grad():
        out = torch.cat([model(wins[i : i + batch_size]) for i in range(0, b * s, batch_size)], dim=0)
    return out.reshape(b, s, out.shape[-2], out.shape[-1])


def preprocess_frames(frames, duration_s: float | None = 10.0, size: int = SYNC_SIZE) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` at 25 fps -> ``[N, 3, size, size]`` in [-1, 1] (official transform).

    Zero (black) frames are appended up to ``duration_s * 25`` frames and extra frames dropped
    (``duration_s=None`` keeps all). Resize short side to ``size`` (bicubic, antialiased, rounded to
    uint8 as torchvision does for uint8 input), centre crop, ``x * (1/255)``, ``(x - 0.5) / 0.5``.
    """
    frames = check_frames(frames, "synchformer.preprocess_frames")
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # [T, 3, H, W] uint8
    if duration_s is not None:
        n = math.ceil(SYNC_FPS * duration_s - 1e-6)
        if x.shape[0] < n:
            x = torch.cat([x, torch.zeros((n - x.shape[0],) + tuple(x.shape[1:]), dtype=x.dtype)], dim=0)
        x = x[:n]
    h, w = x.shape[-2:]
    if min(h, w) != size:
        if h <= w:
            nh, nw = size, int(size * w / h)
        else:
            nh, nw = int(size * h / w), size
        y = F.interpolate(x.float(), size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
        x = y.round_().clamp_(0, 255).to(torch.uint8)
        h, w = nh, nw
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    x = x[..., top : top + size, left : left + size]
    return (x.float() * (1.0 / 255.0) - 0.5) / 0.5


def synch_features(model: SynchformerVisual, frames, duration_s: float = 10.0) -> torch.Tensor:
    """Official ``synch_feat`` of a clip.

    Args:
        model: a loaded :class:`SynchformerVisual`.
        frames: uint8 ``[T, H, W, 3]`` RGB resampled to 25 fps (frame k at k / 25 s).
        duration_s: window length (s); 10 s -> 250 frames -> 30 segments.
    Returns:
        ``[S, 8, D]`` float32 (S = (25 * duration - 16) // 8 + 1), 24 tokens/s when flattened.
    """
    x = preprocess_frames(frames, duration_s, model.vfeat_extractor.img_size)
    return encode_video(model, x[None])[0].float().cpu()
