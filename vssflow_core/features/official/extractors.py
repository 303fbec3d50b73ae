"""Loading the official extractors from a model file's extra tensors.

Naming inside a VSSFlow model file (``extra_tensors``):

==============  ==========================================  ==================================
extractor       keys                                        where the weights come from
==============  ==========================================  ==================================
CLIP            ``image_encoder.visual.*``                  inside every official checkpoint
Synchformer     ``synchformer.vfeat_extractor.*``           ``synchformer_state_dict.pth`` (MMAudio)
RawNet3         ``rawnet3.*``                               ``model.pt`` (``{"model": ...}``)
==============  ==========================================  ==================================

:func:`extractor_tensors` turns a downloaded weights file into these names, so a converter can add them
to a model file; :func:`extractor_model` builds (and caches) the network the front end calls per window.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Mapping

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
    if kind not in EXTRACTOR_PREFIXES:
        raise VSSFlowError(f"unknown extractor {kind!r}; expected one of {sorted(EXTRACTOR_PREFIXES)}")
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
