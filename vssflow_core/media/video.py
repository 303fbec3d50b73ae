"""Video in: probe, decode by timestamp, stream in windows, read the audio track (PyAV).

Letters: F frames, H x W pixels, C audio channels, S audio samples.

Timeline: time 0 is the first video frame of the file; every time in this module (``start_s``,
``times_s``, audio positions) is on that timeline, so picture and sound stay in sync.

Resampling by timestamp: the k-th output frame of a window starting at ``start_s`` at rate ``fps`` is
the picture on screen at ``t_k = start_s + k / fps``, i.e. the last source frame whose timestamp is
``<= t_k`` (the first frame for times before it). Constant or variable source rates, any target rate,
never "the first N frames". ``resample_frames`` applies the same rule to frame batches already in
memory (ComfyUI IMAGE batches).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from vssflow_core.errors import VSSFlowError
from vssflow_core.media.encode import write_video
from vssflow_core.media.probe import (
    TIME_EPS_S,
    VideoInfo,
    _av,
    _check_file,
    _decode_stream,
    _open_container,
    _pillow_frames_info,
    _video_stream,
    num_frames,
    probe_video,
)

PROGRESS_EVERY = 25  # frames between two progress calls of read_frames

__all__ = [
    "VideoInfo",
    "Frames",
    "num_frames",
    "probe_video",
    "read_frames",
    "iter_windows",
    "resample_frames",
    "read_audio",
    "write_video",
]


@dataclass
class Frames:
    """Frames resampled to a grid: ``frames`` uint8 [F, H, W, 3] RGB (or the input type for
    ``resample_frames``), ``times_s`` float64 [F] grid times (s, video timeline), ``source_times_s``
    float64 [F] timestamp of the source frame shown, ``source_fps`` (Hz), ``fps`` (Hz, target),
    ``start_s`` and ``duration_s`` (s) of the window."""

    frames: np.ndarray
    times_s: np.ndarray
    source_fps: float
    duration_s: float
    fps: float = 0.0
    start_s: float = 0.0
    source_times_s: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __len__(self) -> int:
        return len(self.times_s)


# ----------------------------------------------------------------------------------------------
# decoding


class _Decoded:
    """One source frame on the video timeline, converted to RGB on demand (once per size)."""

    __slots__ = ("time_s", "dur_s", "_frame", "_rgb")

    def __init__(self, time_s: float, frame, dur_s: float | None = None):
        self.time_s = time_s
        self.dur_s = dur_s
        self._frame = frame
        self._rgb = None

    def rgb(self, out_hw: tuple[int, int], rotation: int, backend: str) -> np.ndarray:
        if self._rgb is None:
            self._rgb = _convert(self._frame, out_hw, rotation, backend)
            self._frame = None
        return self._rgb


def _convert(frame, out_hw, rotation: int, backend: str) -> np.ndarray:
    h, w = out_hw
    pre_h, pre_w = (w, h) if rotation in (90, 270) else (h, w)
    if backend == "pillow":
        from PIL import Image

        img = frame if frame.size == (pre_w, pre_h) else frame.resize((pre_w, pre_h), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
    else:
        interp = "AREA" if pre_w * pre_h < frame.width * frame.height else "BICUBIC"
        arr = frame.reformat(width=pre_w, height=pre_h, format="rgb24", interpolation=interp).to_ndarray()
    if rotation:
        arr = np.rot90(arr, k=rotation // 90)
    return np.ascontiguousarray(arr)


def _iter_source(info: VideoInfo, seek_s: float) -> Iterator[_Decoded]:
    """Yield the file's frames from (about) ``seek_s`` on, as ``_Decoded`` on the video timeline."""
    p = Path(info.path)
    if info.backend == "pillow":
        from PIL import Image

        durations, _ = _pillow_frames_info(p) or ([], None)
        with Image.open(p) as im:
            t = 0.0
            for i, d in enumerate(durations):
                if t + d > seek_s - TIME_EPS_S:
                    im.seek(i)
                    yield _Decoded(t, im.convert("RGB"), d)
                t += d
        return
    container = _open_container(p)
    with container:
        vs = _video_stream(container, p)
        tb = vs.time_base
        origin_pts = info.start_time_s / float(tb)
        seek = info.start_time_s + seek_s if seek_s > 0 else None
        n = 0
        step = 1.0 / info.fps
        for frame in _decode_stream(container, vs, p, seek):
            ts = frame.pts if frame.pts is not None else frame.dts
            t = float((ts - origin_pts) * tb) if ts is not None else n * step
            n += 1
            dur = getattr(frame, "duration", None)  # PyAV >= 14
            yield _Decoded(t, frame, float(dur * tb) if dur else None)


def _output_size(size, height: int, width: int) -> tuple[int, int]:
    """(H, W) of the output: ``None`` keeps the display size, an int is the short side, (h, w) exact."""
    if size is None:
        return height, width
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        s = int(size)
        if s <= 0:
            raise VSSFlowError(f"size={size}: the short side must be a positive number of pixels")
        if height <= width:
            return s, max(1, int(round(width * s / height)))
        return max(1, int(round(height * s / width))), s
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise VSSFlowError(f"size={size!r}: expected None, an int (short side) or (height, width)") from None
    if h <= 0 or w <= 0:
        raise VSSFlowError(f"size={size!r}: height and width must be positive pixel counts")
    return h, w


def _window_bounds(info: VideoInfo, start_s: float, duration_s: float | None) -> tuple[float, float]:
    """Validate a window; returns (start_s, end_s) on the video timeline."""
    video_s = info.duration_s
    tol = 1.0 / max(info.fps, 1e-3) + 1e-3
    if not math.isfinite(start_s) or start_s < 0:
        raise VSSFlowError(f"start_s={start_s} is before the start of {info.path}; use a value in [0, {video_s:.3f}) s")
    if start_s >= video_s:
        raise VSSFlowError(
            f"window start_s={start_s:.3f} s is outside {info.path}, which lasts {video_s:.3f} s; "
            f"use start_s < {video_s:.3f}"
        )
    if duration_s is None:
        return start_s, video_s
    if not math.isfinite(duration_s) or duration_s <= 0:
        raise VSSFlowError(f"duration_s={duration_s} must be a positive number of seconds (or None for the rest)")
    end_s = start_s + duration_s
    if end_s > video_s + tol:
        raise VSSFlowError(
            f"window [{start_s:.3f}, {end_s:.3f}] s reaches past the end of {info.path} ({video_s:.3f} s); "
            f"use duration_s <= {video_s - start_s:.3f} or None"
        )
    return start_s, end_s


def _check_rate(fps) -> float:
    try:
        r = float(fps)
    except (TypeError, ValueError):
        raise VSSFlowError(f"fps={fps!r} must be a number of frames per second") from None
    if not math.isfinite(r) or r <= 0 or r > 1000:
        raise VSSFlowError(f"fps={fps!r} must be in (0, 1000] frames per second")
    return r


def iter_windows(
    path: str | os.PathLike,
    fps: float | Sequence[float],
    window_s: float,
    hop_s: float | None = None,
    start_s: float = 0.0,
    duration_s: float | None = None,
    size=None,
) -> Iterator:
    """Decode a video once, streaming, and yield it in windows resampled by timestamp.

    Window k covers ``[start_s + k*hop_s, start_s + k*hop_s + window_s)`` clipped to the range, and
    holds the grid samples ``start_s + i/fps`` inside it (so overlapping windows share exact frames).
    ``fps`` a number -> yields ``Frames``; a sequence of rates (e.g. ``(10, 25)``) -> yields a tuple
    of ``Frames``, one per rate, from the same single decode. Memory holds about one window (plus the
    overlap), never the whole video. ``size``: None, short side (int) or (h, w), applied while decoding.
    """
    many = isinstance(fps, (list, tuple))
    rates = [_check_rate(r) for r in (fps if many else [fps])]
    if not rates:
        raise VSSFlowError("fps must be one rate or a non-empty list of rates")
    window_s = float(window_s)
    hop_s = window_s if hop_s is None else float(hop_s)
    if not (window_s > 0 and hop_s > 0):
        raise VSSFlowError(f"window_s={window_s} and hop_s={hop_s} must be positive seconds")
    info = probe_video(path)
    _window_bounds(info, float(start_s), duration_s)  # raise now, not at the first next()
    _output_size(size, info.height, info.width)
    return _windows(info, rates, many, window_s, hop_s, float(start_s), duration_s, size)


def _windows(info: VideoInfo, rates: list[float], many: bool, window_s: float, hop_s: float,
             start_s: float, duration_s: float | None, size,
             progress: Callable[[int, int], None] | None = None) -> Iterator:
    """The generator behind ``iter_windows`` (arguments checked, file probed). ``progress(done,
    total)`` counts the frames of the first rate's grid, every ``PROGRESS_EVERY`` frames."""
    start_s, end_s = _window_bounds(info, start_s, duration_s)
    span = end_s - start_s
    out_hw = _output_size(size, info.height, info.width)
    eps = info.time_eps_s

    starts = [0.0]
    while starts[-1] + window_s < span - 1e-9 and starts[-1] + hop_s < span - 1e-9:
        starts.append(len(starts) * hop_s)
    # per rate: grid times and the [a, b) index range of every window
    grids = [start_s + np.arange(num_frames(span, r), dtype=np.float64) / r for r in rates]
    bounds = [
        [(num_frames(ws, r), min(num_frames(ws + window_s, r), len(g))) for ws in starts]
        for r, g in zip(rates, grids)
    ]
    for g, r in zip(grids, rates):
        if len(g) == 0:
            raise VSSFlowError(f"window of {span:.4f} s holds no frame at {r} fps; ask for a longer window")

    # Output arrays are allocated per window when its first frame arrives and filled in place; a frame
    # in the overlap of two windows is written to both. Memory: the open windows, never the video.
    open_windows: list[dict[int, tuple[np.ndarray, np.ndarray]]] = [{} for _ in rates]
    pointers = [0] * len(rates)
    reported = [0]  # grid frames of the first rate at the last progress call
    next_window = 0

    def emit(ri: int, idx: int, src: _Decoded) -> None:
        rgb = src.rgb(out_hw, info.rotation, info.backend)
        for k in range(next_window, len(starts)):
            a, b = bounds[ri][k]
            if a > idx:
                break
            if idx < b:
                if k not in open_windows[ri]:
                    open_windows[ri][k] = (np.empty((b - a, *out_hw, 3), np.uint8), np.empty(b - a, np.float64))
                frames, src_times = open_windows[ri][k]
                frames[idx - a] = rgb
                src_times[idx - a] = src.time_s

    def ready_windows() -> Iterator:
        nonlocal next_window
        while next_window < len(starts) and all(
            pointers[ri] >= bounds[ri][next_window][1] for ri in range(len(rates))
        ):
            w = next_window
            outs = []
            for ri, r in enumerate(rates):
                a, b = bounds[ri][w]
                frames, src_times = open_windows[ri].pop(
                    w, (np.zeros((0, *out_hw, 3), np.uint8), np.zeros(0, np.float64))
                )
                outs.append(Frames(
                    frames=frames, times_s=grids[ri][a:b].copy(), source_fps=info.fps,
                    duration_s=min(window_s, span - starts[w]), fps=r, start_s=start_s + starts[w],
                    source_times_s=src_times,
                ))
            next_window += 1
            yield tuple(outs) if many else outs[0]

    def run(seek_s: float):
        current: _Decoded | None = None
        for src in _iter_source(info, seek_s):
            if current is None and src.time_s > start_s + eps and seek_s > 0:
                raise _SeekMissed
            if current is not None and src.time_s <= current.time_s + eps:
                continue  # duplicate or out-of-order timestamp: the first one stays on screen
            for ri, g in enumerate(grids):
                while pointers[ri] < len(g) and g[pointers[ri]] + eps < src.time_s:
                    emit(ri, pointers[ri], current if current is not None else src)
                    pointers[ri] += 1
            current = src
            if progress is not None and pointers[0] - reported[0] >= PROGRESS_EVERY:
                reported[0] = pointers[0]
                progress(pointers[0], len(grids[0]))
            yield from ready_windows()
            if all(pointers[ri] >= len(g) for ri, g in enumerate(grids)):
                return
        if current is None:
            raise VSSFlowError(f"{info.path}: no frame decoded after {start_s:.3f} s; the file is truncated or corrupt")
        # past the last decoded frame: hold it, unless the file promised more than it has
        decoded_end = current.time_s + (current.dur_s or 1.0 / info.fps)
        missing = min(end_s, info.duration_s) - decoded_end
        if missing > max(2.0 / info.fps, 0.05):
            raise VSSFlowError(
                f"{info.path} is truncated: its header says {info.duration_s:.3f} s but frames stop at "
                f"{decoded_end:.3f} s; re-export or re-download the file"
            )
        for ri, g in enumerate(grids):
            while pointers[ri] < len(g):
                emit(ri, pointers[ri], current)
                pointers[ri] += 1
        yield from ready_windows()

    try:
        yield from run(start_s)
    except _SeekMissed:  # the demuxer landed after the start: decode from the beginning instead
        yield from run(0.0)


class _SeekMissed(Exception):
    pass


def read_frames(
    path: str | os.PathLike,
    fps: float | None,
    start_s: float = 0.0,
    duration_s: float | None = None,
    size=None,
    progress: Callable[[int, int], None] | None = None,
) -> Frames:
    """Decode ``[start_s, start_s + duration_s)`` of a video resampled by timestamp to ``fps``.

    Returns ``Frames``: frames uint8 [F, H, W, 3] RGB with F = ceil(duration_s * fps), times_s [F]
    (s), source_fps, duration_s. ``fps=None`` uses the source's average rate. Seeks to the start;
    rotation metadata applied; ``size`` None (as displayed), int short side or (h, w), applied while
    decoding. ``progress(done, F)`` is called every few frames (raising from it stops the decode).
    For long videos use ``iter_windows``.
    """
    info = probe_video(path)
    rate = _check_rate(info.fps if fps is None else fps)
    s, e = _window_bounds(info, float(start_s), duration_s)
    span = e - s
    return next(_windows(info, [rate], False, span + 1.0, span + 1.0, s, span, size, progress))


def _source_times(count: int, src_fps: float) -> np.ndarray:
    return np.arange(count, dtype=np.float64) / src_fps


def resample_frames(
    frames, src_fps: float, fps: float, start_s: float = 0.0, duration_s: float | None = None
) -> Frames:
    """Resample a frame batch [F, H, W, 3] at ``src_fps`` (frame i at i/src_fps s) to ``fps`` by timestamp.

    Same rule as the file decoder (the frame on screen at each grid time: the last one at or before
    ``t + TIME_EPS_S``, the decoder's tolerance for an exact time base; how this relates to the
    feature tracks' ``probe.frame_shown_at`` is said there). Returns :class:`Frames` with ``frames`` [F', H, W, 3]. ``frames`` may be a numpy
    array or a torch tensor of any dtype (a ComfyUI IMAGE stays float 0..1); the result's ``frames``
    is ``frames[indices]`` of the same type. Window errors as for files.
    """
    src_fps = _check_rate(src_fps)
    fps = _check_rate(fps)
    shape = tuple(frames.shape)
    if len(shape) != 4 or shape[0] == 0:
        raise VSSFlowError(f"frames have shape {shape}; expected a non-empty batch [F, H, W, C]")
    count = shape[0]
    total_s = count / src_fps
    info = VideoInfo(path="frames batch", duration_s=total_s, fps=src_fps, width=shape[2], height=shape[1],
                     num_frames=count, has_audio=False)
    s, e = _window_bounds(info, float(start_s), duration_s)
    src_times = _source_times(count, src_fps)
    grid = s + np.arange(num_frames(e - s, fps), dtype=np.float64) / fps
    idx = np.clip(np.searchsorted(src_times, grid + TIME_EPS_S, side="right") - 1, 0, count - 1)
    if hasattr(frames, "index_select"):  # torch
        import torch

        picked = frames.index_select(0, torch.as_tensor(idx, dtype=torch.long, device=frames.device))
    else:
        picked = np.asarray(frames)[idx]
    return Frames(frames=picked, times_s=grid, source_fps=src_fps, duration_s=e - s, fps=fps, start_s=s,
                  source_times_s=src_times[idx])


# ----------------------------------------------------------------------------------------------
# audio


def _audio_to_float(frame) -> np.ndarray:
    """An av.AudioFrame as float32 [C, S] in -1..1."""
    arr = frame.to_ndarray()
    fmt = frame.format
    channels = len(frame.layout.channels)
    if not fmt.is_planar:
        arr = arr.reshape(-1, channels).T
    name = fmt.name.rstrip("p")
    if name == "s16":
        arr = arr.astype(np.float32) / 32768.0
    elif name == "s32":
        arr = arr.astype(np.float32) / 2147483648.0
    elif name == "u8":
        arr = (arr.astype(np.float32) - 128.0) / 128.0
    elif name == "s64":
        arr = (arr.astype(np.float64) / 9223372036854775808.0).astype(np.float32)
    else:
        arr = arr.astype(np.float32)
    return arr


def read_audio(path: str | os.PathLike, start_s: float = 0.0, duration_s: float | None = None):
    """Read a file's first audio track: ``(wave float32 torch [C, S] in -1..1, sample_rate Hz)`` or None.

    Times are on the video timeline (0 = first video frame) when the file has video, else on the
    audio's own. With ``duration_s`` the result has exactly ``round(duration_s * sample_rate)``
    samples (zeros where the track has none); without it, it runs to the end of the track.
    """
    import torch

    av = _av()
    p = _check_file(path)
    if start_s < 0 or (duration_s is not None and duration_s <= 0):
        raise VSSFlowError(
            f"audio window start_s={start_s}, duration_s={duration_s}: need start_s >= 0 and duration_s > 0"
        )
    origin_s = None
    with _open_container(p) as container:
        if not container.streams.audio:
            return None
        if any(not (s.disposition & av.stream.Disposition.attached_pic) for s in container.streams.video):
            try:
                origin_s = probe_video(p).start_time_s
            except VSSFlowError:
                origin_s = None
        st = container.streams.audio[0]
        sr = int(st.codec_context.sample_rate)
        tb = st.time_base
        if origin_s is None:
            origin_s = float((st.start_time or 0) * tb) if st.start_time is not None else 0.0
        if start_s > 0:
            try:
                container.seek(int((origin_s + start_s - 0.5) / tb) if origin_s + start_s > 0.5 else 0,
                               stream=st, backward=True)
            except av.error.FFmpegError:
                pass
        first_sample = int(round(start_s * sr))
        want = int(round(duration_s * sr)) if duration_s is not None else None
        chunks: list[tuple[int, np.ndarray]] = []
        pos = None
        channels = None
        try:
            for packet in container.demux(st):
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError:
                    continue
                for frame in decoded:
                    data = _audio_to_float(frame)
                    if channels is None:
                        channels = data.shape[0]
                    if data.shape[0] != channels:
                        continue
                    if frame.pts is not None:
                        pos = int(round((float(frame.pts * tb) - origin_s) * sr)) - first_sample
                    elif pos is None:
                        pos = -first_sample
                    chunks.append((pos, data))
                    pos += data.shape[1]
                if want is not None and pos is not None and pos >= want:
                    break
        except av.error.FFmpegError:
            pass
    if channels is None:
        channels = int(st.codec_context.channels or 1)
    end = max((p_ + d.shape[1] for p_, d in chunks), default=0)
    total = want if want is not None else max(end, 0)
    out = np.zeros((channels, total), np.float32)
    for p_, d in chunks:
        a, b = max(p_, 0), min(p_ + d.shape[1], total)
        if b > a:
            out[:, a:b] = d[:, a - p_: b - p_]
    return torch.from_numpy(out), sr
