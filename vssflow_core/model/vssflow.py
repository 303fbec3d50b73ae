"""VSSFlow: the DiT, the condition projections, guided velocity and sampling.

Shape letters: B batch, Ca audio latent channels, Cc concatenated condition channels, L latent
frames (25 Hz in the official layout), T context tokens, D width.

``state_dict()`` keys of the official preset are the official Lightning checkpoint keys:
``vaflow.*`` (the DiT) and one top-level module per condition (``lip_proj``, ``phone_embedding``,
``synch_proj``, ``ref_proj``, ``cond_proj``).
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import nn

from vssflow_core import flow
from vssflow_core.config import ModelConfig
from vssflow_core.errors import VSSFlowError
from vssflow_core.model.conditioning import Conditions, build_projection, encode_features
from vssflow_core.model.dit import DiT


class VSSFlow(nn.Module):
    """The VSSFlow model for one :class:`~vssflow_core.config.ModelConfig` (any size)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.vaflow = DiT(config.dit, config.in_channels)
        for spec in config.conditions:
            self.add_module(spec.module_name, build_projection(spec))
        self.autocast_dtype: torch.dtype | None = None

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
        key = ("kv", id(self), self._compute_dtype(), str(cond.context.device))
        if key not in cond.cache:
            with self._autocast():
                cond.cache[key] = self.vaflow.context_kv(cond.context)
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
        rows = {"cond": (True, False), "uncond": (False, True), "both": (True, True)}[branches]
        parts, times = [], []
        cc = self.config.in_channels - ca
        zeros = x_t.new_zeros(batch, cc, x_t.shape[2]) if cc else None
        if rows[0]:
            concat = cond.concat if cond.concat is not None else zeros
            parts.append(x_t if concat is None else torch.cat([x_t, concat.to(x_t.dtype)], dim=1))
            times.append(t)
        if rows[1]:
            parts.append(x_t if zeros is None else torch.cat([x_t, zeros], dim=1))
            times.append(t)
        x = torch.cat(parts) if len(parts) > 1 else parts[0]  # [B or 2B, C, L]
        kv = self._context_kv(cond) if rows[0] else None
        with self._autocast():
            h = self.vaflow.forward_tokens(self.vaflow.embed_input(x), torch.cat(times), kv, batch if kv is not None else 0)
            out = self.vaflow.project_output(h, ca)
        return out.to(x_t.dtype)

    def velocity(self, x_t: torch.Tensor, t, cond: Conditions, guidance_scale: float | None = None) -> torch.Tensor:
        """Velocity of the audio channels.

        Args:
            x_t: [B, Ca, L] noisy audio latent at time t.
            t: float, 0-d tensor, or [B]; 0 = noise, 1 = data.
            cond: from :meth:`encode_conditions` (batch B or 1).
            guidance_scale: None -> conditional prediction; w >= 1 -> v_u + w (v_c - v_u) with
                both branches in one batched forward; w < 1 -> the unconditional prediction
                (as the official wrapper does).
        Returns: [B, Ca, L].
        """
        if guidance_scale is None or guidance_scale == 1.0:
            return self.predict(x_t, t, cond, "cond")
        if guidance_scale < 1.0:
            return self.predict(x_t, t, cond, "uncond")
        v_c, v_u = self.predict(x_t, t, cond, "both").chunk(2)
        return v_u + guidance_scale * (v_c - v_u)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, noise: torch.Tensor, cond: Conditions, solver: str = "euler", steps: int = 10,
               guidance_scale: float | None = 3.0, rtol: float = 1e-5, atol: float = 1e-5,
               callback: Callable[[int, int | None], None] | None = None) -> torch.Tensor:
        """Integrate the guided flow from noise (t = 0) to data (t = 1).

        Args:
            noise: [B, Ca, L] x_0 ~ N(0, I).
            solver: ``euler``, ``midpoint``, ``heun`` (fixed ``steps``) or ``dopri5`` (adaptive,
                rtol/atol; ``steps`` only sets the output grid, as official).
            callback: ``callback(done, total)`` after each solver step (total None for dopri5);
                raising from it cancels sampling.
        Returns: the audio latent x_1 [B, Ca, L].
        """
        cond = self._check_latent(noise, cond)
        fn = lambda t, x: self.velocity(x, t, cond, guidance_scale)
        # The official dopri5 integrates the full DiT input (audio + constant condition channels);
        # the step-size control sees those channels, so carry them for identical steps.
        extra = cond.concat if cond.concat is not None else None
        return flow.integrate(fn, noise, solver=solver, steps=steps, rtol=rtol, atol=atol,
                              callback=callback, constant_channels=extra)

    # ------------------------------------------------------------------ misc
    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
