"""The VSSFlow model file: one ``.safetensors`` with the config in its metadata.

Tensors: the model ``state_dict`` (official key names for the official layout) plus optional extra
tensors (``vae.*``, ``vocoder.*`` codec weights, extractor weights). Metadata:
``{"format": "vssflow", "version": "1", "config": ModelConfig.to_json(), ...}``.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

from vssflow_core.config import ModelConfig
from vssflow_core.errors import VSSFlowError

FORMAT = "vssflow"
VERSION = "1"


def _own_storage(t: torch.Tensor) -> torch.Tensor:
    """A CPU tensor with its own storage (safetensors refuses views sharing memory, such as the
    fused attention weights)."""
    t = t.detach().to("cpu").contiguous()
    return t.clone() if t.untyped_storage().nbytes() != t.numel() * t.element_size() else t


def save_model_file(path, model, extra_tensors: dict | None = None, metadata: dict | None = None,
                    overwrite: bool = False) -> Path:
    """Write ``model`` (a VSSFlow) and ``extra_tensors`` to ``path`` atomically (temp file in the
    same folder, then rename). Refuses an existing file unless ``overwrite``. Metadata values are
    stored as strings (non-strings as JSON). Returns the path."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.exists() and not overwrite:
        raise VSSFlowError(f"model file {path} already exists; choose another name (or pass overwrite=True)")
    tensors = {k: _own_storage(v) for k, v in model.state_dict().items()}
    for key, value in (extra_tensors or {}).items():
        if key in tensors:
            raise VSSFlowError(f"extra tensor {key!r} clashes with a model weight of the same name; rename it")
        tensors[key] = _own_storage(value)
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    meta.update(format=FORMAT, version=VERSION, config=model.config.to_json())
    from safetensors import SafetensorError

    from vssflow_core.media.files import atomic_output, write_failed

    # temp name, then a rename (that fails if a file appeared meanwhile, unless overwrite)
    with atomic_output(path, replace=overwrite) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=meta)
        except SafetensorError as e:  # its I/O errors (a full disk) carry no errno
            raise write_failed(path, e) from None
    return path


def read_metadata(path) -> dict:
    """The metadata dict of a safetensors file, with clear errors for other or damaged files."""
    path = Path(path)
    if not path.is_file():
        raise VSSFlowError(f"model file {path} does not exist")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise VSSFlowError(f"model file {path} is not a safetensors file (only {size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n <= 0 or n > min(size - 8, 100_000_000):
            raise VSSFlowError(f"model file {path} is not a safetensors file (bad header length {n}); "
                               "convert an official .ckpt with `python -m vssflow_core convert`")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise VSSFlowError(f"model file {path} is not a safetensors file (header is not JSON)") from None
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        raise VSSFlowError(f"model file {path} is truncated: expected {8 + n + end} bytes, found {size}; "
                           "copy or download it again")
    return header.get("__metadata__") or {}


def load_model_file(path, device="cpu", dtype: torch.dtype | None = None):
    """Load a VSSFlow model file.

    Returns: ``(model, extra_tensors, metadata)``: the VSSFlow in eval mode on ``device`` (floating
    weights cast to ``dtype`` if given), every tensor that is not a model weight, and the metadata.
    """
    from safetensors import safe_open

    from vssflow_core.model import VSSFlow

    meta = read_metadata(path)
    if meta.get("format") != FORMAT or "config" not in meta:
        raise VSSFlowError(f"model file {path} is a safetensors file but not a VSSFlow model (metadata format "
                           f"{meta.get('format')!r}, expected {FORMAT!r}); convert official checkpoints first")
    config = ModelConfig.from_json(meta["config"])
    model = VSSFlow(config)
    wanted = model.state_dict()
    state, extras = {}, {}
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():
            (state if key in wanted else extras)[key] = f.get_tensor(key)
    missing = sorted(set(wanted) - set(state))
    if missing:
        raise VSSFlowError(f"model file {path} lacks {len(missing)} weight(s) of its config {config.name!r}, "
                           f"e.g. {missing[:5]}")
    bad = [f"{k}: file {list(state[k].shape)} vs model {list(wanted[k].shape)}" for k in state if state[k].shape != wanted[k].shape]
    if bad:
        raise VSSFlowError(f"model file {path}: {len(bad)} weight(s) have the wrong shape: " + "; ".join(bad[:5]))
    model.load_state_dict(state, strict=True)
    model.to(device)
    if dtype is not None:
        model.to(dtype)
    return model.eval(), extras, meta
