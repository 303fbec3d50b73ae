"""Sample-rate conversion (band-limited sinc interpolation from torchaudio)."""
from __future__ import annotations

import math

import torch

from vssflow_core.errors import VSSFlowError


def resample(wave: torch.Tensor, sr_in: int, sr_out: int) -> torch.Tensor:
    """Resample audio along its last axis.

    Args:
        wave: float tensor ``[..., T]`` (e.g. ``[C, T]`` or ``[B, C, T]``) at ``sr_in`` Hz.
        sr_in: input sample rate (Hz, positive int).
        sr_out: output sample rate (Hz, positive int).

    Returns:
        ``[..., T']`` at ``sr_out`` Hz, ``T' = ceil(T * sr_out / sr_in)``; the input tensor itself
        when the rates are equal. Integer inputs are converted to float32.
    """
    if not isinstance(wave, torch.Tensor):
        raise VSSFlowError(f"resample: wave must be a torch.Tensor [..., T], got {type(wave).__name__}; convert it with torch.as_tensor")
    for name, sr in (("sr_in", sr_in), ("sr_out", sr_out)):
        if isinstance(sr, bool) or not isinstance(sr, (int, float)) or not math.isfinite(sr) or int(sr) != sr or int(sr) <= 0:
            raise VSSFlowError(f"resample: {name} must be a positive integer sample rate in Hz, got {sr!r}")
    sr_in, sr_out = int(sr_in), int(sr_out)
    if wave.dim() == 0:
        raise VSSFlowError("resample: wave must have a time axis [..., T], got a 0-d tensor")
    if not wave.is_floating_point():
        wave = wave.float()
    if sr_in == sr_out:
        return wave
    import torchaudio.functional as AF

    return AF.resample(wave, sr_in, sr_out)
