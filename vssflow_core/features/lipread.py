"""A small lip reader: per 25 Hz frame, the probability of each phoneme class given the mouth.

It reads the normalised lip track (``lip_space.normalise_lip_track``) through a window of
``2 * window + 1`` frames around each frame (5 lip features + the "found" flag per frame, zeros
past the clip's ends) with a two-layer MLP, and returns log-probabilities over ``CLASSES``: silence
plus the 39 ARPAbet phonemes without stress. Placement by lip reading
(``phone_timing.place_phonemes_by_lipreading``) force-aligns a transcript's phonemes to them.

The shipped weights (``weights/lipread.safetensors``, 35 k parameters, 140 kB) were trained by
``python -m vssflow_core train-lipread`` on the synthetic talking faces of make-data, so they
know the training voice's timing and the rendered mouth; see ``weights/MODEL_CARD.md``.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from vssflow_core.errors import VSSFlowError

LIPREAD_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "lipread.safetensors"
SILENCE = "<sil>"
CLASSES = (SILENCE, "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH",
           "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW",
           "V", "W", "Y", "Z", "ZH")
_CLASS_INDEX = {c: i for i, c in enumerate(CLASSES)}
LIP_COLUMNS = 6  # the lip_space columns, "found" last


def phoneme_class(symbol: str) -> int:
    """Index in ``CLASSES`` of a transcript symbol: stress digits dropped; blanks, punctuation and
    unknown symbols are silence (0)."""
    return _CLASS_INDEX.get(symbol.rstrip("012"), 0)


def lip_windows(normalised: np.ndarray, window: int) -> np.ndarray:
    """Stack each frame's neighbours: [T, 6] normalised lips -> float32 [T, (2 * window + 1) * 6],
    frame t - window first; rows past either end are zeros (found = 0)."""
    t = normalised.shape[0]
    padded = np.pad(np.asarray(normalised, dtype=np.float32), ((window, window), (0, 0)))
    return np.concatenate([padded[j:j + t] for j in range(2 * window + 1)], axis=1)


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

    from safetensors.torch import save_file

    from vssflow_core.media.files import atomic_output

    tensors = {k: v.detach().float().contiguous() for k, v in net.state_dict().items()}
    meta = {"window": str(window), "hidden": str(net[0].out_features), "classes": json.dumps(CLASSES),
            "training": training}
    with atomic_output(Path(path)) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


@lru_cache(maxsize=2)
def load_reader(path: str = str(LIPREAD_WEIGHTS)):
    """(network in eval mode, window) from a file written by :func:`save_reader`."""
    import json

    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        window, hidden = int(meta["window"]), int(meta["hidden"])
        if tuple(json.loads(meta["classes"])) != CLASSES:
            raise ValueError("its phoneme classes differ from this version's")
        net = build_reader(window, hidden)
        net.load_state_dict(tensors)
    except (OSError, SafetensorError, KeyError, ValueError, RuntimeError) as e:
        raise VSSFlowError(f"lip reader {path}: cannot load ({e}); reinstall the pack, or retrain it with "
                           "`python -m vssflow_core train-lipread`") from e
    return net.eval(), window


def phoneme_log_probs(raw_lips, path: str | Path = LIPREAD_WEIGHTS) -> np.ndarray:
    """Per-frame phoneme log-probabilities of a raw lip track.

    Args:
        raw_lips: float [T, 6] raw lip features (``lip_space``) at 25 Hz.
        path: reader weights.
    Returns:
        float64 [T, len(CLASSES)] natural-log probabilities (each row sums to 1 in probability).
    """
    import torch

    from vssflow_core.features.lip_space import normalise_lip_track

    net, window = load_reader(str(path))
    x = torch.from_numpy(lip_windows(normalise_lip_track(raw_lips), window))
    with torch.no_grad():
        return torch.log_softmax(net(x), dim=-1).double().numpy()
