"""Conversions between ComfyUI values and the library's.

IMAGE: torch float32 [F, H, W, 3] in 0..1 <-> numpy uint8 [F, H, W, 3].
AUDIO: {"waveform": [B, C, S] float32, "sample_rate": int} <-> ([C, S], sample_rate).
VIDEO: a ``comfy_api`` video object -> a file path (lazy, stream-copyable) or frames + fps + audio.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from vssflow_core.errors import VSSFlowError

from ._comfy import InputImpl

CONVERT_CHUNK_FRAMES = 32  # IMAGE -> uint8 conversion works on this many frames at a time


def image_to_uint8(images, node: str) -> np.ndarray:
    """ComfyUI IMAGE [F, H, W, C] float 0..1 -> uint8 [F, H, W, 3] (alpha dropped)."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[-1] not in (3, 4):
        shape = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise VSSFlowError(f"{node}: images must be an IMAGE batch [frames, height, width, 3], got {shape}; "
                           "connect the IMAGE output of a loader or a video node")
    if images.shape[0] == 0:
        raise VSSFlowError(f"{node}: the IMAGE batch has 0 frames; check the loader's start/duration window")
    out = np.empty((*images.shape[:3], 3), np.uint8)
    for first in range(0, images.shape[0], CONVERT_CHUNK_FRAMES):  # a few frames at a time: memory stays flat
        chunk = images[first:first + CONVERT_CHUNK_FRAMES, ..., :3]
        if chunk.is_floating_point() and not torch.isfinite(chunk).all():
            raise VSSFlowError(f"{node}: the IMAGE batch contains NaN or infinite values (the node before it "
                               "produced broken frames); check that node's output")
        out[first:first + len(chunk)] = (chunk.float().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().numpy()
    return out


def uint8_to_image(frames: np.ndarray) -> torch.Tensor:
    """uint8 [F, H, W, 3] -> ComfyUI IMAGE float32 [F, H, W, 3] in 0..1 (one float32 copy: the
    division is in place, so the peak is the uint8 frames plus 4 bytes per value)."""
    return torch.from_numpy(np.ascontiguousarray(frames)).to(torch.float32).div_(255.0)


def audio_dict(wave: torch.Tensor, sample_rate: int) -> dict:
    """[C, S] or [B, C, S] -> ComfyUI AUDIO."""
    wave = torch.as_tensor(wave, dtype=torch.float32)
    if wave.dim() == 2:
        wave = wave[None]
    return {"waveform": wave.contiguous(), "sample_rate": int(sample_rate)}


def audio_item(audio: dict, node: str, index: int = 0) -> tuple[torch.Tensor, int]:
    """ComfyUI AUDIO -> (item ``index`` of the batch [C, S], sample_rate)."""
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise VSSFlowError(f"{node}: expected an AUDIO value {{'waveform': [B, C, S], 'sample_rate': int}}, got "
                           f"{type(audio).__name__}")
    wave = torch.as_tensor(audio["waveform"], dtype=torch.float32)
    if wave.dim() == 2:
        wave = wave[None]
    if wave.dim() != 3 or wave.shape[-1] == 0:
        raise VSSFlowError(f"{node}: AUDIO waveform must be [B, C, S] with samples, got {list(wave.shape)}")
    if not 0 <= index < wave.shape[0]:
        raise VSSFlowError(f"{node}: variation {index} does not exist; the AUDIO batch has {wave.shape[0]} "
                           f"item(s): choose 0..{wave.shape[0] - 1}")
    return wave[index], int(audio["sample_rate"])


def warn_if_both(images, video, node: str) -> None:
    """Warn (ComfyUI's console) when IMAGE frames and a VIDEO are both connected: the VIDEO is used."""
    if images is not None and video is not None:
        import warnings

        warnings.warn(f"{node}: both IMAGE frames and a VIDEO are connected; using the VIDEO (disconnect one of "
                      "them to make the choice explicit)", stacklevel=2)


def video_file(video) -> str | None:
    """The file behind a VIDEO value when it has one (a loaded file), else None."""
    # Only a VIDEO made from a file has one. For other kinds (core CreateVideo's components)
    # ComfyUI's default get_stream_source() encodes to memory and can fail ("Could not determine
    # output format"), so it is not asked; their frames come from video_components().
    # A VIDEO trimmed or edited after loading (core Trim Video / Video Slice) still streams the whole
    # file, so it is read through get_components(), which applies the trim (newer ComfyUI only).
    if not isinstance(video, InputImpl.VideoFromFile) or video_is_edited(video):
        return None
    try:
        source = video.get_stream_source()
    except (ValueError, OSError):
        return None
    return source if isinstance(source, str) else None


def video_is_edited(video) -> bool:
    """True when a VIDEO carries a trim window or frame edits that its stream source does not hold."""
    trim = getattr(video, "get_active_trim_window", None)
    edits = getattr(video, "has_pending_frame_edits", None)
    try:
        trimmed = trim is not None and any(float(x) != 0.0 for x in trim())
        return trimmed or (edits is not None and bool(edits()))
    except (ValueError, OSError, TypeError):
        return True  # unknown: take the frames get_components() gives, which are always right


def video_components(video, node: str):
    """A VIDEO value -> (frames uint8 [F, H, W, 3], fps, (audio [C, S], sample_rate) | None)."""
    if not hasattr(video, "get_components"):
        raise VSSFlowError(f"{node}: expected a VIDEO value, got {type(video).__name__}")
    comp = video.get_components()
    frames = image_to_uint8(comp.images, node)
    fps = float(Fraction(comp.frame_rate)) if not isinstance(comp.frame_rate, float) else comp.frame_rate
    audio = audio_item(comp.audio, node) if comp.audio is not None else None
    return frames, fps, audio


@dataclass
class FrameSource:
    """What a node reads its frames from: ``path`` of a file-backed VIDEO (read by the library in
    windows), else ``frames`` uint8 [F, H, W, 3] at ``fps`` (Hz) with the VIDEO's own ``audio``
    ``(wave [C, S], sample_rate)`` or None."""

    path: str | None = None
    frames: Any = None
    fps: float = 0.0
    audio: Any = None


def frame_source(images, fps, video, node: str, missing: str) -> FrameSource:
    """The frames a node works on: a connected VIDEO wins over IMAGE frames (with a warning when both
    are connected); ``missing`` is the error's fix when neither is connected."""
    warn_if_both(images, video, node)
    if video is not None:
        path = video_file(video)
        if path is not None:
            return FrameSource(path=path)
        frames, video_fps, audio = video_components(video, node)
        return FrameSource(frames=frames, fps=video_fps, audio=audio)
    if images is not None:
        return FrameSource(frames=image_to_uint8(images, node), fps=float(fps))
    raise VSSFlowError(f"{node}: {missing}")
