"""The audio codec interface (waveform <-> the latent the DiT works on) and its factory.

An :class:`AudioCodec` turns a batch of mono waveforms ``[B, T]`` at :attr:`AudioCodec.sample_rate`
into latents ``[B, C, L]`` (``C`` = :attr:`AudioCodec.latent_channels`, ``L`` frames at
:attr:`AudioCodec.latent_rate_hz`) and back. Two kinds exist (``CodecConfig.kind``):

* ``audioldm_vae`` (official): the official mel front end (:mod:`vssflow_core.audio.mel`), the
  AudioLDM-layout mel VAE (:mod:`vssflow_core.audio.vae`, latent ``[B, 8, L, 16]`` packed to 128
  channels at 25 Hz) and the 16 kHz HiFi-GAN (:mod:`vssflow_core.audio.hifigan`). Its weights are the
  ``vae.*`` and ``vocoder.*`` tensors of an official checkpoint.
* ``mel_patch`` (embedded): :class:`vssflow_core.audio.mel_patch.MelPatchCodec`, built as
  ``MelPatchCodec(cfg, tensors)``.

Use :func:`build_codec`; the concrete classes are imported lazily.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from vssflow_core.errors import VSSFlowError


class AudioCodec(nn.Module):
    """Base class: waveform ``[B, T]`` <-> latent ``[B, C, L]``.

    Subclasses set :attr:`sample_rate` (Hz), :attr:`latent_channels` and :attr:`latent_rate_hz`
    (latent frames per second) and implement :meth:`encode` / :meth:`decode`. Being an
    ``nn.Module``, ``codec.to(device, dtype)`` moves the weights; inputs are moved to the codec's
    device/dtype by the methods themselves.
    """

    sample_rate: int
    latent_channels: int
    latent_rate_hz: float

    @property
    def samples_per_latent(self) -> int:
        """Waveform samples per latent frame (``sample_rate / latent_rate_hz``)."""
        return int(round(self.sample_rate / self.latent_rate_hz))

    @property
    def latent_range(self) -> tuple[float, float] | None:
        """``(low, high)`` that every latent value of a real waveform lies in, or None if unbounded.
        A sampler that estimates the clean latent may clamp its estimate to it."""
        return None

    def latent_length(self, num_samples: int) -> int:
        """Latent frames :meth:`encode` produces for ``num_samples`` samples (rounded up)."""
        spl = self.samples_per_latent
        return -(-int(num_samples) // spl)

    def encode(self, wave: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        """``wave [B, T]`` float32 at :attr:`sample_rate` Hz -> latent ``[B, C, L]``."""
        raise NotImplementedError

    def decode(self, latent: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        """``latent [B, C, L]`` -> waveform ``[B, T]`` float32 at :attr:`sample_rate` Hz."""
        raise NotImplementedError

    # -- helpers shared by the implementations -------------------------------------------------
    def _param_device_dtype(self) -> tuple[torch.device, torch.dtype]:
        for p in self.parameters():
            return p.device, p.dtype
        for b in self.buffers():
            if b.is_floating_point():
                return b.device, b.dtype
        return torch.device("cpu"), torch.float32

    def check_wave(self, wave: torch.Tensor, name: str = "wave", dtype: torch.dtype | None = None) -> torch.Tensor:
        """Validate a ``[B, T]`` waveform batch and move it to the codec's device (and ``dtype``, default
        the codec's parameter dtype)."""
        if not isinstance(wave, torch.Tensor):
            raise VSSFlowError(f"{type(self).__name__}.encode: {name} must be a torch.Tensor [B, T], got {type(wave).__name__}")
        if wave.dim() != 2:
            raise VSSFlowError(
                f"{type(self).__name__}.encode: {name} must be mono audio [B, T] at {self.sample_rate} Hz, got shape "
                f"{list(wave.shape)}; mix channels down (wave.mean(dim=-2)) and add a batch axis"
            )
        if wave.shape[-1] == 0:
            raise VSSFlowError(f"{type(self).__name__}.encode: {name} has no samples (shape {list(wave.shape)})")
        if not torch.isfinite(wave).all():
            raise VSSFlowError(f"{type(self).__name__}.encode: {name} contains NaN or Inf samples; clean the audio first")
        device, own = self._param_device_dtype()
        return wave.to(device=device, dtype=dtype or own)

    def check_latent(self, latent: torch.Tensor, name: str = "latent") -> torch.Tensor:
        """Validate a ``[B, C, L]`` latent batch and move it to the codec's device/dtype."""
        if not isinstance(latent, torch.Tensor) or latent.dim() != 3 or latent.shape[1] != self.latent_channels:
            shape = list(latent.shape) if isinstance(latent, torch.Tensor) else type(latent).__name__
            raise VSSFlowError(
                f"{type(self).__name__}.decode: {name} must be [B, {self.latent_channels}, L], got {shape}"
            )
        if latent.shape[-1] == 0:
            raise VSSFlowError(f"{type(self).__name__}.decode: {name} has no frames (shape {list(latent.shape)})")
        device, dtype = self._param_device_dtype()
        return latent.to(device=device, dtype=dtype)


def split_prefixed(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors whose key starts with ``prefix`` (e.g. ``"vae."``), with the prefix removed."""
    n = len(prefix)
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix)}


def build_codec(cfg, tensors: Mapping[str, torch.Tensor] | None = None) -> AudioCodec:
    """Build the audio codec that ``cfg`` (a :class:`vssflow_core.config.CodecConfig`) names.

    Args:
        cfg: the codec config; ``cfg.kind`` is ``"audioldm_vae"`` or ``"mel_patch"``.
        tensors: weights. For ``audioldm_vae`` the ``vae.*`` and ``vocoder.*`` tensors of an official
            checkpoint / model file (other keys are ignored; all sizes are inferred from the shapes,
            so reduced models load too). For ``mel_patch`` passed on to ``MelPatchCodec``.

    Returns:
        an :class:`AudioCodec` in eval mode on the CPU (move it with ``.to(device, dtype)``).

    Raises:
        VSSFlowError: unknown kind, missing/mis-shaped weights (the message lists the keys).
    """
    kind = getattr(cfg, "kind", None)
    if kind == "audioldm_vae":
        from vssflow_core.audio.audioldm import AudioLDMCodec

        if tensors is None:
            raise VSSFlowError(
                "build_codec: the official 'audioldm_vae' codec needs the 'vae.*' and 'vocoder.*' tensors of an "
                "official checkpoint (converted with `python -m vssflow_core convert`), got tensors=None"
            )
        return AudioLDMCodec.from_tensors(tensors, cfg=cfg).eval()
    if kind == "mel_patch":
        try:
            from vssflow_core.audio.mel_patch import MelPatchCodec
        except ImportError as e:  # pragma: no cover - depends on the other module being present
            raise VSSFlowError(f"build_codec: codec kind 'mel_patch' is unavailable ({e})") from e
        return MelPatchCodec(cfg, tensors).eval()
    raise VSSFlowError(f"build_codec: unknown codec kind {kind!r}; expected 'audioldm_vae' or 'mel_patch'")
