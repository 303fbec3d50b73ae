"""Video sources for generation: a file decoded window by window, or frames already in memory.

``open_video`` returns either; both have ``duration_s`` (s), ``fps`` (the source's frame rate, Hz;
a file's average) and ``iter_frames(windows, fps, size)``,
which yields uint8 ``[F, H, W, 3]`` RGB frames at ``fps`` for each ``timeline.Window`` in turn, so
memory stays flat in the video's length.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from vssflow_core import frontend
from vssflow_core.errors import VSSFlowError

if TYPE_CHECKING:
    from vssflow_core.timeline import Window


class _FileVideo:
    """A video file decoded window by window (``media.video.iter_windows``, frames picked by timestamp)."""

    def __init__(self, path: str | Path, size: int = frontend.FRAME_SHORT_SIDE):
        from vssflow_core.media.video import probe_video

        self.path = str(path)
        if not Path(self.path).is_file():
            raise VSSFlowError(f"video file not found: {self.path}")
        self.info = probe_video(self.path)
        self.duration_s = float(self.info.duration_s)
        self.fps = float(self.info.fps)
        self.size = size

    def _short_side(self, size: int | None) -> int | None:
        """Decode size: the requested short side (px), but never upscaling."""
        size = size or self.size
        return size if size and size < min(self.info.width, self.info.height) else None

    def iter_frames(self, windows: Sequence[Window], fps: float, size: int | None = None):
        """Frames uint8 [F, H, W, 3] at ``fps`` for each window, from one streaming decode."""
        from vssflow_core.media.video import iter_windows

        window_s = windows[0].duration_s
        hop_s = windows[1].start_s - windows[0].start_s if len(windows) > 1 else window_s
        count = 0
        for _, frames in zip(windows, iter_windows(self.path, fps, window_s=window_s, hop_s=hop_s, start_s=0.0,
                                                   duration_s=self.duration_s, size=self._short_side(size))):
            count += 1
            yield frames.frames
        if count != len(windows):
            raise VSSFlowError(f"{self.path}: decoded {count} windows, planned {len(windows)}; the file may be "
                               "damaged towards its end")


class _ArrayVideo:
    """Frames already in memory: uint8 [F, H, W, 3] at ``fps`` (e.g. a ComfyUI IMAGE batch)."""

    def __init__(self, frames: np.ndarray, fps: float):
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise VSSFlowError(f"video frames must be [F, H, W, 3] RGB, got shape {list(frames.shape)}")
        if frames.dtype != np.uint8:
            raise VSSFlowError(f"video frames must be uint8 0..255, got {frames.dtype}; "
                               "convert a float 0..1 IMAGE with (x * 255).round().astype(np.uint8)")
        if not (fps and math.isfinite(fps) and fps > 0):
            raise VSSFlowError(f"fps must be a positive number of frames per second, got {fps!r}")
        self.array, self.fps = frames, float(fps)
        self.duration_s = len(frames) / self.fps

    def frames(self, start_s: float, duration_s: float, fps: float, size: int | None = None) -> np.ndarray:
        from vssflow_core.media.video import resample_frames

        return resample_frames(self.array, self.fps, fps, start_s=start_s, duration_s=duration_s).frames

    def iter_frames(self, windows: Sequence[Window], fps: float, size: int | None = None):
        for w in windows:
            yield self.frames(w.start_s, w.duration_s, fps)


def open_video(video=None, frames=None, fps: float | None = None, duration_s: float | None = None):
    """A video source from a path, or frames uint8 [F, H, W, 3] + fps; ``duration_s`` keeps the first seconds."""
    if video is not None and frames is not None:
        raise VSSFlowError("give either a video path or frames + fps, not both")
    if video is not None:
        source = _FileVideo(video)
    elif frames is not None:
        source = _ArrayVideo(frames, fps)
    else:
        raise VSSFlowError("no video: give a video path or frames + fps")
    if source.duration_s <= 0:
        raise VSSFlowError(f"the video has no frames (duration {source.duration_s} s); check the file or the "
                           "loader's start/duration window")
    if duration_s:
        if not 0 < duration_s <= source.duration_s + 1e-6:
            raise VSSFlowError(f"duration {duration_s} s must be in (0, {source.duration_s:.3f}] (the video's "
                               "duration); use 0 for the whole video")
        source.duration_s = float(duration_s)
    return source
