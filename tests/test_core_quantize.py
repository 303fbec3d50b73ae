"""int8 inference copies (vssflow_core.model.quantize): per-token activations, fused q|k|v,
float cross-attention keys/values, the float model untouched."""
import pytest
import torch
from torch import nn

from vssflow_core.errors import VSSFlowError
from vssflow_core.model import quantize
from vssflow_core.model.layers import DiTBlock
from vssflow_core.model.quantize import Int8Linear, int8_blocks


def _rel(a, b):
    return float((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt())


def test_int8_linear_is_close_to_the_float_layer():
    torch.manual_seed(0)
    lin = nn.Linear(96, 40)
    x = torch.randn(2, 7, 96)
    q = Int8Linear(lin.weight, lin.bias)
    assert q.weight_t.dtype == torch.int8 and q.weight_t.shape == (96, 40)
    with torch.no_grad():
        assert _rel(q(x), lin(x)) < 0.01
    assert q(x).shape == (2, 7, 40)


def test_one_loud_token_does_not_coarsen_the_others():
    """Activation scales are per token: a per-tensor scale would round the quiet rows to zero."""
    torch.manual_seed(1)
    lin = nn.Linear(64, 32, bias=False)
    x = torch.randn(5, 64) * 0.01
    x[0] *= 1e4
    with torch.no_grad():
        y, ref = Int8Linear(lin.weight)(x), lin(x)
    assert _rel(y[1:], ref[1:]) < 0.01


def test_fused_layers_equal_the_separate_ones():
    torch.manual_seed(2)
    a, b = nn.Linear(48, 16), nn.Linear(48, 24, bias=False)
    x = torch.randn(9, 48)
    fused = Int8Linear.from_linears(a, b)(x)
    torch.testing.assert_close(fused[:, :16], Int8Linear(a.weight, a.bias)(x))
    torch.testing.assert_close(fused[:, 16:], Int8Linear(b.weight)(x))


def test_int8_block_follows_the_float_block_and_leaves_it_alone():
    torch.manual_seed(3)
    block = DiTBlock(dim=128, num_heads=4, head_dim=32, num_kv_heads=2, cross_dim=64, ff_inner_dim=256).eval()
    before = {k: v.clone() for k, v in block.state_dict().items()}
    (copy,) = int8_blocks(nn.ModuleList([block]))
    assert isinstance(copy.attn1.qkv, Int8Linear) and copy.attn1.to_q is None
    assert isinstance(copy.attn2.to_q, Int8Linear) and isinstance(copy.ff.net[2], Int8Linear)
    assert isinstance(copy.attn2.to_k, nn.Linear)  # context keys/values stay float (cached per clip)
    x, context = torch.randn(2, 20, 128), torch.randn(1, 6, 64)
    rope = (torch.ones(20, 16), torch.zeros(20, 16))
    with torch.no_grad():
        ref = block(x, rope, block.attn2.context_kv(context), 1)
        out = copy(x, rope, copy.attn2.context_kv(context), 1)
    assert _rel(out - x, ref - x) < 0.03
    assert block.attn1.qkv is None
    for k, v in block.state_dict().items():
        torch.testing.assert_close(v, before[k], atol=0, rtol=0)


def test_clear_errors(monkeypatch):
    with pytest.raises(VSSFlowError, match="CPU only"):
        int8_blocks(nn.ModuleList([nn.Linear(4, 4).to("meta")]))
    monkeypatch.delattr(torch, "_int_mm")
    with pytest.raises(VSSFlowError, match="needs torch >= 2.3"):
        quantize._require_int_mm()
