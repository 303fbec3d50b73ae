"""ComfyUI nodes of the VSSFlow pack (V3 schema API). Thin: each node makes one vssflow_core call."""
from __future__ import annotations

from .conditions import VSSFlowExtractLipFeatures, VSSFlowTextCondition
from .loader import VSSFlowModelLoader
from .sampler import VSSFlowSampler
from .video import VSSFlowLoadVideo, VSSFlowMuxAudio

NODES = [VSSFlowModelLoader, VSSFlowLoadVideo, VSSFlowExtractLipFeatures, VSSFlowTextCondition, VSSFlowSampler,
         VSSFlowMuxAudio]
