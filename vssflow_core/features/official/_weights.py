"""Weight-dict and input helpers shared by the official extractors."""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import torch

from vssflow_core.audio.vae import load_strict
from vssflow_core.errors import VSSFlowError

__all__ = ["load_strict", "strip_prefixes", "require", "check_frames"]


def strip_prefixes(sd: Mapping[str, torch.Tensor], root: str, prefixes: Iterable[str]) -> dict[str, torch.Tensor]:
    """Keep the keys that start with ``root`` after removing the first matching outer prefix.

    E.g. ``strip_prefixes(sd, "visual.", ["weights.", "image_encoder."])`` maps both
    ``image_encoder.visual.conv1.weight`` and ``visual.conv1.weight`` to ``visual.conv1.weight``.
    Keys without ``root`` are dropped (a Lightning checkpoint holds other models too).
    """
    out: dict[str, torch.Tensor] = {}
    prefixes = list(prefixes)
    for k, v in sd.items():
        key = k
        changed = True
        while changed:
            changed = False
            for p in prefixes:
                if key.startswith(p) and not key.startswith(root):
                    key = key[len(p):]
                    changed = True
        if key.startswith(root):
            out[key] = v
    return out


def require(sd: Mapping[str, torch.Tensor], keys: Iterable[str], what: str) -> None:
    """Raise a VSSFlowError naming the missing keys (before shapes are read from them)."""
    missing = [k for k in keys if k not in sd]
    if missing:
        raise VSSFlowError(
            f"{what}: weights are missing {missing} ({len(sd)} matching tensors given); "
            "pass the extractor's own state_dict (or an official checkpoint for CLIP)"
        )


def check_frames(frames, what: str) -> np.ndarray:
    """Video frames (numpy or torch) as uint8 numpy ``[T, H, W, 3]`` RGB, T >= 1; else a VSSFlowError naming ``what``."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise VSSFlowError(f"{what}: frames must be uint8 RGB [T, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    if frames.shape[0] == 0:
        raise VSSFlowError(f"{what}: no frames given")
    return frames
