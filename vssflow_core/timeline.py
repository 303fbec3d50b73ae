"""Generation windows on the video timeline (s) and the cross-fade that joins their audio.

``plan_windows`` covers a duration with windows of the model's length that overlap (starts on the
25 Hz frame grid); ``window_spans`` puts them on the output's samples, and ``crossfade_gains`` gives
each window complementary raised-cosine ramps over its overlaps, so the gains sum to one everywhere.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from vssflow_core.config import FEATURE_RATE_HZ
from vssflow_core.errors import VSSFlowError

DEFAULT_OVERLAP_FRACTION = 0.125  # default window overlap: an eighth of the window (1 s of 8 s, 1.25 s of 10 s)


@dataclass(frozen=True)
class Window:
    """One generation window on the video timeline (s)."""

    start_s: float
    duration_s: float

    @property
    def end_s(self) -> float:
        """End of the window (s)."""
        return self.start_s + self.duration_s


def plan_windows(duration_s: float, window_s: float, overlap_s: float | None = None) -> list[Window]:
    """Cover ``[0, duration_s)`` with windows of at most ``window_s`` overlapping by ``overlap_s``.

    A video no longer than one window is one window of its own duration. Otherwise windows of
    ``window_s`` start every ``window_s - overlap_s`` seconds (rounded to the 25 Hz frame grid) and
    the last one ends at ``duration_s`` (it is shorter, but longer than the overlap). Overlaps are at most half a window,
    so no sample is covered by more than two windows.
    """
    if not duration_s > 0:
        raise VSSFlowError(f"duration must be positive, got {duration_s} s")
    if duration_s <= window_s + 1e-9:
        return [Window(0.0, float(duration_s))]
    overlap_s = window_s * DEFAULT_OVERLAP_FRACTION if overlap_s is None else overlap_s
    if not 0 <= overlap_s <= window_s / 2:
        raise VSSFlowError(f"window overlap must be in [0, {window_s / 2}] s (half a window), got {overlap_s}")
    # Starts on the 25 Hz frame grid, so a window's own grid (start + k/25) is the video's grid.
    hop_frames = max(1, round((window_s - overlap_s) * FEATURE_RATE_HZ))
    windows, k = [], 0
    while k * hop_frames / FEATURE_RATE_HZ + window_s < duration_s - 1e-9:
        windows.append(Window(k * hop_frames / FEATURE_RATE_HZ, float(window_s)))
        k += 1
    start = k * hop_frames / FEATURE_RATE_HZ
    windows.append(Window(start, float(duration_s - start)))
    return windows


def _ramp(n: int) -> torch.Tensor:
    """Raised-cosine fade-in of n samples, 0 -> 1 (fade-out is 1 - ramp: they sum to one)."""
    x = (torch.arange(max(0, n), dtype=torch.float64) + 0.5) / max(1, n)
    return (0.5 - 0.5 * torch.cos(math.pi * x)).to(torch.float32)


def window_spans(windows: Sequence[Window], sample_rate: int, total_samples: int) -> list[tuple[int, int]]:
    """Each window's samples ``[first, end)`` on the output timeline (end of the last = total)."""
    spans = [(int(round(w.start_s * sample_rate)), min(total_samples, int(round(w.end_s * sample_rate))))
             for w in windows]
    spans[-1] = (spans[-1][0], total_samples)
    return spans


def crossfade_gains(spans: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
    """Gain float32 [end - first] per window: raised-cosine ramps over each overlap.

    The fade-out of window i and the fade-in of window i+1 cover the same samples
    ``[first_{i+1}, end_i)`` and sum to one there, so the gains of all windows sum to one everywhere.
    """
    gains = []
    for i, (first, end) in enumerate(spans):
        gain = torch.ones(end - first)
        if i > 0:
            n = max(0, spans[i - 1][1] - first)
            gain[:n] = _ramp(n)
        if i + 1 < len(spans):
            n = max(0, end - spans[i + 1][0])
            gain[end - first - n:] *= 1.0 - _ramp(n)
        gains.append(gain)
    return gains
