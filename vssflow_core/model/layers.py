"""Building blocks of the Stable-Audio-style DiT: time features, rotary tables, attention, SwiGLU.

Shape letters: B batch, S self-attention tokens (1 time token + L latent frames), N context tokens,
H query heads, G key/value heads, E head width, D model width (H*E), Dc context width.

Submodule names (``to_q``, ``to_k``, ``to_v``, ``to_out.0``, ``net.0.proj``, ``net.2``) are the
official checkpoint key names; do not rename them.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class FourierTime(nn.Module):
    """Gaussian Fourier features of the flow time t in [0, 1] (t = 0 is noise).

    ``weight`` [F] holds fixed random frequencies (official key ``time_proj.weight``; it is a
    parameter with ``requires_grad=False``). Output ``[cos(2*pi*t*W) | sin(2*pi*t*W)]`` [B, 2F].
    """

    def __init__(self, num_frequencies: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_frequencies), requires_grad=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """t [B] float -> features [B, 2F] (float32 math whatever the weights' dtype)."""
        x = (2 * math.pi * t.float()[:, None]) @ self.weight.float()[None, :]  # [B, F]
        return torch.cat([torch.cos(x), torch.sin(x)], dim=-1)


def rotary_table(num_positions: int, rot_dim: int, theta: float = 10000.0,
                 device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [S, rot_dim] in the "split halves" layout (each frequency listed twice, by
    concatenation), positions 0..S-1 (position 0 is the time token). Float32."""
    # float32 throughout, as the official table is built (the angles at position 250 differ by
    # ~1e-5 rad from a float64 table, which parity tests would see).
    inv_freq = 1.0 / (theta ** (torch.arange(0, rot_dim, 2, dtype=torch.float32, device=device)[: rot_dim // 2] / rot_dim))
    pos = torch.arange(num_positions, device=device)
    freqs = torch.outer(pos, inv_freq)  # [S, rot_dim/2] float32
    cos, sin = freqs.cos(), freqs.sin()
    return torch.cat([cos, cos], dim=-1), torch.cat([sin, sin], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first ``rot_dim`` channels of every head of x [B, H, S, E] (float32 math)."""
    rot_dim = cos.shape[-1]
    x_rot, x_pass = x[..., :rot_dim].float(), x[..., rot_dim:]
    first, second = x_rot.chunk(2, dim=-1)
    rotated = torch.cat([-second, first], dim=-1)
    out = (x_rot * cos + rotated * sin).to(x.dtype)
    return torch.cat([out, x_pass], dim=-1)


def weights_key(*tensors: torch.Tensor) -> tuple:
    """Identity of weights for derived-weight caches: storage, version counter, dtype, device.

    Inference tensors (ComfyUI loads and runs nodes under ``torch.inference_mode()``) have no
    version counter and cannot be modified in place, so their version is taken as 0.
    """
    return tuple((t.data_ptr(), 0 if t.is_inference() else t._version, t.dtype, str(t.device)) for t in tensors)


class Attention(nn.Module):
    """Multi-head attention without biases, as in the official DiT.

    Self-attention (``context_dim=None``): q, k, v from the tokens, RoPE on q and k.
    Cross-attention: k, v from the context with ``num_kv_heads`` heads (grouped: kv head g serves
    query heads g*H/G .. (g+1)*H/G - 1); RoPE on q only (the official quirk).
    """

    fuse_qkv = True  # one q|k|v GEMM at inference (set False on an instance to measure without)

    def __init__(self, dim: int, num_heads: int, head_dim: int, context_dim: int | None = None, num_kv_heads: int | None = None):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, head_dim
        self.is_cross = context_dim is not None
        self.num_kv_heads = (num_kv_heads or num_heads) if self.is_cross else num_heads
        kv_in = context_dim if self.is_cross else dim
        inner = num_heads * head_dim
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(kv_in, self.num_kv_heads * head_dim, bias=False)
        self.to_v = nn.Linear(kv_in, self.num_kv_heads * head_dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim, bias=False), nn.Dropout(0.0)])
        self._fused: torch.Tensor | None = None  # q|k|v weights in one tensor (inference)
        self.qkv: nn.Module | None = None  # set on inference copies (int8): one module for q|k|v

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Self-attention projections [B, S, D] each.

        At inference this is one GEMM: on first use the three weights are moved into one tensor
        and ``to_q``/``to_k``/``to_v`` become views of it (no extra memory, keys unchanged, in-place
        weight updates stay visible). If the weights are replaced (``.to()``), it is rebuilt.
        Training uses the separate layers. An inference copy whose ``qkv`` module is set (int8)
        runs that module instead."""
        if self.qkv is not None:
            return self.qkv(x).chunk(3, dim=-1)
        if torch.is_grad_enabled() or not self.fuse_qkv:
            return self.to_q(x), self.to_k(x), self.to_v(x)
        layers = (self.to_q, self.to_k, self.to_v)
        fused = self._fused
        rows = [lin.weight.shape[0] for lin in layers]
        valid = fused is not None and fused.dtype == self.to_q.weight.dtype and fused.device == self.to_q.weight.device
        if valid:
            offsets = [0, rows[0], rows[0] + rows[1]]
            step = fused.stride(0) * fused.element_size()
            valid = all(lin.weight.data_ptr() == fused.data_ptr() + o * step for lin, o in zip(layers, offsets))
        if not valid:
            with torch.inference_mode(False):  # a normal tensor, so training can follow inference
                fused = torch.cat([lin.weight.detach() for lin in layers], dim=0)
            for lin, part in zip(layers, fused.split(rows, dim=0)):
                lin.weight.data = part
            self._fused = fused
        return F.linear(x, fused).split(rows, dim=-1)

    def context_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of a context [B, N, Dc] -> two [B, H, N, E] (kv heads repeated).
        Cross-attention keys carry no RoPE, so this can be cached for a whole sampling run."""
        k = rearrange(self.to_k(context), "b n (g e) -> b g n e", e=self.head_dim)
        v = rearrange(self.to_v(context), "b n (g e) -> b g n e", e=self.head_dim)
        if self.num_kv_heads != self.num_heads:
            repeat = self.num_heads // self.num_kv_heads
            k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
        return k, v

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
                context: torch.Tensor | None = None, kv: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """x [B, S, D]; rope (cos, sin) [S, rot]; cross-attention takes ``context`` [B, N, Dc] or
        precomputed ``kv`` from :meth:`context_kv`. Returns [B, S, D]."""
        cos, sin = rope
        heads = lambda y: rearrange(y, "b s (h e) -> b h s e", e=self.head_dim)  # [B, H, S, E]
        if self.is_cross:
            q = apply_rotary(heads(self.to_q(x)), cos, sin)
            k, v = kv if kv is not None else self.context_kv(context)
        else:
            q, k, v = self._qkv(x)
            q, k, v = apply_rotary(heads(q), cos, sin), apply_rotary(heads(k), cos, sin), heads(v)
        out = F.scaled_dot_product_attention(q, k, v)  # [B, H, S, E]
        return self.to_out[0](rearrange(out, "b h s e -> b s (h e)"))


class SwiGLU(nn.Module):
    """Feed-forward ``net.0.proj`` (D -> 2*inner, bias) -> h * silu(g) -> ``net.2`` (inner -> D, bias)."""

    def __init__(self, dim: int, inner_dim: int):
        super().__init__()
        proj = nn.Module()
        proj.proj = nn.Linear(dim, 2 * inner_dim)
        self.net = nn.ModuleList([proj, nn.Dropout(0.0), nn.Linear(inner_dim, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, S, D] -> [B, S, D]."""
        h, gate = self.net[0].proj(x).chunk(2, dim=-1)
        return self.net[2](h * F.silu(gate))


class DiTBlock(nn.Module):
    """Pre-LayerNorm block: self-attention, cross-attention, SwiGLU, each with a residual."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, num_kv_heads: int, cross_dim: int, ff_inner_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn1 = Attention(dim, num_heads, head_dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.attn2 = Attention(dim, num_heads, head_dim, context_dim=cross_dim, num_kv_heads=num_kv_heads)
        self.norm3 = nn.LayerNorm(dim, eps=1e-5)
        self.ff = SwiGLU(dim, ff_inner_dim)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
                context_kv: tuple[torch.Tensor, torch.Tensor] | None, num_with_context: int) -> torch.Tensor:
        """x [B, S, D]. Only the first ``num_with_context`` batch rows attend to ``context_kv``
        ([num_with_context, H, N, E] each); the other rows have an all-zero context, whose
        cross-attention output is exactly zero (zero keys give uniform weights over zero values,
        and no projection has a bias), so their cross-attention is skipped."""
        x = x + self.attn1(self.norm1(x), rope)
        if context_kv is not None and num_with_context > 0:
            n = num_with_context
            attn = self.attn2(self.norm2(x[:n]), rope, kv=context_kv)
            x = torch.cat([x[:n] + attn, x[n:]], dim=0) if n < x.shape[0] else x + attn
        return x + self.ff(self.norm3(x))
