"""VSSFlowModelLoader: the embedded default or a file from ComfyUI/models/vssflow -> VSSFLOW_MODEL."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from vssflow_core.config import PRECISIONS

from . import _comfy
from ._comfy import io

EMBEDDED = "embedded (built-in default)"
DEVICES = ["auto", "cpu", "cuda"]
ModelType = io.Custom("VSSFLOW_MODEL")

_CACHE: dict[tuple, "VSSFlowModel"] = {}  # the last loaded model, so re-queued graphs do not reload


@dataclass
class VSSFlowModel:
    """The ``VSSFLOW_MODEL`` value: a loaded bundle and ComfyUI's ModelPatcher around it."""

    bundle: Any
    patcher: Any
    name: str

    def prepare(self):
        """Place the model on its device through ComfyUI's memory manager; returns the bundle."""
        _comfy.load_on_device(self.patcher)
        return self.bundle


def resolve(model: str) -> str:
    """Dropdown entry -> ``"embedded"`` or a full path; a clear error when the file is gone."""
    from vssflow_core.errors import VSSFlowError

    if model == EMBEDDED:
        return "embedded"
    path = _comfy.model_path(model)
    if path is None:
        raise VSSFlowError(f"VSSFlowModelLoader: model file '{model}' not found in {_comfy.model_folders()}; put the "
                           ".safetensors file there (convert an official checkpoint with `python -m vssflow_core "
                           "convert`) and refresh the page")
    return path


def _file_stamp(path: str) -> tuple:
    """(mtime, size) of a model file, so a replaced file is loaded again; () for the embedded model."""
    return () if path == "embedded" else (os.path.getmtime(path), os.path.getsize(path))


def load(model: str, device: str, precision: str) -> VSSFlowModel:
    """The Loader's model: ``model`` (``embedded`` or a listed file) on ``device`` (auto|cpu|cuda) at
    ``precision`` (one of ``config.PRECISIONS``), wrapped for ComfyUI's memory manager; the last one
    is cached by (path, file mtime and size, device, precision)."""
    import torch

    from vssflow_core.pipeline import load_bundle, resolve_dtype

    source = resolve(model)
    key = (source, _file_stamp(source), device, precision)
    if key in _CACHE:
        return _CACHE[key]
    load_device, offload_device = _comfy.devices(device)
    dtype = resolve_dtype(precision, load_device)
    bundle = load_bundle(source, device=offload_device, dtype=dtype)
    with torch.inference_mode(False):
        patcher = _comfy.patch_model(torch.nn.ModuleDict({"dit": bundle.model, "codec": bundle.codec}),
                                     load_device, offload_device)
    if patcher is None:  # outside ComfyUI: move it ourselves
        bundle.to(load_device)
    _CACHE.clear()
    _CACHE[key] = VSSFlowModel(bundle, patcher, model)
    return _CACHE[key]


class VSSFlowModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VSSFlowModelLoader",
            display_name="VSSFlow Model Loader",
            category="audio/VSSFlow",
            description="Loads a VSSFlow model: the built-in embedded default, or a converted .safetensors file "
                        "from ComfyUI/models/vssflow.",
            inputs=[
                io.Combo.Input("model", options=[EMBEDDED] + _comfy.model_files(), default=EMBEDDED,
                               tooltip="The built-in default (trained by this pack, runs on CPU) or a model file "
                                       "in ComfyUI/models/vssflow (make one with `python -m vssflow_core convert`)."),
                io.Combo.Input("device", options=DEVICES, default="auto",
                               tooltip="Where the model runs: auto = ComfyUI's device (GPU if there is one)."),
                io.Combo.Input("precision", options=list(PRECISIONS), default="auto",
                               tooltip="Weights precision: auto = fp32 on CPU, bf16 (or fp16) on GPU."),
            ],
            outputs=[ModelType.Output(display_name="model", tooltip="The loaded VSSFlow model for the sampler.")],
        )

    @classmethod
    def execute(cls, model, device="auto", precision="auto") -> io.NodeOutput:
        return io.NodeOutput(load(model, device, precision))

    @classmethod
    def fingerprint_inputs(cls, model, device="auto", precision="auto"):
        path = _comfy.model_path(model) if model != EMBEDDED else None
        return (model, device, precision, _file_stamp(path) if path else None)
