"""Voice front-end: a reference recording -> a 256-d speaker embedding (or None).

Uses resemblyzer's pretrained speaker encoder (weights ship inside the wheel; 256-d, L2-normalised,
16 kHz input) for the embedded model. The official checkpoint was trained on RawNet3 embeddings
(``features/official``); both are 256-d, which is the ``ref_proj`` input size.

Preparation (own implementation): any channel count -> mono mean, any rate -> 16 kHz
(torchaudio's windowed-sinc resampler), silence check, webrtcvad speech detection (30 ms frames),
non-speech longer than 0.3 s removed, loudness normalised to -30 dBFS.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

from vssflow_core.errors import VSSFlowError

EMBED_DIM = 256
ENCODER_RATE = 16000
_TARGET_DBFS = -30.0
_SILENCE_RMS = 10 ** (-50 / 20)  # -50 dBFS
RESEMBLYZER_INSTALL_HINT = ("Install it with: pip install --no-deps resemblyzer==0.1.4 && pip install "
                            "webrtcvad-wheels librosa")


@functools.lru_cache(maxsize=2)
def _encoder(device: str):
    try:
        from resemblyzer import VoiceEncoder
    except ImportError as exc:  # pragma: no cover - depends on environment
        raise VSSFlowError(f"Speaker embeddings need resemblyzer ({exc}). {RESEMBLYZER_INSTALL_HINT}") from exc
    return VoiceEncoder(device, verbose=False)


def _to_mono_float(wave) -> np.ndarray:
    if hasattr(wave, "detach"):
        wave = wave.detach().cpu().float().numpy()
    arr = np.asarray(wave)
    if arr.dtype == np.int16:
        arr = arr.astype(np.float32) / 32768.0
    elif arr.dtype == np.int32:
        arr = arr.astype(np.float32) / 2147483648.0
    elif not np.issubdtype(arr.dtype, np.floating):
        raise VSSFlowError(f"speaker reference: expected float or int16 audio samples, got dtype {arr.dtype}.")
    arr = arr.astype(np.float32)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 1:
        return arr
    if arr.ndim != 2:
        raise VSSFlowError(f"speaker reference: expected audio [C, T] or [T], got shape {tuple(arr.shape)}.")
    if arr.shape[0] > 16 and arr.shape[1] <= 16:  # [T, C] given: transpose
        arr = arr.T
    return arr.mean(axis=0)


def _speech_mask(x16: np.ndarray, aggressiveness: int = 3) -> np.ndarray | None:
    """Per-sample speech mask from webrtcvad (30 ms frames, 0.3 s hangover). None if unavailable."""
    try:
        import webrtcvad
    except ImportError:
        return None
    frame = ENCODER_RATE * 30 // 1000
    n = len(x16) // frame
    if n == 0:
        return np.zeros(len(x16), dtype=bool)
    pcm = (np.clip(x16[: n * frame], -1, 1) * 32767).astype(np.int16)
    vad = webrtcvad.Vad(aggressiveness)
    flags = np.array([vad.is_speech(pcm[i * frame:(i + 1) * frame].tobytes(), ENCODER_RATE) for i in range(n)])
    # close short gaps (< 0.3 s) so words are not chopped
    hang = 10
    idx = np.flatnonzero(flags)
    for a, b in zip(idx[:-1], idx[1:]):
        if b - a <= hang:
            flags[a:b] = True
    mask = np.repeat(flags, frame)
    return np.concatenate([mask, np.zeros(len(x16) - len(mask), dtype=bool)])


def read_voice_file(path, label: str = "reference voice"):
    """Read a reference-voice recording: ``(wave float32 torch [C, S], sample_rate Hz)``.

    ``path``: any file PyAV reads (wav, flac, mp3, or a video with speech). Raises a
    :class:`VSSFlowError` starting with ``label`` (e.g. the command-line option) when the file does
    not exist or has no audio stream."""
    from pathlib import Path

    from vssflow_core.media.video import read_audio

    if not Path(path).is_file():
        raise VSSFlowError(f"{label} {path}: no such file; give a recording of the reference voice "
                           "(wav, flac, mp3, or a video with speech)")
    try:
        audio = read_audio(path)
    except VSSFlowError as e:
        raise VSSFlowError(f"{label} {path}: not a readable recording ({e})") from None
    if audio is None:
        raise VSSFlowError(f"{label} {path}: the file has no audio stream")
    if audio[0].shape[-1] == 0:
        raise VSSFlowError(f"{label} {path}: the recording is empty; give a few seconds of the reference voice")
    return audio


def speaker_embedding(wave, sample_rate: int, min_speech_s: float = 1.0, device: str = "cpu"):
    """Speaker embedding of a reference recording.

    Args:
        wave: audio ``[C, T]`` or ``[T]`` (torch or numpy; float in -1..1, or int16), any channel count.
        sample_rate: its rate in Hz (any; resampled to 16 kHz).
        min_speech_s: at least this many seconds of detected speech are required.
        device: torch device for the encoder.

    Returns:
        ``torch.FloatTensor [256]`` (L2-normalised), or ``None`` with a ``warnings.warn`` when the
        reference is silent or has less than ``min_speech_s`` of speech (no speaker condition).
    """
    if not sample_rate or int(sample_rate) <= 0:
        raise VSSFlowError(f"speaker reference: sample_rate must be a positive number of Hz, got {sample_rate}.")
    x = _to_mono_float(wave)
    if not np.isfinite(x).all():
        raise VSSFlowError(f"speaker reference: {int(np.sum(~np.isfinite(x)))} of {len(x)} samples are NaN or "
                           "infinite; pass a clean recording (or a waveform from a working node).")
    dur = len(x) / float(sample_rate)
    if dur < min_speech_s:
        warnings.warn(f"speaker reference is too short ({dur:.2f} s < {min_speech_s:.2f} s); no speaker "
                      "condition is used. Give at least a few seconds of clean speech.", stacklevel=2)
        return None
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if len(x) else 0.0
    if peak < 1e-3 or rms < _SILENCE_RMS:
        warnings.warn(f"speaker reference is silent or nearly so (peak {peak:.1e}, RMS "
                      f"{20 * np.log10(rms + 1e-12):.0f} dBFS < {20 * np.log10(_SILENCE_RMS):.0f} dBFS); "
                      "no speaker condition is used.", stacklevel=2)
        return None
    import torch

    from vssflow_core.audio.resample import resample

    x16 = resample(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), int(sample_rate), ENCODER_RATE).numpy()
    mask = _speech_mask(x16 * min(0.9 / max(peak, 1e-6), 10 ** ((_TARGET_DBFS - 20 * np.log10(rms)) / 20)))
    if mask is not None:
        speech = x16[mask]
        if len(speech) / ENCODER_RATE < min_speech_s:
            warnings.warn(f"speaker reference has only {len(speech) / ENCODER_RATE:.2f} s of detected speech "
                          f"(< {min_speech_s:.2f} s); no speaker condition is used.", stacklevel=2)
            return None
        x16 = speech
    level = 20 * np.log10(np.sqrt(np.mean(x16.astype(np.float64) ** 2)) + 1e-12)
    x16 = np.clip(x16 * (10 ** ((_TARGET_DBFS - level) / 20)), -1.0, 1.0).astype(np.float32)
    return _embed(_encoder(str(device)), x16)


def quiet_speaker_embedding(wave, sample_rate: int) -> np.ndarray | None:
    """:func:`speaker_embedding` for scoring and packing many clips: float32 ``[256]`` numpy, or
    None without a warning when a clip has too little speech (such a clip simply has no embedding)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        emb = speaker_embedding(wave, sample_rate)
    return None if emb is None else emb.numpy()


def _mel_power(x16: np.ndarray):
    """[T] 16 kHz -> [frames, 40] mel power spectrogram (25 ms Hann window, 10 ms hop, centred with
    zero padding, Slaney mel 0-8 kHz): the encoder's input, computed with torch (librosa's import
    costs ~15 s on a cold start)."""
    import torch

    from vssflow_core.audio.mel import slaney_filterbank

    n_fft, hop = 400, 160
    x = torch.from_numpy(np.ascontiguousarray(x16, dtype=np.float32))
    spec = torch.stft(x, n_fft, hop_length=hop, window=torch.hann_window(n_fft), center=True,
                      pad_mode="constant", return_complex=True).abs() ** 2  # [201, frames]
    fb = slaney_filterbank(ENCODER_RATE, n_fft, 40, 0.0, ENCODER_RATE / 2)  # [40, 201]
    return (spec.T @ fb.T).numpy().astype(np.float32)


def _embed(encoder, x16: np.ndarray):
    """Average of the encoder's embeddings over 1.6 s partial windows (rate 1.3/s, as resemblyzer)."""
    import torch

    wav_slices, mel_slices = encoder.compute_partial_slices(len(x16), 1.3, 0.75)
    need = wav_slices[-1].stop
    if need >= len(x16):
        x16 = np.pad(x16, (0, need - len(x16)))
    mel = _mel_power(x16)
    mels = torch.from_numpy(np.stack([mel[s] for s in mel_slices]))
    with torch.no_grad():
        partial = encoder(mels.to(encoder.device)).cpu().numpy()
    raw = partial.mean(axis=0)
    return torch.as_tensor(raw / max(np.linalg.norm(raw), 1e-12), dtype=torch.float32).reshape(EMBED_DIM)
