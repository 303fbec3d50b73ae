"""Default folders of the training tools, outside the repository.

Everything lives under ``$VSSFLOW_WORK`` (default ``~/.cache/vssflow``); each folder can also be
set on its own: ``$VSSFLOW_TRAIN_STATE`` (training runs: checkpoints, EMA, logs),
``$VSSFLOW_EVAL_CACHE`` (generated evaluation sets, reused between evals) and
``$VSSFLOW_CENTROID_DATA`` (a make-data training set whose real sound clips give eval's class
centroids; when it is missing, eval falls back to leave-one-out centroids from the eval clips).
The command-line options (``--state-dir``, ``--cache-dir``, ``--centroid-data``) override them.
"""
from __future__ import annotations

import os
from pathlib import Path

WORK_DIR = Path(os.environ.get("VSSFLOW_WORK") or Path.home() / ".cache" / "vssflow")
TRAIN_STATE_DIR = os.environ.get("VSSFLOW_TRAIN_STATE") or str(WORK_DIR / "train_state")
EVAL_CACHE_DIR = os.environ.get("VSSFLOW_EVAL_CACHE") or str(WORK_DIR / "eval_data")
CENTROID_DATA_DIR = os.environ.get("VSSFLOW_CENTROID_DATA") or str(WORK_DIR / "data" / "train")
