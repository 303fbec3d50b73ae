#!/usr/bin/env bash
# Train an embedded-size model from nothing, in one command: synthetic data -> pack -> joint,
# V2S-only and TTS-only runs side by side with the same time budget -> export of each run's
# best-validation EMA weights -> evaluation on fresh clips (seed 1000).
#
#   bash scripts/train_embedded.sh WORK_DIR [DEVICE] [MINUTES]
#
# This is the final recipe of the shipped model run from scratch (clean-latent prediction, phonemes
# placed by lip reading with the shipped reader, half of the sound clips' video made at 8-24 fps,
# batch 256 with lr 6e-4 and a linear cool-down over the last 30 % on a GPU), not a replay of the chain of fine-tunes that made vssflow_core/weights/embedded.safetensors (see docs/embedded_model_history.md:
# those stages switched from velocity to clean-latent prediction and from one placement to another
# on the way). WORK_DIR holds data/, pack/, runs/, models/ and eval/; every stage resumes or is
# skipped when its output exists, so re-running continues (a run resumes from runs/NAME; its
# cool-down is over the MINUTES of each invocation). DEVICE: cuda (default when torch sees a GPU) or
# cpu. MINUTES: training time per run for this invocation (default 30). Uses .venv (made by
# scripts/setup.sh) unless PYTHON names another interpreter. N_TRAIN, N_VAL and N_EVAL (default
# 3000, 100, 24 clips) shrink the run for a quick check of the whole chain. VOICES (default joe, the
# shipped model's data) lists the voices of the speaking clips, e.g. joe,slt,flite-slt,awb,rms (the
# CMU voices need apt-get install flite festival festvox-us-slt-hts). A GPU machine needs only torch,
# torchaudio, numpy, safetensors and einops for the training stage: copy pack/ there and run the
# `train` lines by hand (see docs/embedded_model_history.md). Ctrl-C (or SIGTERM) stops the
# three trainers after their step in progress; they keep their checkpoints and the script stops.
set -euo pipefail
WORK=$(realpath -m "${1:?usage: bash scripts/train_embedded.sh WORK_DIR [DEVICE] [MINUTES]}")  # before the cd
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then bash scripts/setup.sh; PYTHON=.venv/bin/python; fi
DEVICE=${2:-$($PYTHON -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}
MINUTES=${3:-30}
mkdir -p "$WORK"/{pack,runs,models,eval}
vc() { OMP_NUM_THREADS=1 "$PYTHON" -m vssflow_core "$@"; }

vc make-data --out "$WORK/data/train" --n "${N_TRAIN:-3000}" --seed 1 --workers "$(nproc)" --voices "${VOICES:-joe}" --low-fps 0.5
vc make-data --out "$WORK/data/val" --n "${N_VAL:-100}" --seed 1001 --workers "$(nproc)" --voices "${VOICES:-joe}"
for split in train val; do
  if [ -f "$WORK/pack/$split/pack.json" ]; then  # packed before: only if it holds every clip
    packed=$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["clips"])' "$WORK/pack/$split/pack.json")
    clips=$(grep -c . "$WORK/data/$split/manifest.jsonl")
    if [ "$packed" != "$clips" ]; then
      echo "error: $WORK/pack/$split holds $packed clips, $WORK/data/$split has $clips (N_TRAIN/N_VAL changed);" \
           "delete $WORK/pack/$split and run again to re-pack" >&2
      exit 1
    fi
  else
    # no speaker embeddings, as the shipped stages 7-10 were packed (the data has one voice; the
    # stage-11 trial that stored them is in docs/embedded_model_history.md)
    vc pack --data "$WORK/data/$split" --out "$WORK/pack/$split" --phone-placement lipread --no-speaker
  fi
done

if [ "$DEVICE" = cuda ]; then RECIPE=(--device cuda --amp bf16 --batch-size 256 --lr 6e-4 --warmup 200)
else RECIPE=(--batch-size 8 --lr 7e-4 --warmup 300); fi
TASKS=(joint v2s tts)
pids=()
# a trainer that got the signal too may be gone already: kill then fails for it, which must not end
# the script (set -e) before it says how to resume
stop_trainers() { [ ${#pids[@]} -gt 0 ] && { kill -TERM "${pids[@]}" 2>/dev/null || true; }; wait; echo "stopped; run again to resume" >&2; exit 130; }
trap stop_trainers INT TERM
for task in "${TASKS[@]}"; do
  # background jobs of a script start with SIGINT ignored; the trap above forwards it as SIGTERM, to
  # the trainer itself: `exec` makes $! its pid (a SIGTERM to a subshell around it would not reach it)
  (OMP_NUM_THREADS=1 exec "$PYTHON" -m vssflow_core train --data "$WORK/pack/train" --val "$WORK/pack/val" --name "$task" --task "$task" --state-dir "$WORK/runs" \
    "${RECIPE[@]}" --cooldown 0.3 --val-every 500 --log-every 100 --max-minutes "$MINUTES" \
    > "$WORK/runs/$task.out" 2>&1) &
  pids+=($!)
done
failed=() stopped=()
for i in "${!TASKS[@]}"; do
  rc=0; wait "${pids[$i]}" || rc=$?
  case $rc in 0) ;; 130|143) stopped+=("${TASKS[$i]}") ;; *) failed+=("${TASKS[$i]}") ;; esac
done
trap - INT TERM
for task in "${failed[@]}"; do echo "error: the $task run failed; see $WORK/runs/$task.out:" >&2; tail -3 "$WORK/runs/$task.out" >&2; done
[ ${#failed[@]} -eq 0 ] || exit 1
# a trainer stopped by a signal the script did not get (a kill of its process group where the script
# itself ignores SIGINT, e.g. under nohup) saved its checkpoint: stop here, not export half-trained runs
[ ${#stopped[@]} -eq 0 ] || { echo "the ${stopped[*]} run(s) were stopped by a signal; run again to resume" >&2; exit 130; }
STAMP=$(date +%Y%m%d-%H%M%S)  # exports never overwrite: one set of files per invocation
for task in "${TASKS[@]}"; do
  vc train --data "$WORK/pack/train" --name "$task" --task "$task" --state-dir "$WORK/runs" \
    --export "$WORK/models/${task}_$STAMP.safetensors" --export-best
done

ev() { vc eval --n "${N_EVAL:-24}" --seed 1000 --cache-dir "$WORK/eval" --centroid-data "$WORK/data/train" --vocoder griffinlim "$@"; }
ev --model "$WORK/models/joint_$STAMP.safetensors" --json "$WORK/eval/joint_$STAMP.json"
ev --model "$WORK/models/tts_$STAMP.safetensors" --no-ceiling --kinds speech,mixed --metrics wer,lip --json "$WORK/eval/tts_$STAMP.json"
ev --model "$WORK/models/v2s_$STAMP.safetensors" --no-ceiling --kinds sfx --metrics onset,class,fd --json "$WORK/eval/v2s_$STAMP.json"
echo "models in $WORK/models, evaluations in $WORK/eval (*_$STAMP); ship the joint model by copying it to vssflow_core/weights/embedded.safetensors"
