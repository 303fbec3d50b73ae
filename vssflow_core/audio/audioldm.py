"""The official VSSFlow audio codec: mel front end + AudioLDM mel VAE + 16 kHz HiFi-GAN.

waveform ``[B, T]`` at 16 kHz --(official mel, 100 Hz)--> log-mel ``[B, T/160, 64]``
--(VAE encoder)--> latent ``[B, 8, T/640, 16]`` --(pack, channel f*8+c)--> ``[B, 128, T/640]`` (25 Hz).
Decoding inverts it and vocodes the mel (``vocoder(mel)``), then trims the vocoder's 32 extra
samples, as the official code keeps ``waveform[:sr * duration]``.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F

from vssflow_core.audio.codec import AudioCodec, split_prefixed
from vssflow_core.audio.hifigan import HifiGan
from vssflow_core.audio.mel import MelParams, log_mel_spectrogram
from vssflow_core.audio.vae import MelVAE, pack_latent, unpack_latent
from vssflow_core.errors import VSSFlowError


class AudioLDMCodec(AudioCodec):
    """Official codec (kind ``audioldm_vae``): 16 kHz audio <-> 128-channel latent at 25 Hz.

    Attributes:
        mel_params: the mel front end's parameters.
        vae: :class:`vssflow_core.audio.vae.MelVAE` (keys ``vae.*``).
        vocoder: :class:`vssflow_core.audio.hifigan.HifiGan` (keys ``vocoder.*``).
    """

    def __init__(self, vae: MelVAE, vocoder: HifiGan, mel_params: MelParams = MelParams()):
        super().__init__()
        if vocoder.config.model_in_dim != mel_params.n_mels:
            raise VSSFlowError(
                f"AudioLDMCodec: vocoder expects {vocoder.config.model_in_dim} mel bands, the mel front end makes {mel_params.n_mels}"
            )
        if vocoder.config.hop_length != mel_params.hop_length:
            raise VSSFlowError(
                f"AudioLDMCodec: vocoder upsamples x{vocoder.config.hop_length}, the mel hop is {mel_params.hop_length} samples"
            )
        f = vae.config.downsample_factor
        if mel_params.n_mels % f:
            raise VSSFlowError(f"AudioLDMCodec: n_mels={mel_params.n_mels} is not a multiple of the VAE factor {f}")
        self.vae = vae
        self.vocoder = vocoder
        self.mel_params = mel_params
        self.sample_rate = mel_params.sample_rate
        self.latent_channels = vae.config.latent_channels * (mel_params.n_mels // f)
        self.latent_rate_hz = mel_params.frame_rate_hz / f

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor], cfg=None, norm_num_groups: int | None = None) -> "AudioLDMCodec":
        """Build from an official checkpoint's tensors (``vae.*`` and ``vocoder.*``; other keys ignored).

        Args:
            tensors: name -> tensor; a ``weights.`` prefix (fixture layout) is accepted too.
            cfg: optional :class:`vssflow_core.config.CodecConfig` for the mel parameters (official defaults otherwise).
            norm_num_groups: VAE GroupNorm groups (not stored in the weights; see ``vae.default_norm_groups``).
        """
        if any(k.startswith("weights.") for k in tensors):
            tensors = split_prefixed(tensors, "weights.")
        vae_sd, voc_sd = split_prefixed(tensors, "vae."), split_prefixed(tensors, "vocoder.")
        missing = [p for p, sd in (("vae.*", vae_sd), ("vocoder.*", voc_sd)) if not sd]
        if missing:
            raise VSSFlowError(
                f"AudioLDMCodec: no {' and no '.join(missing)} tensors among the {len(tensors)} given; the official codec "
                "weights are part of the official checkpoint (convert it with `python -m vssflow_core convert`)"
            )
        params = MelParams.from_codec_config(cfg) if cfg is not None else MelParams()
        vae = MelVAE.from_state_dict(vae_sd, norm_num_groups)
        voc = HifiGan.from_state_dict(voc_sd, sampling_rate=params.sample_rate)
        return cls(vae, voc, params).eval()

    # -- pieces -------------------------------------------------------------------------------
    def mel(self, wave: torch.Tensor) -> torch.Tensor:
        """Official log-mel of ``wave [B, T]`` at 16 kHz -> ``[B, T // 160, 64]`` (mean removed, peak 0.5)."""
        wave = self.check_wave(wave, dtype=torch.float32)
        return log_mel_spectrogram(wave, self.mel_params)

    @torch.no_grad()
    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[B, N, 64]`` -> waveform ``[B, 160 * N]`` float32 at 16 kHz (extra vocoder samples trimmed)."""
        device, dtype = self._param_device_dtype()
        wave = self.vocoder(mel.to(device=device, dtype=dtype))
        return wave[..., : mel.shape[-2] * self.mel_params.hop_length].float()

    # -- AudioCodec -----------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, wave: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """Waveform ``[B, T]`` float32 at 16 kHz -> latent ``[B, 128, L]`` at 25 Hz, ``L = ceil(T / 640)``.

        The clip is zero-padded to a multiple of 640 samples (as the official dataset pads to 10 s),
        normalised (mean removed, peak 0.5), turned into the official log-mel and encoded by the VAE.

        Args:
            wave: mono ``[B, T]`` at :attr:`sample_rate` Hz.
            sample: draw from the posterior (``mean + std * eps``, official training target) instead of
                returning the posterior mean.
            generator: RNG for ``sample=True``.

        Returns the latent in the codec's parameter dtype. Note the loudness normalisation is per call:
        pass whole windows (the official code normalises each 10 s clip).
        """
        wave = self.check_wave(wave, dtype=torch.float32)  # the STFT runs in float32 whatever the codec dtype
        spl = self.samples_per_latent
        pad = (-wave.shape[-1]) % spl
        if pad:
            wave = F.pad(wave, (0, pad))
        mel = log_mel_spectrogram(wave, self.mel_params)  # [B, N, n_mels], N = T/160
        _, dtype = self._param_device_dtype()
        mean, logvar = self.vae.encode(mel[:, None].to(dtype))
        z = mean
        if sample:
            gen_device = generator.device if generator is not None else mean.device
            eps = torch.randn(mean.shape, generator=generator, device=gen_device).to(mean.device, mean.dtype)
            z = mean + torch.exp(0.5 * logvar) * eps
        return pack_latent(z)

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Latent ``[B, 128, L]`` -> waveform ``[B, 640 * L]`` float32 at 16 kHz (official: L = 250 -> 160000)."""
        latent = self.check_latent(latent)
        mel = self.vae.decode(unpack_latent(latent, self.vae.config.latent_channels))  # [B, 1, 4L, n_mels]
        return self.vocode(mel[:, 0])
