"""Plain audio files: save WAV/FLAC atomically (reading any audio or video file is ``media.video.read_audio``).

Letters: C channels, S samples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vssflow_core.errors import VSSFlowError
from vssflow_core.media.files import atomic_output

__all__ = ["save_audio"]

_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16")}
_SUBTYPES = {"PCM_16", "PCM_24", "FLOAT"}


# 5.1 -> stereo (ITU-R BS.775): L = FL + 0.707 FC + 0.707 BL, R likewise, LFE dropped; scaled so a
# full-scale signal in every channel stays at full scale
_ITU_51_TO_STEREO = np.array([[1.0, 0.0, 0.7071, 0.0, 0.7071, 0.0],
                              [0.0, 1.0, 0.7071, 0.0, 0.0, 0.7071]], np.float32) / (1.0 + 2 * 0.7071)


def audio_as_array(audio, what: str = "audio", max_channels: int = 2, downmix: bool = False) -> np.ndarray:
    """Audio [S], [C, S] or [1, C, S] (torch or numpy) -> float32 numpy [C, S], finite, 1 <= C <= max_channels.

    ``downmix``: more than ``max_channels`` channels are mixed down instead of refused: 5.1 (six
    channels in FFmpeg's order FL FR FC LFE BL BR) to stereo by the ITU-R BS.775 coefficients when
    two channels are allowed, anything else averaged to mono. ``what`` names the input in the
    VSSFlowError raised for a wrong shape, no samples, or NaN/Inf.
    """
    if hasattr(audio, "detach"):
        audio = audio.detach().to("cpu").float().numpy()
    arr = np.asarray(audio, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 1:
        arr = arr[None]
    if downmix and arr.ndim == 2 and arr.shape[0] > max_channels:
        if arr.shape[0] == 6 and max_channels >= 2:
            arr = (_ITU_51_TO_STEREO @ arr).astype(np.float32)
        else:
            arr = arr.mean(axis=0, keepdims=True)
    if arr.ndim != 2 or not 1 <= arr.shape[0] <= max_channels or arr.shape[1] == 0:
        raise VSSFlowError(
            f"{what} has shape {tuple(np.shape(audio))}; expected [S], [C, S] or [1, C, S] with C = 1.."
            f"{max_channels} channels and S > 0 samples"
        )
    if not np.isfinite(arr).all():
        raise VSSFlowError(f"{what} contains NaN or infinite samples; check the generator's output")
    return arr


def save_audio(path, wave, sample_rate: int, subtype: str | None = None) -> Path:
    """Save float audio [S], [C, S] or [1, C, S] (-1..1, torch or numpy) at ``sample_rate`` Hz.

    Format from the extension (.wav or .flac); ``subtype`` "PCM_16" (default), "PCM_24" or "FLOAT"
    (WAV only). Integer formats clip to [-1, 1]. Written atomically; an existing file is refused.
    """
    import soundfile as sf

    path = Path(path)
    ext = path.suffix.lower()
    if ext not in _FORMATS:
        raise VSSFlowError(f"cannot save audio as {path}: use a .wav or .flac file name")
    if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or int(sample_rate) <= 0:
        raise VSSFlowError(f"sample_rate={sample_rate!r} must be a positive integer (Hz)")
    fmt, default_subtype = _FORMATS[ext]
    subtype = subtype or default_subtype
    if subtype not in _SUBTYPES or (fmt == "FLAC" and subtype == "FLOAT"):
        raise VSSFlowError(f"subtype={subtype!r} for {ext}; use PCM_16 or PCM_24 (or FLOAT for .wav)")
    arr = audio_as_array(wave, f"audio for {path}", max_channels=8)
    if subtype != "FLOAT":
        arr = np.clip(arr, -1.0, 1.0)
    with atomic_output(path) as tmp:
        sf.write(str(tmp), arr.T, int(sample_rate), format=fmt, subtype=subtype)
    return path
