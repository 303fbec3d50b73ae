"""Phoneme ids on the 25 Hz grid of a speech window: the official uniform stretch
(``place_phonemes``), the speech window found from the lips (``speech_window_from_lips``), and two
placements by the measured mouth (``mouth_placement``): ``place_phonemes_by_lips`` (dynamic time
warping of each phoneme's expected opening and width against the measured ones, with typical
durations as the prior) and ``place_phonemes_by_lipreading`` (the same, plus a small lip reader's
per-frame phoneme probabilities).

Ids come from :func:`vssflow_core.features.text.phoneme_ids`; 0 means no phoneme.
"""

from __future__ import annotations

import math

import numpy as np

from vssflow_core.config import FEATURE_RATE_HZ
from vssflow_core.errors import VSSFlowError
from vssflow_core.features.text import BLANK, MAX_PHONEMES_PER_S, token_list
from vssflow_core.media.probe import num_frames



def check_window(n_ids: int, start_s: float, end_s: float, duration_s: float, rate_hz: float,
                 max_phonemes_per_s: float = MAX_PHONEMES_PER_S) -> int:
    """Check a speech window [start_s, end_s] (s) of a video of ``duration_s`` (inf: not known yet) for ``n_ids`` tokens;
    returns its length in frames at ``rate_hz``. VSSFlowError names the fix (a wider window or a
    shorter text) when the tokens cannot be spoken at most ``max_phonemes_per_s`` per second."""
    if not (math.isfinite(start_s) and math.isfinite(end_s)) or math.isnan(duration_s):
        raise VSSFlowError(f"speech window: start/end/duration must be finite seconds, got "
                           f"start={start_s}, end={end_s}, duration={duration_s}.")
    if rate_hz <= 0:
        raise VSSFlowError(f"place_phonemes: rate must be > 0 Hz, got {rate_hz}.")
    if end_s <= start_s:
        raise VSSFlowError(f"speech window: end ({end_s:.3f} s) must be after start ({start_s:.3f} s). "
                           "Set the speech end later than the start, or leave both empty to derive them from the lips.")
    if start_s < 0 or end_s > duration_s + 0.5 / rate_hz:
        raise VSSFlowError(f"speech window {start_s:.3f}-{end_s:.3f} s lies outside the video (0-{duration_s:.3f} s). "
                           "Choose start >= 0 and end <= the video duration.")
    length = int((end_s - start_s) * rate_hz + 1e-6)
    spoken = n_ids
    rate = spoken / (end_s - start_s)
    if spoken > length or rate > max_phonemes_per_s:
        need = spoken / max_phonemes_per_s
        fix = (f"Widen the window to at least {need:.2f} s or shorten the text." if need <= duration_s else
               f"The whole video lasts {duration_s:.2f} s, room for about "
               f"{int(min(duration_s * max_phonemes_per_s, duration_s * rate_hz))} phonemes: shorten the text.")
        raise VSSFlowError(
            f"transcript too long for its speech window: {spoken} phonemes in {end_s - start_s:.2f} s "
            f"= {rate:.1f} phonemes/s ({length} frames at {rate_hz:g} Hz); at most {max_phonemes_per_s:g}/s can be "
            f"spoken. {fix}")
    return length


def place_phonemes(ids, start_s: float, end_s: float, duration_s: float, rate_hz: float = FEATURE_RATE_HZ,
                   max_phonemes_per_s: float = MAX_PHONEMES_PER_S):
    """Uniformly stretch token ids over ``[start_s, end_s]`` on a ``rate_hz`` grid (official).

    Args:
        ids: token ids (list/array/tensor) from ``phoneme_ids`` (with edge blanks). Empty -> all zeros.
        start_s, end_s: speech window in seconds on the clip's timeline (0 = first frame).
        duration_s: clip duration in seconds; the result has ``ceil(duration_s * rate_hz)`` frames.
        rate_hz: grid rate in Hz (25 = model latent rate).
        max_phonemes_per_s: refuse denser text (VSSFlowError with the numbers).

    Returns:
        ``torch.LongTensor [N]``: 0 before the window, then each id repeated ``ceil(L/n)`` times and
        nearest-resampled to ``L = int((end - start) * rate)`` frames, 0 after (cropped to N).
    """
    import torch

    ids_t = torch.as_tensor(list(ids) if not hasattr(ids, "shape") else ids, dtype=torch.long).reshape(-1)
    n_total = num_frames(duration_s, rate_hz)
    out = torch.zeros(n_total, dtype=torch.long)
    if ids_t.numel() == 0:
        return out
    length = check_window(ids_t.numel(), start_s, end_s, duration_s, rate_hz, max_phonemes_per_s)
    rep = math.ceil(length / ids_t.numel())
    stretched = ids_t.repeat_interleave(rep)
    idx = torch.floor(torch.arange(length, dtype=torch.float64) * (stretched.numel() / length)).long()
    placed = stretched[idx.clamp_max(stretched.numel() - 1)]
    s = int(start_s * rate_hz + 1e-6)
    e = min(n_total, s + length)
    if e > s:
        out[s:e] = placed[: e - s]
    return out


def speech_window_from_lips(track, fps: float = FEATURE_RATE_HZ, min_speech_s: float = 0.3, pad_s: float = 0.04):
    """Derive the speech window ``(start_s, end_s)`` from mouth movement.

    Args:
        track: a ``LipTrack`` or raw lip features ``[T, 6]`` (``lip_space``) at ``fps``.
        fps: frame rate in Hz of the rows.
        min_speech_s: ignore movement bursts shorter than this (s).
        pad_s: seconds added before the first and after the last active frame.

    Returns:
        ``(start_s, end_s)`` in seconds from frame 0. Activity = the mouth opening above its closed
        baseline or moving; the first and last active runs of at least ``min_speech_s`` bound it.
        Raises VSSFlowError if no face was found or the mouth never moves.
    """
    from vssflow_core.features.lip_space import normalise_lip_track

    feats = getattr(track, "features", track)
    feats = np.asarray(feats.detach().cpu().numpy() if hasattr(feats, "detach") else feats, dtype=np.float64)
    if feats.ndim != 2 or feats.shape[1] != 6:
        raise VSSFlowError(f"speech_window_from_lips: expected lip features [T, 6], got {tuple(feats.shape)}.")
    t = feats.shape[0]
    found = feats[:, 5] > 0.5
    if not found.any():
        raise VSSFlowError("speech_window_from_lips: no face was found in the video, so the speech window cannot "
                           "be derived from the lips. Enter the speech start and end times (s).")
    raw_open = feats[found, 0]
    if np.percentile(raw_open, 95) - np.percentile(raw_open, 5) < 0.04:
        raise VSSFlowError("speech_window_from_lips: the mouth does not move (opening range "
                           f"{np.percentile(raw_open, 95) - np.percentile(raw_open, 5):.3f} of the eye distance), "
                           "so no speech window can be derived. Enter the speech start and end times (s).")
    norm = normalise_lip_track(feats)
    opening = np.where(found, norm[:, 0], 0.0)
    vel = np.where(found, np.abs(norm[:, 4]), 0.0)
    k = max(1, int(round(0.12 * fps)))
    kern = np.ones(k) / k
    act = np.convolve(opening, kern, mode="same") > 0.25
    act |= np.convolve(vel, kern, mode="same") > 0.35
    act &= found
    # fill short closures inside speech (bilabials, short pauses < 0.3 s)
    fill = int(round(0.3 * fps))
    idx = np.flatnonzero(act)
    for a, b in zip(idx[:-1], idx[1:]):
        if 1 < b - a <= fill:
            act[a:b] = True
    runs = []
    i = 0
    while i < t:
        if act[i]:
            j = i
            while j < t and act[j]:
                j += 1
            if (j - i) / fps >= min_speech_s:
                runs.append((i, j))
            i = j
        else:
            i += 1
    if not runs:
        raise VSSFlowError("speech_window_from_lips: no mouth movement long enough to be speech "
                           f"(>= {min_speech_s} s). Enter the speech start and end times (s).")
    start = max(0.0, runs[0][0] / fps - pad_s)
    end = min(t / fps, runs[-1][1] / fps + pad_s)
    return float(start), float(end)


# Typical duration (s) of each ARPAbet phoneme (stress removed) in read English: the mean of 38,334
# phones spoken by the training voice (piper "joe": the 904 speaking clips among the first 1,507
# clips of make-data seed 1, the training seed). The diphthongs
# AY, AW and OY, which that voice speaks as two phones, get the sum of their halves (AA+IH, AA+UH,
# AO+IH). Used as the timeline prior of the placement by the lips.
TYPICAL_PHONEME_S = {
    "AA": 0.129, "AE": 0.106, "AH": 0.083, "AO": 0.142, "AW": 0.198, "AY": 0.198, "B": 0.041, "CH": 0.068,
    "D": 0.068, "DH": 0.044, "EH": 0.113, "ER": 0.098, "EY": 0.113, "F": 0.049, "G": 0.058, "HH": 0.041,
    "IH": 0.069, "IY": 0.12, "JH": 0.068, "K": 0.061, "L": 0.053, "M": 0.059, "N": 0.064, "NG": 0.061,
    "OW": 0.086, "OY": 0.211, "P": 0.047, "R": 0.054, "S": 0.062, "SH": 0.06, "T": 0.067, "TH": 0.045,
    "UH": 0.069, "UW": 0.136, "V": 0.069, "W": 0.043, "Y": 0.037, "Z": 0.104, "ZH": 0.068,
}
BLANK_S = 1.0 / FEATURE_RATE_HZ  # an edge or punctuation blank: one frame of the 25 Hz grid (s)
# The mouth-width term of the placement is used only when the width really changes inside the speech
# window: p95 - p5 of the raw width at least this (IOD units). Synthetic talking faces change by
# 0.06-0.14; below 0.03 landmark jitter would dominate.
MIN_WIDTH_RANGE = 0.03


def _typical_duration_s(symbol: str) -> float:
    return BLANK_S if symbol == BLANK else TYPICAL_PHONEME_S.get(symbol.rstrip("012"), 0.08)


def _zscore(x: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    mean = np.average(x, weights=weights)
    std = math.sqrt(float(np.average((x - mean) ** 2, weights=weights)))
    return np.clip((x - mean) / max(std, 1e-6), -3.0, 3.0)


def mouth_placement(placement: str):
    """The placement function of a model's ``phone_placement`` that follows the mouth: "lips" ->
    :func:`place_phonemes_by_lips`, "lipread" -> :func:`place_phonemes_by_lipreading` (same arguments)."""
    if placement == "lips":
        return place_phonemes_by_lips
    if placement == "lipread":
        return place_phonemes_by_lipreading
    raise VSSFlowError(f"phone placement {placement!r} does not follow the mouth; expected 'lips' or 'lipread'")


def place_phonemes_by_lips(ids, lips, start_s: float, end_s: float, duration_s: float,
                           rate_hz: float = FEATURE_RATE_HZ, prior_weight: float = 2.0, width_weight: float = 0.2,
                           max_phonemes_per_s: float = MAX_PHONEMES_PER_S):
    """Place token ids over ``[start_s, end_s]`` following the measured mouth (dynamic time warping).

    Each phoneme has an expected mouth opening (``lip_space.PHONEME_OPENING``: bilabials and pauses
    closed, open vowels wide) and width (``lip_space.PHONEME_WIDTH``: rounded sounds narrow, spread
    vowels wide). A monotonic alignment (every phoneme >= 1 frame, in order) minimises, summed over the
    frames of the window:

    * the squared difference between the phoneme's expected opening and the clip's normalised
      inner-lip opening;
    * ``width_weight`` x the squared difference between the expected width and the measured mouth
      width, both as z-scores (the expected ones weighted by the phonemes' typical durations); left
      out when the width hardly changes (p95 - p5 under ``MIN_WIDTH_RANGE`` IOD);
    * ``prior_weight`` x the squared distance (as a fraction of the window) of the frame from the
      phoneme's span on a prior timeline where every phoneme takes its typical duration
      (``TYPICAL_PHONEME_S``), so a mouth that hardly moves gives a duration-weighted stretch
      (lips found on under half of the window give the official uniform stretch).

    On 80 synthetic speech clips (make-data seed 1001, kind speech; ``placement-check`` scores them
    against the TTS's own phone timings) the right phoneme lands on 74.2 % of the speech frames
    (90.6 % within +-2 frames), against 55.4 % (78.5 %) with the opening alone and equal durations
    (the placement before 2026-11-28), and 15.9 % (44.1 %) with the official uniform stretch.

    Args:
        ids: token ids (with edge blanks) as from ``phoneme_ids``.
        lips: ``LipTrack`` or raw lip features ``[T, 6]`` at ``rate_hz`` covering the clip.
        start_s, end_s, duration_s, rate_hz, max_phonemes_per_s: as ``place_phonemes``.
        prior_weight, width_weight: weights of the timeline prior and of the width term (see above).

    Returns:
        ``torch.LongTensor [ceil(duration_s * rate_hz)]``, 0 outside the window.
    """
    def mouth_cost(symbols, typical, feats, norm, rows, valid):
        return _mouth_shape_cost(symbols, typical, feats, norm, rows, valid, width_weight)

    return _place_by_mouth(ids, lips, start_s, end_s, duration_s, rate_hz, max_phonemes_per_s, prior_weight,
                           mouth_cost)


def _mouth_shape_cost(symbols, typical, feats, norm, rows, valid, width_weight):
    """[n, L] cost of each of the n phonemes' expected opening and width against the measured ones
    at the window's L frames (``place_phonemes_by_lips``): ``symbols`` [n] ARPAbet, ``typical`` [n]
    typical durations (s), ``feats``/``norm`` raw and normalised lips [T, 6], ``rows`` [L] the
    window's rows in them, ``valid`` [L] bool where a face was found."""
    from vssflow_core.features.lip_space import PHONEME_WIDTH, phoneme_opening

    measured = np.clip(norm[rows, 0], -0.2, 1.3)
    expected = np.array([phoneme_opening(sym) for sym in symbols])
    cost = (expected[:, None] - measured[None, :]) ** 2 * valid[None, :]
    raw_width = feats[rows, 2]
    width_range = np.percentile(raw_width[valid], 95) - np.percentile(raw_width[valid], 5)
    if width_weight > 0 and width_range >= MIN_WIDTH_RANGE:
        expected_width = np.array([PHONEME_WIDTH.get(sym.rstrip("012"), 1.0) for sym in symbols])
        width_z = np.zeros(len(rows))
        width_z[valid] = _zscore(norm[rows, 2][valid])
        cost = cost + width_weight * (_zscore(expected_width, typical)[:, None] - width_z[None, :]) ** 2 * valid[None, :]
    return cost


def place_phonemes_by_lipreading(ids, lips, start_s: float, end_s: float, duration_s: float,
                                 rate_hz: float = FEATURE_RATE_HZ, prior_weight: float = 2.0, shape_weight: float = 20.0,
                                 width_weight: float = 0.2, max_phonemes_per_s: float = MAX_PHONEMES_PER_S):
    """Place token ids over ``[start_s, end_s]`` by forced alignment to a lip reader's output.

    The lip reader (``features.lipread``) gives every frame a log-probability for each phoneme
    class. A monotonic alignment (every phoneme >= 1 frame, in order) minimises, summed over the
    frames of the window:

    * minus the log-probability of the phoneme placed there (0 where no face was found);
    * ``shape_weight`` x the opening and width cost of :func:`place_phonemes_by_lips`. The reader
      learnt the training voice's timing; this keeps the physical rule "open mouth, open vowel" in
      charge where the reader misreads. Without it a long-held vowel (AA for 0.6 s, 4x the voice's
      mean) was placed right on 62 % of the frames; with weight 10 on 64 % or 93 % (two renderings
      of the same mouth), with 20 on 93 % for both;
    * ``prior_weight`` x the typical-duration timeline prior of :func:`place_phonemes_by_lips`.

    Lips found on under half of the window give the official uniform stretch.

    ``placement-check`` against the TTS's true timings: the right phoneme on 89.5 % of the speech
    frames (94.3 % within +-2 frames) of 80 speech clips of make-data seed 1001, and 89.6 % (94.6 %)
    of the 90 speaking clips among seed 1000's first 150, against 74.2 % (90.6 %) and 74.7 % (91.3 %)
    with ``place_phonemes_by_lips`` (the reader alone: 91.9 % and 91.8 %). The reader learnt
    make-data's synthetic faces; on real faces there are no true timings to measure it against.

    Args: as :func:`place_phonemes_by_lips`, plus ``shape_weight``.
    Returns: ``torch.LongTensor [ceil(duration_s * rate_hz)]``, 0 outside the window.
    """
    from vssflow_core.features.lipread import phoneme_class, phoneme_log_probs

    if rate_hz != FEATURE_RATE_HZ:
        raise VSSFlowError(f"place_phonemes_by_lipreading: the lip reader reads {FEATURE_RATE_HZ:g} Hz lips, got {rate_hz:g} Hz; "
                           f"resample the lip track to {FEATURE_RATE_HZ:g} Hz")

    def reader_cost(symbols, typical, feats, norm, rows, valid):
        log_probs = phoneme_log_probs(norm)[rows]  # [frames, classes]
        classes = np.array([phoneme_class(sym) for sym in symbols])
        cost = -log_probs[:, classes].T * valid[None, :]  # [phonemes, frames]
        if shape_weight > 0:
            cost = cost + shape_weight * _mouth_shape_cost(symbols, typical, feats, norm, rows, valid, width_weight)
        return cost

    return _place_by_mouth(ids, lips, start_s, end_s, duration_s, rate_hz, max_phonemes_per_s, prior_weight,
                           reader_cost)


def _place_by_mouth(ids, lips, start_s, end_s, duration_s, rate_hz, max_phonemes_per_s, prior_weight, mouth_cost):
    """The shared part of the two placements by the mouth: check the window, fall back to the
    uniform stretch when it is too short or the lips are mostly missing, add the typical-duration
    prior to ``mouth_cost(symbols, typical_s [n] (s), raw [T+1, 6], normalised [T+1, 6], rows [L],
    valid [L])`` (-> [n, L]; row T of the lips is an all-zero "no face" row that frames past the
    track's end read) and write the cheapest monotonic path into the clip's id track."""
    import torch

    from vssflow_core.features.lip_space import normalise_lip_track

    ids_l = [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
    n_total = num_frames(duration_s, rate_hz)
    out = torch.zeros(n_total, dtype=torch.long)
    if not ids_l:
        return out
    length = check_window(len(ids_l), start_s, end_s, duration_s, rate_hz, max_phonemes_per_s)
    feats = getattr(lips, "features", lips)
    feats = np.asarray(feats.detach().cpu().numpy() if hasattr(feats, "detach") else feats, dtype=np.float64)
    s = int(start_s * rate_hz + 1e-6)
    e = min(n_total, s + length)
    length = e - s
    if length < len(ids_l):
        return place_phonemes(ids, start_s, end_s, duration_s, rate_hz, max_phonemes_per_s)
    if feats.size == 0:
        feats = np.zeros((0, 6))
    elif feats.ndim != 2 or feats.shape[1] != 6:
        raise VSSFlowError(f"phoneme placement by the lips: expected a lip track [T, 6] (lip_space columns), got "
                           f"shape {tuple(feats.shape)}; pass the features of extract_lips()")
    # rows past the end of the lip track read as "no face": one zero row appended
    norm = np.concatenate([normalise_lip_track(feats) if len(feats) else np.zeros((0, 6)), np.zeros((1, 6))])
    feats = np.concatenate([feats, np.zeros((1, 6))])
    rows = np.minimum(np.arange(s, e), len(norm) - 1)
    valid = norm[rows, 5] > 0.5
    if valid.sum() < 0.5 * length:
        return place_phonemes(ids, start_s, end_s, duration_s, rate_hz, max_phonemes_per_s)
    inv = {v: k for k, v in token_list().items()}
    symbols = [inv.get(i, BLANK) for i in ids_l]
    typical = np.array([_typical_duration_s(sym) for sym in symbols])
    span_end = np.cumsum(typical) / typical.sum()  # each phoneme's span on the prior timeline (0..1)
    span_start = span_end - typical / typical.sum()
    position = (np.arange(length)[None, :] + 0.5) / length
    off_span = np.maximum(span_start[:, None] - position, 0) + np.maximum(position - span_end[:, None], 0)
    cost = mouth_cost(symbols, typical, feats, norm, rows, valid) + prior_weight * off_span ** 2
    path = _monotonic_path(cost)
    out[s:e] = torch.from_numpy(np.asarray(ids_l, dtype=np.int64)[path])
    return out


def _monotonic_path(cost: np.ndarray) -> np.ndarray:
    """The cheapest path through ``cost`` [n, L] (phoneme i at frame j) that starts at phoneme 0,
    ends at phoneme n - 1 and, frame by frame, stays or moves on by one: int64 [L] phoneme per frame."""
    n, length = cost.shape
    big = 1e18
    acc = np.full((n, length), big)
    back = np.zeros((n, length), dtype=np.int8)  # 0 = stay, 1 = advance
    acc[0, 0] = cost[0, 0]
    for j in range(1, length):
        stay = acc[:, j - 1]
        adv = np.concatenate([[big], acc[:-1, j - 1]])
        choose_adv = adv < stay
        acc[:, j] = np.where(choose_adv, adv, stay) + cost[:, j]
        back[:, j] = choose_adv
    path = np.zeros(length, dtype=np.int64)
    i = n - 1
    for j in range(length - 1, -1, -1):
        path[j] = i
        if j > 0 and back[i, j]:
            i -= 1
    return path
