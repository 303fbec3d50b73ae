"""VSSFlow: one flow-matching Diffusion Transformer for video-to-sound and visual text-to-speech.

The library never imports ComfyUI; ``nodes/`` adapts it to ComfyUI graphs. Importing this package is
cheap: submodules (model, audio, media, features, pipeline, video_clip) are imported on demand.
"""

from vssflow_core.errors import VSSFlowError

__all__ = ["VSSFlowError"]
__version__ = "0.1.0"
