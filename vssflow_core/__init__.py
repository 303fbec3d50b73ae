"""VSSFlow: one flow-matching Diffusion Transformer for video-to-sound and visual text-to-speech.

The library never imports ComfyUI; ``nodes/`` adapts it to ComfyUI graphs. Importing this package is
cheap: submodules are imported on demand. The layout, one job per module:

* ``config``, ``embedded``: the model configuration dataclasses and the embedded default's preset.
* ``model``: the DiT, its condition routing (cross-attention for semantic conditions, channel
  concatenation for time-dense ones), guidance and checkpoints; ``flow``: the flow-matching path,
  loss and ODE solvers.
* ``audio``: codecs between waveform and latent (the embedded model's mel patches, the official
  AudioLDM VAE), vocoders, resampling.
* ``features``: the condition front-ends (lips, lip reading, phonemes, motion and appearance,
  visible events, speaker); ``frontend``: what a model's condition table asks of them per window.
* ``media``: PyAV decoding, encoding and muxing, and output files that never overwrite.
* ``pipeline``, ``timeline``, ``video_source``, ``video_clip``: video (+ transcript, lips, voice)
  -> audio of the video's exact duration, in overlapping windows.
* ``official``: loading and converting official VSSFlow checkpoints.
* ``data``: the synthetic training data generator; ``train``: packing, training, evaluation and
  their reports; ``bench``: the speed and memory benchmarks; ``cli``: ``python -m vssflow_core``.
* ``weights``: the shipped model files and their model card.
"""

from vssflow_core.errors import VSSFlowError

__all__ = ["VSSFlowError"]
__version__ = "0.1.0"
