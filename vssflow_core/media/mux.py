"""Audio out: put generated audio into a video, copying the video stream bit for bit.

Letters: C audio channels, S audio samples.

The video packets are copied (no re-encode, same bytes, same timestamps, so the frame count never
changes). A stream the output container cannot hold (cinepak or MS-MPEG4 in MP4, H.264 in WebM) is
re-encoded instead, frame by frame at its own timestamps (H.264; VP9 for WebM), with a warning. The
audio is encoded as AAC for MP4/MOV or Opus for WebM/MKV at 48 kHz, starting at the first video
frame. ``mode="mix"`` adds the file's own audio track; gains are linear amplitude factors.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from vssflow_core.errors import VSSFlowError
from vssflow_core.media.encode import (
    AUDIO_CODECS,
    VIDEO_CODECS,
    Interleaver,
    add_audio_stream,
    audio_packets,
    fit_length,
    resample_array,
    write_video,
)
from vssflow_core.media.audio_io import audio_as_array
from vssflow_core.media.files import atomic_output, unique_path
from vssflow_core.media.probe import _av
from vssflow_core.media.video import probe_video, read_audio, read_frames

__all__ = ["mux_audio"]

log = logging.getLogger(__name__)
AUDIBLE_CLIP_PEAK = 1.05  # clipping a peak up to 5 % over full scale is logged at debug level only


def _mix_tracks(generated: np.ndarray, original: np.ndarray) -> np.ndarray:
    """Sum two [C, S] tracks; mono meets stereo as stereo; the longer length wins."""
    original = audio_as_array(original, "the video's own audio", downmix=True)  # 5.1 -> stereo, as the generated track
    channels = max(generated.shape[0], original.shape[0])
    g = np.repeat(generated, channels // generated.shape[0], axis=0)
    o = np.repeat(original, channels // original.shape[0], axis=0)
    n = max(g.shape[1], o.shape[1])
    out = np.zeros((channels, n), np.float32)
    out[:, : g.shape[1]] += g
    out[:, : o.shape[1]] += o
    return out


class _CopyRefused(Exception):
    """The output container cannot hold the source's video stream as it is (e.g. cinepak in MP4)."""


def _write(tmp: Path, video_path, wave: np.ndarray, audio_codec: str, sr_out: int, pts0: int,
           reencode_ext: str | None, rotation: int = 0, metadata: dict[str, str] | None = None) -> None:
    """Write ``tmp``: the video stream of ``video_path`` (copied, or re-encoded with the codec of
    ``VIDEO_CODECS[reencode_ext]`` at the source's timestamps, turned upright by ``rotation`` degrees
    counter-clockwise) plus ``wave`` [C, S] at ``sr_out`` Hz whose first sample is at ``pts0``
    (samples); ``metadata`` becomes container tags. Raises ``_CopyRefused`` when copying is impossible."""
    av = _av()

    # MP4/MOV keep only their standard tags unless told to write custom ones (a ComfyUI workflow)
    options = {"movflags": "use_metadata_tags"} if metadata and Path(tmp).suffix.lower() in (".mp4", ".mov", ".m4v") else {}
    with av.open(str(video_path), mode="r") as src, av.open(str(tmp), mode="w", options=options) as out:
        out.metadata.update(metadata or {})
        in_v = [s for s in src.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)][0]
        if reencode_ext is None:
            try:
                out_v = out.add_stream_from_template(in_v)
            except (av.error.FFmpegError, ValueError) as exc:
                raise _CopyRefused(f"{Path(tmp).suffix or 'this'} container cannot hold {in_v.codec_context.name} "
                                   f"video ({exc})") from None
        else:
            out_v = _encoder_like(out, in_v, reencode_ext, rotation)
        out_a = add_audio_stream(out, audio_codec, sr_out, wave.shape[0])
        inter = Interleaver(out, audio_packets(out_a, wave, sr_out, pts0=pts0))
        try:
            if reencode_ext is None:
                _copy_packets(src, in_v, out, out_v, inter)
            else:
                _reencode_frames(src, in_v, out, out_v, inter, rotation)
            inter.finish()
        except av.error.FFmpegError as exc:
            if reencode_ext is None:
                raise _CopyRefused(f"the container cannot hold {in_v.codec_context.name} video ({exc})") from None
            raise


def _copy_packets(src, in_v, out, out_v, inter: Interleaver) -> None:
    """Copy ``in_v``'s packets unchanged (same bytes and timestamps) into ``out_v``."""
    for packet in src.demux(in_v):
        if packet.size == 0:
            continue  # demuxer's end-of-stream marker (Matroska packets may lack dts: keep them)
        ts = packet.dts if packet.dts is not None else packet.pts
        t = float(ts * packet.time_base) if ts is not None else 0.0
        packet.stream = out_v
        out.mux(packet)
        inter.until(t)


def _encoder_like(out, in_v, ext: str, rotation: int = 0):
    """A video encoder stream in ``out`` (codec of ``VIDEO_CODECS[ext]``) with ``in_v``'s size as
    displayed after ``rotation`` (made even) and its time base, so decoded frames keep their timestamps."""
    from fractions import Fraction

    codec, pix_fmt, options = VIDEO_CODECS[ext]
    rate = in_v.average_rate or in_v.guessed_rate or Fraction(25)
    stream = out.add_stream(codec, rate=rate, options=dict(options))
    width, height = in_v.codec_context.width, in_v.codec_context.height
    if rotation in (90, 270):
        width, height = height, width
    stream.width, stream.height = width // 2 * 2, height // 2 * 2
    stream.pix_fmt = pix_fmt
    stream.codec_context.time_base = in_v.time_base
    return stream


def _reencode_frames(src, in_v, out, out_v, inter: Interleaver, rotation: int = 0) -> None:
    """Decode every frame of ``in_v`` and encode it into ``out_v`` at its own timestamp, turned
    upright (the rotation metadata of the source is not carried over, so the pixels are rotated)."""
    av = _av()

    last_pts = None
    for frame in src.decode(in_v):
        if frame.pts is None or (last_pts is not None and frame.pts <= last_pts):
            continue  # a frame without a usable timestamp cannot be placed; the muxer needs rising pts
        last_pts = frame.pts
        if rotation:
            upright = np.ascontiguousarray(np.rot90(frame.to_ndarray(format="rgb24"), k=rotation // 90))
            frame_upright = av.VideoFrame.from_ndarray(upright, format="rgb24")
            image = frame_upright.reformat(width=out_v.width, height=out_v.height, format=out_v.pix_fmt)
        else:
            image = frame.reformat(width=out_v.width, height=out_v.height, format=out_v.pix_fmt)
        image.pts, image.time_base = frame.pts, in_v.time_base
        for packet in out_v.encode(image):
            out.mux(packet)
        inter.until(float(frame.pts * in_v.time_base))
    for packet in out_v.encode(None):
        out.mux(packet)


def mux_audio(
    video_path,
    audio,
    sample_rate: int,
    out_path,
    mode: str = "replace",
    audio_gain: float = 1.0,
    original_gain: float = 1.0,
    length: str = "pad",
    on_exists: str = "error",
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write ``out_path``: the video stream of ``video_path`` copied unchanged plus ``audio``.

    A video stream that the output container cannot hold is re-encoded instead (H.264; VP9 for
    WebM), keeping every frame's timestamp, and a warning is logged. An animated GIF / WebP (no
    stream to copy) is encoded first, frame by frame, in a temporary file next to ``out_path``.

    audio: float [S], [C, S] or [1, C, S] (C >= 1; more than 2 are folded down, 5.1 to stereo by ITU-R BS.775) at ``sample_rate`` Hz, torch or numpy; its
    t = 0 is the first video frame. mode: "replace" (drop the original track) or "mix" (add it,
    scaled by ``original_gain``; ``audio_gain`` scales the new audio). length: "pad" (pad with silence
    to the video's duration) or "trim" (only cut what runs past the video). The output container
    follows ``out_path``'s extension (.mp4/.mov/.m4v -> AAC, .mkv/.webm -> Opus, 48 kHz). Written to a
    temporary file and renamed; an existing ``out_path`` is refused (``on_exists="error"``) or a free
    ``name_00001_.ext`` is used instead (``on_exists="counter"``). ``metadata``: container tags to
    write (e.g. ComfyUI's ``prompt`` and ``workflow`` JSON). Returns the path written.
    """
    av = _av()

    if mode not in ("replace", "mix"):
        raise VSSFlowError(f"mode={mode!r}; expected 'replace' (new audio only) or 'mix' (new + original audio)")
    if length not in ("pad", "trim"):
        raise VSSFlowError(f"length={length!r}; expected 'pad' (pad with silence and trim) or 'trim' (trim only)")
    if on_exists not in ("error", "counter"):
        raise VSSFlowError(f"on_exists={on_exists!r}; expected 'error' or 'counter'")
    for name, gain in (("audio_gain", audio_gain), ("original_gain", original_gain)):
        if not np.isfinite(gain) or gain < 0:
            raise VSSFlowError(f"{name}={gain!r} must be a finite linear gain >= 0 (1.0 = unchanged)")
    if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or int(sample_rate) <= 0:
        raise VSSFlowError(f"sample_rate={sample_rate!r} must be a positive integer (Hz)")
    out_path = Path(out_path)
    ext = out_path.suffix.lower()
    if ext not in AUDIO_CODECS:
        raise VSSFlowError(
            f"cannot mux into {out_path}: extension {ext!r} is not supported; use one of {sorted(AUDIO_CODECS)}"
        )
    if out_path.exists():
        if on_exists == "error":
            raise VSSFlowError(f"output file {out_path} already exists; not overwriting it (use on_exists='counter')")
        out_path = unique_path(out_path.parent, out_path.stem, ext)
    if Path(video_path).resolve() == out_path.resolve():
        raise VSSFlowError(f"out_path {out_path} is the input video; choose another name")

    info = probe_video(video_path)
    if info.backend != "pyav":  # an animated GIF / WebP has no stream to copy: encode its frames first
        encoded = unique_path(out_path.parent, f".{out_path.stem}_frames", ext)
        try:
            write_video(encoded, read_frames(video_path, None).frames, info.fps)
            return mux_audio(encoded, audio, sample_rate, out_path, mode=mode, audio_gain=audio_gain,
                             original_gain=original_gain, length=length, on_exists=on_exists, metadata=metadata)
        finally:
            encoded.unlink(missing_ok=True)
    codec, sr_out = AUDIO_CODECS[ext]
    wave = audio_as_array(audio, "generated audio", downmix=True) * np.float32(audio_gain)
    wave = resample_array(wave, int(sample_rate), sr_out)
    if mode == "mix":
        original = read_audio(video_path, 0.0, info.duration_s) if info.has_audio else None
        if original is None:
            log.info("%s has no audio track; mix mode writes the generated audio alone", video_path)
        else:
            orig_wave, orig_sr = original
            orig = resample_array(orig_wave.numpy(), int(orig_sr), sr_out) * np.float32(original_gain)
            wave = _mix_tracks(wave, orig)
    target = int(round(info.duration_s * sr_out))
    wave = fit_length(wave, target, length)
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    if peak > 1.0:  # a few % over is resampling overshoot of audio limited to full scale: not worth a warning
        (log.warning if peak > AUDIBLE_CLIP_PEAK else log.debug)(
            "mux_audio: peak %.2f > 1 after gains; clipping to [-1, 1] (lower the audio / original gain)", peak)
        wave = np.clip(wave, -1.0, 1.0)

    pts0 = int(round(info.start_time_s * sr_out))
    with atomic_output(out_path) as tmp:
        try:
            _write(tmp, video_path, wave, codec, sr_out, pts0, reencode_ext=None, metadata=metadata)
        except _CopyRefused as refused:
            log.warning("mux_audio: %s; re-encoding the video with %s instead (slower; the frames and their "
                        "timestamps are kept)", refused, VIDEO_CODECS[ext][0])
            try:
                _write(tmp, video_path, wave, codec, sr_out, pts0, reencode_ext=ext, rotation=info.rotation,
                       metadata=metadata)
            except av.error.FFmpegError as exc:
                raise VSSFlowError(f"cannot write the video of {video_path} into {out_path}, neither copied "
                                   f"({refused}) nor re-encoded (FFmpeg: {exc}); convert it to H.264 .mp4 first") from None
    return out_path
