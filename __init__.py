"""ComfyUI entry point of the VSSFlow node pack (V3 API: ``comfy_entrypoint``).

Importing this must never break ComfyUI's start: any failure is logged with what to do, and the
pack then simply offers no nodes. Nothing heavy happens here: the library (``vssflow_core``) is
made importable, ``models/vssflow`` is registered, and the node classes are imported (their
``execute`` imports torch models, media and face tools lazily).
"""
from __future__ import annotations

import importlib.util
import logging
import os
import sys

_PACK_DIR = os.path.dirname(os.path.abspath(__file__))
_log = logging.getLogger("VSSFlow")


def _import_library() -> None:
    """Make ``import vssflow_core`` resolve to this pack's copy, without adding the pack to sys.path
    (that would shadow ComfyUI's own ``nodes`` module)."""
    if "vssflow_core" in sys.modules:
        import vssflow_core  # noqa: F401  (raises if a failed import left a placeholder)

        return
    init = os.path.join(_PACK_DIR, "vssflow_core", "__init__.py")
    spec = importlib.util.spec_from_file_location("vssflow_core", init,
                                                  submodule_search_locations=[os.path.dirname(init)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["vssflow_core"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["vssflow_core"]
        raise


NODES = []
try:
    _import_library()
    from .nodes import NODES  # noqa: F811
    from .nodes import _comfy

    _comfy.register_model_folder()
except Exception as e:  # never crash ComfyUI's start
    _log.error("VSSFlow: the node pack could not be loaded (%s: %s). Install its requirements "
               "with `python %s` using ComfyUI's Python; the VSSFlow nodes are unavailable until then.",
               type(e).__name__, e, os.path.join(_PACK_DIR, "install.py"), exc_info=True)

try:
    from comfy_api.latest import ComfyExtension

    class VSSFlowExtension(ComfyExtension):
        async def get_node_list(self):
            return list(NODES)

    async def comfy_entrypoint() -> VSSFlowExtension:
        return VSSFlowExtension()
except ImportError:  # not inside ComfyUI (e.g. the library's own tests)
    pass
