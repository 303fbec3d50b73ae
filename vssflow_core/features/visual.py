"""Cheap, deterministic visual features for the embedded model (no learned weights).

The embedded model learns its own small visual encoders on top of these two features (its
condition projections), so the same code must run at training time (on the synthetic frames of
``vssflow_core.data``) and at inference time (on real video frames). Both functions therefore
accept frames of any size and aspect ratio: each frame is squashed to a 16x16 grid by area
averaging (like CLIP squashes to 224x224) before anything else, which also makes the features
nearly independent of the rendering resolution.

Letters: F frames, H height, W width (px).

* ``motion_features``   frames at 25 fps  -> float32 [F, 256]: the signed change of the 16x16
  grey image since the previous frame, compressed with a fixed log curve into [-1, 1]
  (row 0 is all zeros: it has no predecessor). Impacts, flashes, shaking and camera motion
  show up here, frame-accurately; hard cuts between shots (``shot_cuts``) are zeroed.
* ``appearance_features`` frames at 10 fps -> float32 [F, 768]: the 16x16 RGB thumbnail,
  standardised with fixed constants (what is seen: colours, layout, a face or an object).
"""

from __future__ import annotations

import numpy as np
import torch

from vssflow_core.errors import VSSFlowError

GRID = 16  # thumbnail side (cells)
MOTION_DIM = GRID * GRID  # 256
APPEARANCE_DIM = GRID * GRID * 3  # 768
MOTION_GAIN = 20.0  # |grey change| of 0.05 (5 % of full scale) maps to ~0.5
APPEARANCE_MEAN = 0.45
APPEARANCE_STD = 0.25
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights for R, G, B
# Hard cuts between shots (see shot_cuts): correlations of 16x16 grey thumbnails. Measured on real
# videos, a cut scores 0.1-0.3 and a shot's own frames >= 0.8 (a tree in wind; 0.94+ otherwise).
CUT_MAX_CORR = 0.5
CUT_RETURN_FRAMES = 5  # 0.2 s at 25 fps
CUT_MIN_STAY_CORR = 0.8
CUT_MIN_CHANGE = 0.05  # mean |grey change| (0..1): cuts measure 0.14-0.16, frames within a shot 0.01-0.03 (99th pct)
CUT_FLAT_STD = 0.01  # a grey grid with less spread than this is one flat colour


def _check_frames(frames, name: str) -> np.ndarray:
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise VSSFlowError(
            f"{name}: expected video frames uint8 [F, H, W, 3] (RGB), got shape {tuple(arr.shape)}. "
            "Pass frames decoded by vssflow_core.media.video.read_frames (or an IMAGE batch * 255)."
        )
    if arr.dtype != np.uint8:
        raise VSSFlowError(
            f"{name}: expected dtype uint8 (0..255), got {arr.dtype}. Convert float images in 0..1 with "
            "(images * 255).round().astype(np.uint8)."
        )
    return arr


def thumbnails(frames, grid: int = GRID) -> np.ndarray:
    """Area-average each frame to a ``grid`` x ``grid`` RGB thumbnail (16x16 unless given).

    Args:
        frames: uint8 ``[F, H, W, 3]`` RGB, any H, W >= 1.
        grid: thumbnail side G (cells).

    Returns:
        float32 ``[F, G, G, 3]`` in 0..1. Cell (i, j) is the mean of rows floor(i*H/G) ..
        ceil((i+1)*H/G) - 1 and the same columns of W (adaptive average pooling: exact blocks when
        H and W are multiples of G, else neighbouring cells share a border row or column).
    """
    arr = _check_frames(frames, "thumbnails(frames)")
    f = arr.shape[0]
    if f == 0:
        return np.zeros((0, grid, grid, 3), dtype=np.float32)
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).to(torch.float32)  # [F, 3, H, W]
    x = torch.nn.functional.adaptive_avg_pool2d(x, (grid, grid)) / 255.0  # [F, 3, G, G]
    return x.permute(0, 2, 3, 1).contiguous().numpy()  # [F, G, G, 3]


def grey_grid(frames, grid: int = GRID) -> np.ndarray:
    """uint8 ``[F, H, W, 3]`` -> float32 ``[F, G * G]``: the G x G grey thumbnails (0..1, BT.601), row-major."""
    thumbs = thumbnails(frames, grid)  # [F, G, G, 3]
    return (thumbs @ np.asarray(_LUMA, dtype=np.float32)).reshape(len(thumbs), grid * grid)


def signed_change(grey: np.ndarray) -> np.ndarray:
    """Grey grids ``[F, D]`` (0..1) -> float32 ``[F, D]`` in [-1, 1]: row k is
    ``sign(d) * log1p(20 |d|) / log1p(20)`` with ``d = grey_k - grey_{k-1}``; row 0 is zeros."""
    out = np.zeros(grey.shape, dtype=np.float32)
    if len(grey) >= 2:
        diff = grey[1:] - grey[:-1]
        out[1:] = np.sign(diff) * np.log1p(MOTION_GAIN * np.abs(diff)) / np.log1p(MOTION_GAIN)
    return out


def _picture_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of the grey grids ``a, b [N, 256]`` row by row -> ``[N]``. A flat grid
    (one colour: black, or a white flash) has no pattern: it scores 1 against a flat grid of about
    the same level (means within ``CUT_MIN_CHANGE``) and 0 against anything else."""
    a0 = a - a.mean(axis=1, keepdims=True)
    b0 = b - b.mean(axis=1, keepdims=True)
    sa, sb = a0.std(axis=1), b0.std(axis=1)
    flat_a, flat_b = sa < CUT_FLAT_STD, sb < CUT_FLAT_STD
    corr = (a0 * b0).mean(axis=1) / np.maximum(sa * sb, 1e-12)
    same_level = np.abs(a.mean(axis=1) - b.mean(axis=1)) < CUT_MIN_CHANGE
    return np.where(flat_a & flat_b, same_level.astype(np.float64), np.where(flat_a | flat_b, 0.0, corr))


def shot_cuts(frames, grey: np.ndarray | None = None) -> np.ndarray:
    """Hard cuts between shots, found on the 16x16 grey thumbnails.

    Frame k starts a new shot when all of these hold:

    * the picture changes a lot: mean |grey_k - grey_{k-1}| >= ``CUT_MIN_CHANGE``;
    * frame k's picture is unlike each of the ``CUT_RETURN_FRAMES`` frames before it (correlation
      below ``CUT_MAX_CORR``), so it is not the picture coming back after a flash;
    * frame k-1's picture is unlike each of frames k .. k + ``CUT_RETURN_FRAMES``: the old picture
      does not come back (it does after a flash or an object passing close to the camera);
    * frame k+1 continues the new picture (correlation above ``CUT_MIN_STAY_CORR``; a one-frame
      glitch does not).

    Camera motion, shaking, flashes and objects that appear keep the picture's pattern and are
    not cuts. No synthetic training clip has one (measured on the data generator's clips), so the
    trained model never saw what a cut does to the motion features.

    Args:
        frames: uint8 ``[F, H, W, 3]`` RGB frames at 25 fps.
        grey: their :func:`grey_grid` ``[F, 256]`` when the caller has it already (the thumbnails are
            most of the cost; the inference front-end shares them with :func:`motion_features`).

    Returns:
        bool ``[F]``: True at the first frame of each new shot (the first and the last frame are
        never cuts: nothing before, nothing after to confirm).
    """
    return _cuts_in(grey_grid(frames) if grey is None else grey)


def _cuts_in(grey: np.ndarray) -> np.ndarray:
    """:func:`shot_cuts` on grey grids ``[F, 256]`` -> bool ``[F]``."""
    f = len(grey)
    cuts = np.zeros(f, dtype=bool)
    if f < 3:
        return cuts
    k = np.arange(1, f - 1)  # the last frame has no next frame to confirm a new shot: never a cut
    big_change = np.abs(grey[k] - grey[k - 1]).mean(axis=1) >= CUT_MIN_CHANGE
    new_seen_before = np.zeros(len(k))  # best likeness of frame k to the frames just before it
    old_seen_after = np.zeros(len(k))  # best likeness of frame k-1 to frames k .. k + R
    for offset in range(CUT_RETURN_FRAMES + 1):
        if offset >= 1:
            before = np.maximum(k - offset, 0)
            new_seen_before = np.maximum(new_seen_before, _picture_similarity(grey[before], grey[k]))
        after = np.minimum(k + offset, f - 1)
        old_seen_after = np.maximum(old_seen_after, _picture_similarity(grey[k - 1], grey[after]))
    new_stays = _picture_similarity(grey[k], grey[k + 1]) > CUT_MIN_STAY_CORR
    cuts[1:-1] = big_change & (new_seen_before < CUT_MAX_CORR) & (old_seen_after < CUT_MAX_CORR) & new_stays
    return cuts


def motion_features(frames, grey: np.ndarray | None = None, cuts: np.ndarray | None = None) -> np.ndarray:
    """Frame-difference motion features on the 25 Hz grid.

    Args:
        frames: uint8 ``[F, H, W, 3]`` RGB frames sampled at 25 fps (any size; squashed to 16x16).
        grey: their :func:`grey_grid` ``[F, 256]`` when the caller has it already (as for :func:`shot_cuts`).
        cuts: their :func:`shot_cuts` (bool ``[F]``) when the caller has it already.

    Returns:
        float32 ``[F, 256]`` in [-1, 1]: row k is ``sign(d) * log1p(20 |d|) / log1p(20)`` with
        ``d = grey_k - grey_{k-1}`` of the 16x16 grey thumbnails (0..1, BT.601 luma), row-major
        cells; row 0 is zeros. A change that appears in frame k (an object that lands, a flash)
        is in row k. Rows at hard cuts between shots (:func:`shot_cuts`) are zeros too: a cut
        changes every cell at once, which the model would otherwise hear as a loud impact.
    """
    grey = grey_grid(frames) if grey is None else grey
    out = signed_change(grey)
    out[_cuts_in(grey) if cuts is None else cuts] = 0.0
    return out


def appearance_features(frames) -> np.ndarray:
    """Thumbnail appearance features on the 10 Hz grid.

    Args:
        frames: uint8 ``[F, H, W, 3]`` RGB frames sampled at 10 fps (any size; squashed to 16x16).

    Returns:
        float32 ``[F, 768]``: the 16x16x3 thumbnail (row-major cells, RGB innermost), standardised
        as ``(x - 0.45) / 0.25`` with x in 0..1 (range about [-1.8, 2.2]).
    """
    thumbs = thumbnails(frames)  # [F, 16, 16, 3]
    return ((thumbs.reshape(thumbs.shape[0], APPEARANCE_DIM) - APPEARANCE_MEAN) / APPEARANCE_STD).astype(np.float32)
