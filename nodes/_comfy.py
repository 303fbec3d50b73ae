"""The one place the nodes touch ComfyUI: its V3 API, folders, progress, interrupts, memory.

Inside ComfyUI this re-exports ``comfy_api.latest`` (``io``, ``ui``, ``InputImpl``, ``Types``) and
uses ``folder_paths``/``comfy.*``. Outside ComfyUI (unit tests) ``comfy_api`` is not importable and
a minimal stand-in with the same names is used instead: schemas are recorded, ``execute`` runs as
is, outputs are plain ``NodeOutput`` objects, and the folders come from ``FALLBACK_DIRS``.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

MODEL_FOLDER = "vssflow"
MODEL_EXTENSIONS = {".safetensors", ".sft"}  # model files load with safetensors only

try:  # inside ComfyUI
    from comfy_api.latest import InputImpl, Types, io, ui  # noqa: F401

    IN_COMFYUI = True
except ImportError:  # unit tests without ComfyUI
    IN_COMFYUI = False

if not IN_COMFYUI:
    from types import SimpleNamespace

    class _Recorded:
        """Any schema element: remembers its arguments."""

        def __init__(self, *args, **kwargs):
            self.args, self.kwargs = args, kwargs
            self.id = args[0] if args else kwargs.get("id")

    def _io_type(name: str):
        return type(name, (), {"Input": _Recorded, "Output": _Recorded, "io_type": name})

    class _NodeOutput:
        def __init__(self, *args, ui=None, expand=None, block_execution=None):
            self.args, self.ui = args, ui

        @property
        def result(self):
            return self.args or None

        def __getitem__(self, index):
            return self.args[index]

    class _ComfyNode:
        @classmethod
        def define_schema(cls):
            raise NotImplementedError

    class _Schema(_Recorded):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.node_id = kwargs["node_id"]
            self.inputs = kwargs.get("inputs", [])
            self.outputs = kwargs.get("outputs", [])

    @dataclass
    class _VideoComponents:
        images: Any
        frame_rate: Fraction
        audio: Any = None
        metadata: Any = None

    class _VideoFromFile:
        def __init__(self, file):
            self._file = file

        def get_stream_source(self):
            return self._file

    class _VideoFromComponents:
        def __init__(self, components):
            self._components = components

        def get_components(self):
            return self._components

    class _SavedResult(dict):
        def __init__(self, filename, subfolder, type):
            super().__init__(filename=filename, subfolder=subfolder, type=getattr(type, "value", type))

    class _PreviewVideo:
        def __init__(self, values, **kwargs):
            self.values = values

        def as_dict(self):
            return {"images": self.values, "animated": (True,)}

    io = SimpleNamespace(
        ComfyNode=_ComfyNode, Schema=_Schema, NodeOutput=_NodeOutput, Custom=_io_type,
        Int=_io_type("INT"), Float=_io_type("FLOAT"), String=_io_type("STRING"), Boolean=_io_type("BOOLEAN"),
        Combo=_io_type("COMBO"), Image=_io_type("IMAGE"), Audio=_io_type("AUDIO"), Video=_io_type("VIDEO"),
        UploadType=SimpleNamespace(video="video_upload", audio="audio_upload"),
        FolderType=SimpleNamespace(output=SimpleNamespace(value="output"), input=SimpleNamespace(value="input"),
                                   temp=SimpleNamespace(value="temp")),
        Hidden=SimpleNamespace(unique_id="UNIQUE_ID", prompt="PROMPT", extra_pnginfo="EXTRA_PNGINFO"),
    )
    ui = SimpleNamespace(PreviewVideo=_PreviewVideo, SavedResult=_SavedResult)
    InputImpl = SimpleNamespace(VideoFromFile=_VideoFromFile, VideoFromComponents=_VideoFromComponents)
    Types = SimpleNamespace(VideoComponents=_VideoComponents)

# Used when ComfyUI's folder_paths is not importable (tests set these).
FALLBACK_DIRS = {
    "input": Path(tempfile.gettempdir()) / "vssflow_comfy" / "input",
    "output": Path(tempfile.gettempdir()) / "vssflow_comfy" / "output",
    "temp": Path(tempfile.gettempdir()) / "vssflow_comfy" / "temp",
    MODEL_FOLDER: Path(tempfile.gettempdir()) / "vssflow_comfy" / "models" / MODEL_FOLDER,
}


def _folder_paths():
    try:
        import folder_paths
    except ImportError:
        return None
    return folder_paths


def directory(kind: str) -> Path:
    """ComfyUI's ``input``/``output``/``temp`` folder (created if missing)."""
    fp = _folder_paths()
    if fp is not None:
        path = Path({"input": fp.get_input_directory, "output": fp.get_output_directory,
                     "temp": fp.get_temp_directory}[kind]())
    else:
        path = Path(FALLBACK_DIRS[kind])
    path.mkdir(parents=True, exist_ok=True)
    return path


def register_model_folder() -> None:
    """Register ``models/vssflow`` with model-file extensions only (keeps a user's extra paths)."""
    fp = _folder_paths()
    if fp is None:
        return
    default = os.path.join(fp.models_dir, MODEL_FOLDER)
    if MODEL_FOLDER in fp.folder_names_and_paths:
        paths, exts = fp.folder_names_and_paths[MODEL_FOLDER]
        if default not in paths:
            paths.insert(0, default)
        fp.folder_names_and_paths[MODEL_FOLDER] = (paths, set(exts) | MODEL_EXTENSIONS)
    else:
        fp.folder_names_and_paths[MODEL_FOLDER] = ([default], set(MODEL_EXTENSIONS))


def model_folders() -> list[str]:
    """Folders searched for model files: ComfyUI's ``models/vssflow`` paths, or the fallback folder outside it."""
    fp = _folder_paths()
    if fp is not None:
        return list(fp.get_folder_paths(MODEL_FOLDER))
    return [str(FALLBACK_DIRS[MODEL_FOLDER])]


def model_files() -> list[str]:
    """Model files under the vssflow model folders (relative names, sorted)."""
    fp = _folder_paths()
    if fp is not None:
        return list(fp.get_filename_list(MODEL_FOLDER))
    root = Path(FALLBACK_DIRS[MODEL_FOLDER])
    if not root.is_dir():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.suffix in MODEL_EXTENSIONS)


def model_path(name: str) -> str | None:
    """Full path of a listed model file, or None. Outside ComfyUI the name must stay inside the
    fallback folder (absolute paths, ``..`` and symlinks that lead out: VSSFlowError), as ComfyUI's
    own lookup keeps it inside ``models/vssflow``."""
    from vssflow_core.media.files import safe_join

    fp = _folder_paths()
    if fp is not None:
        return fp.get_full_path(MODEL_FOLDER, name)
    path = safe_join(FALLBACK_DIRS[MODEL_FOLDER], name)
    return str(path) if path.is_file() else None


def input_path(name: str) -> str:
    """Path of a file from the input folder (accepts ComfyUI's ``"name [output]"`` annotations).

    The name must stay inside its folder: absolute paths, ``..`` and symlinks that lead out are
    refused with a VSSFlowError (a prompt sent through the API can carry any string here).
    """
    from vssflow_core.media.files import safe_join

    fp = _folder_paths()
    if fp is not None:
        relative, base = fp.annotated_filepath(name)
        return str(safe_join(base or fp.get_input_directory(), relative))
    return str(safe_join(directory("input"), name))


def progress(total: int | None):
    """A ``callback(done, total)`` that drives ComfyUI's progress bar and raises on Cancel.

    Outside ComfyUI it is a no-op. ``total`` None (adaptive solvers) shows a running count.
    """
    try:
        import comfy.model_management as mm
        import comfy.utils
    except ImportError:
        return None
    bar = comfy.utils.ProgressBar(total or 1)

    def callback(done: int, total_now: int | None) -> None:
        mm.throw_exception_if_processing_interrupted()
        bar.update_absolute(done, total_now or max(done + 1, bar.total))

    return callback


def expand_save_variables(prefix: str, frame_size) -> str:
    """The file-name variables ComfyUI's core save nodes expand on the server: %year% %month% %day%
    %hour% %minute% %second% (local time, zero-padded) and %width% %height% (px). ``frame_size()``
    gives (width, height); it is called only when the prefix uses them (it may read the video)."""
    import time

    if "%" not in prefix:
        return prefix
    now = time.localtime()
    values = {"year": now.tm_year, "month": f"{now.tm_mon:02d}", "day": f"{now.tm_mday:02d}",
              "hour": f"{now.tm_hour:02d}", "minute": f"{now.tm_min:02d}", "second": f"{now.tm_sec:02d}"}
    if "%width%" in prefix or "%height%" in prefix:
        values["width"], values["height"] = frame_size()
    for name, value in values.items():
        prefix = prefix.replace(f"%{name}%", str(value))
    return prefix


def workflow_metadata(node_cls) -> dict[str, str] | None:
    """The running prompt and the UI's workflow as JSON strings, as core Save Video stores them in
    its files (so that dropping the result on ComfyUI restores the graph); None when ComfyUI runs
    with ``--disable-metadata`` or outside ComfyUI."""
    import json

    hidden = getattr(node_cls, "hidden", None)
    if hidden is None:
        return None
    try:
        from comfy.cli_args import args

        if args.disable_metadata:
            return None
    except ImportError:
        pass
    tags = {key: json.dumps(value) for key, value in (getattr(hidden, "extra_pnginfo", None) or {}).items()}
    if getattr(hidden, "prompt", None) is not None:
        tags["prompt"] = json.dumps(hidden.prompt)
    return tags or None


def free_memory_bytes() -> int | None:
    """Free system memory (bytes) as ComfyUI counts it (psutil), or None when it cannot be read."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except (ImportError, OSError):
        return None


def devices(choice: str):
    """(load_device, offload_device) for ``auto|cpu|cuda``; ComfyUI's choice for ``auto``."""
    import torch

    from vssflow_core.errors import VSSFlowError
    from vssflow_core.pipeline import resolve_device

    if choice != "auto":
        try:
            resolve_device(choice)  # the library's check of this machine
        except VSSFlowError as e:
            raise VSSFlowError(f"VSSFlowModelLoader: {e} (the Loader's device 'auto' is ComfyUI's device)") from None
    try:
        import comfy.model_management as mm
    except ImportError:
        dev = torch.device("cuda" if choice in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
        return dev, torch.device("cpu")
    load = mm.get_torch_device() if choice == "auto" else torch.device(choice)
    return load, mm.unet_offload_device()


def patch_model(module, load_device, offload_device):
    """Wrap a torch module in ComfyUI's ModelPatcher so its memory manager can offload it (None outside)."""
    try:
        import comfy.model_patcher
    except ImportError:
        return None
    return comfy.model_patcher.ModelPatcher(module, load_device=load_device, offload_device=offload_device)


def load_on_device(patcher) -> None:
    """Ask ComfyUI to place a patched model on its load device (frees others if needed).

    Always whole: ComfyUI's partial loading (low VRAM) leaves layers without its cast hooks on the
    CPU, which plain torch layers like these cannot run from, so a model that does not fit is an
    error naming the fix rather than a device mismatch deep in torch."""
    if patcher is None:
        return
    import inspect

    import comfy.model_management as mm
    import torch

    from vssflow_core.errors import VSSFlowError

    whole = {"force_full_load": True} if "force_full_load" in inspect.signature(mm.load_models_gpu).parameters else {}
    try:
        with torch.inference_mode(False):  # moved weights must stay normal tensors (nodes run in inference mode)
            mm.load_models_gpu([patcher], **whole)
    except getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError):
        size_gb = patcher.model_size() / 2**30
        raise VSSFlowError(f"VSSFlowModelLoader: the model ({size_gb:.1f} GB) does not fit in the GPU's free memory; "
                           "choose precision fp16 or bf16, close other models, or choose device cpu") from None
