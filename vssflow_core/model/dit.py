"""The Stable-Audio-style DiT backbone (x_t, t, context -> velocity), as the official model computes it.

Shape letters: B batch, C channels of the DiT input (audio + concatenated conditions), Ca audio
channels, L latent frames, S = L + 1 tokens (time token first), D width, N context tokens.

Attribute names are the official checkpoint keys under ``vaflow.``: ``time_proj``,
``timestep_proj.{0,2}``, ``preprocess_conv``, ``proj_in``, ``transformer_blocks.{i}``, ``proj_out``,
``postprocess_conv``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vssflow_core.config import DiTConfig
from vssflow_core.model.layers import DiTBlock, FourierTime, rotary_table, weights_key


class DiT(nn.Module):
    """x [B, C, L] + time [B] + context keys/values -> output [B, C_out, L].

    Input path ``x + preprocess_conv(x)`` -> ``proj_in`` -> prepend the time token -> blocks ->
    ``proj_out`` -> drop the time token -> ``y + postprocess_conv(y)``. No final norm.
    """

    def __init__(self, cfg: DiTConfig, in_channels: int):
        super().__init__()
        self.cfg = cfg
        dim = cfg.width
        self.in_channels = in_channels
        self.time_proj = FourierTime(cfg.time_proj_dim // 2)
        self.timestep_proj = nn.Sequential(nn.Linear(cfg.time_proj_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.preprocess_conv = nn.Conv1d(in_channels, in_channels, 1, bias=False)
        self.proj_in = nn.Linear(in_channels, dim, bias=False)
        self.transformer_blocks = nn.ModuleList(
            DiTBlock(dim, cfg.num_heads, cfg.head_dim, cfg.num_kv_heads, cfg.cross_dim, cfg.ff_inner_dim)
            for _ in range(cfg.num_layers)
        )
        self.proj_out = nn.Linear(dim, in_channels, bias=False)
        self.postprocess_conv = nn.Conv1d(in_channels, in_channels, 1, bias=False)
        self._rope_cache: dict = {}
        self._io: tuple | None = None  # fused input/output maps (inference)

    def rope(self, num_tokens: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Cached rotary tables (cos, sin) [S, rot] float32 for S tokens (time token = position 0)."""
        key = (num_tokens, str(device))
        if key not in self._rope_cache:
            with torch.inference_mode(False):  # normal tensors: usable by training after inference
                self._rope_cache[key] = rotary_table(num_tokens, self.cfg.rope_dim, self.cfg.rope_theta, device)
        return self._rope_cache[key]

    def time_token(self, t: torch.Tensor) -> torch.Tensor:
        """t [B] in [0, 1] -> time token [B, 1, D]."""
        dtype = self.proj_in.weight.dtype
        return self.timestep_proj(self.time_proj(t).to(dtype))[:, None, :]

    def embed_input(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, L] -> tokens [B, L, D] (residual 1x1 conv, then proj_in)."""
        x = self.preprocess_conv(x) + x
        return self.proj_in(x.transpose(1, 2))

    def fused_io(self, audio_channels: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inference maps that fold the residual 1x1 convolutions into the projections.

        ``proj_in(x + preprocess_conv(x)) = M x`` with ``M = P (I + W)``, split into the audio
        columns ``M_a`` [D, Ca] and the condition columns ``M_c`` [D, C - Ca] (whose product with
        the constant condition channels is cached per clip); the audio rows of
        ``y + postprocess_conv(y)`` with ``y = proj_out(h)`` are ``N h``, ``N`` [Ca, D]. Built in
        float64 once per weight version."""
        ws = (self.preprocess_conv.weight, self.proj_in.weight, self.proj_out.weight, self.postprocess_conv.weight)
        key = (weights_key(*ws), audio_channels)
        if self._io is None or self._io[0] != key:
            with torch.inference_mode(False):
                self._io = (key, *self._fold_io(audio_channels))
        return self._io[1:]

    @torch.no_grad()
    def _fold_io(self, audio_channels: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(M_a, M_c, N) of :meth:`fused_io`, computed in float64."""
        dtype = self.proj_in.weight.dtype
        p_in, w_pre = self.proj_in.weight.double(), self.preprocess_conv.weight[:, :, 0].double()
        m = p_in + p_in @ w_pre  # [D, C]
        p_out, w_post = self.proj_out.weight.double(), self.postprocess_conv.weight[:audio_channels, :, 0].double()
        n = p_out[:audio_channels] + w_post @ p_out  # [Ca, D]
        return (m[:, :audio_channels].to(dtype).contiguous(), m[:, audio_channels:].to(dtype).contiguous(),
                n.to(dtype).contiguous())

    def context_kv(self, context: torch.Tensor, blocks: nn.ModuleList | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-block cross-attention keys/values of a context [B, N, Dc] (cacheable per clip)."""
        return [blk.attn2.context_kv(context) for blk in (blocks if blocks is not None else self.transformer_blocks)]

    def forward_tokens(self, tokens: torch.Tensor, t: torch.Tensor,
                       context_kv: list[tuple[torch.Tensor, torch.Tensor]] | None, num_with_context: int,
                       blocks: nn.ModuleList | None = None) -> torch.Tensor:
        """tokens [B, L, D] + t [B] -> block output [B, S, D] (time token first).

        Rows ``[:num_with_context]`` attend to ``context_kv``; the others have a zero context.
        ``blocks`` replaces the blocks (e.g. their int8 copies)."""
        h = torch.cat([self.time_token(t).to(tokens.dtype), tokens], dim=1)  # [B, S, D]
        rope = self.rope(h.shape[1], h.device)
        for i, blk in enumerate(blocks if blocks is not None else self.transformer_blocks):
            h = blk(h, rope, None if context_kv is None else context_kv[i], num_with_context)
        return h

    def project_output(self, h: torch.Tensor, out_channels: int | None = None) -> torch.Tensor:
        """Block output [B, S, D] -> [B, C_out, L]: ``proj_out``, drop the time token, residual
        1x1 conv. With ``out_channels`` only the first channels are computed (the audio ones)."""
        y = self.proj_out(h).transpose(1, 2)[:, :, 1:]  # [B, C, L]
        if out_channels is None or out_channels == y.shape[1]:
            return self.postprocess_conv(y) + y
        weight = self.postprocess_conv.weight[:out_channels]
        return F.conv1d(y, weight) + y[:, :out_channels]

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None = None,
                out_channels: int | None = None) -> torch.Tensor:
        """Plain forward: x [B, C, L], t [B], context [B, N, Dc] or None (= all-zero context)
        -> [B, C_out, L]."""
        kv = None if context is None else self.context_kv(context)
        h = self.forward_tokens(self.embed_input(x), t, kv, x.shape[0] if context is not None else 0)
        return self.project_output(h, out_channels)
