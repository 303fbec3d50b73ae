"""Harness for running this pack inside a real ComfyUI (used by tests/test_comfyui_integration.py and
tests/test_comfyui_browser.py); tests/test_comfyui_harness.py tests its UI-format -> API-format converter.

Enable the ComfyUI tests with a checkout and its venv (``scripts/setup_comfyui.sh DIR`` makes both):

    export COMFYUI_PATH=/path/to/ComfyUI COMFYUI_PYTHON=/path/to/ComfyUI/venv/bin/python

The server is started on 127.0.0.1 on a free port with ``--cpu``; this repository is loaded as a custom node
pack through ``--extra-model-paths-config`` (a temporary folder holding a symlink named ``PACK_DIR_NAME``;
``VSSFLOW_PACK_DIR`` loads another copy of the pack instead),
with temporary input/output/temp/user folders, so nothing in the checkout is modified.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The pack folder loaded into ComfyUI: this repository, or VSSFLOW_PACK_DIR (e.g. an installed copy).
PACK_ROOT = Path(os.environ.get("VSSFLOW_PACK_DIR") or REPO_ROOT)
WORKFLOWS_DIR = PACK_ROOT / "example_workflows"
PACK_DIR_NAME = "ComfyUI-VSSFlow"

#: The six node ids of the pack (issue 4).
VSSFLOW_NODES = (
    "VSSFlowModelLoader",
    "VSSFlowLoadVideo",
    "VSSFlowExtractLipFeatures",
    "VSSFlowTextCondition",
    "VSSFlowSampler",
    "VSSFlowMuxAudio",
)

ENABLE_HINT = (
    "set COMFYUI_PATH to a ComfyUI checkout and COMFYUI_PYTHON to the python of its venv "
    "(scripts/setup_comfyui.sh DIR creates both), e.g. "
    "COMFYUI_PATH=/work/comfyui COMFYUI_PYTHON=/work/comfyui/venv/bin/python"
)

#: Node types that exist only in the frontend and are never sent to the server.
FRONTEND_ONLY_TYPES = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
UPLOAD_OPTIONS = ("image_upload", "video_upload", "audio_upload", "file_upload")


class WorkflowConversionError(ValueError):
    """A UI-format workflow cannot be turned into an API-format prompt."""


# ----------------------------------------------------------------------------------------------------------
# UI format -> API format
# ----------------------------------------------------------------------------------------------------------

def _input_specs(info: dict) -> list[tuple[str, object, dict]]:
    """(name, type, options) for a node class's required then optional inputs, in ``input_order``."""
    inputs = info.get("input", {})
    order = info.get("input_order") or {k: list(v.keys()) for k, v in inputs.items() if isinstance(v, dict)}
    specs = []
    for section in ("required", "optional"):
        table = inputs.get(section) or {}
        for name in order.get(section, list(table.keys())):
            spec = table.get(name)
            if spec is None:
                continue
            typ = spec[0]
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            specs.append((name, typ, opts))
    return specs


def _is_widget(typ, opts: dict) -> bool:
    if opts.get("forceInput"):
        return False
    if isinstance(typ, list):
        return True
    return isinstance(typ, str) and typ in WIDGET_TYPES


def _has_control_widget(name: str, typ, opts: dict) -> bool:
    """The frontend adds a 'control after generate' widget (serialised right after the value)."""
    if isinstance(typ, str) and typ in ("INT", "FLOAT"):
        if "control_after_generate" in opts:
            return bool(opts["control_after_generate"])
        return name in ("seed", "noise_seed")
    if "control_after_generate" in opts:
        return bool(opts["control_after_generate"])
    return False


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    """Convert a UI-format workflow (``app.graph.serialize()``) to an API-format prompt for ``POST /prompt``.

    Widget values are matched to inputs in ``/object_info`` ``input_order`` (required, then optional);
    the extra value of a 'control after generate' widget and of upload widgets is skipped; a widget the
    saved values stop short of (added to the node later) gets its default, as the frontend gives it; linked inputs
    become ``[origin_node_id, origin_slot]``; Reroute nodes are followed, PrimitiveNode links use the
    target's own widget value, muted nodes (mode 2) are dropped, bypassed nodes (mode 4) are passed through
    by type. Raises WorkflowConversionError for unknown node types or inconsistent widget values.
    """
    nodes = {int(n["id"]): n for n in workflow.get("nodes", [])}
    links = {}
    for link in workflow.get("links", []):
        if isinstance(link, dict):
            lid, src, sslot, dst, dslot, typ = (link["id"], link["origin_id"], link["origin_slot"],
                                                link["target_id"], link["target_slot"], link.get("type"))
        else:
            lid, src, sslot, dst, dslot, typ = link[:6]
        links[int(lid)] = (int(src), int(sslot), int(dst), int(dslot), typ)

    def resolve(link_id: int, depth: int = 0):
        """Follow a link back to a real executing node: (node_id, slot) or None (primitive / muted)."""
        if depth > 64:
            raise WorkflowConversionError(f"link {link_id}: reroute/bypass chain too deep (a cycle?)")
        src, sslot, _dst, _dslot, typ = links[link_id]
        node = nodes.get(src)
        if node is None:
            raise WorkflowConversionError(f"link {link_id} starts at missing node {src}")
        ntype = node.get("type")
        if ntype == "Reroute":
            inp = (node.get("inputs") or [{}])[0]
            return resolve(inp["link"], depth + 1) if inp.get("link") is not None else None
        if ntype == "PrimitiveNode":
            return None
        mode = node.get("mode", 0)
        if mode == 2:
            return None
        if mode == 4:  # bypass: pass the first input of the same type through
            for inp in node.get("inputs") or []:
                if inp.get("link") is not None and inp.get("type") == typ:
                    return resolve(inp["link"], depth + 1)
            return None
        return [str(src), sslot]

    prompt = {}
    for nid, node in sorted(nodes.items()):
        ntype = node.get("type")
        if ntype in FRONTEND_ONLY_TYPES or node.get("mode", 0) in (2, 4):
            continue
        info = object_info.get(ntype)
        if info is None:
            raise WorkflowConversionError(
                f"node {nid}: type {ntype!r} is not in /object_info (pack not loaded or a typo)")
        specs = _input_specs(info)
        wv = node.get("widgets_values", [])
        by_name = wv if isinstance(wv, dict) else None
        values = list(wv) if isinstance(wv, list) else []
        linked = {inp["name"]: inp["link"] for inp in node.get("inputs") or [] if inp.get("link") is not None}
        api_inputs = {}
        i = 0
        for name, typ, opts in specs:
            if _is_widget(typ, opts):
                if by_name is not None:
                    if name in by_name:
                        api_inputs[name] = by_name[name]
                elif i < len(values):
                    api_inputs[name] = values[i]
                    i += 1
                    if _has_control_widget(name, typ, opts) and i < len(values) and values[i] in CONTROL_VALUES:
                        i += 1
                    if any(opts.get(k) for k in UPLOAD_OPTIONS) and i < len(values) and (
                            values[i] is None or values[i] in ("image", "video", "audio", "file", "")):
                        i += 1
                elif "default" in opts:  # a widget added after the workflow was saved: the frontend's default
                    api_inputs[name] = opts["default"]
            if name in linked:
                src = resolve(linked[name])
                if src is not None:
                    api_inputs[name] = src
        if by_name is None and i < len(values):
            extra = values[i:]
            if not all(v is None or v in CONTROL_VALUES or v in ("image", "video", "audio") for v in extra):
                raise WorkflowConversionError(
                    f"node {nid} ({ntype}): {len(values)} widget values but only {i} matched the inputs "
                    f"of /object_info; left over: {extra!r}")
        prompt[str(nid)] = {"class_type": ntype, "inputs": api_inputs,
                            "_meta": {"title": node.get("title") or ntype}}
    if not prompt:
        raise WorkflowConversionError("workflow has no executable nodes")
    return prompt


# ----------------------------------------------------------------------------------------------------------
# Server management
# ----------------------------------------------------------------------------------------------------------

def comfy_env() -> tuple[Path, Path] | None:
    """(checkout, python) from COMFYUI_PATH / COMFYUI_PYTHON, or None when not configured."""
    path, python = os.environ.get("COMFYUI_PATH"), os.environ.get("COMFYUI_PYTHON")
    if not path:
        return None
    checkout = Path(path)
    if not python:
        for cand in ("venv/bin/python", ".venv/bin/python"):
            if (checkout / cand).exists():
                python = str(checkout / cand)
                break
    if not python:
        return None
    return checkout, Path(python)


def require_comfy() -> tuple[Path, Path]:
    """Skip the calling test (with the enable hint) unless a usable ComfyUI is configured."""
    env = comfy_env()
    if env is None:
        pytest.skip("real-ComfyUI tests skipped: " + ENABLE_HINT)
    checkout, python = env
    if not (checkout / "main.py").is_file():
        pytest.skip(f"COMFYUI_PATH={checkout} has no main.py; " + ENABLE_HINT)
    if not python.exists():
        pytest.skip(f"COMFYUI_PYTHON={python} does not exist; " + ENABLE_HINT)
    return checkout, python


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """A ComfyUI server process on 127.0.0.1 (``--cpu``) with this repo loaded as a custom node pack."""

    def __init__(self, checkout: Path, python: Path, workdir: Path, extra_args: tuple = (),
                 extra_model_dirs: dict | None = None):
        self.checkout, self.python, self.workdir = Path(checkout), Path(python), Path(workdir)
        self.extra_args = tuple(extra_args)
        self.extra_model_dirs = {k: Path(v) for k, v in (extra_model_dirs or {}).items()}
        self.pack_dir_name = PACK_DIR_NAME
        self.port = None
        self.proc = None
        self.log_path = self.workdir / "comfyui.log"
        self.input_dir = self.workdir / "input"
        self.output_dir = self.workdir / "output"
        self.temp_dir = self.workdir / "temp"
        self.user_dir = self.workdir / "user"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 300.0) -> "ComfyServer":
        packs = self.workdir / "packs"
        for d in (packs, self.input_dir, self.output_dir, self.temp_dir, self.user_dir):
            d.mkdir(parents=True, exist_ok=True)
        link = packs / PACK_DIR_NAME
        if not link.exists():
            link.symlink_to(PACK_ROOT, target_is_directory=True)
        yaml_path = self.workdir / "extra_paths.yaml"
        lines = ["vssflow_test:", f"    custom_nodes: {packs}"]
        lines += [f"    {key}: {path}" for key, path in self.extra_model_dirs.items()]
        yaml_path.write_text("\n".join(lines) + "\n")
        self.port = free_port()
        cmd = [str(self.python), "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--extra-model-paths-config", str(yaml_path),
               "--disable-all-custom-nodes", "--whitelist-custom-nodes", PACK_DIR_NAME,
               "--disable-api-nodes",
               "--input-directory", str(self.input_dir), "--output-directory", str(self.output_dir),
               "--temp-directory", str(self.temp_dir), "--user-directory", str(self.user_dir),
               "--database-url", "sqlite:///:memory:", *self.extra_args]
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        env.setdefault("OMP_NUM_THREADS", "2")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=self.checkout, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode} during start-up; log:\n"
                                   + self.log_text()[-4000:])
            try:
                if self.get_json("/object_info/LoadImage") is not None:
                    return self
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"ComfyUI did not answer within {timeout_s} s; log:\n" + self.log_text()[-4000:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if getattr(self, "_log", None):
            self._log.close()

    def alive(self) -> bool:
        """The process runs and answers HTTP."""
        if self.proc is None or self.proc.poll() is not None:
            return False
        try:
            return self.get_json("/system_stats") is not None
        except Exception:
            return False

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- HTTP ----------------------------------------------------------------------------------------------
    def get_json(self, path: str, timeout: float = 30.0):
        with urllib.request.urlopen(self.base_url + path, timeout=timeout) as r:
            return json.loads(r.read())

    def post_json(self, path: str, payload: dict, timeout: float = 60.0) -> tuple[int, dict]:
        req = urllib.request.Request(self.base_url + path, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                return e.code, json.loads(body)
            except ValueError:
                return e.code, {"raw": body.decode(errors="replace")}

    def queue(self, prompt: dict, workflow: dict | None = None) -> tuple[int, dict]:
        """POST /prompt (with the UI ``workflow`` as the frontend sends it, if given); returns (HTTP status, body)."""
        body = {"prompt": prompt, "client_id": "vssflow-tests-" + uuid.uuid4().hex}
        if workflow is not None:
            body["extra_data"] = {"extra_pnginfo": {"workflow": workflow}}
        return self.post_json("/prompt", body)

    def wait(self, prompt_id: str, timeout_s: float = 600.0) -> dict:
        """Poll /history until the prompt finished; returns its history entry."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            hist = self.get_json(f"/history/{prompt_id}")
            entry = hist.get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None and (
                    entry["status"].get("completed") or entry["status"].get("status_str") == "error"):
                return entry
            if self.proc.poll() is not None:
                raise RuntimeError("ComfyUI died while running the prompt; log:\n" + self.log_text()[-4000:])
            time.sleep(0.5)
        self.post_json("/interrupt", {})
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout_s} s")

    def run(self, prompt: dict, timeout_s: float = 600.0, workflow: dict | None = None) -> tuple[dict, dict]:
        """Queue and wait: (POST /prompt response, history entry). Raises AssertionError if not queued."""
        status, body = self.queue(prompt, workflow)
        if status != 200:
            raise AssertionError(f"POST /prompt -> {status}: {json.dumps(body)[:3000]}")
        return body, self.wait(body["prompt_id"], timeout_s)

    def output_files(self, entry: dict) -> list[Path]:
        """Files listed in a history entry's outputs (images/audio/video entries of type output)."""
        files = []
        for out in entry.get("outputs", {}).values():
            for key in ("images", "audio", "video", "videos", "gifs"):
                for item in out.get(key, []) or []:
                    if isinstance(item, dict) and "filename" in item:
                        base = {"output": self.output_dir, "temp": self.temp_dir,
                                "input": self.input_dir}.get(item.get("type", "output"), self.output_dir)
                        files.append(base / item.get("subfolder", "") / item["filename"])
        return files



def running_server(tmp_path_factory, name: str):
    """Generator for a module-scoped fixture: a started ComfyServer with its own work folder and a
    ``models/vssflow`` folder (holding ``VSSFLOW_COMFY_MODEL_FILE`` when that is set)."""
    checkout, python = require_comfy()
    workdir = tmp_path_factory.mktemp(name)
    models = workdir / "models" / "vssflow"
    models.mkdir(parents=True)
    model_file = os.environ.get("VSSFLOW_COMFY_MODEL_FILE")
    if model_file:
        shutil.copy(model_file, models / Path(model_file).name)
    srv = ComfyServer(checkout, python, workdir, extra_model_dirs={"vssflow": models})
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()

def history_error(entry: dict) -> dict | None:
    """The execution_error payload of a history entry, or None."""
    for name, data in entry.get("status", {}).get("messages", []):
        if name in ("execution_error", "execution_interrupted"):
            return data
    return None


def example_workflows() -> list[Path]:
    """The pack's example workflows (UI format) under example_workflows/."""
    return sorted(WORKFLOWS_DIR.glob("*.json"))
