#!/usr/bin/env bash
# Set up .venv if needed, then generate sound + speech for the bundled sample video with the
# embedded default model and write out/demo.mp4 (no downloads).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p out
OUT=${1:-out/demo.mp4}
exec .venv/bin/python -m vssflow_core generate workflows/input/talking_and_events.mp4 \
  --text "$(cat workflows/input/talking_and_events.txt)" --out "$OUT"
