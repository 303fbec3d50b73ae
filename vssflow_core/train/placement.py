"""``python -m vssflow_core placement-check``: how well each phoneme placement puts the transcript's
phonemes where the synthetic speech really has them.

make-data records the phones its TTS spoke with their times (the manifest's ``phones``). The
transcript's phonemes (``text_to_phonemes``, what inference places) are aligned to those by edit
distance (the TTS may speak a diphthong as two phones, or another pronunciation), which gives each
frame of the speech window its true transcript phoneme. A placement scores the share of speech frames
on which it puts that phoneme (``exact``) and the share where it is within +-2 frames (``within2``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from vssflow_core.config import FEATURE_RATE_HZ, PHONE_PLACEMENTS
from vssflow_core.errors import VSSFlowError
from vssflow_core.train.report import check_json_target, write_json_report

NEAR_FRAMES = 2


def _base(symbol: str) -> str:
    from vssflow_core.features.text import BLANK

    return symbol if symbol == BLANK else symbol.rstrip("012")


def _substitution_cost(x: str, y: str) -> float:
    """0 for the same phone, 0.6 within a class (vowel, consonant, blank), 1.4 across classes."""
    from vssflow_core.features.text import VOWELS

    if x == y:
        return 0.0
    kind = lambda s: "blank" if s.startswith("<") else ("vowel" if s in VOWELS else "consonant")
    return 0.6 if kind(x) == kind(y) else 1.4


def align_to_spoken(transcript: list[str], spoken: list[str]) -> list[int]:
    """For each spoken phone, the index of the transcript phoneme it belongs to.

    Edit-distance alignment of the two symbol lists (stress digits ignored; a substitution costs 0.6
    within a class (vowel, consonant, blank) and 1.4 across, an extra or a missing phone 1). A spoken
    phone matched or substituted takes its partner's index; an extra spoken phone (one half of a
    diphthong spoken as two phones) takes the index of the transcript phoneme it follows (0 at the
    start).
    """
    a, b = [_base(x) for x in transcript], [_base(x) for x in spoken]
    n, m = len(a), len(b)
    dist = np.zeros((n + 1, m + 1))
    dist[:, 0], dist[0, :] = np.arange(n + 1), np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            dist[i, j] = min(dist[i - 1, j - 1] + _substitution_cost(a[i - 1], b[j - 1]),
                             dist[i - 1, j] + 1, dist[i, j - 1] + 1)
    owner = [0] * m
    i, j = n, m
    close = lambda x, y: abs(x - y) < 1e-9
    while j > 0:  # on ties: a match, then an extra spoken phone, then a substitution, then a skipped phoneme
        sub = _substitution_cost(a[i - 1], b[j - 1]) if i > 0 else None
        if i > 0 and sub == 0 and close(dist[i, j], dist[i - 1, j - 1]):
            owner[j - 1], i, j = i - 1, i - 1, j - 1
        elif i == 0 or close(dist[i, j], dist[i, j - 1] + 1):
            owner[j - 1], j = max(i - 1, 0), j - 1
        elif close(dist[i, j], dist[i - 1, j - 1] + sub):
            owner[j - 1], i, j = i - 1, i - 1, j - 1
        else:
            i -= 1
    return owner


def true_index_track(row: dict, num_frames: int) -> np.ndarray:
    """Per 25 Hz frame, the index of the transcript phoneme (edge blanks included) being spoken:
    int64 [num_frames], -1 where the TTS spoke nothing."""
    from vssflow_core.features.text import BLANK, text_to_phonemes

    transcript = [BLANK] + text_to_phonemes(row["transcript"]) + [BLANK]
    spoken = row["phones"]
    owner = align_to_spoken(transcript, [p[0] for p in spoken])
    times = np.arange(num_frames) / FEATURE_RATE_HZ
    out = np.full(num_frames, -1, dtype=np.int64)
    for (_, start, end), k in zip(spoken, owner):
        out[(times >= start) & (times < end)] = k
    return out


def placed_index_track(ids: list[int], track: np.ndarray, start: int, end: int) -> np.ndarray:
    """Recover which phoneme of ``ids`` each frame of a placed id track holds (frames ``start`` to
    ``end`` - 1; -1 elsewhere): every change of id moves on to the next phoneme with that id."""
    out = np.full(len(track), -1, dtype=np.int64)
    k, prev = 0, None
    for j in range(start, end):
        if prev is not None and track[j] != prev:
            k += 1
            while k < len(ids) - 1 and ids[k] != track[j]:
                k += 1
        out[j] = min(k, len(ids) - 1)
        prev = track[j]
    return out


def score_rows(rows: list[dict], lips: list[np.ndarray], placements=PHONE_PLACEMENTS) -> dict:
    """Placement accuracy over speaking clips.

    Args:
        rows: manifest rows with ``transcript``, ``phones``, ``speech_start_s``/``speech_end_s`` (s)
            and ``duration_s``.
        lips: each row's raw lip track float [F25, 6].
    Returns:
        ``{placement: {"exact": share, "within2": share, "frames": n}}`` over the frames where the
        TTS spoke, inside the speech windows.
    """
    from vssflow_core.features.phone_timing import check_window, mouth_placement, place_phonemes
    from vssflow_core.features.text import phoneme_ids, text_to_phonemes

    totals = {p: [0, 0, 0] for p in placements}
    for row, lip in zip(rows, lips):
        ids = phoneme_ids(text_to_phonemes(row["transcript"]))
        start_s, end_s, dur = float(row["speech_start_s"]), float(row["speech_end_s"]), float(row["duration_s"])
        truth = true_index_track(row, len(lip))
        for name in placements:
            if name == "uniform":
                track = place_phonemes(ids, start_s, end_s, dur)
            else:
                track = mouth_placement(name)(ids, lip, start_s, end_s, dur)
            track = track.numpy()[: len(lip)]
            start = int(start_s * FEATURE_RATE_HZ + 1e-6)
            end = min(len(track), start + check_window(len(ids), start_s, end_s, dur, FEATURE_RATE_HZ))
            placed = placed_index_track(ids, track, start, end)
            frames = [j for j in range(start, end) if truth[j] >= 0]
            near = [placed[j] in truth[max(start, j - NEAR_FRAMES): min(end, j + NEAR_FRAMES + 1)] for j in frames]
            t = totals[name]
            t[0] += sum(int(placed[j] == truth[j]) for j in frames)
            t[1] += sum(near)
            t[2] += len(frames)
    return {name: {"exact": t[0] / max(1, t[2]), "within2": t[1] / max(1, t[2]), "frames": t[2]}
            for name, t in totals.items()}


def check_data_folder(folder: str | Path, flag: str = "--data") -> None:
    """Refuse (naming ``flag``) a folder that is not a make-data output folder."""
    if not (Path(folder) / "manifest.jsonl").is_file():
        raise VSSFlowError(f"{flag} {folder}: no manifest.jsonl there; give a make-data output folder")


def speaking_clips(folder: str | Path, limit: int | None = None) -> list[tuple[dict, np.ndarray]]:
    """(manifest row, raw lip track float32 [F25, 6]) of each speaking clip of a make-data folder that
    has a transcript, phone timings, a speech window and a face, in manifest order; only the first
    ``limit`` speaking rows are read. Empty when none qualifies."""
    from vssflow_core.train.data import ClipSource

    source = ClipSource(folder, "joint")
    rows = [r for r in source.rows if r.get("transcript") and r.get("phones") and r.get("speech_start_s") is not None]
    rows = rows[:limit] if limit else rows
    lips = [source.load(r).features.get("lip_raw") for r in rows]
    return [(r, lp) for r, lp in zip(rows, lips) if lp is not None]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Register the ``placement-check`` options on ``p``."""
    p.add_argument("--data", required=True, help="make-data output folder (manifest.jsonl + clips/)")
    p.add_argument("--n", type=int, default=None, help="only the first N speaking clips")
    p.add_argument("--json", default=None, help="also write the results here (a new file)")


def run(args) -> int:
    """Score every placement (uniform, lips, lipread) on a make-data folder's speaking clips and print a table."""
    folder = Path(args.data)
    check_data_folder(folder)
    if args.json:
        check_json_target(args.json)
    kept = speaking_clips(folder, args.n)
    if not kept:
        raise VSSFlowError(f"--data {folder}: no speaking clip with a face and phone timings; "
                           "make one with make-data --kind speech")
    result = score_rows([r for r, _ in kept], [lp for _, lp in kept])
    print(f"{len(kept)} speaking clips of {folder}")
    print(f"{'placement':12s} {'exact':>8s} {'within +-2':>11s} {'frames':>8s}")
    for name, r in result.items():
        print(f"{name:12s} {r['exact']:8.3f} {r['within2']:11.3f} {r['frames']:8d}")
    if args.json:
        write_json_report(args.json, {"data": str(folder), "clips": len(kept), **result})
    return 0
