"""Loading the official extractors from a model file's extra tensors, and calling them per window.

Naming inside a VSSFlow model file (``extra_tensors``):

==============  ==========================================  ==================================
extractor       keys                                        where the weights come from
==============  ==========================================  ==================================
CLIP            ``image_encoder.visual.*``                  inside every official checkpoint
Synchformer     ``synchformer.vfeat_extractor.*``           ``synchformer_state_dict.pth`` (MMAudio)
RawNet3         ``rawnet3.*``                               ``model.pt`` (``{"model": ...}``)
==============  ==========================================  ==================================

:func:`extractor_tensors` turns a downloaded weights file into these names, so a converter can add them
to a model file; :func:`build_extractor` builds (and caches) the callable the front end uses.
"""
from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch

from vssflow_core.errors import VSSFlowError

EXTRACTOR_PREFIXES = {
    "clip": "image_encoder.",
    "synchformer": "synchformer.",
    "rawnet3": "rawnet3.",
}
_CACHE: dict[tuple, torch.nn.Module] = {}
_CACHE_MAX = 4


def load_weights(path) -> dict[str, torch.Tensor]:
    """Read a weights file safely: ``.safetensors``, or a pickle via ``torch.load(weights_only=True)``.

    ``{"model": sd}`` / ``{"state_dict": sd}`` wrappers are unwrapped. TorchScript archives (OpenAI's
    ``ViT-B-16.pt``) are refused with an explanation: CLIP weights are part of the official VSSFlow
    checkpoint (``image_encoder.visual.*``), so convert that instead.
    """
    path = Path(path)
    if not path.is_file():
        raise VSSFlowError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # noqa: BLE001 - reported with the file name
            raise VSSFlowError(f"{path}: not a readable safetensors file ({e})") from e
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            raise VSSFlowError(
                f"{path} is a TorchScript archive, which would run code to load; it is not read. For CLIP use the "
                "image_encoder.visual.* tensors of the official VSSFlow checkpoint (python -m vssflow_core convert)"
            )
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise VSSFlowError(
            f"{path}: cannot be read with torch.load(weights_only=True) ({type(e).__name__}: {e}); only plain tensor "
            "state dicts are accepted (re-save it as safetensors in a trusted environment)"
        ) from e
    for key in ("model", "state_dict", "model_state"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise VSSFlowError(f"{path}: expected a state dict of tensors, got {type(obj).__name__}")
    return {str(k): v for k, v in obj.items()}


def extractor_tensors(kind: str, weights: Mapping[str, torch.Tensor] | str | Path) -> dict[str, torch.Tensor]:
    """The tensors of one extractor renamed for a model file (see the table above).

    Args:
        kind: ``"clip"``, ``"synchformer"`` or ``"rawnet3"``.
        weights: a state dict or a weights file path (:func:`load_weights`).
    """
    from vssflow_core.features.official._weights import strip_prefixes

    if kind not in EXTRACTOR_PREFIXES:
        raise VSSFlowError(f"unknown extractor {kind!r}; expected one of {sorted(EXTRACTOR_PREFIXES)}")
    sd = load_weights(weights) if isinstance(weights, (str, Path)) else dict(weights)
    if kind == "clip":
        sd = strip_prefixes(sd, "visual.", ["image_encoder.", "weights.", "model."])
        return {f"image_encoder.{k}": v for k, v in sd.items()}
    if kind == "synchformer":
        sd = strip_prefixes(sd, "vfeat_extractor.", ["synchformer.", "weights.", "module.", "model."])
        return {f"synchformer.{k}": v for k, v in sd.items()}
    if any(k.startswith("rawnet3.") for k in sd):
        sd = {k[len("rawnet3."):]: v for k, v in sd.items() if k.startswith("rawnet3.")}
    elif any(k.startswith("weights.") for k in sd):
        sd = {k[len("weights."):]: v for k, v in sd.items() if k.startswith("weights.")}
    return {f"rawnet3.{k}": v for k, v in sd.items()}


def _select(kind: str, extras: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    prefix = EXTRACTOR_PREFIXES[kind]
    sd = {k[len(prefix):]: v for k, v in extras.items() if k.startswith(prefix)}
    if kind == "clip":
        sd = {k: v for k, v in sd.items() if k.startswith("visual.")}
    if not sd:
        raise VSSFlowError(
            f"no {kind} weights in the model file (expected tensors named {prefix}*); add them with "
            f"vssflow_core.features.official.extractor_tensors({kind!r}, path)"
        )
    return sd


def extractor_model(kind: str, extras: Mapping[str, torch.Tensor], heads: int | None = None) -> torch.nn.Module:
    """The ``clip``/``synchformer``/``rawnet3`` network built from a model file's extra tensors
    (cached per weights). Raises VSSFlowError naming the expected keys when they are absent."""
    sd = _select(kind, extras)
    first = min(sd)
    key = (kind, first, sd[first].data_ptr(), len(sd), heads)
    if key not in _CACHE:
        if kind == "clip":
            from vssflow_core.features.official.clip import ClipImageEncoder

            model = ClipImageEncoder.from_state_dict(sd, heads=heads)
        elif kind == "synchformer":
            from vssflow_core.features.official.synchformer import SynchformerVisual

            model = SynchformerVisual.from_state_dict(sd, heads=heads)
        else:
            from vssflow_core.features.official.rawnet3 import RawNet3

            model = RawNet3.from_state_dict(sd)
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = model
    return _CACHE[key]


def build_extractor(kind: str, extras: Mapping[str, torch.Tensor], heads: int | None = None,
                    device: torch.device | str | None = None) -> Callable:
    """A callable computing one official condition for one window (models are cached per weights).

    * ``"clip"``: ``f(frames uint8 [F, H, W, 3], fps) -> video_feat [1, N, 768]`` (10 Hz, N = ceil(F / fps * 10)).
    * ``"synchformer"``: ``f(frames uint8 [F, H, W, 3] at 25 fps, fps=25.0) -> synch_feat [1, S, 8, 768]``
      with S = (max(F, 16) - 16) // 8 + 1 (frames resampled to 25 fps by timestamp if ``fps`` differs).
    * ``"rawnet3"``: ``f(wave [C, T] or [T], sample_rate) -> ref_audio_ebd [256]`` (channels averaged,
      resampled to 16 kHz with torchaudio; the official code used librosa, so resampled input differs slightly).

    Raises VSSFlowError when ``extras`` lacks the weights (message names the expected keys).
    """
    if kind not in EXTRACTOR_PREFIXES:
        raise VSSFlowError(f"unknown extractor {kind!r}; expected one of {sorted(EXTRACTOR_PREFIXES)}")
    model = extractor_model(kind, extras, heads)
    if device is not None:
        model.to(device)

    if kind == "clip":
        from vssflow_core.features.official.clip import CLIP_RATE_HZ, clip_features

        def run_clip(frames, fps: float = 25.0) -> torch.Tensor:
            n = len(frames)
            duration = math.ceil(n / float(fps) * CLIP_RATE_HZ - 1e-6) / CLIP_RATE_HZ
            return clip_features(model, frames, float(fps), duration)[None]

        return run_clip

    if kind == "synchformer":
        from vssflow_core.features.official.synchformer import SEGMENT, SYNC_FPS, synch_features

        def run_sync(frames, fps: float = SYNC_FPS) -> torch.Tensor:
            frames = np.asarray(frames)
            if abs(float(fps) - SYNC_FPS) > 1e-6:  # nearest frame shown at each 25 fps timestamp
                count = max(1, math.ceil(len(frames) / float(fps) * SYNC_FPS - 1e-6))
                idx = np.minimum(np.floor(np.arange(count) / SYNC_FPS * float(fps) + 1e-6).astype(np.int64), len(frames) - 1)
                frames = frames[idx]
            n = max(len(frames), SEGMENT)
            return synch_features(model, frames, duration_s=n / SYNC_FPS)[None]

        return run_sync

    from vssflow_core.audio.resample import resample
    from vssflow_core.features.official.rawnet3 import SAMPLE_RATE, speaker_embedding

    def run_rawnet(wave, sample_rate: int) -> torch.Tensor:
        w = torch.as_tensor(np.asarray(wave) if not isinstance(wave, torch.Tensor) else wave, dtype=torch.float32)
        if w.dim() == 2:
            w = w.mean(dim=0)
        if w.dim() != 1:
            raise VSSFlowError(f"RawNet3: reference voice must be [C, T] or [T], got shape {list(w.shape)}")
        w = resample(w, int(sample_rate), SAMPLE_RATE)
        return speaker_embedding(model, w, SAMPLE_RATE)

    return run_rawnet
