"""The pack inside a real ComfyUI server (opt-in: needs a ComfyUI checkout with its venv).

Enable with  COMFYUI_PATH=/path/to/ComfyUI COMFYUI_PYTHON=/path/to/ComfyUI/venv/bin/python
(``scripts/setup_comfyui.sh DIR`` creates both). Without them every test here is skipped with that hint.

What is checked: the server starts with ``--cpu`` and lists the six VSSFlow nodes with no import failure
in its log; every example workflow in ``example_workflows/`` (UI format, converted to API format here using
``/object_info``) runs to success with empty ``node_errors`` and writes outputs of the right duration;
one bad input per node gives a clear error naming the problem while the server keeps running and no
partial file is left in the output folder.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from comfyui_harness import (
    VSSFLOW_NODES,
    WORKFLOWS_DIR,
    example_workflows,
    history_error,
    running_server,
    ui_to_api,
)

pytestmark = pytest.mark.timeout(int(os.environ.get("VSSFLOW_COMFY_TIMEOUT", "1800")))

#: Per-prompt wall-clock limit (s): CPU-only sampling on a shared machine.
PROMPT_TIMEOUT_S = float(os.environ.get("VSSFLOW_COMFY_PROMPT_TIMEOUT", "900"))
#: Output durations must match the source within this (s); AAC frames and frame rounding.
DURATION_TOL_S = 0.12
#: Optional model file to use instead of the loader's saved choice (e.g. a small one for quick runs).
MODEL_FILE = os.environ.get("VSSFLOW_COMFY_MODEL_FILE")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from running_server(tmp_path_factory, "comfy_integration")


@pytest.fixture(scope="module")
def object_info(server):
    return server.get_json("/object_info", timeout=120)


# ----------------------------------------------------------------------------------------------------------
# media helpers (PyAV in the test interpreter)
# ----------------------------------------------------------------------------------------------------------

def _container_tags(path: Path) -> dict:
    import av

    with av.open(str(path)) as container:
        return dict(container.metadata)


def _stream_durations(path: Path) -> dict:
    """{'video': seconds or None, 'audio': seconds or None} of a media file (from decoded packets)."""
    import av

    out = {"video": None, "audio": None}
    with av.open(str(path)) as c:
        for kind in ("video", "audio"):
            streams = [s for s in c.streams if s.type == kind]
            if not streams:
                continue
            s = streams[0]
            if s.duration is not None and s.time_base is not None:
                out[kind] = float(s.duration * s.time_base)
        if out["video"] is None and c.duration is not None and any(s.type == "video" for s in c.streams):
            out["video"] = c.duration / 1e6
        if out["audio"] is None and any(s.type == "audio" for s in c.streams):
            s = next(s for s in c.streams if s.type == "audio")
            n = sum(f.samples for f in c.decode(s))
            out["audio"] = n / s.rate
    return out


def _audio_rms(path: Path) -> float:
    """RMS of the first audio stream (all channels), NaN-safe: NaN/inf give +inf."""
    import av
    import numpy as np

    total, count = 0.0, 0
    with av.open(str(path)) as c:
        stream = next(s for s in c.streams if s.type == "audio")
        for frame in c.decode(stream):
            x = frame.to_ndarray().astype(np.float64)
            if not np.isfinite(x).all():
                return float("inf")
            total += float((x ** 2).sum())
            count += x.size
    return (total / max(count, 1)) ** 0.5


def _source_clip_durations(prompt: dict, input_dir: Path) -> list[float]:
    """Durations (s) the prompt's loader nodes will produce: whole sample files, or the requested window."""
    durs = []
    for node in prompt.values():
        inputs = node["inputs"]
        if node["class_type"] == "VSSFlowLoadVideo" and isinstance(inputs.get("video"), str) \
                and "video_in" not in inputs:
            path = input_dir / inputs["video"]
            if not path.exists():
                path = WORKFLOWS_DIR / "input" / inputs["video"]
            d = _stream_durations(path)["video"]
            start = float(inputs.get("start_s") or 0.0)
            want = float(inputs.get("duration_s") or 0.0)
            d = max(0.0, d - start)
            if want > 0:
                d = min(d, want)
            if not inputs.get("max_frames"):
                durs.append(d)
        elif node["class_type"] == "LoadVideo" and isinstance(inputs.get("file"), str):
            durs.append(_stream_durations(input_dir / inputs["file"])["video"])
    return durs


def _new_files(root: Path, before: set) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p not in before)


def _assert_no_partial_files(root: Path):
    """No temporary/half-written leftovers in the output folder."""
    bad = [p for p in root.rglob("*") if p.is_file() and (p.name.startswith(".") or p.suffix in (".tmp", ".part")
                                                           or p.stat().st_size == 0)]
    assert not bad, f"partial files left in the output folder: {bad}"


# ----------------------------------------------------------------------------------------------------------
# start-up
# ----------------------------------------------------------------------------------------------------------

def test_server_lists_the_six_nodes_without_import_failure(server, object_info):
    missing = [n for n in VSSFLOW_NODES if n not in object_info]
    log = server.log_text()
    assert not missing, f"nodes missing from /object_info: {missing}; server log tail:\n{log[-3000:]}"
    for bad in ("IMPORT FAILED", "Cannot import", "Traceback"):
        assert bad not in log, f"{bad!r} in the ComfyUI log:\n{log[-3000:]}"
    for name in VSSFLOW_NODES:
        info = object_info[name]
        assert info["category"].startswith("audio/VSSFlow"), (name, info["category"])
        assert info["python_module"].startswith("custom_nodes."), info["python_module"]
        for section in ("required", "optional"):
            for inp, spec in (info["input"].get(section) or {}).items():
                opts = spec[1] if len(spec) > 1 else {}
                assert opts.get("tooltip"), f"{name}.{inp} has no tooltip"
        assert all(info.get("output_tooltips") or [None]), f"{name} outputs lack tooltips"


def test_workflow_templates_are_served(server):
    if not example_workflows():
        pytest.skip("no example workflows yet")
    listed = server.get_json("/workflow_templates")
    ours = [v for v in listed.values() if set(v) >= {p.stem for p in example_workflows()}]
    assert ours, f"/workflow_templates does not list the pack's workflows: {listed}"
    for path in example_workflows():
        got = server.get_json(f"/api/workflow_templates/{server.pack_dir_name}/{path.name}")
        assert got == json.loads(path.read_text())


def test_sample_clips_are_installed_in_input_folder(server, object_info):
    samples = sorted(p.name for p in (WORKFLOWS_DIR / "input").glob("*.mp4")) if (WORKFLOWS_DIR / "input").is_dir() \
        else []
    if not samples:
        pytest.skip("example_workflows/input/ has no sample clips yet")
    options = object_info["VSSFlowLoadVideo"]["input"]["required"]["video"]
    listed = options[0] if isinstance(options[0], list) else options[1].get("options", [])
    for name in samples:
        assert name in listed, f"sample {name} not offered by VSSFlowLoadVideo: {listed}"
        assert (server.input_dir / name).is_file()


# ----------------------------------------------------------------------------------------------------------
# the example workflows
# ----------------------------------------------------------------------------------------------------------

_WORKFLOWS = example_workflows()


@pytest.mark.parametrize("wf_path", _WORKFLOWS, ids=[p.stem for p in _WORKFLOWS])
def test_example_workflow_runs(server, object_info, wf_path):
    workflow = json.loads(wf_path.read_text())
    prompt = ui_to_api(workflow, object_info)
    if MODEL_FILE:
        for node in prompt.values():
            if node["class_type"] == "VSSFlowModelLoader":
                node["inputs"]["model"] = Path(MODEL_FILE).name
    before = set(p for p in server.output_dir.rglob("*") if p.is_file())
    t0 = time.monotonic()
    resp, entry = server.run(prompt, timeout_s=PROMPT_TIMEOUT_S, workflow=workflow)
    elapsed = time.monotonic() - t0
    assert resp.get("node_errors") == {}, resp
    err = history_error(entry)
    assert entry["status"]["status_str"] == "success" and err is None, \
        f"{wf_path.name} failed after {elapsed:.1f} s: {json.dumps(err)[:3000]}"
    files = [f for f in server.output_files(entry) if f.parent.is_relative_to(server.output_dir)]
    new = _new_files(server.output_dir, before)
    assert files, f"{wf_path.name}: no output files in history outputs {entry['outputs']}"
    for f in files:
        assert f.is_file() and f in new, f"{f} listed in history but not a new file"
    sources = _source_clip_durations(prompt, server.input_dir)
    for f in files:
        d = _stream_durations(f)
        if d["video"] is not None:
            assert d["audio"] is not None, f"{f.name} has no audio stream"
            assert abs(d["audio"] - d["video"]) <= DURATION_TOL_S, f"{f.name}: audio {d} vs video"
        if d["audio"] is not None:
            rms = _audio_rms(f)
            assert 1e-4 < rms < 1.0, f"{f.name}: generated audio RMS {rms} (silent, clipped or NaN)"
        main = d["video"] if d["video"] is not None else d["audio"]
        assert main and main > 0.2, f"{f.name}: duration {d}"
        if len(set(round(s, 2) for s in sources)) == 1:
            assert abs(main - sources[0]) <= DURATION_TOL_S, f"{f.name}: {d} vs source clip {sources[0]:.3f} s"
        if f.suffix == ".mp4":  # dropped on ComfyUI, the file restores the graph (as core Save Video's do)
            tags = _container_tags(f)
            assert json.loads(tags["workflow"]) == workflow, f.name
            stored = json.loads(tags["prompt"])  # ComfyUI adds its own keys (is_changed) to each node
            assert {k: (n["class_type"], n["inputs"]) for k, n in stored.items()} == \
                {k: (n["class_type"], n["inputs"]) for k, n in prompt.items()}, f.name
    _assert_no_partial_files(server.output_dir)
    print(f"{wf_path.name}: {elapsed:.1f} s, outputs {[f.name for f in files]}")


def test_no_example_workflows_is_a_failure():
    """The pack must ship its example workflows (a file check: runs without ComfyUI too)."""
    assert _WORKFLOWS, f"no example workflows in {WORKFLOWS_DIR}"


# ----------------------------------------------------------------------------------------------------------
# bad input, one per node: clear error, server keeps running, nothing half-written
# ----------------------------------------------------------------------------------------------------------

def _sample_clip(server) -> str:
    samples = WORKFLOWS_DIR / "input"
    clips = sorted(p.name for p in samples.glob("*.mp4") if (server.input_dir / p.name).is_file()) \
        if samples.is_dir() else []
    if not clips:
        pytest.skip("no sample clip in the input folder (example_workflows/input/ is empty)")
    return clips[0]


def _expect_error(server, prompt: dict, *needles: str, validation_ok: bool = True) -> str:
    """Queue a prompt that must fail; returns the error text. Either rejected at validation (HTTP 400 with
    node_errors) or failing at execution (history status error). The server must still answer after."""
    before = set(p for p in server.output_dir.rglob("*") if p.is_file())
    status, body = server.queue(prompt)
    if status != 200:
        assert validation_ok, f"expected an execution error, got validation {status}: {body}"
        text = json.dumps(body)
    else:
        assert body.get("node_errors") in ({}, None) or validation_ok, body
        entry = server.wait(body["prompt_id"], timeout_s=PROMPT_TIMEOUT_S)
        assert entry["status"]["status_str"] == "error", f"prompt should have failed: {entry['status']}"
        err = history_error(entry)
        assert err is not None
        text = err.get("exception_message", "") + " " + err.get("exception_type", "")
        assert "Traceback" not in err.get("exception_message", "")
    for needle in needles:
        assert needle.lower() in text.lower(), f"error does not mention {needle!r}: {text[:2000]}"
    assert server.alive(), "ComfyUI stopped answering after a bad input"
    assert not _new_files(server.output_dir, before), "a failed prompt left files in the output folder"
    _assert_no_partial_files(server.output_dir)
    return text


def _embedded(server) -> str:
    """The model loader's default entry (the built-in embedded model), or VSSFLOW_COMFY_MODEL_FILE's name."""
    if MODEL_FILE:
        return Path(MODEL_FILE).name
    spec = server.get_json("/object_info/VSSFlowModelLoader")["VSSFlowModelLoader"]["input"]["required"]["model"]
    return spec[1]["default"]


def _loader(clip: str, **kw) -> dict:
    inputs = {"video": clip, "start_s": 0.0, "duration_s": 0.0, "max_frames": 0, "fps": 0.0}
    inputs.update(kw)
    return {"class_type": "VSSFlowLoadVideo", "inputs": inputs}


def _preview(src: list) -> dict:
    return {"class_type": "PreviewAny", "inputs": {"source": src}}


def test_bad_input_load_video_missing_file(server):
    text = _expect_error(server, {"1": _loader("no_such_clip.mp4"), "2": _preview(["1", 3])}, "no_such_clip.mp4")
    assert "VSSFlowLoadVideo" in text


def test_bad_input_load_video_path_outside_input_folder(server):
    """The file name arrives as any string through the API: it may not leave the input folder."""
    for name in ("../comfyui_version.py", "/etc/hostname"):
        text = _expect_error(server, {"1": _loader(name), "2": _preview(["1", 3])}, "VSSFlowLoadVideo", name)
        assert "'..'" in text or "absolute" in text


def test_load_video_connected_video_ignores_the_file_list(server):
    """With video_in connected the picked file is not used, so a shared workflow whose file name is
    not in this input folder still validates and runs."""
    clip = _sample_clip(server)
    prompt = {"1": _loader(clip, max_frames=5), "2": _loader("not_here.mp4", max_frames=3),
              "3": _preview(["2", 3])}
    prompt["2"]["inputs"]["video_in"] = ["1", 4]
    status, body = server.queue(prompt)
    assert status == 200, body
    entry = server.wait(body["prompt_id"], timeout_s=PROMPT_TIMEOUT_S)
    assert entry["status"]["status_str"] == "success", entry["status"]


def test_bad_input_load_video_corrupt_file(server):
    (server.input_dir / "corrupt_clip.mp4").write_bytes(b"this is not a video" * 100)
    text = _expect_error(server, {"1": _loader("corrupt_clip.mp4"), "2": _preview(["1", 3])}, "corrupt_clip.mp4")
    print(text[:400])


def test_bad_input_load_video_window_outside_video(server):
    clip = _sample_clip(server)
    text = _expect_error(server, {"1": _loader(clip, start_s=9999.0), "2": _preview(["1", 3])}, "9999")
    print(text[:400])


def test_bad_input_model_loader_not_a_vssflow_file(server):
    import torch
    from safetensors.torch import save_file

    models = server.extra_model_dirs["vssflow"]
    save_file({"w": torch.zeros(2, 2)}, str(models / "not_vssflow.safetensors"))
    (models / "truncated.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    info = server.get_json("/object_info/VSSFlowModelLoader")["VSSFlowModelLoader"]
    spec = info["input"]["required"]["model"]
    options = spec[0] if isinstance(spec[0], list) else spec[1].get("options", [])
    if "not_vssflow.safetensors" not in options:
        pytest.fail(f"files added to models/vssflow are not listed by VSSFlowModelLoader: {options}")
    for name in ("not_vssflow.safetensors", "truncated.safetensors"):
        prompt = {"1": {"class_type": "VSSFlowModelLoader",
                        "inputs": {"model": name, "device": "auto", "precision": "auto"}},
                  "2": {"class_type": "VSSFlowSampler", "inputs": {"model": ["1", 0], "images": ["3", 0], "fps": 25.0,
                                                                   "seed": 0, "steps": 1, "guidance": 0.0,
                                                                   "solver": "default", "variations": 1,
                                                                   "duration_s": 0.0}},
                  "3": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 4,
                                                               "color": 0}},
                  "4": _preview(["2", 0])}
        _expect_error(server, prompt, name, validation_ok=False)


def test_bad_input_model_loader_missing_file(server):
    prompt = {"1": {"class_type": "VSSFlowModelLoader",
                    "inputs": {"model": "gone.safetensors", "device": "auto", "precision": "auto"}},
              "2": _preview(["1", 0])}
    _expect_error(server, prompt, "gone.safetensors")


def test_bad_input_lips_no_face(server):
    """Frames without a face: either a clear error or a warning-only empty track that the sampler accepts."""
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 96, "height": 96, "batch_size": 5,
                                                           "color": 8421504}},
              "2": {"class_type": "VSSFlowExtractLipFeatures", "inputs": {"images": ["1", 0], "fps": 25.0,
                                                                          "face": "largest"}},
              "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 1]}}}
    status, body = server.queue(prompt)
    assert status == 200 and body["node_errors"] == {}, body
    entry = server.wait(body["prompt_id"], timeout_s=PROMPT_TIMEOUT_S)
    err = history_error(entry)
    if err is not None:
        assert "face" in err["exception_message"].lower(), err["exception_message"]
    else:
        assert "face" in server.log_text().lower(), "no face found but nothing said so in the log"
    assert server.alive()


def test_bad_input_text_condition_end_before_start(server):
    prompt = {"1": {"class_type": "VSSFlowTextCondition",
                    "inputs": {"transcript": "hello there", "speech_start_s": 3.0, "speech_end_s": 1.0}},
              "2": _preview(["1", 0])}
    text = _expect_error(server, prompt, "VSSFlowTextCondition")
    assert "start" in text.lower() or "end" in text.lower(), text


def test_bad_input_sampler_without_frames(server):
    prompt = {"1": {"class_type": "VSSFlowModelLoader",
                    "inputs": {"model": _embedded(server), "device": "auto", "precision": "auto"}},
              "2": {"class_type": "VSSFlowSampler", "inputs": {"model": ["1", 0], "fps": 25.0, "seed": 0, "steps": 1,
                                                               "guidance": 0.0, "solver": "default",
                                                               "variations": 1, "duration_s": 0.0}},
              "3": _preview(["2", 0])}
    _expect_error(server, prompt, "VSSFlowSampler", "VIDEO")


@pytest.mark.parametrize("name, value", [("steps", 100000), ("guidance_rescale", 1.5)])
def test_bad_input_sampler_value_out_of_range(server, name, value):
    """Out-of-range widget values are refused by name. guidance_rescale is optional (-1 = the model's,
    0..1): the other prompts here leave it out, as workflows saved before it existed do, and still run."""
    sampler = {"model": ["1", 0], "images": ["3", 0], "fps": 25.0, "seed": 0, "steps": 1, "guidance": 0.0,
               "solver": "default", "variations": 1, "duration_s": 0.0, name: value}
    prompt = {"1": {"class_type": "VSSFlowModelLoader",
                    "inputs": {"model": _embedded(server), "device": "auto", "precision": "auto"}},
              "3": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 4, "color": 0}},
              "2": {"class_type": "VSSFlowSampler", "inputs": sampler},
              "4": _preview(["2", 0])}
    _expect_error(server, prompt, name)


def test_bad_input_mux_without_video(server):
    prompt = {"1": {"class_type": "EmptyAudio", "inputs": {"duration": 1.0, "sample_rate": 16000, "channels": 1}},
              "2": {"class_type": "VSSFlowMuxAudio", "inputs": {"audio": ["1", 0], "fps": 25.0, "mode": "replace",
                                                                "audio_gain": 1.0, "original_gain": 1.0,
                                                                "variation": 0, "filename_prefix": "VSSFlow/bad"}}}
    _expect_error(server, prompt, "VSSFlowMuxAudio", "VIDEO")


def test_cancel_during_sampling_keeps_server_and_output_clean(server):
    """POST /interrupt while the sampler runs: the prompt ends as interrupted within moments, nothing is
    written, and the server keeps answering."""
    prompt = {"1": {"class_type": "VSSFlowModelLoader",  # on the CPU, 2 windows x 200 steps take a minute or more
                    "inputs": {"model": _embedded(server), "device": "cpu", "precision": "auto"}},
              "3": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 250,
                                                           "color": 0}},
              "2": {"class_type": "VSSFlowSampler", "inputs": {"model": ["1", 0], "images": ["3", 0], "fps": 25.0,
                                                               "seed": 1, "steps": 200, "guidance": 0.0,
                                                               "solver": "euler", "variations": 1,
                                                               "duration_s": 0.0}},
              "4": {"class_type": "VSSFlowMuxAudio", "inputs": {"audio": ["2", 0], "images": ["3", 0], "fps": 25.0,
                                                                "mode": "replace", "audio_gain": 1.0,
                                                                "original_gain": 1.0, "variation": 0,
                                                                "filename_prefix": "VSSFlow/cancelled"}}}
    before = set(p for p in server.output_dir.rglob("*") if p.is_file())
    status, body = server.queue(prompt)
    assert status == 200 and body["node_errors"] == {}, body
    pid = body["prompt_id"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:   # wait until the sampler node is executing
        running = server.get_json("/queue")["queue_running"]
        if running and running[0][1] == pid:
            break
        time.sleep(0.2)
    time.sleep(1.5)
    t0 = time.monotonic()
    server.post_json("/interrupt", {})
    entry = server.wait(pid, timeout_s=PROMPT_TIMEOUT_S)
    stop_s = time.monotonic() - t0
    assert entry["status"]["status_str"] != "success", "the sampler ran to the end: Cancel did not stop it"
    names = [m[0] for m in entry["status"]["messages"]]
    assert "execution_interrupted" in names, names
    assert stop_s < 60, f"took {stop_s:.1f} s to stop after Cancel"
    assert server.alive()
    assert not _new_files(server.output_dir, before), "a cancelled prompt left files in the output folder"
    _assert_no_partial_files(server.output_dir)
    print(f"cancel: stopped {stop_s:.2f} s after /interrupt")
