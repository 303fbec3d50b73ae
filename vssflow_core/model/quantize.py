"""int8 copies of the DiT blocks for CPU inference (``VSSFlow.set_precision("int8")``).

Each projection becomes an :class:`Int8Linear`: weights in int8 with one scale per output
channel, fixed when the copy is made; activations quantized to int8 at every call with one scale
per token (row), so that one token with large values does not coarsen the others; products
accumulated in int32 by ``torch._int_mm`` (oneDNN) and scaled back to float32. The self-attention
q|k|v projections share their input, so they become one int8 GEMM. The cross-attention keys and
values of the context stay float32: they are computed once per clip and cached, so int8 would
save nothing there. The float32 blocks stay the model's weights (state_dict unchanged).

Written on ``torch._int_mm`` instead of ``torch.ao.quantization.quantize_dynamic`` (deprecated in
torch 2.10, one activation scale per tensor): on the official-size model per-token scales moved
the guided velocity by a third as much; speeds are in the README and ``bench --parts official``.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from vssflow_core.errors import VSSFlowError
from vssflow_core.model.layers import Attention

INT8_MAX = 127.0


class Int8Linear(nn.Module):
    """``y = x W^T + b`` with W in int8 (per output channel) and x quantized per row at each call.

    Args:
        weight: float [N, K] (out, in).
        bias: float [N] or None.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        w = weight.detach().float()
        scale = w.abs().amax(dim=1).clamp_min(1e-12) / INT8_MAX  # [N]
        q = torch.round(w / scale[:, None]).clamp(-INT8_MAX, INT8_MAX).to(torch.int8)
        self.register_buffer("weight_t", q.t().contiguous())  # int8 [K, N], the layout _int_mm takes
        self.register_buffer("weight_scale", scale)
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self.in_features, self.out_features = w.shape[1], w.shape[0]

    @classmethod
    def from_linears(cls, *linears: nn.Linear) -> "Int8Linear":
        """One int8 layer computing the outputs of ``linears`` (same input) side by side."""
        weight = torch.cat([lin.weight.detach() for lin in linears], dim=0)
        if all(lin.bias is None for lin in linears):
            return cls(weight)
        bias = torch.cat([lin.bias.detach() if lin.bias is not None else weight.new_zeros(lin.out_features)
                          for lin in linears])
        return cls(weight, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x float [..., K] -> float32 [..., N]."""
        rows = x.reshape(-1, self.in_features).float()
        scale = rows.abs().amax(dim=1, keepdim=True).clamp_min_(1e-12).div_(INT8_MAX)  # [M, 1]
        q = torch.div(rows, scale).round_().to(torch.int8)  # |q| <= 127 by construction
        y = torch._int_mm(q, self.weight_t).float().mul_(self.weight_scale).mul_(scale)
        if self.bias is not None:
            y.add_(self.bias)
        return y.reshape(*x.shape[:-1], self.out_features)


def _require_int_mm() -> None:
    if not hasattr(torch, "_int_mm"):
        raise VSSFlowError(f"precision 'int8' needs torch >= 2.3 (torch._int_mm); this is torch {torch.__version__}. "
                           "Use precision 'fp32', or upgrade torch.")
    try:
        torch._int_mm(torch.ones(1, 8, dtype=torch.int8), torch.ones(8, 8, dtype=torch.int8))
    except RuntimeError as e:
        raise VSSFlowError(f"precision 'int8': this torch build cannot multiply int8 matrices on the CPU ({e}). "
                           "Use precision 'fp32'.") from None


def _int8_block(block: nn.Module) -> nn.Module:
    """An int8 copy of one DiT block (see the module docstring for what is quantized)."""
    q = copy.deepcopy(block).float().eval()
    for attn in (m for m in q.modules() if isinstance(m, Attention)):
        if attn.is_cross:
            attn.to_q = Int8Linear(attn.to_q.weight)
        else:
            attn.qkv = Int8Linear.from_linears(attn.to_q, attn.to_k, attn.to_v)
            attn.to_q = attn.to_k = attn.to_v = None  # only the fused copy is used
        attn.to_out[0] = Int8Linear(attn.to_out[0].weight)
    for parent in list(q.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear) and not _is_context_projection(parent, name):
                setattr(parent, name, Int8Linear(child.weight, child.bias))
    return q


def _is_context_projection(parent: nn.Module, name: str) -> bool:
    return isinstance(parent, Attention) and parent.is_cross and name in ("to_k", "to_v")


def int8_blocks(blocks: nn.ModuleList) -> nn.ModuleList:
    """int8 copies of ``blocks``, made one block at a time so that peak extra memory is one float
    block. CPU only."""
    if any(p.device.type != "cpu" for p in blocks.parameters()):
        raise VSSFlowError("precision 'int8' runs on CPU only; use 'bf16' or 'fp16' on a GPU")
    _require_int_mm()
    with torch.no_grad():
        return nn.ModuleList(_int8_block(blk) for blk in blocks)
