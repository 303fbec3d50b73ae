"""The example workflows in the real ComfyUI web UI (opt-in: ComfyUI checkout + Chromium + node + playwright-core).

Enable with COMFYUI_PATH / COMFYUI_PYTHON (see tests/comfyui_harness.py), a Chromium at /usr/bin/chromium
(or CHROMIUM_PATH), `node` on PATH and playwright-core installed with `npm install --prefix tests/browser`
(or NODE_PATH pointing at a node_modules folder that has it). Screenshots go to VSSFLOW_SCREENSHOT_DIR
(default: a pytest temporary folder).

For every workflow in example_workflows/: the Templates browser (pack section) opens it, the loaded graph has all
its nodes, the API prompt the UI sends equals our own UI->API conversion, Run finishes with success, and a
screenshot of the result is saved.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from comfyui_harness import (
    REPO_ROOT,
    example_workflows,
    require_comfy,
    running_server,
    ui_to_api,
)

BROWSER_DIR = REPO_ROOT / "tests" / "browser"
PER_WORKFLOW_TIMEOUT_S = int(os.environ.get("VSSFLOW_COMFY_PROMPT_TIMEOUT", "900"))

pytestmark = pytest.mark.timeout(int(os.environ.get("VSSFLOW_COMFY_TIMEOUT", "3600")))


def _chromium() -> str | None:
    for cand in (os.environ.get("CHROMIUM_PATH"), "/usr/bin/chromium", "/usr/bin/chromium-browser",
                 "/usr/bin/google-chrome"):
        if cand and Path(cand).exists():
            return cand
    return None


def _node_env() -> dict:
    env = dict(os.environ)
    paths = [p for p in env.get("NODE_PATH", "").split(os.pathsep) if p]
    local = BROWSER_DIR / "node_modules"
    if local.is_dir():
        paths.insert(0, str(local))
    env["NODE_PATH"] = os.pathsep.join(paths)
    return env


def require_browser() -> tuple[str, dict]:
    """Skip unless Chromium, node and playwright-core are available; returns (node, env)."""
    chromium = _chromium()
    if chromium is None:
        pytest.skip("browser test skipped: no Chromium (apt-get install chromium, or set CHROMIUM_PATH)")
    node = shutil.which("node")
    if node is None:
        pytest.skip("browser test skipped: `node` is not on PATH (install Node.js >= 18)")
    env = _node_env()
    env["CHROMIUM_PATH"] = chromium
    probe = subprocess.run([node, "-e", "require('playwright-core')"], env=env, capture_output=True, text=True,
                           cwd=BROWSER_DIR)
    if probe.returncode != 0:
        pytest.skip("browser test skipped: playwright-core not installed; run `npm install --prefix tests/browser` "
                    "or set NODE_PATH to a node_modules folder that has it")
    return node, env


@pytest.fixture(scope="module")
def browser_server(tmp_path_factory):
    require_comfy()
    require_browser()
    yield from running_server(tmp_path_factory, "comfy_browser")


def _strip(api: dict, object_info: dict) -> dict:
    """Keep only real inputs (the UI also sends frontend-only widgets such as video previews)."""
    out = {}
    for nid, node in api.items():
        info = object_info.get(node["class_type"], {}).get("input", {})
        names = set(info.get("required", {})) | set(info.get("optional", {}))
        out[nid] = {"class_type": node["class_type"],
                    "inputs": {k: v for k, v in node["inputs"].items() if k in names}}
    return out


def test_templates_load_and_run_in_browser(browser_server, tmp_path):
    node, env = require_browser()
    workflows = example_workflows()
    if not workflows:
        pytest.fail(f"no example workflows in {REPO_ROOT / 'example_workflows'}")
    shots = Path(os.environ.get("VSSFLOW_SCREENSHOT_DIR") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    cmd = [node, str(BROWSER_DIR / "run_templates.js"), "--url", browser_server.base_url,
           "--module", browser_server.pack_dir_name, "--out", str(shots),
           "--timeout", str(PER_WORKFLOW_TIMEOUT_S)]
    model_file = os.environ.get("VSSFLOW_COMFY_MODEL_FILE")
    if model_file:
        cmd += ["--model", Path(model_file).name]
    cmd += [p.stem for p in workflows]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=PER_WORKFLOW_TIMEOUT_S * len(workflows) + 300)
    assert proc.returncode == 0, f"browser driver failed:\n{proc.stderr[-4000:]}\n{proc.stdout[-2000:]}"
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            results[row["stem"]] = row
    object_info = browser_server.get_json("/object_info", timeout=120)
    problems = []
    for path in workflows:
        row = results.get(path.stem)
        if row is None:
            problems.append(f"{path.stem}: no result from the driver")
            continue
        if row.get("driver_error"):
            problems.append(f"{path.stem}: {row['driver_error']} (screenshot {row.get('screenshot')})")
            continue
        if row["loaded_nodes"] != row["expected_nodes"]:
            problems.append(f"{path.stem}: loaded {row['loaded_nodes']} nodes, file has {row['expected_nodes']}")
        ours = ui_to_api(json.loads(path.read_text()), object_info)
        if model_file:
            for n in ours.values():
                if n["class_type"] == "VSSFlowModelLoader":
                    n["inputs"]["model"] = Path(model_file).name
        if _strip(row["api"], object_info) != _strip(ours, object_info):
            problems.append(f"{path.stem}: UI prompt differs from ui_to_api():\nUI:   {_strip(row['api'], object_info)}"
                            f"\nours: {_strip(ours, object_info)}")
        run = row.get("run") or {}
        if run.get("status") != "success":
            err = run.get("error") or {}
            problems.append(f"{path.stem}: run {run.get('status')}: {err.get('node_type')} "
                            f"{err.get('exception_message', '')[:500]}")
        elif not run.get("outputs"):
            problems.append(f"{path.stem}: no output node reported results")
        shot = Path(row.get("screenshot", ""))
        if not shot.is_file() or shot.stat().st_size < 10_000:
            problems.append(f"{path.stem}: screenshot missing or empty: {shot}")
        print(f"{path.stem}: {run.get('status')} in {run.get('elapsed_s')} s, screenshot {shot}")
    assert not problems, "\n".join(problems) + f"\n(driver stderr tail: {proc.stderr[-1500:]})"
    assert browser_server.alive()
