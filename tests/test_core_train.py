"""Toy training on CPU: the flow-matching loss falls and samples follow both condition routes.

Task: an 8-bin "spectrogram" latent [B, 8, 16] holding a tone; its pitch (bin) per frame follows a
concat condition (25 Hz track) and its loudness follows a global cross-attention condition.
"""
import torch

from vssflow_core import flow
from vssflow_core.config import CodecConfig, ConditionSpec, DiTConfig, ModelConfig
from vssflow_core.model import VSSFlow

BINS, FRAMES = 8, 16


def toy_config() -> ModelConfig:
    return ModelConfig(
        name="toy",
        dit=DiTConfig(num_layers=2, num_heads=2, head_dim=16, num_kv_heads=1, cross_dim=16, ff_inner_dim=64),
        codec=CodecConfig(latent_channels=BINS),
        conditions=(
            ConditionSpec("pitch", "pitch_proj", 1, 8, "concat", 25.0, "pad", "mlp2", 32, feature_key="pitch"),
            ConditionSpec("gain", "gain_proj", 1, 16, "cross", None, "nearest", "mlp2", 32, feature_key="gain"),
        ),
        duration_s=FRAMES / 25.0,
    )


def toy_batch(b: int, g: torch.Generator):
    """Pitch tracks [B, 16] (piecewise constant, bins 0..7), gains [B] in {0.5, 1.5}, latents [B, 8, 16]."""
    change = torch.randint(4, 12, (b, 1), generator=g)
    p0, p1 = torch.randint(0, BINS, (b, 1), generator=g), torch.randint(0, BINS, (b, 1), generator=g)
    pitch = torch.where(torch.arange(FRAMES)[None] < change, p0, p1)  # [B, L]
    gain = torch.where(torch.rand(b, generator=g) < 0.5, 0.5, 1.5)
    bins = torch.arange(BINS)[None, :, None]
    x1 = gain[:, None, None] * torch.exp(-0.5 * (bins - pitch[:, None, :]) ** 2) * 2 - 0.5
    feats = {"pitch": (pitch.float() / BINS)[:, :, None], "gain": gain[:, None]}
    return feats, x1, pitch, gain


def test_toy_training_learns_conditions():
    torch.manual_seed(0)
    model = VSSFlow(toy_config())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(300):
        feats, x1, _, _ = toy_batch(32, g)
        cond = model.encode_conditions(**flow.drop_conditions(feats, 0.1, {}, g))
        loss = flow.flow_matching_loss(model, x1, cond, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-30:]) / 30 < 0.5 * sum(losses[:30]) / 30, (losses[:5], losses[-5:])

    model.eval()
    feats, x1, pitch, gain = toy_batch(64, torch.Generator().manual_seed(7))
    cond = model.encode_conditions(**feats)
    noise = torch.randn(x1.shape, generator=torch.Generator().manual_seed(8))
    out = model.sample(noise, cond, solver="midpoint", steps=8, guidance_scale=2.0)
    pitch_acc = (out.argmax(dim=1) == pitch).float().mean().item()
    assert pitch_acc > 0.8, pitch_acc
    peak = out.amax(dim=(1, 2))
    assert peak[gain > 1].mean() > peak[gain < 1].mean() + 0.8, (peak[gain > 1].mean(), peak[gain < 1].mean())
    # without conditions the pitch is not recoverable (the condition is what carries it)
    uncond = model.sample(noise, model.encode_conditions(unconditional=True, batch_size=64), steps=8, guidance_scale=None)
    assert (uncond.argmax(dim=1) == pitch).float().mean().item() < pitch_acc - 0.3
