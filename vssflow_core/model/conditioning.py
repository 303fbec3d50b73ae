"""Condition routing driven by the config's condition table.

Each raw feature is checked, resampled from its native rate to the latent grid (as the official
code does: ``F.interpolate`` nearest / nearest-exact, or zero-padding for features already on the
25 Hz grid), projected by its own module, and routed: ``concat`` conditions become channels next
to the noisy latent, ``cross`` conditions become context tokens (global ones first).

Shape letters: B batch, N native frames, L latent frames, D feature width, Cc concatenated
condition channels, T context tokens, Dc context width.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from vssflow_core.config import ConditionSpec, ModelConfig
from vssflow_core.errors import VSSFlowError


@dataclass
class Conditions:
    """Projected conditions of one clip (or batch), computed once and reused at every ODE step.

    Attributes:
        concat: [B, Cc, L] channels concatenated with the noisy latent, or None (= zeros; also
            when the config has no concat condition).
        context: [B, T, Dc] cross-attention tokens, or None (= an all-zero context, whose
            cross-attention output is exactly zero, so it is skipped).
        latent_length: L.
        batch_size: B.
        present: names of the conditions that were given (not absent).
    """

    concat: torch.Tensor | None
    context: torch.Tensor | None
    latent_length: int
    batch_size: int
    present: tuple[str, ...] = ()
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def unconditional(self) -> bool:
        """True when this is the all-zero (CFG unconditional) input."""
        return self.concat is None and self.context is None

    def expand(self, batch_size: int) -> "Conditions":
        """Repeat batch-1 conditions for ``batch_size`` rows (e.g. several seeds of one clip).
        The expanded object is kept, so its caches survive across solver steps."""
        if batch_size == self.batch_size:
            return self
        if self.batch_size != 1:
            raise VSSFlowError(f"conditions have batch size {self.batch_size}, the latent has {batch_size}; "
                               "encode the conditions for the same batch (or for one clip, batch 1)")
        key = ("expand", batch_size)
        if key not in self.cache:
            rep = lambda x: None if x is None else x.expand(batch_size, *x.shape[1:])
            self.cache[key] = replace(self, concat=rep(self.concat), context=rep(self.context), batch_size=batch_size, cache={})
        return self.cache[key]


def build_projection(spec: ConditionSpec) -> nn.Module:
    """The projection module of one condition (official names: ``lip_proj.0``/``.2``, ...)."""
    if spec.projection == "mlp2":
        return nn.Sequential(nn.Linear(spec.projection_input_dim, spec.hidden_dim, bias=False), nn.SiLU(),
                             nn.Linear(spec.hidden_dim, spec.out_dim, bias=False))
    if spec.projection == "embedding":
        return nn.Embedding(spec.input_dim, spec.out_dim)
    return nn.Identity()


def expected_frames(spec: ConditionSpec, latent_length: int, latent_rate_hz: float) -> int:
    """Native frames covering the window of ``latent_length`` latent frames (ceil rule)."""
    return math.ceil(latent_length / latent_rate_hz * spec.rate_hz - 1e-6)


def _check_feature(spec: ConditionSpec, x: torch.Tensor, batch_size: int | None) -> torch.Tensor:
    """Validate one raw feature and bring it to [B, N, D] (ids: [B, N]; global: [B, 1, D])."""
    key = spec.feature_key
    if not isinstance(x, torch.Tensor):
        raise VSSFlowError(f"condition {key!r}: expected a torch.Tensor, got {type(x).__name__}")
    if spec.projection == "embedding":
        if x.dtype.is_floating_point or x.dtype == torch.bool:
            raise VSSFlowError(f"condition {key!r}: expected integer ids [B, N], got dtype {x.dtype}; pass a LongTensor")
        if x.dim() != 2:
            raise VSSFlowError(f"condition {key!r}: expected ids [B, N], got shape {list(x.shape)}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= spec.input_dim):
            raise VSSFlowError(f"condition {key!r}: ids must lie in 0..{spec.input_dim - 1}, got {int(x.min())}..{int(x.max())}")
    else:
        if not x.dtype.is_floating_point:
            raise VSSFlowError(f"condition {key!r}: expected a float tensor, got dtype {x.dtype}")
        if spec.fold_segments and x.dim() == 4:
            x = x.reshape(x.shape[0], x.shape[1] * x.shape[2], x.shape[3])  # [B, S*K, D]
        if spec.rate_hz is None and x.dim() == 2:
            x = x[:, None, :]  # [B, 1, D]
        want = "[B, D]" if spec.rate_hz is None else ("[B, N, D] or [B, S, K, D]" if spec.fold_segments else "[B, N, D]")
        if x.dim() != 3 or x.shape[-1] != spec.input_dim or (spec.rate_hz is None and x.shape[1] != 1):
            raise VSSFlowError(f"condition {key!r}: expected {want} with D = {spec.input_dim}, got shape {list(x.shape)}")
        if not torch.isfinite(x).all():
            raise VSSFlowError(f"condition {key!r}: contains NaN or infinite values; check the feature extractor's input")
    if batch_size is not None and x.shape[0] != batch_size:
        raise VSSFlowError(f"condition {key!r}: batch size {x.shape[0]} differs from the other inputs' {batch_size}")
    return x


def with_neighbours(x: torch.Tensor, context_frames: int) -> torch.Tensor:
    """[B, N, D] -> [B, N, (2c + 1) D]: each frame with its ``c`` neighbours on each side, in time
    order (frame k - c first, frame k in the middle block), zeros beyond the ends."""
    if context_frames == 0:
        return x
    n = x.shape[1]
    padded = F.pad(x, [0, 0, context_frames, context_frames])  # [B, N + 2c, D]
    return torch.cat([padded[:, j: j + n] for j in range(2 * context_frames + 1)], dim=-1)


def _resample(spec: ConditionSpec, x: torch.Tensor, latent_length: int, latent_rate_hz: float) -> torch.Tensor:
    """[B, N, D] (or ids [B, N]) at the native rate -> [B, L, D] (ids [B, L]) on the latent grid."""
    n = x.shape[1]
    if spec.resample == "pad":
        if n > latent_length:
            raise VSSFlowError(f"condition {spec.feature_key!r}: {n} frames at {spec.rate_hz:g} Hz are longer than the "
                               f"model window of {latent_length} frames; cut the input into windows")
        pad = [0, latent_length - n] if x.dim() == 2 else [0, 0, 0, latent_length - n]
        return F.pad(x, pad)
    want = expected_frames(spec, latent_length, latent_rate_hz)
    if abs(n - want) > max(2, 0.1 * want):
        raise VSSFlowError(f"condition {spec.feature_key!r}: expected about {want} frames ({spec.rate_hz:g} Hz over the "
                           f"{latent_length / latent_rate_hz:g} s window), got {n}; resample the feature to {spec.rate_hz:g} Hz")
    if n == latent_length:
        return x
    if x.dim() == 2:  # integer ids: interpolate exactly representable floats, then back to ids
        y = F.interpolate(x[:, None, :].double(), size=latent_length, mode=spec.resample)[:, 0]
        return y.round().long()
    return F.interpolate(x.transpose(1, 2), size=latent_length, mode=spec.resample).transpose(1, 2)


def encode_features(model: nn.Module, cfg: ModelConfig, latent_length: int, features: dict,
                    batch_size: int | None = None) -> Conditions:
    """Check, resample, project and route raw features (see :meth:`VSSFlow.encode_conditions`)."""
    by_key = {c.feature_key: c for c in cfg.conditions}
    unknown = sorted(set(features) - set(by_key))
    if unknown:
        raise VSSFlowError(f"unknown condition feature(s) {unknown} for model {cfg.name!r}; expected any of {sorted(by_key)}")
    param = next(model.parameters())
    device, dtype = param.device, param.dtype
    checked = {}
    for key, x in features.items():
        if x is None:
            continue
        x = _check_feature(by_key[key], x, batch_size)
        batch_size = x.shape[0]
        checked[key] = x
    batch_size = batch_size or 1

    def projected(spec: ConditionSpec) -> torch.Tensor:
        """One condition projected on the latent grid: [B, L, out_dim] (global ones [B, 1, out_dim])."""
        x = checked.get(spec.feature_key)
        if x is None:  # absent: zeros (ids 0 = "no phoneme", the official no-transcript input)
            n = 1 if spec.rate_hz is None else latent_length
            x = torch.zeros((batch_size, n), dtype=torch.long) if spec.projection == "embedding" \
                else torch.zeros((batch_size, n, spec.projection_input_dim))
        elif spec.rate_hz is not None:
            x = _resample(spec, with_neighbours(x, spec.context_frames), latent_length, cfg.latent_rate_hz)
        if spec.projection == "embedding":
            x = x.to(device)
        else:
            x = x.to(device, dtype) * spec.input_scale if spec.input_scale != 1.0 else x.to(device, dtype)
        return getattr(model, spec.module_name)(x)  # [B, L or 1, out_dim]

    concat = None
    if cfg.concat_conditions:
        concat = torch.cat([projected(s) for s in cfg.concat_conditions], dim=-1).transpose(1, 2)  # [B, Cc, L]
    cross_present = any(c.feature_key in checked for c in cfg.cross_conditions)
    context = torch.cat([projected(s) for s in cfg.cross_conditions], dim=1) if cross_present else None  # [B, T, Dc]
    present = tuple(c.name for c in cfg.conditions if c.feature_key in checked)
    return Conditions(concat=concat, context=context, latent_length=latent_length, batch_size=batch_size, present=present)
