"""Weight-dict helpers shared by the official extractors."""
from __future__ import annotations

from typing import Iterable, Mapping

import torch

from vssflow_core.audio.vae import load_strict
from vssflow_core.errors import VSSFlowError

__all__ = ["load_strict", "strip_prefixes", "require"]


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
