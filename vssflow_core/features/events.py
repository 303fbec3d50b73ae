"""A small visual event detector: per 25 Hz frame, the probability that something visible happens
that makes a sound there (an object lands, a ball touches the floor, a rattle or a bell turns, a
light flashes).

Why it exists: the motion features (``visual.motion_features``) are a 16x16 grid of frame
differences, and the model's motion projection reads them one frame at a time with dense weights.
Impacts and flashes are peaks there, but a motion *reversal* (a bounce, a shake, a bell at the end
of its swing) is only a change of sign in a few cells, wherever the object happens to be. A dense
per-frame projection has to learn that separately for every cell; this detector is a 2-D
convolution over a 32x32 grid of frame differences, so it finds the same pattern anywhere in the
picture, and it sees ``2 * window + 1`` frames at once.

Input: :func:`change_grids` of the frames (signed, log-compressed change of 32x32 grey thumbnails,
zeros at row 0 and at hard cuts between shots, as the motion features). Output:
:func:`event_probabilities` ``[F, 1]``, which the embedded model reads as its ``event`` condition.

The shipped weights (``weights/events.safetensors``) were trained by ``python -m vssflow_core
train-events`` on make-data's sound scenes, whose manifest gives the frame of every event, half of
them drawn a second time at 8-24 fps and held on the 25 fps grid, so video from a generator (16 fps)
is read too (event F1 on unseen scenes: 0.944 at 25 fps, 0.808 at 16 fps); see
``docs/embedded_model_history.md``, "Stage 8".
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from vssflow_core.errors import VSSFlowError

EVENT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "events.safetensors"
EVENT_GRID = 32  # cells per side of the grey thumbnails the detector reads
MAX_HELD_FRAMES = 3  # repeats filled by fill_held_frames: sources down to 25 / 4 = 6.25 fps
_FIX = "reinstall the pack, or retrain it with `python -m vssflow_core train-events`"


def fill_held_frames(grey: np.ndarray, frames: np.ndarray, cuts: np.ndarray | None = None,
                     longest: int = MAX_HELD_FRAMES) -> np.ndarray:
    """Grey grids ``[F, D]`` with short runs of repeated frames replaced by a linear blend.

    A video made at fewer frames per second than 25 (8-24 fps from video generators, 10 fps security
    footage, animation drawn "on twos") reaches the 25 fps grid with frames repeated: its motion
    arrives in jumps with still frames between, which the detector, trained on smooth 25 fps video,
    reads as a string of events. A run of up to ``longest`` frames identical to the one before them
    (``frames`` uint8 ``[F, H, W, 3]``, bit for bit, as a frame-rate conversion repeats them) is
    filled by blending the grids of the frames on either side; a longer run is a still picture and
    stays. Measured: 10 fps walking people went from 4.4 to 0.5 detections per second, an animated
    clip with a third of its frames repeated from 5.1 to 1.9 (docs/embedded_model_history.md, "Stage 8").
    ``cuts`` (bool ``[F]``, ``visual.shot_cuts``): no blend reaches across the first frame of a new shot,
    which would make a cut a cross-fade of several frames, each a large change."""
    frames = np.asarray(frames)
    if len(frames) < 3:
        return grey
    repeated = np.all(frames[1:] == frames[:-1], axis=(1, 2, 3))
    new = np.concatenate([[0], np.nonzero(~repeated)[0] + 1])  # frames that show a new picture
    out = grey.copy()
    for a, b in zip(new[:-1], new[1:]):
        if 1 < b - a <= longest + 1 and not (cuts is not None and cuts[a + 1: b + 1].any()):
            w = (np.arange(a + 1, b) - a)[:, None] / (b - a)
            out[a + 1: b] = (1 - w) * grey[a] + w * grey[b]
    return out


def change_grids(frames, cuts: np.ndarray | None = None) -> np.ndarray:
    """uint8 ``[F, H, W, 3]`` RGB frames at 25 fps -> float32 ``[F, 32, 32]`` in [-1, 1]: the signed,
    log-compressed change of the 32x32 grey thumbnail since the previous frame (``visual.signed_change``)
    after :func:`fill_held_frames`; row 0 and the first frame of each new shot (``cuts``, bool ``[F]``;
    ``visual.shot_cuts`` when not given) are zeros."""
    from vssflow_core.features.visual import grey_grid, shot_cuts, signed_change

    frames = np.asarray(frames)
    cuts = shot_cuts(frames) if cuts is None else cuts
    change = signed_change(fill_held_frames(grey_grid(frames, EVENT_GRID), frames, cuts))
    change[cuts] = 0.0
    return change.reshape(len(change), EVENT_GRID, EVENT_GRID)


def build_detector(window: int, width: int):
    """The detector: three 3x3 convolutions (``width``, 2 x ``width``, 2 x ``width`` channels; the
    last two with stride 2), GELU, a maximum over the picture, and a linear layer to one logit.
    Input ``[N, 2 * window + 1, G, G]``, output logits ``[N, 1]``."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(2 * window + 1, width, 3, padding=1), nn.GELU(),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.GELU(),
        nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.GELU(),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(2 * width, 1))


def save_detector(net, window: int, path: str | Path, training: str = "") -> None:
    """Write ``net``'s weights with ``window``, ``width``, ``grid`` and ``training`` (free text) in the
    metadata; refuses an existing file."""
    from vssflow_core.features.netfile import save_net

    save_net(net, path, {"window": str(window), "width": str(net[0].out_channels), "grid": str(EVENT_GRID),
                         "training": training})


def load_detector(path: str | Path = EVENT_WEIGHTS):
    """(network in eval mode, window) from a file written by :func:`save_detector`. Cached per file
    (resolved path, modification time and size); the network is shared: do not change it."""
    from vssflow_core.features.netfile import file_key

    return _load_detector(*file_key(path, "event detector", _FIX))


@lru_cache(maxsize=2)
def _load_detector(path: str, mtime_ns: int, size: int):
    from vssflow_core.features.netfile import load_state, read_net

    tensors, meta = read_net(path, "event detector", _FIX, ("window", "width", "grid"), "train-events")
    try:
        window, width, grid = int(meta["window"]), int(meta["width"]), int(meta["grid"])
    except ValueError as e:
        raise VSSFlowError(f"event detector {path}: damaged metadata ({e}); {_FIX}") from None
    if grid != EVENT_GRID:
        raise VSSFlowError(f"event detector {path}: it reads a {grid}x{grid} grid, this version makes "
                           f"{EVENT_GRID}x{EVENT_GRID}; {_FIX}")
    net = load_state(build_detector(window, width), tensors, path, "event detector", _FIX,
                     f"a detector of window {window} and width {width}")
    return net, window


def probabilities_from_change(change: np.ndarray, path: str | Path = EVENT_WEIGHTS, chunk: int = 512) -> np.ndarray:
    """:func:`event_probabilities` from :func:`change_grids` output ``[F, G, G]`` -> float32 ``[F, 1]``."""
    import torch

    from vssflow_core.features.netfile import frame_windows

    net, window = load_detector(path)
    out = np.zeros((len(change), 1), dtype=np.float32)
    with torch.no_grad():
        for a in range(0, len(change), chunk):  # bounded memory for long videos
            lo, hi = max(0, a - window), min(len(change), a + chunk + window)
            x = torch.from_numpy(frame_windows(change[lo:hi], window)[a - lo: a - lo + min(chunk, len(change) - a)])
            out[a: a + len(x), 0] = torch.sigmoid(net(x)[:, 0]).numpy()
    return out


def event_probabilities(frames, path: str | Path = EVENT_WEIGHTS, cuts: np.ndarray | None = None) -> np.ndarray:
    """Per-frame probability of a visible sound event.

    Args:
        frames: uint8 ``[F, H, W, 3]`` RGB frames at 25 fps (any size; squashed to 32x32).
        path: detector weights.
        cuts: ``visual.shot_cuts(frames)`` (bool ``[F]``) when the caller has it already.
    Returns:
        float32 ``[F, 1]`` in [0, 1]. Each shot (``visual.shot_cuts``) is read on its own, as a clip
        of its own: seen across a cut, the old shot's motion, the zeroed cut frame and the new shot's
        motion looked like an event to the detector (0.36-0.97 at three of four cuts of a real clip).
    """
    from vssflow_core.features.visual import shot_cuts

    frames = np.asarray(frames)
    cuts = shot_cuts(frames) if cuts is None else cuts
    change = change_grids(frames, cuts)
    starts = [0, *np.nonzero(cuts)[0].tolist(), len(change)]
    parts = [probabilities_from_change(change[a:b], path) for a, b in zip(starts[:-1], starts[1:]) if b > a]
    return np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)
