"""Dynamic int8 copies of the DiT blocks for CPU inference (weights int8 per output channel,
activations quantized per call). On CPUs without bf16 hardware (AVX2) this is the fast path:
the large GEMMs run about 2x faster than float32. The float32 blocks stay the model's weights."""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from vssflow_core.errors import VSSFlowError
from vssflow_core.model.layers import Attention


def int8_blocks(blocks: nn.ModuleList) -> nn.ModuleList:
    """Quantized copies of ``blocks`` (every ``nn.Linear``), made one block at a time so that peak
    extra memory is one float block. CPU only."""
    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError as e:  # pragma: no cover - depends on the torch build
        raise VSSFlowError(f"precision 'int8' needs torch.ao.quantization, not available in this torch: {e}") from None
    if any(p.device.type != "cpu" for p in blocks.parameters()):
        raise VSSFlowError("precision 'int8' runs on CPU only; use 'bf16' or 'fp16' on a GPU")
    out = nn.ModuleList()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notice pointing to torchao
        for blk in blocks:
            q = quantize_dynamic(copy.deepcopy(blk).float(), {nn.Linear: per_channel_dynamic_qconfig},
                                 dtype=torch.qint8, inplace=True)
            for m in q.modules():
                if isinstance(m, Attention):
                    m.fuse_qkv = False  # quantized linears have no float weight to fuse
            out.append(q.eval())
    return out
