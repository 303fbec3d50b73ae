"""The official mel front end (AudioLDM convention, ``util/mel_filter.extract_batch_mel``).

Per clip: subtract the mean, peak-normalise to 0.5, reflect-pad by ``(n_fft - hop) / 2`` samples on
each side, magnitude STFT (Hann ``win_length``, ``center=False``), Slaney mel filterbank (librosa
layout: 64 bands, 0-8 kHz at 16 kHz), natural log of ``clamp(x, 1e-5)``. 160 samples per frame, so
10 s at 16 kHz give exactly 1000 frames (100 Hz).

The filterbank is torchaudio's ``melscale_fbanks`` formula evaluated in float64 with librosa's rounding
order (triangles rounded to float32, then scaled by the Slaney area norm), which reproduces librosa's
``filters.mel`` bit for bit (tested against the fixture and torchaudio); the STFT is ``torch.stft``.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vssflow_core.errors import VSSFlowError

LOG_CLAMP = 1e-5
PAD_VALUE = -11.0  # log-mel value the official code pads short spectrograms with (~ log(1e-5))


@dataclass(frozen=True)
class MelParams:
    """Parameters of the official mel front end (defaults = the official training values)."""

    sample_rate: int = 16000  # Hz
    n_fft: int = 1024
    hop_length: int = 160  # samples per frame (100 frames/s at 16 kHz)
    win_length: int = 1024
    n_mels: int = 64
    f_min: float = 0.0  # Hz
    f_max: float = 8000.0  # Hz
    peak: float = 0.5  # peak amplitude after normalisation

    @property
    def pad(self) -> int:
        """Reflect padding on each side (432 samples for the official values)."""
        return (self.n_fft - self.hop_length) // 2

    @property
    def frame_rate_hz(self) -> float:
        """Mel frames per second (sample_rate / hop_length)."""
        return self.sample_rate / self.hop_length

    @staticmethod
    def from_codec_config(cfg) -> "MelParams":
        """Take the mel fields of a :class:`vssflow_core.config.CodecConfig`."""
        return MelParams(
            sample_rate=int(cfg.sample_rate), n_fft=int(cfg.n_fft), hop_length=int(cfg.hop_length),
            win_length=int(cfg.win_length), n_mels=int(cfg.n_mels), f_min=float(cfg.f_min), f_max=float(cfg.f_max),
        )


# Slaney mel scale (librosa htk=False): linear below 1 kHz (200/3 Hz per mel), logarithmic above.
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def _hz_to_mel_slaney(f: torch.Tensor | float) -> torch.Tensor:
    """Hz -> Slaney mels (float64)."""
    f = torch.as_tensor(f, dtype=torch.float64)
    return torch.where(f >= _MIN_LOG_HZ, _MIN_LOG_MEL + torch.log(torch.clamp(f, min=1e-10) / _MIN_LOG_HZ) / _LOGSTEP,
                       f / _F_SP)


def _mel_to_hz_slaney(m: torch.Tensor) -> torch.Tensor:
    """Slaney mels -> Hz (float64)."""
    return torch.where(m >= _MIN_LOG_MEL, _MIN_LOG_HZ * torch.exp(_LOGSTEP * (m - _MIN_LOG_MEL)), _F_SP * m)


@functools.lru_cache(maxsize=8)
def _mel_basis_cached(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    # torchaudio's melscale_fbanks triangles (same formula), built in float64 explicitly: torchaudio
    # uses the global default dtype, and switching that from a library is not thread-safe. (In float32,
    # torchaudio's differs from librosa's by up to 2.6e-6 of the largest weight.)
    all_freqs = torch.linspace(0, sample_rate // 2, n_fft // 2 + 1, dtype=torch.float64)
    m_pts = torch.linspace(float(_hz_to_mel_slaney(f_min)), float(_hz_to_mel_slaney(f_max)), n_mels + 2, dtype=torch.float64)
    f_pts = _mel_to_hz_slaney(m_pts)
    slopes = f_pts[None, :] - all_freqs[:, None]  # [n_freqs, n_mels + 2]
    f_diff = f_pts[1:] - f_pts[:-1]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    tri = torch.clamp(torch.minimum(down, up), min=0.0).T  # [n_mels, n_freqs]
    enorm = 2.0 / (f_pts[2:] - f_pts[:-2])  # Slaney area norm
    return (tri.float().double() * enorm[:, None]).float()  # librosa's rounding order


def slaney_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """Slaney-scale, Slaney-normalised mel filterbank float32 ``[n_mels, n_fft // 2 + 1]`` (librosa's
    default ``librosa.filters.mel``, to the last bit). ``sample_rate``, ``f_min``, ``f_max`` in Hz.
    The one filterbank of the package: the official front end, the embedded model's codec and the
    speaker encoder's input all use it."""
    return _mel_basis_cached(int(sample_rate), int(n_fft), int(n_mels), float(f_min), float(f_max)).clone()


def mel_basis(params: MelParams = MelParams()) -> torch.Tensor:
    """The official front end's filterbank ``[n_mels, n_fft // 2 + 1]`` float32 (:func:`slaney_filterbank`)."""
    return slaney_filterbank(params.sample_rate, params.n_fft, params.n_mels, params.f_min, params.f_max)


def normalize_wave(wave: torch.Tensor, peak: float = 0.5) -> torch.Tensor:
    """Official loudness normalisation: ``(w - mean) / (max|w - mean| + 1e-8) * peak`` per row.

    Args:
        wave: ``[B, T]`` float.
        peak: target peak amplitude.
    Returns:
        ``[B, T]``.
    """
    wave = wave - wave.mean(dim=-1, keepdim=True)
    return wave / (wave.abs().amax(dim=-1, keepdim=True) + 1e-8) * peak


def _check_wave(wave: torch.Tensor, params: MelParams, sample_rate: int | None) -> torch.Tensor:
    if sample_rate is not None and int(sample_rate) != params.sample_rate:
        raise VSSFlowError(
            f"official mel: audio must be {params.sample_rate} Hz, got {sample_rate} Hz; "
            f"resample it first (vssflow_core.audio.resample.resample(wave, {sample_rate}, {params.sample_rate}))"
        )
    if not isinstance(wave, torch.Tensor):
        raise VSSFlowError(f"official mel: wave must be a torch.Tensor [B, T], got {type(wave).__name__}")
    if wave.dim() == 1:
        wave = wave[None]
    if wave.dim() == 3 and wave.shape[1] == 1:
        wave = wave[:, 0]
    if wave.dim() != 2:
        raise VSSFlowError(f"official mel: wave must be mono [B, T] (or [T] / [B, 1, T]), got shape {list(wave.shape)}; mix channels down first")
    if wave.shape[-1] <= params.pad:
        raise VSSFlowError(
            f"official mel: wave has {wave.shape[-1]} samples, need more than {params.pad} "
            f"(reflect padding); pad short clips with zeros"
        )
    if not torch.isfinite(wave).all():
        raise VSSFlowError("official mel: wave contains NaN or Inf samples")
    return wave if wave.is_floating_point() else wave.float()


def log_mel_spectrogram(
    wave: torch.Tensor,
    params: MelParams = MelParams(),
    sample_rate: int | None = None,
    normalize: bool = True,
    target_frames: int | None = None,
    return_wave: bool = False,
):
    """The official log-mel spectrogram (``extract_batch_mel``).

    Args:
        wave: mono audio ``[B, T]`` (or ``[T]``, ``[B, 1, T]``) float at ``params.sample_rate`` Hz.
        params: mel parameters (official defaults).
        sample_rate: if given, checked against ``params.sample_rate`` (VSSFlowError if different).
        normalize: apply the mean removal + peak normalisation to ``params.peak`` (official: yes).
        target_frames: if given, crop or pad (with -11, as official) the time axis to this many frames.
        return_wave: also return the normalised, reflect-padded waveform ``[B, T + 2 * pad]``.

    Returns:
        log-mel ``[B, N, n_mels]`` float32 (time-major, ``N = T // hop`` frames at 100 Hz for the
        official values), or ``(padded_wave, log_mel)`` when ``return_wave``.
    """
    wave = _check_wave(wave, params, sample_rate)
    if normalize:
        wave = normalize_wave(wave, params.peak)
    wave = F.pad(wave[:, None], (params.pad, params.pad), mode="reflect")[:, 0]
    window = torch.hann_window(params.win_length, device=wave.device, dtype=wave.dtype)
    spec = torch.stft(
        wave, params.n_fft, params.hop_length, params.win_length, window=window,
        center=False, normalized=False, onesided=True, return_complex=True,
    ).abs()  # [B, n_fft/2+1, N]
    basis = mel_basis(params).to(device=wave.device, dtype=wave.dtype)
    mel = torch.log(torch.clamp(basis @ spec, min=LOG_CLAMP)).transpose(1, 2)  # [B, N, n_mels]
    if target_frames is not None:
        n = mel.shape[1]
        if n < target_frames:
            mel = F.pad(mel, (0, 0, 0, target_frames - n), value=PAD_VALUE)
        else:
            mel = mel[:, :target_frames]
    return (wave, mel) if return_wave else mel
