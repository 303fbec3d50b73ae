"""Test clips with known content, written with PyAV (import from any test: ``from media_factory import ...``).

Every frame carries its own index as 12 black/white stripes in the top half (survives lossy codecs and
resizing), a square that moves with time in the bottom half, and optionally a white bottom half
(a "flash") at chosen times. Audio is silence with short 2 kHz bursts ("clicks") at chosen times,
or a tone. Helpers also write broken files (truncated, not a video, audio only, 0 frames).
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

INDEX_BITS = 12


def ntsc_rate(fps: float) -> Fraction:
    """29.97 -> 30000/1001 (and 23.976, 59.94); other rates as an exact fraction."""
    for base in (24, 30, 48, 60, 120, 240):
        if abs(fps - base * 1000 / 1001) < 2e-3:
            return Fraction(base * 1000, 1001)
    return Fraction(fps).limit_denominator(1000)


def pattern_frame(index: int, time_s: float, height: int = 48, width: int = 96, flash: bool = False) -> np.ndarray:
    """uint8 [H, W, 3]: index bits as stripes on top, moving square (or white flash) below."""
    img = np.zeros((height, width, 3), np.uint8)
    top = height // 2
    for b in range(INDEX_BITS):
        x0, x1 = b * width // INDEX_BITS, (b + 1) * width // INDEX_BITS
        if (index >> b) & 1:
            img[:top, x0:x1] = 255
    if flash:
        img[top:] = 255
    else:
        img[top:] = 40
        side = max(2, (height - top) // 2)
        x = int((time_s * 40.0) % max(1, width - side))
        img[top + (height - top - side) // 2: top + (height - top - side) // 2 + side, x:x + side] = (200, 60, 60)
    return img


def decode_index(frame: np.ndarray) -> int:
    """Index written by ``pattern_frame`` (frame uint8 [H, W, 3], any size)."""
    h, w = frame.shape[:2]
    top = frame[: max(1, h // 2), :, :].astype(np.float32).mean(axis=(0, 2))
    value = 0
    for b in range(INDEX_BITS):
        x0, x1 = b * w // INDEX_BITS, (b + 1) * w // INDEX_BITS
        margin = (x1 - x0) // 4
        if top[x0 + margin: max(x0 + margin + 1, x1 - margin)].mean() > 127:
            value |= 1 << b
    return value


def is_flash(frame: np.ndarray) -> bool:
    """True when the bottom half of ``frame`` is (nearly) white."""
    h = frame.shape[0]
    return float(frame[h // 2 + 1:].mean()) > 200


def click_track(duration_s: float, sample_rate: int, click_times_s: Sequence[float] = (), channels: int = 1,
                tone_hz: float | None = None, burst_s: float = 0.005) -> np.ndarray:
    """float32 [C, S]: silence (or a 0.3 tone) with 2 kHz bursts of ``burst_s`` starting at each click time."""
    n = int(round(duration_s * sample_rate))
    t = np.arange(n) / sample_rate
    wave = 0.3 * np.sin(2 * np.pi * tone_hz * t) if tone_hz else np.zeros(n)
    for c in click_times_s:
        a = int(round(c * sample_rate))
        b = min(n, a + int(round(burst_s * sample_rate)))
        wave[a:b] = 0.8 * np.sin(2 * np.pi * 2000.0 * (np.arange(b - a) / sample_rate))
        if b > a:
            wave[a] = 0.8  # start on a peak so the onset is sharp
    return np.repeat(wave[None].astype(np.float32), channels, axis=0)


def find_clicks(wave, sample_rate: int, threshold: float = 0.25, min_gap_s: float = 0.05) -> list[float]:
    """Onset times (s) of bursts in ``wave`` [C, S] or [S] (first sample above ``threshold``)."""
    w = np.asarray(wave, dtype=np.float32)
    w = np.abs(w).max(axis=0) if w.ndim == 2 else np.abs(w)
    above = np.flatnonzero(w > threshold)
    onsets: list[float] = []
    last = -1e9
    for i in above:
        if i - last > min_gap_s * sample_rate:
            onsets.append(i / sample_rate)
        last = i
    return onsets


def _video_codec(ext: str, width: int, height: int) -> tuple[str, str, dict]:
    if ext == ".webm":
        return "libvpx-vp9", "yuv420p", {"deadline": "realtime", "cpu-used": "8", "crf": "30", "b": "0"}
    if ext == ".gif":
        return "gif", "rgb8", {}
    pix = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
    return "libx264", pix, {"preset": "veryfast", "crf": "12"}


def make_video(
    path,
    *,
    fps: float = 25.0,
    num_frames: int | None = None,
    duration_s: float | None = None,
    size: tuple[int, int] = (48, 96),
    flash_at_s: Sequence[float] = (),
    audio: str | np.ndarray | None = None,
    click_times_s: Sequence[float] = (),
    sample_rate: int = 16000,
    audio_channels: int = 1,
    rotation: int = 0,
    frame_times_s: Sequence[float] | None = None,
    gop: int | None = None,
    faststart: bool = False,
    sample_aspect: Fraction | None = None,
) -> Path:
    """Write a clip whose frame i shows index i; returns the path.

    ``fps`` may be 29.97 etc. (written as 30000/1001). ``frame_times_s`` gives explicit (VFR) frame
    times instead. ``audio``: None, "clicks" (bursts at ``click_times_s``), "tone", or float [C, S].
    ``flash_at_s``: the frame on screen at each of these times gets a white bottom half.
    ``rotation``: display-matrix rotation in degrees (counter-clockwise, FFmpeg's convention).
    ``sample_aspect``: pixel aspect ratio (anamorphic video: shown ``size[1] * sample_aspect`` wide).
    """
    import av

    path = Path(path)
    ext = path.suffix.lower()
    h, w = size
    rate = ntsc_rate(fps)
    if frame_times_s is None:
        if num_frames is None:
            num_frames = int(math.ceil((duration_s or 2.0) * float(rate) - 1e-6))
        frame_times = [i / rate for i in range(num_frames)]
    else:
        frame_times = [Fraction(t).limit_denominator(1000) for t in frame_times_s]
    last_frame_s = 1 / rate if frame_times_s is None else Fraction(round(1000 / float(rate)), 1000)
    end_s = float(frame_times[-1] + last_frame_s)
    if duration_s is None:
        duration_s = end_s
    if ext == ".webp":
        return _make_webp(path, frame_times, end_s, h, w, flash_at_s)
    codec, pix, opts = _video_codec(ext, w, h)
    if gop is not None:
        opts["g"] = str(gop)
        opts["keyint_min"] = str(gop) if codec == "libx264" else opts.get("keyint_min", "1")
    vfr = frame_times_s is not None
    if vfr and codec == "libx264":
        opts["bf"] = "0"
    container_opts = {"movflags": "+faststart"} if faststart else {}
    out = av.open(str(path), "w", options=container_opts)
    if codec == "gif":
        rate = Fraction(round(float(rate) * 100), 100)
    vs = out.add_stream(codec, rate=rate if not vfr else 1000, options=opts)
    vs.width, vs.height, vs.pix_fmt = w, h, pix
    tb = Fraction(1, 1000) if vfr else 1 / rate
    vs.codec_context.time_base = tb
    if rotation:
        vs.set_display_rotation(rotation)
    if sample_aspect is not None:
        vs.codec_context.sample_aspect_ratio = Fraction(sample_aspect)
    wave = None
    if audio is not None:
        if isinstance(audio, str):
            clicks = click_times_s if audio == "clicks" else ()
            tone = 440.0 if audio == "tone" else None
            wave = click_track(duration_s, sample_rate, clicks, audio_channels, tone_hz=tone)
        else:
            wave = np.asarray(audio, np.float32)
        acodec = "libopus" if ext in (".webm", ".ogg") else "aac"
        as_ = out.add_stream(acodec, rate=sample_rate, layout="mono" if wave.shape[0] == 1 else "stereo")
    flash_frames = set()
    for f in flash_at_s:
        idx = max(i for i, t in enumerate(frame_times) if float(t) <= f + 1e-9)
        flash_frames.add(idx)
    pts_list = [int(round(t / tb)) for t in frame_times]
    # packet durations for VFR (x264 does not know them): up to the next frame; the last one lasts 1/fps
    durations = {p: b - p for p, b in zip(pts_list, pts_list[1:] + [pts_list[-1] + int(round(last_frame_s / tb))])}

    def mux(packets):
        for packet in packets:
            if vfr and packet.pts in durations:
                packet.duration = durations[packet.pts]
            out.mux(packet)

    for i, t in enumerate(frame_times):
        frame = av.VideoFrame.from_ndarray(pattern_frame(i, float(t), h, w, i in flash_frames), format="rgb24")
        frame.pts = pts_list[i]
        frame.time_base = tb
        mux(vs.encode(frame))
    mux(vs.encode())
    if wave is not None:
        chunk = 1024
        for a in range(0, wave.shape[1], chunk):
            part = np.ascontiguousarray(wave[:, a:a + chunk])
            af = av.AudioFrame.from_ndarray(part, format="fltp", layout="mono" if wave.shape[0] == 1 else "stereo")
            af.sample_rate = sample_rate
            af.pts = a
            af.time_base = Fraction(1, sample_rate)
            for packet in as_.encode(af):
                out.mux(packet)
        for packet in as_.encode():
            out.mux(packet)
    out.close()
    return path


def _make_webp(path: Path, frame_times, end_s: float, h: int, w: int, flash_at_s) -> Path:
    from PIL import Image

    times = [float(t) for t in frame_times] + [end_s]
    flashes = {max(i for i, t in enumerate(times[:-1]) if t <= f + 1e-9) for f in flash_at_s}
    images = [Image.fromarray(pattern_frame(i, times[i], h, w, i in flashes)) for i in range(len(times) - 1)]
    durations = [int(round((times[i + 1] - times[i]) * 1000)) for i in range(len(images))]
    images[0].save(path, format="WEBP", save_all=True, append_images=images[1:], duration=durations, loop=0,
                   lossless=True)
    return path


def make_truncated(src, dst, fraction: float = 0.5) -> Path:
    """Copy the first ``fraction`` of ``src``'s bytes to ``dst``."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * fraction)])
    return Path(dst)


def make_not_video(path) -> Path:
    """A text file with a video extension."""
    Path(path).write_text("this is a shopping list, not a video\n" * 20)
    return Path(path)


def make_random_bytes(path, n: int = 4096, seed: int = 0) -> Path:
    Path(path).write_bytes(np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes())
    return Path(path)


def make_audio_only(path, duration_s: float = 1.0, sample_rate: int = 16000) -> Path:
    """An AAC-in-MP4 file with no video stream."""
    import av

    out = av.open(str(path), "w", format="mp4")
    st = out.add_stream("aac", rate=sample_rate, layout="mono")
    wave = click_track(duration_s, sample_rate, (0.5,))
    af = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
    af.sample_rate, af.pts, af.time_base = sample_rate, 0, Fraction(1, sample_rate)
    for packet in list(st.encode(af)) + list(st.encode()):
        out.mux(packet)
    out.close()
    return Path(path)


def make_zero_frames(path) -> Path:
    """A Matroska file with a video stream header and no frames."""
    import av

    out = av.open(str(path), "w", format="matroska")
    vs = out.add_stream("libx264", rate=25)
    vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
    out.start_encoding()
    out.close()
    return Path(path)


def make_still_image(path) -> Path:
    """A PNG (whatever the extension says)."""
    from PIL import Image

    Image.fromarray(pattern_frame(3, 0.0)).save(path, format="PNG")
    return Path(path)


def file_size(path) -> int:
    return os.path.getsize(path)


# --------------------------------------------------------------------------------------------
# Synthetic talking face for the lip tests: the astronaut from scikit-image with a jaw warp
# (the training data renders its own faces: vssflow_core.data.faces).
# Landmarks of skimage.data.astronaut() (512x512) measured with mediapipe 0.10.21 face mesh.
_ASTRO_LIP_TOP_INNER = (223.5, 143.2)
_ASTRO_CHIN = 152.0 + 25.4  # y of landmark 152 (177.4)
_ASTRO_MOUTH_HALF_WIDTH = (245.0 - 201.8) / 2
_ASTRO_FACE_BOX = (140, 40, 176)  # x0, y0, side of the square face crop used for rendering


def render_talking_face(openings, size: int = 256, canvas=None, position=(0, 0)) -> np.ndarray:
    """Frames of a real face (``skimage.data.astronaut()``) whose mouth opens/closes over time.

    Args:
        openings: ``[T]`` mouth opening per frame: -1 = lips pressed closed, 0 = the photo's
            slight smile, 1 = wide open (jaw dropped ~17 % of the face height).
        size: side in px of the square face image.
        canvas: optional ``(H, W)``: paste the face into a grey canvas of that size at ``position``
            (x, y) px (to test small faces / several people).

    Returns:
        uint8 ``[T, size, size, 3]`` (or ``[T, H, W, 3]`` with a canvas). Measured with face mesh:
        inner_open ~0.06 IOD at -1, ~0.17 at 0, ~0.5 at 1 (monotonic).
    """
    import cv2
    from skimage import data as skdata

    img = skdata.astronaut()
    x0, y0, side = _ASTRO_FACE_BOX
    sc = size / side
    base = cv2.resize(np.ascontiguousarray(img[y0:y0 + side, x0:x0 + side]), (size, size),
                      interpolation=cv2.INTER_AREA).astype(np.float32)
    ysplit = (_ASTRO_LIP_TOP_INNER[1] - y0) * sc
    xc = (_ASTRO_LIP_TOP_INNER[0] - x0) * sc
    chin = (_ASTRO_CHIN - y0) * sc
    half = _ASTRO_MOUTH_HALF_WIDTH * sc
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    prof = (np.exp(-((xx - xc) / (half * 0.62)) ** 2) * np.clip((yy - ysplit) / (2.0 * sc), 0, 1)
            * np.clip(1 - (yy - chin) / (0.6 * (chin - ysplit)), 0, 1))
    cav = np.array([45, 18, 22], np.float32)
    op = np.asarray(openings, dtype=np.float64).reshape(-1)
    if canvas is None:
        out = np.empty((op.shape[0], size, size, 3), np.uint8)
    else:
        ch, cw = canvas
        px, py = position
        if px < 0 or py < 0 or px + size > cw or py + size > ch:
            raise ValueError(f"render_talking_face: a {size}px face at {position} does not fit a {canvas} canvas.")
        out = np.full((op.shape[0], ch, cw, 3), 128, np.uint8)
    for t, o in enumerate(op):
        d = float(np.clip(o, -1.5, 1.2)) * (30.0 if o > 0 else 12.0) * sc / (256 / 176)
        src_y = yy - d * prof
        f = cv2.remap(base, xx, src_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if d > 0:
            a = (np.clip(ysplit - src_y, 0, 1) * (yy >= ysplit))[..., None]
            f = f * (1 - a) + cav * a
        f = np.clip(f + 0.5, 0, 255).astype(np.uint8)
        if canvas is None:
            out[t] = f
        else:
            out[t, py:py + size, px:px + size] = f
    return out
