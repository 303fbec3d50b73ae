#!/usr/bin/env bash
# Train the embedded default model from nothing, in one command: synthetic data -> pack ->
# joint, V2S-only and TTS-only runs side by side with the same time budget -> export of each
# run's best-validation EMA weights -> evaluation on fresh clips (seed 1000).
#
#   bash scripts/train_embedded.sh WORK_DIR [DEVICE] [MINUTES]
#
# WORK_DIR holds data/, pack/, runs/, models/ and eval/; every stage resumes or is skipped when
# its output exists, so re-running continues. DEVICE: cuda (default when torch sees a GPU) or cpu.
# MINUTES: training time per run for this invocation (default 30; runs resume from runs/NAME).
# Uses .venv (made by scripts/setup.sh) unless PYTHON names another interpreter. N_TRAIN, N_VAL
# and N_EVAL (default 3000, 100, 24 clips) shrink the run for a quick check of the whole chain. VOICES
# (default joe, the shipped model's data) lists the voices of the speaking clips, e.g.
# joe,slt,flite-slt,awb,rms (the CMU voices need apt-get install flite festival festvox-us-slt-hts). A GPU machine
# needs only torch, torchaudio, numpy, safetensors and einops for the training stage: copy
# pack/ there and run the `train` lines by hand (see vssflow_core/weights/MODEL_CARD.md).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:?usage: bash scripts/train_embedded.sh WORK_DIR [DEVICE] [MINUTES]}
if [ -z "${PYTHON:-}" ]; then bash scripts/setup.sh; PYTHON=.venv/bin/python; fi
DEVICE=${2:-$($PYTHON -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}
MINUTES=${3:-30}
mkdir -p "$WORK"/{pack,runs,models,eval}
vc() { OMP_NUM_THREADS=1 "$PYTHON" -m vssflow_core "$@"; }

vc make-data --out "$WORK/data/train" --n "${N_TRAIN:-3000}" --seed 1 --workers "$(nproc)" --voices "${VOICES:-joe}"
vc make-data --out "$WORK/data/val" --n "${N_VAL:-100}" --seed 1001 --workers "$(nproc)" --voices "${VOICES:-joe}"
for split in train val; do
  [ -f "$WORK/pack/$split/pack.json" ] || vc pack --data "$WORK/data/$split" --out "$WORK/pack/$split" --phone-placement lips
done

if [ "$DEVICE" = cuda ]; then GPU_ARGS=(--device cuda --amp bf16 --batch-size 128); else GPU_ARGS=(--batch-size 8); fi
for task in joint v2s tts; do
  vc train --data "$WORK/pack/train" --val "$WORK/pack/val" --name "$task" --task "$task" --state-dir "$WORK/runs" \
    "${GPU_ARGS[@]}" --lr 7e-4 --warmup 300 --val-every 500 --log-every 100 --max-minutes "$MINUTES" \
    > "$WORK/runs/$task.out" 2>&1 &
done
wait
STAMP=$(date +%Y%m%d-%H%M%S)  # exports never overwrite: one set of files per invocation
for task in joint v2s tts; do
  vc train --data "$WORK/pack/train" --name "$task" --state-dir "$WORK/runs" --export "$WORK/models/${task}_$STAMP.safetensors" --export-best
done

ev() { vc eval --n "${N_EVAL:-24}" --seed 1000 --cache-dir "$WORK/eval" --centroid-data "$WORK/data/train" --vocoder griffinlim "$@"; }
ev --model "$WORK/models/joint_$STAMP.safetensors" --json "$WORK/eval/joint_$STAMP.json"
ev --model "$WORK/models/tts_$STAMP.safetensors" --no-ceiling --kinds speech,mixed --metrics wer,lip --json "$WORK/eval/tts_$STAMP.json"
ev --model "$WORK/models/v2s_$STAMP.safetensors" --no-ceiling --kinds sfx --metrics onset,class,fd --json "$WORK/eval/v2s_$STAMP.json"
echo "models in $WORK/models, evaluations in $WORK/eval (*_$STAMP); ship the joint model by copying it to vssflow_core/weights/embedded.safetensors"
