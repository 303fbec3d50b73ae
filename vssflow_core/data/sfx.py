"""Sound-effect synthesis for the visible events of the synthetic sound scenes.

Each class has a timbre that matches what the scene shows (see ``scenes.py``), and the sound
parameters follow the visible object: a bigger object sounds lower, a harder landing louder.
Most sounds are procedural; the ``bell`` class mixes in a real recording (freedesktop
``bell.oga``, CC-BY-3.0, Dr. Richard Boulanger et al., from the Debian package
``sound-theme-freedesktop``) when that file exists, and procedural partials otherwise.

Every function returns float32 mono ``[S]`` at ``SAMPLE_RATE`` whose sound starts at sample 0
(the onset), so placing it at ``round(time_s * 22050)`` makes the onset land on that sample.
"""

from __future__ import annotations

import functools
import os

import numpy as np
from scipy import signal

from vssflow_core.config import FEATURE_RATE_HZ

SAMPLE_RATE = 22050
SOUND_CLASSES = ("wood_impact", "metal_impact", "bounce", "flash", "shake", "slide", "bell")
FREEDESKTOP_DIR = "/usr/share/sounds/freedesktop/stereo"
REAL_BELL = "bell.oga"  # CC-BY-3.0


def _t(duration_s: float) -> np.ndarray:
    return np.arange(int(round(duration_s * SAMPLE_RATE))) / SAMPLE_RATE


def _bandpass(x: np.ndarray, lo_hz: float, hi_hz: float, order: int = 2) -> np.ndarray:
    nyq = SAMPLE_RATE / 2
    lo, hi = max(lo_hz / nyq, 1e-4), min(hi_hz / nyq, 0.99)
    sos = signal.butter(order, [lo, hi], btype="band", output="sos")
    return signal.sosfilt(sos, x)


def _lowpass(x: np.ndarray, hz: float, order: int = 2) -> np.ndarray:
    sos = signal.butter(order, min(hz / (SAMPLE_RATE / 2), 0.99), btype="low", output="sos")
    return signal.sosfilt(sos, x)


def _attack(n: int, attack_s: float = 0.002) -> np.ndarray:
    a = np.ones(n)
    k = min(n, max(1, int(attack_s * SAMPLE_RATE)))
    a[:k] = np.linspace(0.0, 1.0, k, endpoint=False) + 1.0 / k
    return a


def _norm(x: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    return (x / peak).astype(np.float32) if peak > 1e-9 else x.astype(np.float32)


def wood_impact(rng: np.random.Generator, size: float) -> np.ndarray:
    """Wooden box landing: low thump + short woody modes + a noise knock. size: 0..1 (object size)."""
    t = _t(0.35)
    f0 = 70 + 90 * (1 - size) * rng.uniform(0.8, 1.2)
    thump = np.sin(2 * np.pi * f0 * t * (1 - 0.3 * t)) * np.exp(-t / rng.uniform(0.05, 0.09))
    modes = sum(rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * f * t) * np.exp(-t / rng.uniform(0.015, 0.04))
                for f in (f0 * rng.uniform(3.0, 4.5), f0 * rng.uniform(6, 9), f0 * rng.uniform(11, 15)))
    knock = _bandpass(rng.standard_normal(t.size), 300, 2500) * np.exp(-t / 0.012)
    return _norm((thump + 0.5 * modes + 0.8 * knock) * _attack(t.size))


def metal_impact(rng: np.random.Generator, size: float) -> np.ndarray:
    """Metal can/pan landing: bright inharmonic ringing partials + click."""
    dur = rng.uniform(0.5, 0.9)
    t = _t(dur)
    f0 = (260 + 500 * (1 - size)) * rng.uniform(0.9, 1.1)
    ratios = (1.0, 2.76, 5.40, 8.93, 13.34)
    ring = sum((0.7 ** i) * rng.uniform(0.6, 1.0) * np.sin(2 * np.pi * f0 * r * t + rng.uniform(0, 6.28))
               * np.exp(-t / (dur * rng.uniform(0.15, 0.35) / (1 + 0.3 * i))) for i, r in enumerate(ratios))
    click = _bandpass(rng.standard_normal(t.size), 2000, 9000) * np.exp(-t / 0.004)
    return _norm((ring + 0.6 * click) * _attack(t.size, 0.001))


def bounce(rng: np.random.Generator, size: float, strength: float = 1.0) -> np.ndarray:
    """Rubber ball contact: a short pitched 'bop' that glides down, plus a soft slap."""
    t = _t(0.16)
    f_start = (180 + 380 * (1 - size)) * rng.uniform(0.9, 1.1)
    freq = f_start * (1 - 0.35 * t / t[-1])
    phase = 2 * np.pi * np.cumsum(freq) / SAMPLE_RATE
    bop = np.sin(phase) * np.exp(-t / rng.uniform(0.03, 0.05))
    slap = _bandpass(rng.standard_normal(t.size), 400, 3000) * np.exp(-t / 0.006)
    return (_norm((bop + 0.4 * slap) * _attack(t.size)) * float(np.clip(strength, 0.2, 1.0))).astype(np.float32)


def flash(rng: np.random.Generator, size: float) -> np.ndarray:
    """Electric flash/spark: a buzzy zap (sawtooth harmonics) with crackle, fast decay."""
    dur = rng.uniform(0.15, 0.35)
    t = _t(dur)
    f0 = rng.uniform(80, 160)
    saw = signal.sawtooth(2 * np.pi * f0 * t * (1 + 2.0 * np.exp(-t / 0.02)))
    crackle = _bandpass(rng.standard_normal(t.size), 1500, 8000) * (rng.random(t.size) < 0.08)
    zap = _bandpass(saw, 150, 6000) + 2.0 * crackle
    return _norm(zap * np.exp(-t / (dur * 0.3)) * _attack(t.size, 0.001))


def shake(rng: np.random.Generator, size: float, strength: float = 1.0) -> np.ndarray:
    """One stroke of a rattle/maraca: a cloud of tiny bright grains (beads hitting the shell)."""
    dur = 0.09
    t = _t(dur)
    out = np.zeros(t.size)
    n_grains = int(rng.integers(12, 30))
    starts = (rng.exponential(0.012, n_grains) * SAMPLE_RATE).astype(int)
    grain_len = int(0.004 * SAMPLE_RATE)
    for s in starts:
        if s + grain_len < out.size:
            out[s:s + grain_len] += rng.standard_normal(grain_len) * np.hanning(grain_len) * rng.uniform(0.3, 1.0)
    out = _bandpass(out, 2000 + 1500 * (1 - size), 10000)
    # the first bead hits at sample 0 (decaying half-window, so the onset is exact)
    out[: grain_len] += _bandpass(rng.standard_normal(grain_len), 2000, 9000) * np.hanning(2 * grain_len)[grain_len:] * 1.5
    return (_norm(out) * float(np.clip(strength, 0.3, 1.0))).astype(np.float32)


def slide(rng: np.random.Generator, size: float, speed: np.ndarray, frame_rate_hz: float = FEATURE_RATE_HZ) -> np.ndarray:
    """Friction scrape of a block sliding on the floor; loudness and brightness follow ``speed``.

    Args:
        speed: ``[F]`` non-negative speed per video frame from the onset frame on (any unit;
            normalised here), at ``frame_rate_hz``.
    """
    n = int(round(len(speed) / frame_rate_hz * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    sp = np.interp(t * frame_rate_hz, np.arange(len(speed)), speed / max(float(np.max(speed)), 1e-6))
    noise = rng.standard_normal(n)
    lo = 150 + 250 * (1 - size)
    body = _bandpass(noise, lo, lo * rng.uniform(6, 12))
    grit = _bandpass(rng.standard_normal(n), 2500, 7000) * (rng.random(n) < 0.02) * 3
    rough = 1 + 0.4 * _lowpass(rng.standard_normal(n), 30) * 4
    env = sp * np.clip(rough, 0.2, 2.0)
    env[: int(0.004 * SAMPLE_RATE)] *= np.linspace(0, 1, int(0.004 * SAMPLE_RATE))
    start = (_bandpass(rng.standard_normal(n), 300, 4000) * np.exp(-t / 0.01))  # the push
    return _norm((body + grit) * env + 0.6 * start)


@functools.lru_cache(maxsize=4)
def _real_sound(name: str) -> np.ndarray | None:
    path = os.path.join(FREEDESKTOP_DIR, name)
    if not os.path.isfile(path):
        return None
    import soundfile as sf

    from math import gcd

    wave, sr = sf.read(path, dtype="float32", always_2d=True)
    x = wave.mean(axis=1).astype(np.float64)
    if sr != SAMPLE_RATE:
        g = gcd(int(sr), SAMPLE_RATE)
        x = signal.resample_poly(x, SAMPLE_RATE // g, int(sr) // g)
    onset = int(np.argmax(np.abs(x) > 0.1 * np.max(np.abs(x))))  # trim the lead-in so the onset is at 0
    return _norm(x[max(0, onset - 22):])


def bell(rng: np.random.Generator, size: float, use_real: bool = True) -> np.ndarray:
    """Bell strike: the real freedesktop bell (pitch-shifted by size) if available, else partials."""
    real = _real_sound(REAL_BELL) if use_real else None
    if real is not None and rng.random() < 0.6:
        ratio = float(np.clip(1.0 + 0.4 * (0.5 - size), 0.8, 1.25))  # smaller bell -> higher
        n_out = int(len(real) / ratio)
        x = np.interp(np.arange(n_out) * ratio, np.arange(len(real)), real)
        return _norm(x[: int(1.5 * SAMPLE_RATE)] * _attack(min(n_out, int(1.5 * SAMPLE_RATE)), 0.0005))
    dur = rng.uniform(1.0, 1.6)
    t = _t(dur)
    f0 = (300 + 500 * (1 - size)) * rng.uniform(0.95, 1.05)
    ratios = (0.5, 1.0, 1.2, 1.5, 2.0, 2.5, 3.0)  # hum, prime, minor third, fifth, nominal...
    x = sum(rng.uniform(0.4, 1.0) * np.sin(2 * np.pi * f0 * r * t) * np.exp(-t / (dur * 0.5 / (1 + 0.25 * i)))
            for i, r in enumerate(ratios))
    strike = _bandpass(rng.standard_normal(t.size), 1000, 6000) * np.exp(-t / 0.003)
    return _norm((x + 0.5 * strike) * _attack(t.size, 0.001))


def place(track: np.ndarray, sound: np.ndarray, time_s: float, gain: float) -> None:
    """Add ``sound * gain`` into ``track`` [S] so that its sample 0 lands at round(time_s * 22050)."""
    start = int(round(time_s * SAMPLE_RATE))
    if start >= track.size:
        return
    end = min(track.size, start + sound.size)
    track[start:end] += gain * sound[: end - start]


def room_tone(rng: np.random.Generator, num_samples: int, level: float) -> np.ndarray:
    """Quiet background noise (pinkish, low-passed) at peak-ish ``level``."""
    x = _lowpass(rng.standard_normal(num_samples), rng.uniform(800, 4000), order=1)
    return (x / (np.std(x) + 1e-9) * level * 0.3).astype(np.float32)
