"""The 6-d lip feature space shared by the lip extractor and the synthetic-data generator.

One row per video frame at 25 fps (any rate works; velocity is per second). Columns
(``LIP_FEATURE_NAMES``):

==========  ==================================================================================
inner_open  gap between the inner lip contours (top and bottom lip midpoints), / inter-ocular
outer_open  height of the outer lip contour (top of upper lip to bottom of lower lip), / inter-ocular
width       distance between the mouth corners, / inter-ocular
aspect      inner_open / width (unitless mouth aspect ratio)
velocity    d(inner_open)/dt in inter-ocular distances per second
found       1.0 where a face was measured (or interpolated), 0.0 where it is absent
==========  ==================================================================================

The inter-ocular distance (IOD) is the distance between the two eye centres (mean of each eye's
corners). Dividing by it makes the raw features independent of face size in pixels.

Typical raw ranges, measured with ``lips.extract_lips`` (mediapipe 0.10.21 face mesh) on
``skimage.data.astronaut()`` rendered 256 px with the mouth warped (``render_talking_face`` in tests/media_factory.py):
lips pressed closed: inner_open 0.075-0.09, outer_open 0.25; the photo's slight smile: inner 0.18,
outer 0.36; jaw dropped wide open: inner 0.33-0.40, outer 0.51-0.58; width 0.98-1.03 throughout
(a smiling mouth; a neutral mouth is ~0.85-0.9, rounded vowels narrow it by ~10-15 %). Mediapipe's
inner-lip landmarks keep a small gap (~0.05-0.08) even on closed lips. ``TYPICAL_RANGES`` holds
these numbers for the synthetic-data generator; real speakers vary by +-30 %, which the
normalisation absorbs.

``normalise_lip_track`` turns a raw track into what the embedded model consumes, both at
training and at inference: a per-clip, per-feature robust standardisation that cancels face
size, head pose and detector calibration (the closed-mouth baseline of a detector differs from
another's) while keeping how *much* the mouth moves relative to a fixed floor.
"""

from __future__ import annotations

import numpy as np

from vssflow_core.config import FEATURE_RATE_HZ
from vssflow_core.errors import VSSFlowError

LIP_FEATURE_NAMES = ("inner_open", "outer_open", "width", "aspect", "velocity", "found")
LIP_DIM = 6

# Raw ranges in IOD units: (closed-mouth typical, open-mouth typical). See module docstring.
TYPICAL_RANGES = {
    "inner_open": (0.07, 0.40),
    "outer_open": (0.25, 0.58),
    "width": (0.95, 0.92),
    "aspect": (0.07, 0.42),
}

# Floors for the per-clip spread: a clip whose mouth barely moves keeps small normalised values
# instead of having its jitter blown up to unit scale.
_SPREAD_FLOOR = np.array([0.15, 0.15, 0.08, 0.18], dtype=np.float64)
_VELOCITY_UNIT = 8.0  # normalised opening units per second mapped to 1.0
_CLIP = 6.0


def _check_track(raw, name: str) -> np.ndarray:
    arr = np.asarray(raw, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != LIP_DIM:
        raise VSSFlowError(
            f"{name}: expected a lip track of shape [T, {LIP_DIM}] ({', '.join(LIP_FEATURE_NAMES)}), "
            f"got shape {tuple(arr.shape)}. Pass the `features` of extract_lips() or the output of "
            "lip_features_from_openings()."
        )
    return arr


def normalise_lip_track(raw) -> np.ndarray:
    """Per-clip robust standardisation of a raw lip track.

    Args:
        raw: float array ``[T, 6]`` in the raw space (``LIP_FEATURE_NAMES``, IOD units, velocity
            per second, found 0/1). numpy or torch (CPU) accepted.

    Returns:
        float32 ``[T, 6]``: for the frames with found=1,
        inner_open/outer_open/aspect -> (x - p5) / max(p95 - p5, floor) (0 = this clip's closed mouth,
        ~1 = its widest opening); width -> (x - median) / max(p95 - p5, floor);
        velocity -> d(normalised inner_open)/dt / 8 per second; found stays 1. Values are clipped
        to [-6, 6]. Frames with found=0 are all zeros (as official padding), so
        an all-absent track is all zeros.
    """
    if hasattr(raw, "detach"):
        raw = raw.detach().cpu().numpy()
    arr = _check_track(raw, "lip track")
    out = np.zeros(arr.shape, dtype=np.float32)
    if arr.shape[0] == 0:
        return out
    found = arr[:, 5] > 0.5
    finite = np.all(np.isfinite(arr[:, :5]), axis=1)
    found &= finite
    if not found.any():
        return out
    vals = arr[found, :4]
    p5 = np.percentile(vals, 5, axis=0)
    p95 = np.percentile(vals, 95, axis=0)
    med = np.median(vals, axis=0)
    spread = np.maximum(p95 - p5, _SPREAD_FLOOR)
    norm = np.empty_like(arr[:, :4])
    for j in range(4):
        base = med[j] if j == 2 else p5[j]
        norm[:, j] = (arr[:, j] - base) / spread[j]
    # velocity: keep the raw per-second derivative but express it in normalised opening units, so
    # that the generator (which computes it from its own openings) and the extractor agree.
    vel = arr[:, 4] / spread[0] / _VELOCITY_UNIT
    out[:, :4] = np.clip(norm, -_CLIP, _CLIP)
    out[:, 4] = np.clip(vel, -_CLIP, _CLIP)
    out[:, 5] = 1.0
    out[~found] = 0.0
    return out


def _as_1d(x, name: str, length: int | None) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64).reshape(-1) if np.ndim(x) else None
    if arr is None:
        raise VSSFlowError(f"{name}: expected a 1-d array [T], got a scalar.")
    if length is not None and arr.shape[0] != length:
        raise VSSFlowError(f"{name}: expected length {length} (same as inner_open), got {arr.shape[0]}.")
    return arr


def lip_features_from_openings(inner_open, outer_open, width, fps: float = FEATURE_RATE_HZ, found=None) -> np.ndarray:
    """Build a raw lip track ``[T, 6]`` from mouth geometry over time (for synthetic data).

    Args:
        inner_open: ``[T]`` inner-lip gap in IOD units (closed ~0.07, wide open ~0.40).
        outer_open: ``[T]`` outer-lip height in IOD units (closed ~0.25, wide open ~0.58).
        width: ``[T]`` mouth-corner distance in IOD units (~0.85-1.0).
        fps: frame rate in Hz of the rows (25 for the model).
        found: optional ``[T]`` bool/0-1 mask; None = all frames found.

    Returns:
        float32 ``[T, 6]`` raw track in the same space ``extract_lips`` produces from real faces
        (aspect = inner/width, velocity = d(inner_open)/dt per second by central differences,
        rows with found=0 are zeros). Feed it to ``normalise_lip_track`` like a real track.
    """
    if fps <= 0:
        raise VSSFlowError(f"lip_features_from_openings: fps must be > 0 Hz, got {fps}.")
    inner = _as_1d(inner_open, "inner_open", None)
    t = inner.shape[0]
    outer = _as_1d(outer_open, "outer_open", t)
    wid = _as_1d(width, "width", t)
    mask = np.ones(t, dtype=bool) if found is None else (_as_1d(found, "found", t) > 0.5)
    out = np.zeros((t, LIP_DIM), dtype=np.float32)
    if t == 0:
        return out
    out[:, 0] = inner
    out[:, 1] = outer
    out[:, 2] = wid
    out[:, 3] = inner / np.maximum(wid, 1e-3)
    out[:, 4] = opening_velocity(inner, fps)
    out[:, 5] = 1.0
    out[~mask] = 0.0
    return out


def opening_velocity(inner_open, fps: float) -> np.ndarray:
    """d(inner_open)/dt per second by central differences (one-sided at the ends). ``[T] -> [T]``."""
    x = np.asarray(inner_open, dtype=np.float64).reshape(-1)
    if x.shape[0] < 2:
        return np.zeros_like(x)
    return np.gradient(x) * float(fps)


# Expected relative mouth opening per phoneme (0 = lips closed, 1 = widest vowel), stress removed.
# Used by the synthetic generator (viseme targets) and by the DTW phoneme placement.
PHONEME_OPENING = {
    # bilabials close the lips
    "P": 0.0, "B": 0.0, "M": 0.0,
    # labiodentals: lower lip to teeth
    "F": 0.12, "V": 0.12,
    # rounded / narrow
    "W": 0.2, "UW": 0.35, "UH": 0.45, "OW": 0.6, "OY": 0.6, "R": 0.3, "ER": 0.35,
    # dental / alveolar / post-alveolar
    "TH": 0.25, "DH": 0.25, "T": 0.25, "D": 0.25, "N": 0.22, "L": 0.3, "S": 0.15, "Z": 0.15,
    "SH": 0.25, "ZH": 0.25, "CH": 0.25, "JH": 0.25, "Y": 0.25,
    # velar / glottal
    "K": 0.35, "G": 0.35, "NG": 0.3, "HH": 0.5,
    # vowels
    "IY": 0.3, "IH": 0.45, "EY": 0.5, "EH": 0.6, "AE": 0.8, "AH": 0.7, "AA": 1.0, "AO": 0.85,
    "AW": 0.9, "AY": 0.9,
    # pause: mouth at rest (closed)
    "<blank>": 0.0,
}

# Relative width change per phoneme (1 = rest width); rounded sounds narrow the mouth.
PHONEME_WIDTH = {"W": 0.82, "UW": 0.82, "UH": 0.9, "OW": 0.87, "OY": 0.9, "R": 0.9, "ER": 0.92,
                 "SH": 0.9, "ZH": 0.9, "CH": 0.9, "JH": 0.9, "IY": 1.06, "EY": 1.04, "AE": 1.04}


def phoneme_opening(symbol: str) -> float:
    """Expected relative mouth opening (0..1) of an ARPAbet symbol (stress digits ignored)."""
    base = symbol.rstrip("012")
    return float(PHONEME_OPENING.get(base, 0.4))


def openings_from_phoneme_timings(segments, duration_s: float, fps: float = FEATURE_RATE_HZ, rng=None,
                                  start_s: float = 0.0):
    """Mouth geometry over time from phoneme timings (for synthetic talking faces / lip tracks).

    Args:
        segments: iterable of ``(symbol, start_s, end_s)`` (ARPAbet, stress allowed, ``<blank>``
            for pauses), times in seconds on the clip's timeline.
        duration_s: clip duration in seconds; rows = ``ceil(duration_s * fps - 1e-6)``.
        fps: row rate in Hz.
        rng: optional ``numpy.random.Generator`` to vary the speaker (amplitude, rest width, jitter).
        start_s: time of row 0.

    Returns:
        ``(inner_open [T], outer_open [T], width [T])`` float64 in IOD units, smoothed like real
        articulation (targets at phoneme centres, ~40 ms low-pass), closed outside speech.
        Pass them to ``lip_features_from_openings``.
    """
    from vssflow_core.media.probe import num_frames

    n = num_frames(duration_s, fps)
    times = start_s + np.arange(n) / fps
    gain = 1.0 if rng is None else float(rng.uniform(0.75, 1.25))
    rest_w = TYPICAL_RANGES["width"][0] * (1.0 if rng is None else float(rng.uniform(0.9, 1.1)))
    lo_i, hi_i = TYPICAL_RANGES["inner_open"]
    lo_o, hi_o = TYPICAL_RANGES["outer_open"]
    opening = np.zeros(n)
    wscale = np.ones(n)
    closures = []
    for sym, s0, s1 in segments:
        if s1 <= s0:
            continue
        sel = (times >= s0) & (times < s1)
        if not sel.any():  # very short phoneme: mark the nearest frame
            k = int(round((0.5 * (s0 + s1) - start_s) * fps))
            if 0 <= k < n:
                sel = np.zeros(n, dtype=bool)
                sel[k] = True
            else:
                continue
        base = sym.rstrip("012")
        opening[sel] = phoneme_opening(sym) if base != "<blank>" else 0.0
        wscale[sel] = PHONEME_WIDTH.get(base, 1.0)
        if base in ("P", "B", "M"):
            closures.append(sel)
    # articulation low-pass (~1 frame each way), then the lips really meet on bilabials, as
    # measured on real faces (an over-smoothed track never closes inside words)
    opening = _smooth(opening, 0.65)
    wscale = _smooth(wscale, 0.65)
    for sel in closures:
        opening[sel] = np.minimum(opening[sel], 0.05)
    inner = lo_i + (hi_i - lo_i) * np.clip(opening * gain, 0, 1.3)
    outer = lo_o + (hi_o - lo_o) * np.clip(opening * gain, 0, 1.3)
    width = rest_w * wscale * (1.0 - 0.06 * opening)
    if rng is not None:
        inner = inner + rng.normal(0, 0.006, n)
        outer = outer + rng.normal(0, 0.006, n)
        width = width + rng.normal(0, 0.004, n)
    return np.maximum(inner, 0.0), outer, width


def _smooth(x: np.ndarray, alpha: float) -> np.ndarray:
    """Zero-phase first-order smoothing (forward then backward exponential filter)."""
    if x.shape[0] == 0:
        return x
    y = x.astype(np.float64).copy()
    for _ in range(2):
        for i in range(1, y.shape[0]):
            y[i] = alpha * y[i] + (1 - alpha) * y[i - 1]
        y = y[::-1].copy()
    return y
