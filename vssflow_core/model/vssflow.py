"""VSSFlow: the DiT, the condition projections, guided velocity and sampling.

Shape letters: B batch, Ca audio latent channels, Cc concatenated condition channels, L latent
frames (25 Hz in the official layout), T context tokens, D width.

``state_dict()`` keys of the official preset are the official Lightning checkpoint keys:
``vaflow.*`` (the DiT) and one top-level module per condition (``lip_proj``, ``phone_embedding``,
``synch_proj``, ``ref_proj``, ``cond_proj``).
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vssflow_core import flow
from vssflow_core.config import ModelConfig, is_guidance_rescale
from vssflow_core.errors import VSSFlowError
from vssflow_core.model.conditioning import Conditions, build_projection, encode_features
from vssflow_core.model.dit import DiT

X_PREDICTION_MIN_GAP = 0.05  # floor of (1 - t) when an x-prediction becomes a velocity (as JiT, Li & He 2025)


class VSSFlow(nn.Module):
    """The VSSFlow model for one :class:`~vssflow_core.config.ModelConfig` (any size)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.vaflow = DiT(config.dit, config.in_channels)
        for spec in config.conditions:
            self.add_module(spec.module_name, build_projection(spec))
        self.autocast_dtype: torch.dtype | None = None
        self.fuse_io = False
        self.precision = "fp32"
        self.__dict__["_int8_blocks"] = None  # int8 copies, deliberately not registered (not in state_dict)

    def set_precision(self, precision: str = "fp32") -> "VSSFlow":
        """Inference precision: ``fp32`` (default; the official arithmetic, parity-tested),
        ``fp32-fused`` (folds the residual 1x1 convs into the projections and caches the
        conditions' input tokens: a few % faster, rounding differs at ~1e-6, which dopri5's step
        control can amplify to ~1e-4), ``bf16`` / ``fp16`` (autocast, with the fused maps; fast on
        GPUs and CPUs with bf16 units, slow on AVX2-only CPUs), ``int8`` (CPU: int8 copies of the
        blocks, weights per output channel, activations per token (``model.quantize``); 2.6-3x
        faster than fp32 where torch has fast int8 kernels, but about 20x slower on an AVX2-only AMD
        EPYC (measured 2026-11-30; README, "Speed and memory"): check with ``bench --parts official``).
        Returns self."""
        table = {"fp32": (None, False), "fp32-fused": (None, True), "bf16": (torch.bfloat16, True),
                 "fp16": (torch.float16, True), "int8": (None, True)}
        if precision not in table:
            raise VSSFlowError(f"precision: expected one of {sorted(table)}, got {precision!r}")
        if precision == "int8":
            from vssflow_core.model.quantize import int8_blocks

            self.__dict__["_int8_blocks"] = int8_blocks(self.vaflow.transformer_blocks)
        else:
            self.__dict__["_int8_blocks"] = None
        self.autocast_dtype, self.fuse_io = table[precision]
        self.precision = precision
        return self

    def _blocks(self):
        """The blocks inference runs: the int8 copies when set (never while training)."""
        return None if torch.is_grad_enabled() else self.__dict__["_int8_blocks"]

    # ------------------------------------------------------------------ conditions
    def encode_conditions(self, latent_length: int | None = None, *, batch_size: int | None = None,
                          unconditional: bool = False, **features) -> Conditions:
        """Project raw features once per clip.

        Args:
            latent_length: L; defaults to the config's window (250 for 10 s at 25 Hz).
            batch_size: B when every feature is absent (default 1).
            unconditional: return the all-zero CFG input (what whole-batch condition dropout uses).
            **features: by each condition's ``feature_key``, any may be None/absent. Official:
                ``video_feat`` [B, Nv, 768] (10 Hz), ``synch_feat`` [B, S, 8, 768] or [B, N, 768]
                (24 Hz), ``lip_feat`` [B, Nl, 1024] (25 Hz, Nl <= L), ``phone_id`` int64 [B, Np]
                (25 Hz, 0 = no phoneme), ``ref_audio_ebd`` [B, 256]. Features cover the window at
                their native rate and are resampled to L.
        Returns: :class:`Conditions`. Absent features are zeros (phoneme id 0).
        """
        length = int(latent_length or self.config.latent_length)
        if unconditional:
            return Conditions(concat=None, context=None, latent_length=length, batch_size=batch_size or 1)
        return encode_features(self, self.config, length, features, batch_size)

    def _context_kv(self, cond: Conditions):
        """Cross-attention keys/values of ``cond.context`` for every block; cached on ``cond``
        when no gradient is recorded (sampling), recomputed while training."""
        if cond.context is None:
            return None
        if torch.is_grad_enabled():
            with self._autocast():
                return self.vaflow.context_kv(cond.context)
        key = ("kv", id(self), self.precision, self._compute_dtype(), str(cond.context.device))
        if key not in cond.cache:
            with self._autocast():
                cond.cache[key] = self.vaflow.context_kv(cond.context, self._blocks())
        return cond.cache[key]

    # ------------------------------------------------------------------ velocity
    def _compute_dtype(self) -> torch.dtype:
        return self.autocast_dtype or self.vaflow.proj_in.weight.dtype

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.vaflow.proj_in.weight.device.type, dtype=self.autocast_dtype)

    def _check_latent(self, x_t: torch.Tensor, cond: Conditions) -> Conditions:
        ca = self.config.audio_channels
        if x_t.dim() != 3 or x_t.shape[1] != ca or x_t.shape[2] != cond.latent_length:
            raise VSSFlowError(f"x_t: expected [B, {ca}, {cond.latent_length}] (audio channels, latent frames of the "
                               f"conditions), got {list(x_t.shape)}")
        return cond.expand(x_t.shape[0])

    def _time(self, t, batch: int, device) -> torch.Tensor:
        t = torch.as_tensor(t, device=device)
        if t.dim() == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise VSSFlowError(f"t: expected a scalar or [B] = [{batch}], got shape {list(t.shape)}")
        return t

    def predict(self, x_t: torch.Tensor, t, cond: Conditions, branches: str = "cond") -> torch.Tensor:
        """Raw DiT prediction on the audio channels.

        branches: ``cond`` -> [B, Ca, L]; ``uncond`` -> [B, Ca, L] with all conditions zero;
        ``both`` -> [2B, Ca, L], conditional rows first, computed in one batched forward.
        """
        cond = self._check_latent(x_t, cond)
        batch, ca = x_t.shape[0], self.config.audio_channels
        t = self._time(t, batch, x_t.device)
        use_cond, use_uncond = {"cond": (True, False), "uncond": (False, True), "both": (True, True)}[branches]
        t = torch.cat([t, t]) if use_cond and use_uncond else t
        kv = self._context_kv(cond) if use_cond else None
        n_ctx = batch if kv is not None else 0
        if self.fuse_io and not torch.is_grad_enabled():
            return self._predict_fast(x_t, t, cond, use_cond, use_uncond, kv, n_ctx)
        cc = self.config.in_channels - ca
        zeros = x_t.new_zeros(batch, cc, x_t.shape[2]) if cc else None
        parts = []
        if use_cond:
            concat = cond.concat if cond.concat is not None else zeros
            parts.append(x_t if concat is None else torch.cat([x_t, concat.to(x_t.dtype)], dim=1))
        if use_uncond:
            parts.append(x_t if zeros is None else torch.cat([x_t, zeros], dim=1))
        x = torch.cat(parts) if len(parts) > 1 else parts[0]  # [B or 2B, C, L]
        if self.autocast_dtype is None:
            x = x.to(self.vaflow.proj_in.weight.dtype)
        with self._autocast():
            h = self.vaflow.forward_tokens(self.vaflow.embed_input(x), t, kv, n_ctx)
            out = self.vaflow.project_output(h, ca)
        return out.to(x_t.dtype)

    def _predict_fast(self, x_t, t, cond, use_cond, use_uncond, kv, n_ctx) -> torch.Tensor:
        """Inference path with fused input/output maps (see :meth:`set_precision`): the conditions'
        input tokens are cached per clip and the audio tokens are shared by both branches."""
        m_a, m_c, n_out = self.vaflow.fused_io(self.config.audio_channels)
        with self._autocast():
            h_a = F.linear(x_t.transpose(1, 2).to(m_a.dtype), m_a)  # [B, L, D], shared by both branches
            parts = []
            if use_cond:
                parts.append(h_a if cond.concat is None else h_a + self._concat_tokens(cond, m_c).to(h_a.dtype))
            if use_uncond:
                parts.append(h_a)
            h = torch.cat(parts) if len(parts) > 1 else parts[0]
            h = self.vaflow.forward_tokens(h, t, kv, n_ctx, self._blocks())  # [B or 2B, S, D]
            out = F.linear(h[:, 1:], n_out)
        return out.transpose(1, 2).to(x_t.dtype)

    def _concat_tokens(self, cond: Conditions, m_c: torch.Tensor) -> torch.Tensor:
        """``M_c`` times the constant condition channels: [B, L, D], cached on ``cond``."""
        key = ("concat_tokens", id(self), m_c.data_ptr(), self._compute_dtype())
        if key not in cond.cache:
            with self._autocast():
                cond.cache[key] = F.linear(cond.concat.transpose(1, 2).to(m_c.dtype), m_c)
        return cond.cache[key]

    def velocity(self, x_t: torch.Tensor, t, cond: Conditions, guidance_scale: float | None = None,
                 x_range: tuple[float, float] | None = None, guidance_rescale: float = 0.0) -> torch.Tensor:
        """Velocity of the audio channels.

        Args:
            x_t: [B, Ca, L] noisy audio latent at time t.
            t: float, 0-d tensor, or [B]; 0 = noise, 1 = data.
            cond: from :meth:`encode_conditions` (batch B or 1).
            guidance_scale: None -> conditional prediction; w >= 1 -> v_u + w (v_c - v_u) with
                both branches in one batched forward; w < 1 -> the unconditional prediction
                (as the official wrapper does).
            guidance_rescale: phi in 0..1 (with w > 1 only): the guided output g becomes
                phi g std(c) / std(g) + (1 - phi) g, std over each clip's [Ca, L] of g and of the
                conditional output c (Lin et al. 2024, sec. 3.4); 0 = plain guidance (official).
            x_range: ``(low, high)`` of real latents (``AudioCodec.latent_range``); with
                ``prediction="x"`` the guided clean-latent estimate is clamped to it (as diffusion
                samplers clip x0), so one diverging frame cannot run away. Ignored for "v".
        Returns: [B, Ca, L]. With ``config.prediction == "x"`` the DiT estimates the clean latent;
        the guided estimate is turned into the velocity (:meth:`_as_velocity`).
        """
        _check_guidance(guidance_scale)
        if not torch.isfinite(x_t).all():
            raise VSSFlowError("x_t contains NaN or Inf values; check the noise / latent you pass (and, while "
                               "sampling, lower the guidance scale or use fp32 if it diverged)")
        if guidance_scale is None or guidance_scale == 1.0:
            raw = self.predict(x_t, t, cond, "cond")
        elif guidance_scale < 1.0:
            raw = self.predict(x_t, t, cond, "uncond")
        else:
            raw_c, raw_u = self.predict(x_t, t, cond, "both").chunk(2)
            raw = raw_u + guidance_scale * (raw_c - raw_u)  # for an x-prediction the same as guiding v
            if guidance_rescale:
                raw = _rescale_guided(raw, raw_c, guidance_rescale)
        if x_range is not None and self.config.prediction == "x":
            raw = raw.clamp(*x_range)
        return self._as_velocity(raw, x_t, t)

    def _as_velocity(self, raw: torch.Tensor, x_t: torch.Tensor, t) -> torch.Tensor:
        """DiT output [B, Ca, L] -> velocity. ``prediction="x"``: ``(x1_hat - x_t) / (1 - t)``, with
        ``1 - t`` floored at :data:`X_PREDICTION_MIN_GAP` (t = 1 is evaluated by dopri5's last stage)."""
        if self.config.prediction == "v":
            return raw
        t = self._time(t, x_t.shape[0], x_t.device).to(raw.dtype)
        gap = (1 - t).clamp_min(X_PREDICTION_MIN_GAP)[:, None, None]
        return (raw - x_t.to(raw.dtype)) / gap

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, noise: torch.Tensor, cond: Conditions, solver: str = "euler", steps: int = 10,
               guidance_scale: float | None = 3.0, rtol: float = 1e-5, atol: float = 1e-5,
               callback: Callable[[int, int | None], None] | None = None, time_shift: float = 1.0,
               x_range: tuple[float, float] | None = None, guidance_rescale: float = 0.0) -> torch.Tensor:
        """Integrate the guided flow from noise (t = 0) to data (t = 1).

        Args:
            noise: [B, Ca, L] x_0 ~ N(0, I).
            solver: ``euler``, ``midpoint``, ``heun`` (fixed ``steps``) or ``dopri5`` (adaptive,
                rtol/atol; ``steps`` only sets the output grid, as official).
            time_shift: step times of the fixed-step solvers (:func:`vssflow_core.flow.time_grid`;
                1 = equal steps, as official; > 1 = more steps near the noise).
            x_range: clamp of the clean-latent estimate (see :meth:`velocity`).
            guidance_rescale: 0..1, see :meth:`velocity` (``ModelConfig.guidance_rescale_for``).
            callback: ``callback(done, total)`` after each solver step (total None for dopri5);
                raising from it cancels sampling.
        Returns: the audio latent x_1 [B, Ca, L].
        """
        cond = self._check_latent(noise, cond)
        _check_guidance(guidance_scale)
        _check_rescale(guidance_rescale)
        fn = lambda t, x: self.velocity(x, t, cond, guidance_scale, x_range=x_range, guidance_rescale=guidance_rescale)
        # The official dopri5 integrates the full DiT input (audio + constant condition channels);
        # the step-size control sees those channels, so carry them for identical steps.
        with self._autocast():  # one autocast region: weight casts are cached for the whole run
            return flow.integrate(fn, noise, solver=solver, steps=steps, rtol=rtol, atol=atol,
                                  callback=callback, constant_channels=cond.concat, time_shift=time_shift)

    # ------------------------------------------------------------------ misc
    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def _rescale_guided(guided: torch.Tensor, cond: torch.Tensor, phi: float) -> torch.Tensor:
    """Guidance rescale: ``guided`` [B, C, L] with its per-clip standard deviation pulled towards
    that of ``cond`` [B, C, L] by the fraction ``phi`` (0 = unchanged, 1 = equal)."""
    std_g = guided.std(dim=(1, 2), keepdim=True).clamp_min(1e-6)
    std_c = cond.std(dim=(1, 2), keepdim=True)
    return guided * (1 - phi + phi * std_c / std_g)


def _check_rescale(guidance_rescale) -> None:
    """guidance_rescale must be a number from 0 to 1."""
    if not is_guidance_rescale(guidance_rescale):
        raise VSSFlowError(f"guidance_rescale must be a number from 0 (plain guidance, official) to 1, "
                           f"got {guidance_rescale!r}")


def _check_guidance(guidance_scale) -> None:
    """guidance_scale must be None or a finite number (w < 1 means unconditional)."""
    if guidance_scale is None:
        return
    try:
        ok = math.isfinite(float(guidance_scale))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise VSSFlowError(f"guidance_scale must be a finite number (official 3.0; 1.0 = no guidance) or None, "
                           f"got {guidance_scale!r}")
