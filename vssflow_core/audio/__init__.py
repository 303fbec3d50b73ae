"""Audio codecs (waveform <-> DiT latent), the official mel front end, vocoders, resampling.

Import the submodules directly (``vssflow_core.audio.codec``, ``.mel``, ``.vae``, ``.hifigan``,
``.resample``); nothing heavy is imported here.
"""
