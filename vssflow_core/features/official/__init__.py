"""Feature extractors of the official VSSFlow pipeline, for users who have their weights.

* :mod:`.clip` -- CLIP ViT-B/16 visual tower (keys ``visual.*`` / ``image_encoder.visual.*``): the
  pre-``ln_post`` CLS token of frames sampled at 10 fps, resized to 224x224 -> ``video_feat [N, 768]``.
* :mod:`.synchformer` -- Synchformer visual branch (MotionFormer, keys ``vfeat_extractor.*``): 25 fps,
  224 centre crop, 16-frame windows with stride 8 -> ``synch_feat [S, 8, 768]`` (24 tokens/s).
* :mod:`.rawnet3` -- RawNet3 speaker embedding (its own keys): 10 windows of 3 s at 16 kHz ->
  ``ref_audio_ebd [256]``.

AV-HuBERT (the 1024-d lip features) cannot be run here: its model code needs fairseq. The model accepts
precomputed ``lip_feat [T25, 1024]`` arrays instead; the official inference script passes zeros.

:func:`extractor_model` (used by the front end) builds an extractor network from a model file's extra tensors
(``image_encoder.visual.*``, ``synchformer.vfeat_extractor.*``, ``rawnet3.*``); :func:`extractor_tensors`
renames a downloaded weights file into those names; :func:`load_weights` reads weights files safely.
"""

from vssflow_core.features.official.extractors import (  # noqa: F401
    EXTRACTOR_PREFIXES,
    extractor_model,
    extractor_tensors,
    load_weights,
)

__all__ = ["EXTRACTOR_PREFIXES", "extractor_model", "extractor_tensors", "load_weights"]
