"""Probe a video file: duration, rate, size, rotation, frame count, audio (PyAV; Pillow for animated WebP).

Timeline: time 0 is the first video frame of the file (``VideoInfo.start_time_s`` in container time).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vssflow_core.errors import VSSFlowError

__all__ = ["VideoInfo", "num_frames", "probe_video", "TIME_EPS_S"]

log = logging.getLogger(__name__)

# Two timestamps closer than this are the same instant (far above float rounding of rational time
# bases, far below NTSC's 0.1 ms offsets from round times). Coarse time bases widen it (time_eps_s).
TIME_EPS_S = 1e-6
# Still-image demuxers: PyAV opens a PNG/JPEG as a one-frame "video"; we refuse those.
_STILL_FORMATS = {
    "image2", "webp_pipe", "png_pipe", "jpeg_pipe", "bmp_pipe", "tiff_pipe", "jpegls_pipe", "ppm_pipe", "pgm_pipe",
}
_PILLOW_ANIMATED = {".webp", ".gif", ".png", ".apng"}


def num_frames(duration_s: float, rate: float) -> int:
    """Number of samples of a ``rate`` Hz grid inside ``[0, duration_s)``: ``ceil(duration_s*rate - 1e-6)``."""
    return max(0, math.ceil(duration_s * rate - 1e-6))


def frame_shown_at(times_s, rate_hz: float, start_s: float = 0.0) -> np.ndarray:
    """Index of the frame (or feature row) of a ``rate_hz`` stream whose first frame is at ``start_s``
    that is on screen at each time of ``times_s`` [N] (s): ``floor((t - start_s) * rate_hz + 1e-6)``,
    int64 [N] (int64 0-d for a scalar time; below 0 or past the end when a time is outside the
    stream; callers clip or zero-pad).

    The one rule by which training crops and inference windows read every feature track and pick
    frames for lower rates (25 fps -> 10 Hz appearance, a track at 25 Hz -> a window's grid), and
    by which the data generator places its 25 Hz face poses and mixes speech into a clip.

    Video decoding (``media.video.iter_windows``, ``resample_frames``) picks source frames by
    timestamp instead, because a file's timestamps need not be a regular grid: the last frame at or
    before ``t + TIME_EPS_S``. On regular grids both rules pick the same frames for the usual rates
    (23.976 to 60 fps -> 25 or 10 Hz, starts in whole milliseconds; tests/test_frame_rule.py); they
    differ only for a time less than 1 us (but more than 1e-6 frame) before a frame boundary, which
    the decoder counts as on the boundary.
    """
    return np.floor((np.asarray(times_s, dtype=np.float64) - start_s) * rate_hz + 1e-6).astype(np.int64)


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe_video`` found. Sizes are as displayed (rotation and pixel aspect applied).

    duration_s: seconds from the first frame to the end of the last one; fps: average source rate (Hz);
    num_frames: source frames; rotation: degrees counter-clockwise applied for display (0/90/180/270).
    """

    path: str
    duration_s: float
    fps: float
    width: int
    height: int
    num_frames: int
    has_audio: bool
    rotation: int = 0
    codec: str = ""
    container: str = ""
    is_vfr: bool = False
    audio_sample_rate: int | None = None
    audio_channels: int | None = None
    start_time_s: float = 0.0  # container time of the first frame (the origin of our timeline)
    backend: str = "pyav"  # "pyav" or "pillow" (animated WebP/PNG that FFmpeg does not decode)
    coded_width: int = 0
    coded_height: int = 0
    time_base_s: float = 0.0  # timestamp resolution of the stream (Matroska: 0.001)

    @property
    def time_eps_s(self) -> float:
        """Tolerance when comparing timestamps: half the stored time base (rounding), under 1/4 frame."""
        return min(max(TIME_EPS_S, 0.51 * self.time_base_s), 0.25 / max(self.fps, 1e-3))

# ----------------------------------------------------------------------------------------------
# opening and probing


def _av():
    try:
        import av
    except ImportError:
        raise VSSFlowError("reading and writing video needs PyAV: `pip install av` in this Python (ComfyUI "
                           "normally has it; it is in the pack's requirements.txt)") from None
    return av


def _check_file(path) -> Path:
    p = Path(path)
    if not p.exists():
        raise VSSFlowError(f"video file {p} does not exist; check the path (absolute or relative to {os.getcwd()})")
    if not p.is_file():
        raise VSSFlowError(f"video path {p} is not a file (a folder?); pass a video file such as .mp4/.webm/.mov")
    if p.stat().st_size == 0:
        raise VSSFlowError(f"video file {p} is empty (0 bytes); re-export or re-download it")
    return p


def _open_container(p: Path):
    av = _av()
    try:
        return av.open(str(p), mode="r")
    except av.error.EOFError:
        raise VSSFlowError(
            f"video file {p} ends before any frame (0 frames or truncated); re-export or re-download it"
        ) from None
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VSSFlowError(
            f"{p} is not a readable video (FFmpeg: {exc}); expected a video file (mp4, webm, mov, mkv, gif, ...). "
            "If it is a partial download, download it again"
        ) from None


def _video_stream(container, p: Path):
    av = _av()
    streams = [
        s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)
    ]
    if not streams:
        kinds = sorted({s.type for s in container.streams}) or ["nothing"]
        raise VSSFlowError(
            f"{p} has no video stream (it contains: {', '.join(kinds)}); expected a video file. "
            "Audio-only files go to an AUDIO input instead"
        )
    return streams[0]


def _rotation_of(frame) -> int:
    try:
        rot = frame.rotation
    except (AttributeError, TypeError, ValueError):  # pragma: no cover - older PyAV, no display matrix
        return 0
    return int(round((rot or 0) / 90.0)) % 4 * 90


def _display_size(coded_w: int, coded_h: int, sar, rotation: int) -> tuple[int, int]:
    """(width, height) as shown: pixel aspect applied to width, then rotation."""
    w, h = coded_w, coded_h
    if sar and sar.numerator > 0 and sar.denominator > 0 and sar != 1:
        w = max(1, int(round(coded_w * float(sar))))
    return (h, w) if rotation in (90, 270) else (w, h)


def _pillow_frames_info(p: Path):
    """(durations_s list, (w, h)) of an animated image Pillow can read, or None."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        return None
    try:
        with Image.open(p) as im:
            n = int(getattr(im, "n_frames", 1))
            if n < 2:
                return None
            durations = []
            for i in range(n):
                im.seek(i)
                durations.append(max(float(im.info.get("duration", 100) or 100), 1.0) / 1000.0)
            return durations, im.size
    except (OSError, ValueError, EOFError):  # not an image Pillow reads (UnidentifiedImageError is an OSError)
        return None


def _probe_pillow(p: Path) -> VideoInfo | None:
    got = _pillow_frames_info(p)
    if got is None:
        return None
    durations, (w, h) = got
    duration = float(sum(durations))
    return VideoInfo(
        path=str(p), duration_s=duration, fps=len(durations) / duration, width=w, height=h,
        num_frames=len(durations), has_audio=False, rotation=0, codec="pillow", container=p.suffix.lstrip("."),
        is_vfr=len(set(round(d, 6) for d in durations)) > 1, backend="pillow", coded_width=w, coded_height=h,
        time_base_s=0.001,
    )


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read a video's duration (s), average fps (Hz), display size, frame count, rotation, audio.

    Decodes only the first frame (to find the timeline origin and the rotation); counts packets when
    the container stores no frame count (WebM/MKV). Raises VSSFlowError for a missing, empty,
    non-video, still-image, 0-frame or unreadable file.
    """
    p = _check_file(path)
    if p.suffix.lower() in (".webp", ".png", ".apng") and (info := _probe_pillow(p)) is not None:
        return info  # animated WebP/APNG: FFmpeg's WebP decoder reads stills only
    try:
        container = _open_container(p)
    except VSSFlowError:
        if p.suffix.lower() in _PILLOW_ANIMATED and (info := _probe_pillow(p)) is not None:
            return info
        raise
    with container:
        fmt = container.format.name
        if fmt in _STILL_FORMATS:
            raise VSSFlowError(f"{p} is a still image ({fmt}), not a video; load it as an IMAGE instead")
        try:
            vs = _video_stream(container, p)
        except VSSFlowError:
            if p.suffix.lower() in _PILLOW_ANIMATED and (info := _probe_pillow(p)) is not None:
                return info
            raise
        tb = vs.time_base
        first = None
        try:
            for frame in _decode_stream(container, vs, p):
                first = frame
                break
        except VSSFlowError:
            first = None
        if first is None:
            if p.suffix.lower() in _PILLOW_ANIMATED and (info := _probe_pillow(p)) is not None:
                return info
            raise VSSFlowError(
                f"{p} has a video stream but 0 decodable frames; the file is empty, truncated or corrupt - "
                "re-export or re-download it"
            )
        first_pts = first.pts if first.pts is not None else (vs.start_time or 0)
        origin_s = float(first_pts * tb)
        rotation = _rotation_of(first)
        count = int(vs.frames or 0)
        end_s = None
        if count > 0 and vs.duration:
            end_s = float(((vs.start_time or 0) + vs.duration) * tb)
        if end_s is None or end_s <= origin_s:
            count, end_s = _scan_packets(p, vs.index, origin_s)
        duration = max(end_s - origin_s, 0.0)
        if count <= 0 or duration <= 0:
            raise VSSFlowError(f"{p} has 0 video frames; re-export or re-download it")
        avg = vs.average_rate
        fps = float(avg) if avg else count / duration
        base = vs.base_rate or vs.guessed_rate
        is_vfr = bool(base) and abs(float(base) - fps) > 0.01 * fps
        if not is_vfr and abs(count / fps - duration) <= max(float(tb), 1e-3) + 1e-9:
            duration = count / fps  # constant rate in a coarse time base (Matroska's 1 ms): exact value
        coded_w, coded_h = vs.codec_context.width, vs.codec_context.height
        width, height = _display_size(coded_w, coded_h, vs.sample_aspect_ratio, rotation)
        audio = container.streams.audio[0] if container.streams.audio else None
        return VideoInfo(
            path=str(p), duration_s=duration, fps=fps, width=width, height=height, num_frames=count,
            has_audio=audio is not None, rotation=rotation, codec=vs.codec_context.name, container=fmt,
            is_vfr=is_vfr, audio_sample_rate=int(audio.codec_context.sample_rate) if audio else None,
            audio_channels=int(audio.codec_context.channels) if audio else None, start_time_s=origin_s,
            backend="pyav", coded_width=coded_w, coded_height=coded_h, time_base_s=float(tb),
        )


def _scan_packets(p: Path, stream_index: int, origin_s: float) -> tuple[int, float]:
    """Count the video packets and find the end time (s, container time) without decoding."""
    av = _av()
    count, end_s = 0, origin_s
    with _open_container(p) as container:
        vs = container.streams[stream_index]
        tb = vs.time_base
        default_dur = 1.0 / float(vs.average_rate or vs.guessed_rate or 25)
        try:
            for packet in container.demux(vs):
                if packet.size == 0:
                    continue
                count += 1
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is None:
                    end_s += default_dur
                    continue
                dur = float(packet.duration * tb) if packet.duration else default_dur
                end_s = max(end_s, float(ts * tb) + dur)
        except av.error.FFmpegError:
            pass  # a damaged tail: what was read is what there is
    return count, end_s


# ----------------------------------------------------------------------------------------------
# decoding (shared with video.py)


def _decode_stream(container, vs, p: Path, seek_s: float | None = None):
    """Yield av.VideoFrames of ``vs`` in presentation order; damaged packets are skipped (counted)."""
    av = _av()
    vs.thread_type = "AUTO"
    if seek_s is not None and seek_s > 0:
        container.seek(int(seek_s / vs.time_base), stream=vs, backward=True, any_frame=False)
    bad = 0
    try:
        for packet in container.demux(vs):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                bad += 1
                continue
            yield from frames
    except av.error.FFmpegError:
        bad += 1  # demuxer hit damaged data: stop, flush what the decoder holds
        try:
            yield from vs.decode(None)
        except av.error.FFmpegError:
            pass
    if bad:
        log.warning("%s: skipped %d damaged video packet(s)", p, bad)
