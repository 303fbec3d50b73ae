"""Audio codecs (waveform <-> DiT latent), the official mel front end, vocoders, resampling.

- ``codec``: the :class:`~vssflow_core.audio.codec.AudioCodec` interface and ``build_codec(cfg, tensors)``.
- ``audioldm``: the official codec (kind ``audioldm_vae``): ``mel`` + ``vae`` + ``hifigan``.
- ``mel``: the official log-mel front end (16 kHz, 64 Slaney mels, 100 frames/s).
- ``vae``: AudioLDM-layout mel VAE (diffusers key names), latent packing, ``load_strict``.
- ``hifigan``: 16 kHz HiFi-GAN (SpeechT5HifiGan key names).
- ``mel_patch``: the embedded model's codec (kind ``mel_patch``).
- ``resample``: ``resample(wave, sr_in, sr_out)``.
- ``level``: ``limit_peak(audio)``: scale, never clip, generated audio above full scale.

Import the submodules directly; nothing heavy is imported here.
"""
