"""A training run's folder (``STATE_DIR/NAME``): one trainer at a time, checkpoints written whole,
and a resume that cannot silently change what the run was started with.

Files: ``.lock`` (held by the trainer), ``last.pt`` (model, EMA, optimiser, counters), ``best_ema.pt``
(the EMA of the lowest validation loss), ``ema_stepNNNNNNN.pt`` (fp16 snapshots), ``args.json``,
``log.jsonl``.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import sys
from pathlib import Path

import torch

from vssflow_core.errors import VSSFlowError


def load_state_file(path: Path, device="cpu") -> dict:
    """A run's ``last.pt`` or ``best_ema.pt`` (``torch.load(weights_only=True)``); a damaged or foreign
    file is a ``VSSFlowError`` naming it and the fix, not a traceback."""
    try:
        st = torch.load(path, map_location=device, weights_only=True)
    except (RuntimeError, EOFError, ValueError, OSError, pickle.UnpicklingError) as e:
        raise VSSFlowError(f"{path} cannot be read ({str(e).splitlines()[0][:120]}): it is damaged (a full disk or a "
                           "killed copy?) or not a training checkpoint. Delete it to start the run again, or train "
                           "under another --name") from None
    if not isinstance(st, dict) or not ({"ema", "step"} <= set(st)):
        raise VSSFlowError(f"{path} is not a training checkpoint of this pack (no 'ema'/'step' entries); delete it "
                           "or train under another --name")
    return st


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary name, then one rename (no temp file left when it fails)."""
    from vssflow_core.media.files import atomic_output, write_failed

    with atomic_output(path, replace=True) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as e:  # torch's writer reports a full disk as "enforce fail ... unexpected pos"
            raise write_failed(path, e) from None


def lock_run(run_dir: Path):
    """Create ``run_dir`` and hold an exclusive lock on ``run_dir/.lock`` (returned open file), so a
    second trainer on the same run is refused instead of overwriting the first one's state
    (``media.files.lock_folder``)."""
    from vssflow_core.media.files import lock_folder

    return lock_folder(run_dir, f"run {run_dir} is in use by a trainer",
                       "wait for it or stop it, or train under another --name")


# Options that only shape a new run (its model comes from last.pt on a resume), with their defaults.
START_OPTIONS = {"init": None, "preset": "embedded", "config": None}


def read_args(run_dir: Path) -> dict:
    """The run's ``args.json`` (the options of its commands; ``{}`` when there is none)."""
    path = run_dir / "args.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise VSSFlowError(f"{path} is damaged ({e}); delete it (the run resumes from last.pt without it)") from None


def write_args(run_dir: Path, args: dict, resumed: bool) -> None:
    """Write ``args.json`` whole (temp file + rename), keeping the earlier commands; a resume (of
    ``last.pt``) also keeps the start options (``START_OPTIONS``) the run was made with."""
    from vssflow_core.media.files import atomic_output

    earlier = read_args(run_dir)
    if earlier:
        kept = {k: earlier[k] for k in START_OPTIONS if k in earlier} if resumed else {}
        args = {**args, **kept, "earlier_commands": earlier.get("earlier_commands", []) + [earlier.get("command")]}
    with atomic_output(run_dir / "args.json", replace=True) as tmp:
        tmp.write_text(json.dumps(args, indent=1, default=str))


def check_resume(args, run_dir: Path, step: int) -> None:
    """Refuse a resume of the run at ``step`` that gives another --init, --preset or --config than
    the run was started with (leaving them out is fine), or another --task (which the resume would use)."""
    recorded = read_args(run_dir)
    for key, default in START_OPTIONS.items():
        given, had = getattr(args, key), recorded.get(key, default)
        if given != default and given != had:
            started = f"--{key} {had}" if had != default else f"no --{key}"
            raise VSSFlowError(f"run {run_dir} exists at step {step} (started with {started}); --{key} {given} "
                               f"applies only to a new run: choose another --name, or resume without --{key}")
    had_task = recorded.get("task", "joint")
    if args.task != had_task:
        raise VSSFlowError(f"run {run_dir} exists at step {step} and trains --task {had_task}, not {args.task}: "
                           f"resume it with --task {had_task}, or choose another --name for a {args.task} run")


def kept_best_loss(run_dir: Path, step: int) -> float:
    """The validation loss of the run's ``best_ema.pt`` for a run at ``step`` (inf when there is none).

    A best saved after ``step`` (by an attempt killed before its next checkpoint) is renamed to
    ``best_ema.stale-STEP.pt`` (or the next free ``best_ema.stale-STEP_NNNNN_.pt``), so it is neither
    kept as the best nor exported, and inf is returned."""
    best = run_dir / "best_ema.pt"
    if not best.is_file():
        return math.inf
    st = load_state_file(best)
    best_step = int(st["step"])
    if best_step > step:
        aside = best.with_name(f"best_ema.stale-{best_step}.pt")
        if aside.exists():  # a second killed attempt that reached the same step: keep both
            from vssflow_core.media.files import unique_path

            aside = unique_path(run_dir, aside.stem, "pt")
        os.replace(best, aside)
        print(f"train: {best} is from step {best_step}, after this run's step {step} (an attempt killed before its "
              f"checkpoint); set aside as {aside.name}", file=sys.stderr)
        return math.inf
    return float(st["val_loss"])
