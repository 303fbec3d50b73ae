"""Training examples from a synthetic data folder (``make-data`` format), with official-style mixing.

A data folder holds ``manifest.jsonl`` and ``clips/NNNNNN.safetensors`` with ``wave`` [S] (22050 Hz),
``lip_feat`` [F, 6], ``phone_id`` [F] (25 Hz), ``motion_feat`` [F, 256] (25 Hz), ``event_feat`` [F, 1]
(25 Hz; absent in folders made before it existed), ``appearance_feat`` [F10, 768] (10 Hz) and
optionally ``ref_audio_ebd`` [256]. The manifest may grow while training runs
(the generator appends); :meth:`ClipSource.refresh` picks up new rows.

Every example is drawn from a seed (run seed, step, rank, slot), so a resumed run sees the same
stream. Shape letters: B batch, S samples, F 25 Hz frames, F10 10 Hz frames, L latent frames.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vssflow_core.config import FEATURE_RATE_HZ
from vssflow_core.errors import VSSFlowError
from vssflow_core.media.probe import frame_shown_at, num_frames

TASK_KINDS = {"joint": ("speech", "sfx", "mixed"), "v2s": ("sfx",), "tts": ("speech",)}
SPEECH_KEYS = ("lip_feat", "phone_id")


def _feature_table() -> tuple[dict[str, float], dict[str, tuple[tuple, type]]]:
    """The time-dense features of a clip, from the embedded model's condition table (the one the
    data folders are made for): ``{key: rate_hz}`` and ``{key: (row shape, dtype)}`` in table order;
    integer ids (an ``embedding`` projection) are int64 scalars per row, the rest float32 vectors."""
    from vssflow_core.embedded import embedded_conditions

    rated = [c for c in embedded_conditions() if c.rate_hz is not None]
    rates = {c.feature_key: float(c.rate_hz) for c in rated}
    shapes = {c.feature_key: ((), np.int64) if c.projection == "embedding" else ((c.input_dim,), np.float32)
              for c in rated}
    return rates, shapes


FEATURE_RATES, FEATURE_SHAPES = _feature_table()  # lip_feat, phone_id, motion_feat 25 Hz; appearance_feat 10 Hz


@dataclass
class Clip:
    """One clip in memory: ``wave`` float32 [S] and features by key (numpy)."""

    row: dict
    wave: np.ndarray
    features: dict


class ClipSource:
    """The clips of one data folder restricted to the kinds of a task (``joint``, ``v2s``, ``tts``)."""

    def __init__(self, root: str | os.PathLike, task: str = "joint", sample_rate: int = 22050):
        if task not in TASK_KINDS:
            raise VSSFlowError(f"task: expected one of {sorted(TASK_KINDS)}, got {task!r}")
        self.root = Path(root)
        self.task = task
        self.sample_rate = sample_rate
        self.rows: list[dict] = []
        self.speech_rows: list[dict] = []
        self.refresh()
        if not self.rows:
            raise VSSFlowError(f"data folder {self.root}: no usable clips of kinds {TASK_KINDS[task]} in manifest.jsonl; "
                               "write some with `python -m vssflow_core make-data --out DIR --n N --seed S`")

    def refresh(self) -> int:
        """Re-read the manifest (complete rows whose clip file exists); returns the number of rows."""
        path = self.root / "manifest.jsonl"
        if not path.is_file():
            raise VSSFlowError(f"data folder {self.root}: manifest.jsonl not found; point --data at a make-data output folder")
        from vssflow_core.data.generate import read_manifest  # make-data's reader: a row being written is left out

        rows = [row for row in read_manifest(self.root)
                if (self.root / row.get("file", "")).is_file() and row.get("kind") in TASK_KINDS["joint"]]
        rows.sort(key=lambda r: r["file"])
        self.speech_rows = [r for r in rows if r["kind"] == "speech"]
        self.rows = [r for r in rows if r["kind"] in TASK_KINDS[self.task]]
        return len(self.rows)

    def load(self, row: dict) -> Clip:
        """Read one clip file."""
        from safetensors.numpy import load_file

        path = self.root / row["file"]
        try:
            t = load_file(str(path))
        except Exception as e:  # noqa: BLE001 - a damaged file is reported with its path
            raise VSSFlowError(f"clip {path}: cannot read ({e}); delete it and rerun make-data with the options that made the folder, which regenerates the missing clip") from e
        if "wave" not in t:
            raise VSSFlowError(f"clip {path}: has no 'wave' tensor; expected a make-data clip")
        feats = {k: v for k, v in t.items() if k != "wave"}
        return Clip(row, t["wave"].astype(np.float32), feats)


def _crop_stream(x: np.ndarray | None, start_s: float, duration_s: float, rate_hz: float, dim_tail: tuple, dtype) -> np.ndarray:
    """Frames of ``x`` [N, ...] at ``rate_hz`` covering [start_s, start_s + duration_s) by timestamp; zero-padded
    (``x`` None: all zeros of row shape ``dim_tail``). The inference front-end's reader, so training crops
    and inference windows pick the same rows."""
    from vssflow_core.frontend import sample_track

    n = num_frames(duration_s, rate_hz)
    if x is None:
        return np.zeros((n, *dim_tail), dtype=dtype)
    return sample_track(x, rate_hz, 0.0, start_s, n, rate_hz).astype(dtype, copy=False)


def crop_clip(clip: Clip, start_s: float, duration_s: float, num_samples: int, sample_rate: int) -> dict:
    """A window of a clip: ``wave`` [num_samples] and every feature on its grid (zeros when absent)."""
    s0 = int(round(start_s * sample_rate))
    wave = np.zeros(num_samples, dtype=np.float32)
    seg = clip.wave[max(0, s0): s0 + num_samples]
    wave[max(0, -s0): max(0, -s0) + len(seg)] = seg
    out = {"wave": wave}
    for key, rate in FEATURE_RATES.items():
        tail, dtype = FEATURE_SHAPES[key]
        out[key] = _crop_stream(clip.features.get(key), start_s, duration_s, rate, tail, dtype)
    ref = clip.features.get("ref_audio_ebd")
    out["ref_audio_ebd"] = None if ref is None else ref.astype(np.float32).reshape(-1)
    return out


def mix_feature_streams(out: dict, speech: dict, window: tuple[float, float], offset_s: float, mode: str) -> None:
    """The feature part of the official mix, in place on ``out`` (numpy arrays or torch tensors).

    ``out`` and ``speech`` map keys of ``FEATURE_RATES`` to one example's stream [N, ...] on its grid;
    the keys that ``out`` lacks (a pack without event features) are left alone. The speech's ``window`` (s) goes to ``offset_s`` of ``out``: lips and phonemes come from
    the speech only (zeros elsewhere); motion/appearance frames are added (``add``) or overwritten
    (``insert``).
    """
    a, b = window
    for key in [k for k in FEATURE_RATES if k in out]:
        rate = FEATURE_RATES[key]
        src0, dst0 = int(frame_shown_at(a, rate)), int(frame_shown_at(offset_s, rate))  # rows shown at a, offset_s
        m = max(0, min(int(math.ceil((b - a) * rate)), len(out[key]) - dst0, len(speech[key]) - src0))
        piece = speech[key][src0: src0 + m]
        if key in SPEECH_KEYS:
            out[key][:] = 0
            out[key][dst0: dst0 + m] = piece
        elif mode == "add":
            out[key][dst0: dst0 + m] = out[key][dst0: dst0 + m] + piece
        else:
            out[key][dst0: dst0 + m] = piece


def mix_speech_into(base: dict, speech: dict, window: tuple[float, float], offset_s: float, mode: str, gain: float,
                    sample_rate: int) -> dict:
    """Official ``video_mix`` synthesis on cropped examples (both cover the same window length).

    The speech example's [window) part (seconds of ``speech``) is placed at ``offset_s`` of ``base``:
    ``add`` scales the base waveform there by ``gain`` and adds the speech; ``insert`` overwrites it.
    Lips and phonemes come from the speech only (zeros elsewhere); motion/appearance frames are added
    (``add``) or overwritten (``insert``); the speaker embedding is the speech's.
    """
    a, b = window
    out = {k: (None if v is None else v.copy()) for k, v in base.items()}
    n = int(round((b - a) * sample_rate))
    s_src, s_dst = int(round(a * sample_rate)), int(round(offset_s * sample_rate))
    n = max(0, min(n, len(out["wave"]) - s_dst, len(speech["wave"]) - s_src))
    seg = speech["wave"][s_src: s_src + n]
    if mode == "add":
        out["wave"][s_dst: s_dst + n] = out["wave"][s_dst: s_dst + n] * gain + seg
    else:
        out["wave"][s_dst: s_dst + n] = seg
    mix_feature_streams(out, speech, window, offset_s, mode)
    out["ref_audio_ebd"] = speech.get("ref_audio_ebd")
    peak = float(np.abs(out["wave"]).max()) if len(out["wave"]) else 0.0
    if peak > 0.99:
        out["wave"] /= peak / 0.99
    return out


class ExampleSampler:
    """Draws training examples: random clip of the task, random crop, optional add/insert mixing.

    Args:
        source: the clips.
        duration_s: window length (the model's), num_samples: waveform samples of the window.
        p_mix: probability (joint task only) of replacing a sound example by a synthetic mix of a
            sound clip and a speech clip (add or insert, half each, as the official ``synthesized``).
    """

    def __init__(self, source: ClipSource, duration_s: float, num_samples: int, p_mix: float = 0.2):
        self.source = source
        self.duration_s = duration_s
        self.num_samples = num_samples
        self.p_mix = p_mix if source.task == "joint" else 0.0

    def _crop(self, rng: np.random.Generator, clip: Clip) -> dict:
        sr = self.source.sample_rate
        span = len(clip.wave) / sr - self.num_samples / sr
        start = float(rng.uniform(0.0, span)) if span > 0 else 0.0
        start = round(start * FEATURE_RATE_HZ) / FEATURE_RATE_HZ  # on the 25 Hz grid so lips/phonemes stay aligned with samples
        return crop_clip(clip, start, self.duration_s, self.num_samples, sr)

    def example(self, seed: tuple[int, ...]) -> dict:
        """One example for a seed tuple; keys: wave, lip_feat, phone_id, motion_feat, appearance_feat, ref_audio_ebd."""
        rng = np.random.default_rng(list(seed))
        rows = self.source.rows
        row = rows[int(rng.integers(len(rows)))]
        ex = self._crop(rng, self.source.load(row))
        if row["kind"] == "sfx" and self.p_mix > 0 and self.source.speech_rows and rng.random() < self.p_mix:
            srow = self.source.speech_rows[int(rng.integers(len(self.source.speech_rows)))]
            speech_clip = self.source.load(srow)
            speech = crop_clip(speech_clip, 0.0, self.duration_s, self.num_samples, self.source.sample_rate)
            a = max(0.0, float(srow.get("speech_start_s") or 0.0) - 0.1)
            b = min(self.num_samples / self.source.sample_rate, float(srow.get("speech_end_s") or self.duration_s) + 0.1)
            a, b = round(a * FEATURE_RATE_HZ) / FEATURE_RATE_HZ, round(b * FEATURE_RATE_HZ) / FEATURE_RATE_HZ
            offset = round(float(rng.uniform(0.0, max(0.0, self.duration_s - (b - a)))) * FEATURE_RATE_HZ) / FEATURE_RATE_HZ
            mode = "add" if rng.random() < 0.5 else "insert"
            ex = mix_speech_into(ex, speech, (a, b), offset, mode, float(rng.uniform(0.3, 0.7)), self.source.sample_rate)
        return ex


def collate(examples: list[dict]) -> dict:
    """Stack examples: wave [B, S]; features [B, F, D] / ids [B, F]; ref [B, 256] or None if any is missing."""
    out = {k: torch.from_numpy(np.stack([e[k] for e in examples])) for k in ("wave", *FEATURE_RATES)}
    refs = [e.get("ref_audio_ebd") for e in examples]
    out["ref_audio_ebd"] = None if any(r is None for r in refs) else torch.from_numpy(np.stack(refs).astype(np.float32))
    return out
