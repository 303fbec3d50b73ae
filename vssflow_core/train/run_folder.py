"""A training run's folder (``STATE_DIR/NAME``): one trainer at a time, checkpoints written whole,
and a resume that cannot silently change what the run was started with.

Files: ``.lock`` (held by the trainer), ``last.pt`` (model, EMA, optimiser, counters), ``best_ema.pt``
(the EMA of the lowest validation loss), ``ema_stepNNNNNNN.pt`` (fp16 snapshots), ``args.json``,
``log.jsonl``.
"""
from __future__ import annotations

import json
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
    from vssflow_core.media.files import atomic_output

    with atomic_output(path, replace=True) as tmp:
        torch.save(obj, tmp)


def lock_run(run_dir: Path):
    """Create ``run_dir`` and hold an exclusive lock on ``run_dir/.lock`` (returned open file), so a
    second trainer on the same run is refused instead of overwriting the first one's state. Where
    ``fcntl`` is missing (Windows) the run goes on unlocked, with a warning."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / ".lock", "a+", encoding="utf-8")
    try:
        import fcntl
    except ImportError:
        print(f"train: no file locks on this system; do not start a second trainer on {run_dir}", file=sys.stderr)
        return handle
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise VSSFlowError(f"run {run_dir} is in use by a trainer ({owner}); wait for it or stop it, or train "
                           "under another --name") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle


# Options fixed when a run starts: a resume that gives other values would silently keep the old ones.
_START_OPTIONS = {"init": None, "preset": "embedded", "config": None, "task": "joint"}


def check_resume(args, run_dir: Path) -> None:
    """Refuse a resume whose --init, --preset, --config or --task differ from the run's own."""
    recorded = json.loads((run_dir / "args.json").read_text()) if (run_dir / "args.json").is_file() else {}
    for key, default in _START_OPTIONS.items():
        given, had = getattr(args, key), recorded.get(key, default)
        if given != had:
            flag = "--" + key.replace("_", "-")
            raise VSSFlowError(f"run {run_dir} exists (its last.pt resumes) and was started with {flag} {had}, "
                               f"not {given}: {flag} applies only to a new run; choose another --name, or drop "
                               f"{flag} to resume")


def set_aside_stale_best(run_dir: Path, step: int) -> None:
    """Rename a ``best_ema.pt`` saved after ``step`` (by an attempt killed before its next checkpoint)
    to ``best_ema.stale-STEP.pt``, so it is neither kept as the best nor exported."""
    best = run_dir / "best_ema.pt"
    if not best.is_file():
        return
    best_step = int(load_state_file(best)["step"])
    if best_step > step:
        aside = best.with_name(f"best_ema.stale-{best_step}.pt")
        os.replace(best, aside)
        print(f"train: {best} is from step {best_step}, after this run's step {step} (an attempt killed before its "
              f"checkpoint); set aside as {aside.name}", file=sys.stderr)
