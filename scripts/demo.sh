#!/usr/bin/env bash
# Set up .venv if needed, then generate sound effects + speech for the bundled sample video
# (example_workflows/input/speech_and_sounds.mp4: a talking face and falling boxes) with the embedded
# default model, and write out/demo_NNNNN.mp4 (no downloads; existing files are never overwritten).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p out
n=1; while [ -e "$(printf 'out/demo_%05d.mp4' $n)" ]; do n=$((n+1)); done
OUT=${1:-$(printf 'out/demo_%05d.mp4' $n)}
TEXT=$(.venv/bin/python -c "import json; print(next(s['transcript'] for s in json.load(open('example_workflows/input/samples.json')) if s['video'] == 'speech_and_sounds.mp4'))")
# No --speech-start/--speech-end: the speech window is found from the lips.
.venv/bin/python -m vssflow_core generate example_workflows/input/speech_and_sounds.mp4 --text "$TEXT" --out "$OUT"
echo "wrote $OUT"
