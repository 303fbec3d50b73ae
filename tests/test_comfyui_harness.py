"""Tests of the ComfyUI harness's UI-format -> API-format converter (tests/comfyui_harness.py) and of the
shipped workflows' format; no ComfyUI needed."""
import json

import pytest

from comfyui_harness import VSSFLOW_NODES, WorkflowConversionError, example_workflows, ui_to_api

_OBJECT_INFO = {
    "Src": {"input": {"required": {"seed": ["INT", {"default": 0, "control_after_generate": True}],
                                   "file": [["a.mp4", "b.mp4"], {"video_upload": True}]},
                      "optional": {"gain": ["FLOAT", {"default": 1.0}]}},
            "input_order": {"required": ["seed", "file"], "optional": ["gain"]}},
    "Dst": {"input": {"required": {"images": ["IMAGE", {}], "fps": ["FLOAT", {"forceInput": True}],
                                   "text": ["STRING", {"multiline": True}], "flag": ["BOOLEAN", {}]}},
            "input_order": {"required": ["images", "fps", "text", "flag"]}},
}


def _wf(nodes, links):
    return {"nodes": nodes, "links": links, "version": 0.4}


def test_ui_to_api_widgets_links_control_and_upload():
    wf = _wf([
        {"id": 1, "type": "Src", "mode": 0, "inputs": [], "widgets_values": [42, "randomize", "b.mp4", "video", 0.5]},
        {"id": 7, "type": "Reroute", "mode": 0, "inputs": [{"name": "", "type": "*", "link": 1}]},
        {"id": 2, "type": "Dst", "mode": 0,
         "inputs": [{"name": "images", "type": "IMAGE", "link": 2}, {"name": "fps", "type": "FLOAT", "link": 3}],
         "widgets_values": ["hello", True]},
        {"id": 3, "type": "Note", "mode": 0, "widgets_values": ["a note"]},
    ], [[1, 1, 0, 7, 0, "IMAGE"], [2, 7, 0, 2, 0, "IMAGE"], [3, 1, 1, 2, 1, "FLOAT"]])
    api = ui_to_api(wf, _OBJECT_INFO)
    assert set(api) == {"1", "2"}
    assert api["1"]["inputs"] == {"seed": 42, "file": "b.mp4", "gain": 0.5}
    assert api["2"]["inputs"] == {"images": ["1", 0], "fps": ["1", 1], "text": "hello", "flag": True}


def test_ui_to_api_bypass_and_mute():
    wf = _wf([
        {"id": 1, "type": "Src", "mode": 0, "widgets_values": [1, "fixed", "a.mp4", 1.0]},
        {"id": 2, "type": "Dst", "mode": 4, "inputs": [{"name": "images", "type": "IMAGE", "link": 1}],
         "widgets_values": ["x", False]},
        {"id": 3, "type": "Dst", "mode": 0, "inputs": [{"name": "images", "type": "IMAGE", "link": 2}],
         "widgets_values": ["y", False]},
        {"id": 4, "type": "Dst", "mode": 2, "widgets_values": ["z", False]},
    ], [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"]])
    api = ui_to_api(wf, _OBJECT_INFO)
    assert set(api) == {"1", "3"}
    assert api["1"]["inputs"]["file"] == "a.mp4"   # no upload value present: nothing skipped wrongly
    assert api["3"]["inputs"]["images"] == ["1", 0]


def test_ui_to_api_fills_widgets_added_after_the_workflow_was_saved():
    """Values that stop short (a workflow saved before the node gained a widget) leave the rest at their
    defaults, as the frontend does when it loads such a workflow."""
    api = ui_to_api(_wf([{"id": 1, "type": "Src", "mode": 0, "widgets_values": [5, "fixed", "a.mp4"]}], []),
                    _OBJECT_INFO)
    assert api["1"]["inputs"] == {"seed": 5, "file": "a.mp4", "gain": 1.0}


def test_ui_to_api_rejects_unknown_type_and_leftover_values():
    with pytest.raises(WorkflowConversionError, match="NoSuch"):
        ui_to_api(_wf([{"id": 1, "type": "NoSuch", "widgets_values": []}], []), _OBJECT_INFO)
    with pytest.raises(WorkflowConversionError, match="left over"):
        ui_to_api(_wf([{"id": 1, "type": "Dst", "widgets_values": ["t", True, 3.5]}], []), _OBJECT_INFO)


def test_example_workflows_are_ui_format():
    """Every shipped workflow is UI format (loadable as a template), not API format."""
    assert len(example_workflows()) >= 4
    for path in example_workflows():
        wf = json.loads(path.read_text())
        assert isinstance(wf.get("nodes"), list) and "links" in wf, f"{path.name} is not a UI-format workflow"
        types = {n["type"] for n in wf["nodes"]}
        assert types & set(VSSFLOW_NODES), f"{path.name} uses none of the pack's nodes"
        ids = {n["id"] for n in wf["nodes"]}
        for link in wf["links"]:
            assert link[1] in ids and link[3] in ids, f"{path.name}: link {link} points at a missing node"
