"""A small lip reader: per 25 Hz frame, the probability of each phoneme class given the mouth.

It reads the normalised lip track (``lip_space.normalise_lip_track``) through a window of
``2 * window + 1`` frames around each frame (5 lip features + the "found" flag per frame, zeros
past the clip's ends) with a two-layer MLP, and returns log-probabilities over ``CLASSES``: silence
plus the 39 ARPAbet phonemes without stress. Placement by lip reading
(``phone_timing.place_phonemes_by_lipreading``) force-aligns a transcript's phonemes to them.

The shipped weights (``weights/lipread.safetensors``, 35 k parameters, 140 kB) were trained by
``python -m vssflow_core train-lipread`` on the synthetic talking faces of make-data, so they
know the training voice's timing and the rendered mouth; see ``docs/embedded_model_history.md``, "Stage 7".
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from vssflow_core.errors import VSSFlowError
from vssflow_core.features.text import CONSONANTS, VOWELS

LIPREAD_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "lipread.safetensors"
SILENCE = "<sil>"
CLASSES = (SILENCE, *sorted(VOWELS | CONSONANTS))  # silence, then the 39 ARPAbet phonemes A-Z
_CLASS_INDEX = {c: i for i, c in enumerate(CLASSES)}
LIP_COLUMNS = 6  # the lip_space columns, "found" last


def phoneme_class(symbol: str) -> int:
    """Index in ``CLASSES`` of a transcript symbol: stress digits dropped; blanks, punctuation and
    unknown symbols are silence (0)."""
    return _CLASS_INDEX.get(symbol.rstrip("012"), 0)


def lip_windows(normalised: np.ndarray, window: int) -> np.ndarray:
    """Stack each frame's neighbours: [T, 6] normalised lips -> float32 [T, (2 * window + 1) * 6],
    frame t - window first (``window`` frames each side); rows past either end are zeros (found = 0)."""
    from vssflow_core.features.netfile import frame_windows

    return frame_windows(normalised, window).reshape(len(normalised), -1)


def build_reader(window: int, hidden: int):
    """The reader network: Linear((2w+1)*6, hidden) - GELU - Linear(hidden, hidden) - GELU -
    Linear(hidden, len(CLASSES)). Input [N, (2w+1)*6], output logits [N, len(CLASSES)]."""
    from torch import nn

    return nn.Sequential(nn.Linear((2 * window + 1) * LIP_COLUMNS, hidden), nn.GELU(), nn.Linear(hidden, hidden),
                         nn.GELU(), nn.Linear(hidden, len(CLASSES)))


def save_reader(net, window: int, path: str | Path, training: str = "") -> None:
    """Write ``net``'s weights with ``window``, ``hidden``, ``classes`` and ``training`` (free text)
    in the metadata; refuses an existing file."""
    import json

    from vssflow_core.features.netfile import save_net

    save_net(net, path, {"window": str(window), "hidden": str(net[0].out_features), "classes": json.dumps(CLASSES),
                         "training": training})


def reader_sha256(path: str | Path = LIPREAD_WEIGHTS) -> str:
    """Hex sha256 of a reader file: packs record which reader placed their phonemes."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


_FIX = "reinstall the pack, or retrain it with `python -m vssflow_core train-lipread`"


def load_reader(path: str | Path = LIPREAD_WEIGHTS):
    """(network in eval mode, window) from a file written by :func:`save_reader`. Cached per file
    (resolved path, modification time and size); the network is shared: do not change it."""
    from vssflow_core.features.netfile import file_key

    return _load_reader(*file_key(path, "lip reader", _FIX))


@lru_cache(maxsize=2)
def _load_reader(path: str, mtime_ns: int, size: int):
    import json

    from vssflow_core.features.netfile import load_state, read_net

    tensors, meta = read_net(path, "lip reader", _FIX, ("window", "hidden", "classes"), "train-lipread")
    try:
        window, hidden, classes = int(meta["window"]), int(meta["hidden"]), tuple(json.loads(meta["classes"]))
    except ValueError as e:
        raise VSSFlowError(f"lip reader {path}: damaged metadata ({e}); {_FIX}") from None
    if classes != CLASSES:
        raise VSSFlowError(f"lip reader {path}: its {len(classes)} phoneme classes differ from this version's "
                           f"{len(CLASSES)}; {_FIX}")
    net = load_state(build_reader(window, hidden), tensors, path, "lip reader", _FIX,
                     f"a reader of window {window} and width {hidden}")
    return net, window


def phoneme_log_probs(normalised_lips: np.ndarray, path: str | Path = LIPREAD_WEIGHTS) -> np.ndarray:
    """Per-frame phoneme log-probabilities of a lip track.

    Args:
        normalised_lips: float [T, 6] lip features at ``config.FEATURE_RATE_HZ`` (25 Hz), normalised by
            ``lip_space.normalise_lip_track``.
        path: reader weights.
    Returns:
        float64 [T, len(CLASSES)] natural-log probabilities (each row sums to 1 in probability).
    """
    import torch

    net, window = load_reader(path)
    x = torch.from_numpy(lip_windows(normalised_lips, window))
    with torch.no_grad():
        return torch.log_softmax(net(x), dim=-1).double().numpy()
