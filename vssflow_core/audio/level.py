"""Output level: generated waveforms louder than full scale are scaled down, never hard-clipped."""
from __future__ import annotations

import torch

PEAK_CEILING = 0.95  # generated audio whose peak exceeds this is scaled down to it (per item); the
# headroom (-0.45 dBFS) absorbs the overshoot of resampling to the container rate (48 kHz) at the mux


def limit_peak(audio: torch.Tensor, ceiling: float = PEAK_CEILING) -> torch.Tensor:
    """Scale each item of ``audio`` ``[B, ..., S]`` whose peak exceeds ``ceiling`` down to it.

    No hard clipping: a clipped waveform distorts, and resampling it to 48 kHz overshoots past 1.
    Quiet items are returned unchanged. Codecs return unclipped waveforms; every path that hands
    audio to a user (the pipeline, evaluation) calls this once on the finished track.
    """
    dims = tuple(range(1, audio.dim()))
    peak = audio.abs().amax(dim=dims, keepdim=True) if dims else audio.abs().amax()
    return audio * torch.clamp(ceiling / peak.clamp(min=1e-12), max=1.0)
