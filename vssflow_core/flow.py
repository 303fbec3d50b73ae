"""Flow matching: the straight path, the training loss, condition dropout and the ODE solvers.

Path: x_t = (1 - t) x_0 + t x_1 with x_0 ~ N(0, I) (t = 0) and x_1 the audio latent (t = 1);
target velocity x_1 - x_0. Shape letters: B batch, Ca audio channels, Cc condition channels, L frames.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from vssflow_core.config import SOLVERS
from vssflow_core.errors import VSSFlowError

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (t 0-d, x [B, Ca, L]) -> [B, Ca, L]


def shift_time(u: torch.Tensor, shift: float) -> torch.Tensor:
    """Map flow times ``u`` in [0, 1] (any shape) to t = 1 - s (1 - u) / (1 + (s - 1)(1 - u)).

    The noise-level shift of SD3 (Esser et al. 2024) in this file's direction (t = 0 is noise):
    ``shift`` s > 1 moves times towards the noise, s = 1 leaves them as they are. 0 and 1 stay put.
    """
    if not (math.isfinite(shift) and shift > 0):
        raise VSSFlowError(f"time shift: expected a number > 0 (1 = no shift), got {shift}")
    if shift == 1.0:
        return u
    noise_level = 1 - u
    return 1 - shift * noise_level / (1 + (shift - 1) * noise_level)


def time_grid(steps: int, device=None, shift: float = 1.0) -> torch.Tensor:
    """Output/step times, float32 [steps + 1] from 0 to 1.

    ``shift`` 1: linspace(0, 1, steps + 1), as the official sampler. Otherwise the equal steps are
    moved by :func:`shift_time`: s > 1 puts more of the steps near the noise.
    """
    if steps < 1:
        raise VSSFlowError(f"steps: expected >= 1, got {steps}")
    return shift_time(torch.linspace(0, 1, steps + 1, device=device), shift)


def _fixed_step(fn: VelocityFn, x: torch.Tensor, t0: torch.Tensor, t1: torch.Tensor, solver: str) -> torch.Tensor:
    """One step of a fixed-grid solver (the same arithmetic as torchdiffeq's Euler and midpoint)."""
    dt = t1 - t0
    if solver == "euler":
        return x + dt * fn(t0, x)
    if solver == "midpoint":
        half = 0.5 * dt
        return x + dt * fn(t0 + half, x + fn(t0, x) * half)
    k1 = fn(t0, x)  # heun (explicit trapezoid)
    k2 = fn(t1, x + dt * k1)
    return x + dt * 0.5 * (k1 + k2)


def check_solver(solver: str) -> str:
    """``solver`` if it is one of :data:`vssflow_core.config.SOLVERS`, else a ``VSSFlowError`` listing them."""
    if solver not in SOLVERS:
        raise VSSFlowError(f"solver must be one of {', '.join(SOLVERS)}; got {solver!r}")
    return solver


def integrate(fn: VelocityFn, x0: torch.Tensor, solver: str = "euler", steps: int = 10, rtol: float = 1e-5,
              atol: float = 1e-5, callback: Callable[[int, int | None], None] | None = None,
              constant_channels: torch.Tensor | None = None, time_shift: float = 1.0) -> torch.Tensor:
    """Solve dx/dt = fn(t, x) from t = 0 to 1.

    Args:
        fn: velocity; called with a 0-d float32 time and x [B, Ca, L].
        x0: [B, Ca, L] the noise.
        solver: ``euler`` / ``midpoint`` / ``heun`` on ``steps`` steps of the grid
            :func:`time_grid` (``time_shift``; 1 = equal steps), or ``dopri5`` (adaptive,
            torchdiffeq; ``steps`` only sets the output grid, which stays uniform).
        callback: ``callback(done, total)`` after each step (dopri5: each accepted step, total None).
        constant_channels: [B, Cc, L] channels carried with the state at zero velocity. Only
            dopri5 sees them (its step control measures the whole state, as the official sampler
            integrates the full DiT input).
    Returns: x_1 [B, Ca, L].
    """
    check_solver(solver)
    if solver != "dopri5":
        grid = time_grid(steps, x0.device, time_shift)
        x = x0
        for i in range(steps):
            x = _fixed_step(fn, x, grid[i], grid[i + 1], solver)
            if callback is not None:
                callback(i + 1, steps)
        return x
    return _dopri5(fn, x0, time_grid(steps, x0.device), rtol, atol, callback, constant_channels)


def _dopri5(fn, x0, grid, rtol, atol, callback, constant_channels):
    try:
        from torchdiffeq import odeint
    except ImportError as e:  # torchdiffeq itself, or a package it imports (scipy)
        missing = (e.name or "torchdiffeq").split(".")[0]
        raise VSSFlowError(f"the dopri5 solver needs torchdiffeq, which could not import {missing!r}: "
                           f"`pip install {'torchdiffeq' if missing == 'torchdiffeq' else missing}` in this Python "
                           "(see the pack's requirements.txt), or pick the midpoint or euler solver") from None

    ca = x0.shape[1]

    class _Func(torch.nn.Module):
        def forward(self, t, y):
            v = fn(t, y[:, :ca])
            return v if y.shape[1] == ca else torch.cat([v, torch.zeros_like(y[:, ca:])], dim=1)

        def callback_accept_step(self, t0, y0, dt):
            self.done += 1
            if callback is not None:
                callback(self.done, None)

    func = _Func()
    func.done = 0
    y0 = x0 if constant_channels is None else torch.cat([x0, constant_channels.to(x0.dtype)], dim=1)
    ys = odeint(func, y0, grid, method="dopri5", rtol=rtol, atol=atol)
    return ys[-1][:, :ca]


def flow_matching_loss(model, x1: torch.Tensor, cond, generator: torch.Generator | None = None,
                       x0: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
    """Conditional flow-matching MSE on the audio channels (the official objective).

    Args:
        model: a :class:`~vssflow_core.model.VSSFlow`.
        x1: [B, Ca, L] clean audio latents.
        cond: :class:`~vssflow_core.model.Conditions` for the batch (or batch 1).
        generator: draws x0 ~ N(0, I) and t ~ U(0, 1) unless they are given.
        x0, t: optional fixed noise [B, Ca, L] and times [B].
    Returns: scalar loss (mean over B, Ca, L).
    """
    if x1.dim() != 3 or not torch.isfinite(x1).all():
        raise VSSFlowError(f"flow_matching_loss: x1 must be finite audio latents [B, Ca, L], got shape {list(x1.shape)}"
                           + ("" if x1.dim() != 3 else " with NaN/Inf values; check the codec's encode output"))
    b = x1.shape[0]
    if x0 is None:
        x0 = torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)
    if t is None:
        t = torch.rand((b,), generator=generator, device=x1.device, dtype=x1.dtype)
    tt = t.to(x1.dtype)[:, None, None]
    x_t = (1 - tt) * x0 + tt * x1
    pred = model.velocity(x_t, t, cond)
    return F.mse_loss(pred.float(), (x1 - x0).float())


def drop_conditions(features: dict, p_all: float, p_per_key: dict | None = None,
                    generator: torch.Generator | None = None) -> dict:
    """Condition dropout for classifier-free guidance, decided once for the whole batch.

    With probability ``p_all`` every condition is dropped and the result asks for the all-zero
    unconditional input (``{"unconditional": True, key: None, ...}``), the same input the CFG
    unconditional branch uses at sampling. Otherwise each key in ``p_per_key`` (e.g.
    ``{"lip_feat": 0.5, "synch_feat": 0.5}``) is set to None (absent) with its probability.
    Pass the result to ``model.encode_conditions(**result)``. Random draws use ``generator``.
    """
    draw = lambda: float(torch.rand((), generator=generator))
    if p_all > 0 and draw() < p_all:
        return {**{k: None for k in features}, "unconditional": True}
    out = dict(features)
    for key, p in (p_per_key or {}).items():
        if key in out and p > 0 and draw() < p:
            out[key] = None
    return out
