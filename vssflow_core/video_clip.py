"""Video windows in memory and videos written with generated audio: what the Load Video and Mux
Audio nodes (and ``scripts/check_real_inputs.py``) use around :func:`vssflow_core.pipeline.generate`.

``load_clip`` reads a window of a file (frames by timestamp + its audio), ``clip_from_frames`` cuts
the same window from frames in memory, ``clip_frame_shape`` predicts a load's size from the header,
and ``write_with_audio`` writes ``prefix_NNNNN_.mp4`` with the audio (replace or mix), never
overwriting.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from vssflow_core.errors import VSSFlowError
from vssflow_core.frontend import num_frames
from vssflow_core.video_source import open_video


@dataclass
class Clip:
    """A window of a video file in memory.

    Attributes:
        frames: uint8 [F, H, W, 3] at ``fps``, frame k at ``start_s + k / fps`` of the source.
        fps: frame rate (Hz) of ``frames``; source_fps: the file's own rate.
        audio: float32 [C, S] of the same window at ``sample_rate`` Hz, or None (no audio track).
        start_s, duration_s: the window in source time (s); source_duration_s: the whole file (s).
    """

    frames: np.ndarray
    fps: float
    source_fps: float
    audio: torch.Tensor | None
    sample_rate: int | None
    start_s: float
    duration_s: float
    source_duration_s: float
    path: str


def _window_length(start_s: float, duration_s: float, max_frames: int, fps: float, total_s: float,
                   what: str) -> float:
    """Length (s) of the part of a video of ``total_s`` seconds that starts at ``start_s``: all of the
    rest when ``duration_s`` is 0, at most ``max_frames`` frames at ``fps`` when that is > 0.
    ``what`` describes the video in the error message (e.g. "clip.mp4 lasts")."""
    if start_s < 0 or duration_s < 0 or max_frames < 0:
        raise VSSFlowError(f"start ({start_s} s), duration ({duration_s} s) and frame cap ({max_frames}) "
                           "must not be negative")
    if start_s >= total_s:
        raise VSSFlowError(f"window start {start_s:.3f} s is outside the video ({what} {total_s:.3f} s); "
                           f"choose a start below {total_s:.3f}")
    length = total_s - start_s if duration_s == 0 else min(duration_s, total_s - start_s)
    if max_frames and num_frames(length, fps) > max_frames:
        length = max_frames / fps
    return length


def _plan_clip(path: str, start_s: float, duration_s: float, max_frames: int, fps: float):
    """(VideoInfo, output fps, window length in s) of a :func:`load_clip` call, from the header only."""
    from vssflow_core.media.video import probe_video

    if not Path(path).is_file():
        raise VSSFlowError(f"video file not found: {path}")
    info = probe_video(path)
    fps = float(fps) if fps and fps > 0 else float(info.fps)
    return info, fps, _window_length(start_s, duration_s, max_frames, fps, info.duration_s, f"{path} lasts")


def clip_frame_shape(path: str | Path, start_s: float = 0.0, duration_s: float = 0.0, max_frames: int = 0,
                     fps: float = 0.0) -> tuple[int, int, int]:
    """(frames, height, width) that :func:`load_clip` with the same arguments returns, read from the
    file's header without decoding (to refuse a load that would not fit in memory)."""
    info, fps, length = _plan_clip(str(path), start_s, duration_s, max_frames, fps)
    return num_frames(length, fps), int(info.height), int(info.width)


def load_clip(path: str | Path, start_s: float = 0.0, duration_s: float = 0.0, max_frames: int = 0,
              fps: float = 0.0, progress: Callable[[int, int], None] | None = None) -> Clip:
    """Read a window of a video file: frames by timestamp plus its audio.

    Args:
        start_s: window start (s). duration_s: window length (s), 0 = to the end.
        max_frames: cap on the number of frames (shortens the window), 0 = no cap.
        fps: frame rate to resample to (Hz), 0 = the file's rate.
        progress: ``progress(frames done, frames)`` while decoding; raising from it cancels.
    Raises:
        VSSFlowError: missing/unreadable file, window outside the video, 0 frames.
    """
    from vssflow_core.media.video import read_audio, read_frames

    path = str(path)
    info, fps, length = _plan_clip(path, start_s, duration_s, max_frames, fps)
    clip = read_frames(path, fps, start_s=start_s, duration_s=length, progress=progress)
    if len(clip.frames) == 0:
        raise VSSFlowError(f"no frames in {path} between {start_s:.3f} s and {start_s + length:.3f} s")
    audio = read_audio(path, start_s=start_s, duration_s=length) if info.has_audio else None
    wave, sample_rate = (audio if audio is not None else (None, None))
    return Clip(clip.frames, fps, float(info.fps), wave, sample_rate, float(start_s), float(length),
                float(info.duration_s), path)


def clip_from_frames(frames: np.ndarray, fps: float, audio: tuple[torch.Tensor, int] | None = None,
                     start_s: float = 0.0, duration_s: float = 0.0, max_frames: int = 0,
                     out_fps: float = 0.0) -> Clip:
    """The same window as :func:`load_clip`, cut from frames uint8 [F, H, W, 3] at ``fps`` (+ audio [C, S])."""
    from vssflow_core.media.video import resample_frames

    source = open_video(frames=frames, fps=fps)
    out_fps = float(out_fps) if out_fps and out_fps > 0 else float(fps)
    length = _window_length(start_s, duration_s, max_frames, out_fps, source.duration_s,
                            f"{len(frames)} frames at {fps} fps =")
    out = resample_frames(source.array, source.fps, out_fps, start_s=start_s, duration_s=length).frames
    wave = sample_rate = None
    if audio is not None:
        wave, sample_rate = audio
        first = int(round(start_s * sample_rate))
        wanted = num_frames(length, sample_rate)
        wave = wave[:, first:first + wanted]
        if wave.shape[-1] < wanted:  # the track ends before the part: silence, as read_audio gives
            wave = torch.nn.functional.pad(wave, (0, wanted - wave.shape[-1]))
    return Clip(out, out_fps, float(fps), wave, sample_rate, float(start_s), float(length), source.duration_s, "")


def write_with_audio(audio: torch.Tensor, sample_rate: int, out_dir: str | Path, prefix: str, *,
                     video_path: str | Path | None = None, frames: np.ndarray | None = None,
                     fps: float | None = None, original_audio: tuple[torch.Tensor, int] | None = None,
                     mode: str = "replace", audio_gain: float = 1.0, original_gain: float = 1.0,
                     metadata: dict[str, str] | None = None) -> Path:
    """Write ``out_dir/prefix_NNNNN_.mp4``: the video with ``audio`` [C, S] (replace or mix).

    A video file is stream-copied; frames uint8 [F, H, W, 3] at ``fps`` are encoded first (H.264,
    with ``original_audio`` if given) in a temporary file. ``metadata`` becomes container tags.
    Nothing is overwritten and no partial file is left behind on error.
    """
    from vssflow_core.media.files import unique_path
    from vssflow_core.media.mux import mux_audio
    from vssflow_core.media.encode import write_video

    if mode not in ("replace", "mix"):
        raise VSSFlowError(f"mux mode must be 'replace' or 'mix', got {mode!r}")
    audio = torch.as_tensor(audio, dtype=torch.float32)
    if audio.dim() != 2 or audio.shape[-1] == 0:
        raise VSSFlowError(f"audio must be [C, S] with samples, got shape {list(audio.shape)}")
    out_path = unique_path(out_dir, prefix, "mp4")
    temp = None
    try:
        if video_path is None:
            if frames is None or fps is None:
                raise VSSFlowError("mux: give a video file or frames + fps")
            temp = unique_path(out_path.parent, f".{out_path.stem}_video", "mp4")
            kwargs = {}
            if original_audio is not None:
                kwargs = {"audio": original_audio[0], "sample_rate": int(original_audio[1])}
            write_video(str(temp), frames, fps, **kwargs)
            video_path = temp
        mux_audio(str(video_path), audio, int(sample_rate), str(out_path), mode=mode, audio_gain=audio_gain,
                  original_gain=original_gain, metadata=metadata)
    finally:
        if temp is not None and Path(temp).exists():
            Path(temp).unlink()
    return out_path
