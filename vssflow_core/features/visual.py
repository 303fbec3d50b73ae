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
  show up here, frame-accurately.
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


def thumbnails(frames) -> np.ndarray:
    """Area-average each frame to a 16x16 RGB grid.

    Args:
        frames: uint8 ``[F, H, W, 3]`` RGB, any H, W >= 1.

    Returns:
        float32 ``[F, 16, 16, 3]`` in 0..1. Cell (i, j) is the mean of rows floor(i*H/16) ..
        ceil((i+1)*H/16) - 1 and the same columns of W (adaptive average pooling: exact blocks when
        H and W are multiples of 16, else neighbouring cells share a border row or column).
    """
    arr = _check_frames(frames, "thumbnails(frames)")
    f = arr.shape[0]
    if f == 0:
        return np.zeros((0, GRID, GRID, 3), dtype=np.float32)
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).to(torch.float32)  # [F, 3, H, W]
    x = torch.nn.functional.adaptive_avg_pool2d(x, (GRID, GRID)) / 255.0  # [F, 3, 16, 16]
    return x.permute(0, 2, 3, 1).contiguous().numpy()  # [F, 16, 16, 3]


def motion_features(frames) -> np.ndarray:
    """Frame-difference motion features on the 25 Hz grid.

    Args:
        frames: uint8 ``[F, H, W, 3]`` RGB frames sampled at 25 fps (any size; squashed to 16x16).

    Returns:
        float32 ``[F, 256]`` in [-1, 1]: row k is ``sign(d) * log1p(20 |d|) / log1p(20)`` with
        ``d = grey_k - grey_{k-1}`` of the 16x16 grey thumbnails (0..1, BT.601 luma), row-major
        cells; row 0 is zeros. A change that appears in frame k (an object that lands, a flash)
        is in row k.
    """
    thumbs = thumbnails(frames)  # [F, 16, 16, 3]
    f = thumbs.shape[0]
    out = np.zeros((f, MOTION_DIM), dtype=np.float32)
    if f < 2:
        return out
    grey = thumbs @ np.asarray(_LUMA, dtype=np.float32)  # [F, 16, 16]
    diff = (grey[1:] - grey[:-1]).reshape(f - 1, MOTION_DIM)  # [F-1, 256]
    out[1:] = np.sign(diff) * np.log1p(MOTION_GAIN * np.abs(diff)) / np.log1p(MOTION_GAIN)
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
