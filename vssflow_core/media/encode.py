"""Video out: encode frames (+ audio) with PyAV, and the audio-encoding helpers ``mux`` shares.

Letters: F frames, H x W pixels, C audio channels, S audio samples.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from vssflow_core.errors import VSSFlowError
from vssflow_core.media.audio_io import audio_as_array
from vssflow_core.media.files import atomic_output
from vssflow_core.media.probe import _av

__all__ = ["write_video", "frame_rate_fraction", "AUDIO_CODECS", "VIDEO_CODECS"]


# container extension -> (audio encoder, sample rate Hz); the usual pairing of each container
AUDIO_CODECS = {
    ".mp4": ("aac", 48000), ".m4v": ("aac", 48000), ".mov": ("aac", 48000),
    ".mkv": ("libopus", 48000), ".webm": ("libopus", 48000),
}
# container extension -> (video encoder, pixel format, options) for write_video
VIDEO_CODECS = {
    ".mp4": ("libx264", "yuv420p", {"crf": "18", "preset": "medium"}),
    ".m4v": ("libx264", "yuv420p", {"crf": "18", "preset": "medium"}),
    ".mov": ("libx264", "yuv420p", {"crf": "18", "preset": "medium"}),
    ".mkv": ("libx264", "yuv420p", {"crf": "18", "preset": "medium"}),
    ".webm": ("libvpx-vp9", "yuv420p", {"crf": "32", "b": "0", "deadline": "good", "cpu-used": "4"}),
}
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)


def frame_rate_fraction(fps) -> Fraction:
    """fps as an exact fraction; 23.976/29.97/59.94 become the NTSC rates n*1000/1001."""
    if isinstance(fps, Fraction):
        return fps
    value = float(fps)
    if not math.isfinite(value) or value <= 0 or value > 1000:
        raise VSSFlowError(f"fps={fps!r} must be in (0, 1000] frames per second")
    for base in (24, 30, 48, 60, 120, 240):
        if abs(value - base * 1000 / 1001) < 2e-3:
            return Fraction(base * 1000, 1001)
    return Fraction(value).limit_denominator(1001)


def fit_length(wave: np.ndarray, target: int, length: str) -> np.ndarray:
    """Trim ``wave`` [C, S] to ``target`` samples; with length="pad" also pad it with silence."""
    if length not in ("pad", "trim"):
        raise VSSFlowError(f"length={length!r}; expected 'pad' (pad with silence and trim) or 'trim' (trim only)")
    if wave.shape[1] > target:
        return wave[:, :target]
    if length == "pad" and wave.shape[1] < target:
        return np.pad(wave, ((0, 0), (0, target - wave.shape[1])))
    return wave


def resample_array(wave: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """float32 [C, S] at sr_in -> [C, round(S * sr_out / sr_in)] at sr_out."""
    if sr_in == sr_out:
        return wave
    import torch

    from vssflow_core.audio.resample import resample

    out = resample(torch.from_numpy(np.ascontiguousarray(wave)), int(sr_in), int(sr_out)).numpy()
    return out[:, : int(round(wave.shape[1] * sr_out / sr_in))]


def add_audio_stream(container, codec: str, sample_rate: int, channels: int):
    """Add an audio stream (mono or stereo) to an output container."""
    stream = container.add_stream(codec, rate=sample_rate, layout="mono" if channels == 1 else "stereo")
    if codec == "aac":
        stream.codec_context.bit_rate = 96000 * channels
    return stream


def audio_packets(stream, wave: np.ndarray, sample_rate: int, pts0: int = 0, chunk: int = 8192) -> Iterator:
    """Encode float32 [C, S] at ``sample_rate`` into ``stream``'s packets (pts in 1/sample_rate from ``pts0``)."""
    av = _av()

    layout = "mono" if wave.shape[0] == 1 else "stereo"
    for a in range(0, wave.shape[1], chunk):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, a:a + chunk]), format="fltp", layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = pts0 + a
        frame.time_base = Fraction(1, sample_rate)
        yield from stream.encode(frame)
    yield from stream.encode(None)


class Interleaver:
    """Mux audio packets between video packets so the muxer never buffers a whole stream."""

    def __init__(self, container, packets: Iterator, lead_s: float = 0.5):
        self.container = container
        self.packets = packets
        self.lead_s = lead_s
        self.pending = None
        self.done = False

    def until(self, time_s: float) -> None:
        """Mux the pending audio packets up to ``time_s + lead_s`` (s)."""
        while not self.done:
            if self.pending is None:
                self.pending = next(self.packets, None)
                if self.pending is None:
                    self.done = True
                    return
            pkt = self.pending
            t = float(pkt.pts * pkt.time_base) if pkt.pts is not None and pkt.time_base else -math.inf
            if t > time_s + self.lead_s:
                return
            self.container.mux(pkt)
            self.pending = None

    def finish(self) -> None:
        """Mux every audio packet left."""
        self.until(math.inf)


def _frame_uint8(frame) -> np.ndarray:
    if hasattr(frame, "detach"):
        import torch

        frame = frame.detach().to("cpu")
        if frame.is_floating_point():
            frame = (frame.clamp(0, 1) * 255.0).round()
        frame = frame.to(dtype=torch.uint8).numpy()
    arr = np.asarray(frame)
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating):
            arr = np.clip(np.round(arr * 255.0), 0, 255)
        arr = arr.astype(np.uint8)
    return arr


def write_video(path, frames, fps, audio=None, sample_rate: int | None = None, crf: int | None = None) -> Path:
    """Encode frames [F, H, W, 3] (uint8, or float 0..1; numpy or torch) at ``fps`` to ``path``.

    H.264 yuv420p for .mp4/.mov/.mkv (VP9 for .webm); odd sizes are padded to even by repeating the
    last row/column. Optional audio [C, S] or [S] at ``sample_rate`` Hz is encoded as AAC (Opus for
    .webm/.mkv), trimmed or padded to exactly F / fps seconds. Written atomically; an existing ``path``
    is refused. Returns the path.
    """
    av = _av()

    path = Path(path)
    ext = path.suffix.lower()
    if ext not in VIDEO_CODECS:
        raise VSSFlowError(f"cannot write video {path}: extension {ext!r}; use one of {sorted(VIDEO_CODECS)}")
    shape = tuple(frames.shape)
    if len(shape) != 4 or shape[0] == 0 or shape[3] != 3:
        raise VSSFlowError(f"frames for {path} have shape {shape}; expected [F, H, W, 3] with F >= 1")
    rate = frame_rate_fraction(fps)
    count, height, width = shape[0], shape[1], shape[2]
    out_w, out_h = width + width % 2, height + height % 2
    wave = None
    if audio is not None:
        if not sample_rate or int(sample_rate) <= 0:
            raise VSSFlowError(f"audio for {path} needs sample_rate (Hz), got {sample_rate!r}")
        wave = audio_as_array(audio, f"audio for {path}", downmix=True)
        acodec, sr_out = AUDIO_CODECS[ext]
        if acodec == "aac" and int(sample_rate) in _AAC_RATES:
            sr_out = int(sample_rate)
        wave = resample_array(wave, int(sample_rate), sr_out)
        wave = fit_length(wave, int(round(count / rate * sr_out)), "pad")
    vcodec, pix_fmt, options = VIDEO_CODECS[ext]
    options = dict(options)
    if crf is not None:
        options["crf"] = str(int(crf))
    with atomic_output(path) as tmp:
        with av.open(str(tmp), mode="w") as out:
            vs = out.add_stream(vcodec, rate=rate, options=options)
            vs.width, vs.height, vs.pix_fmt = out_w, out_h, pix_fmt
            vs.codec_context.time_base = 1 / rate
            inter = None
            if wave is not None:
                astream = add_audio_stream(out, acodec, sr_out, wave.shape[0])
                inter = Interleaver(out, audio_packets(astream, wave, sr_out))
            for i in range(count):
                img = _frame_uint8(frames[i])
                if img.shape != (height, width, 3):
                    raise VSSFlowError(f"frame {i} for {path} has shape {img.shape}; expected {(height, width, 3)}")
                if (out_h, out_w) != (height, width):
                    img = np.pad(img, ((0, out_h - height), (0, out_w - width), (0, 0)), mode="edge")
                vf = av.VideoFrame.from_ndarray(img, format="rgb24")
                vf.pts = i
                vf.time_base = 1 / rate
                for packet in vs.encode(vf):
                    out.mux(packet)
                if inter is not None:
                    inter.until(float(i / rate))
            for packet in vs.encode(None):
                out.mux(packet)
            if inter is not None:
                inter.finish()
    return path
