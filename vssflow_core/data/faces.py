"""A talking face made from a real photograph: ``skimage.data.astronaut()`` with a jaw warp.

The mouth of the photo (Eileen Collins, NASA, public domain; bundled in the scikit-image wheel)
is opened and closed by a smooth vertical warp of the lips and jaw, so that a real face-landmark
detector (mediapipe face mesh) measures an inner-lip gap that follows the requested opening.
The same renderer draws the face at 64 px (for the visual features of training clips) and at
256-384 px (for the mp4s that the lip front-end reads).

Landmarks of the source photo (512x512 px), measured once with mediapipe 0.10.21 face mesh:
upper inner lip (13) y 143.2, lower inner lip (14) y 150.1, mouth corners (61/291) x 201.8/245.0,
mouth centre x 223.5, nose tip (1) y 130.0, chin (152) y 177.4, eye centres (204.3, 102.3) and
(246.4, 104.6): inter-ocular distance (IOD) 42.2 px.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from vssflow_core.config import FEATURE_RATE_HZ

SRC_SIZE = 512
LIP_TOP_Y = 143.2
LIP_BOTTOM_Y = 150.1
MOUTH_CX = 223.5
NOSE_Y = 130.0
NECK_Y = 215.0
IOD_PX = 42.2
FACE_CENTRE = (224.0, 128.0)  # (x, y) centre of the head in the photo
HEAD_RADII = (78.0, 105.0)  # soft ellipse around head + neck (x, y radii, px)
CROP_SIDE = 230.0  # photo px shown across a face "panel" of scale 1
# mediapipe measures inner_open ~= 0.055 + 0.62 * (warped gap / IOD) on this photo (its smile keeps
# a floor of ~0.06); rendering the inverse makes the measured opening follow the requested one.
DETECTOR_OFFSET = 0.055
DETECTOR_GAIN = 0.62


@functools.lru_cache(maxsize=8)
def _source(level: int) -> np.ndarray:
    """The photo as float32 0..1 [512/2^level, 512/2^level, 3] (area-downscaled pyramid level)."""
    import cv2
    import skimage.data

    img = skimage.data.astronaut().astype(np.float32) / 255.0
    side = SRC_SIZE >> level
    if level:
        img = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img)


@dataclass
class FacePose:
    """Where and how the face appears in one frame (world units = fractions of the frame side)."""

    cx: float  # frame position of the head centre
    cy: float
    scale: float  # panel side in frame units (CROP_SIDE photo px map to this)
    angle: float  # in-plane rotation, rad
    flip: bool
    gain: tuple[float, float, float]  # RGB lighting gain
    side_light: float  # left/right lighting gradient (-0.4..0.4)


@dataclass
class FaceTrack:
    """A talking face over a clip: per-frame poses and mouth openings on the 25 Hz grid."""

    inner_open: np.ndarray  # [F] inner-lip gap in IOD units (closed ~0.02, open ~0.4)
    cx: np.ndarray  # [F]
    cy: np.ndarray  # [F]
    scale: np.ndarray  # [F]
    angle: np.ndarray  # [F]
    flip: bool
    gain: tuple[float, float, float]
    side_light: float
    composite: bool  # True: head cut out onto the scene background; False: full photo panel

    def pose(self, k: int) -> FacePose:
        """The face's pose at 25 fps frame ``k`` (clamped to the track)."""
        k = min(max(k, 0), len(self.cx) - 1)
        return FacePose(float(self.cx[k]), float(self.cy[k]), float(self.scale[k]), float(self.angle[k]),
                        self.flip, self.gain, self.side_light)


def random_face_track(rng: np.random.Generator, inner_open: np.ndarray, fps: float = FEATURE_RATE_HZ,
                      region: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0),
                      composite: bool | None = None) -> FaceTrack:
    """Random head placement/size/lighting with slow drift, nodding and sway.

    Args:
        inner_open: ``[F]`` mouth opening per frame (IOD units) from the phoneme timings.
        region: (x0, y0, x1, y1) part of the frame the head centre stays in (world units).
    """
    n = len(inner_open)
    t = np.arange(n) / fps
    x0, y0, x1, y1 = region
    w = x1 - x0
    scale = float(rng.uniform(0.75, 1.25)) * w
    cx0 = x0 + w * rng.uniform(0.4, 0.6)
    cy0 = y0 + (y1 - y0) * rng.uniform(0.4, 0.6)

    def wobble(amp: float) -> np.ndarray:
        f = rng.uniform(0.1, 0.6, 2)
        p = rng.uniform(0, 6.28, 2)
        return amp * (0.6 * np.sin(2 * np.pi * f[0] * t + p[0]) + 0.4 * np.sin(2 * np.pi * f[1] * t + p[1]))

    return FaceTrack(
        inner_open=np.asarray(inner_open, dtype=np.float64),
        cx=cx0 + wobble(0.02 * w), cy=cy0 + wobble(0.015 * w),
        scale=scale * (1 + wobble(0.02)), angle=wobble(0.05),
        flip=bool(rng.random() < 0.5),
        gain=tuple(float(g) for g in rng.uniform(0.7, 1.2) * rng.uniform(0.9, 1.1, 3)),
        side_light=float(rng.uniform(-0.3, 0.3)),
        composite=bool(rng.random() < 0.6) if composite is None else composite,
    )


def _jaw_map(ys: np.ndarray, xs: np.ndarray, gap_px: float) -> np.ndarray:
    """Source y of each (photo-space) output pixel for a mouth whose inner gap is ``gap_px``.

    Piecewise-linear in y (nose and neck fixed; the upper lip moves 30 %, the lower lip and jaw
    70 % of the change), weighted across x by a raised cosine centred on the mouth so that the
    corners stay nearly closed.
    """
    delta = float(np.clip(gap_px, 0.3, 40.0)) - (LIP_BOTTOM_Y - LIP_TOP_Y)
    out_ctrl = np.array([NOSE_Y, LIP_TOP_Y - 0.3 * delta, LIP_BOTTOM_Y + 0.7 * delta, NECK_Y])
    src_ctrl = np.array([NOSE_Y, LIP_TOP_Y, LIP_BOTTOM_Y, NECK_Y])
    src_y = np.where((ys < NOSE_Y) | (ys > NECK_Y), ys, np.interp(ys, out_ctrl, src_ctrl))
    wx = 0.5 * (1 + np.cos(np.pi * np.clip((xs - MOUTH_CX) / 32.0, -1, 1)))
    return ys + wx * (src_y - ys)


def render_face(canvas: np.ndarray, pose: FacePose, inner_open: float, composite: bool) -> None:
    """Draw the face with the given mouth opening into ``canvas`` [S, S, 3] float 0..1, in place."""
    import cv2

    size = canvas.shape[0]
    px_per_src = pose.scale * size / CROP_SIDE  # output px per photo px
    level = int(np.clip(np.floor(np.log2(max(1.0 / max(px_per_src, 1e-6), 1.0))), 0, 3))
    src = _source(level)
    k = float(1 << level)
    # output pixel -> photo coordinates (inverse similarity transform about the head centre)
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    xs, ys = np.meshgrid(c, c)
    dx, dy = (xs - pose.cx) * size / px_per_src, (ys - pose.cy) * size / px_per_src
    ca, sa = np.cos(-pose.angle), np.sin(-pose.angle)
    u, v = dx * ca - dy * sa, dx * sa + dy * ca
    if pose.flip:
        u = -u
    px, py = FACE_CENTRE[0] + u, FACE_CENTRE[1] + v
    gap_px = max(0.0, (float(inner_open) - DETECTOR_OFFSET) / DETECTOR_GAIN) * IOD_PX
    py_src = _jaw_map(py, px, gap_px)
    map_x = (px / k - 0.5 + 0.5 / k).astype(np.float32)
    map_y = (py_src / k - 0.5 + 0.5 / k).astype(np.float32)
    face = cv2.remap(src, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    light = np.asarray(pose.gain, dtype=np.float32) * (1 + pose.side_light * np.clip(u / 100.0, -1, 1))[..., None]
    face = face * light
    if composite:
        e = np.sqrt(((px - FACE_CENTRE[0]) / HEAD_RADII[0]) ** 2 + ((py - FACE_CENTRE[1]) / HEAD_RADII[1]) ** 2)
        edge_px = max(1.0, 0.08 * HEAD_RADII[0] * px_per_src)
        alpha = np.clip((1.0 - e) * HEAD_RADII[0] * px_per_src / edge_px + 0.5, 0, 1)[..., None]
    else:
        half = CROP_SIDE / 2
        inside = np.maximum(np.abs(px - FACE_CENTRE[0]), np.abs(py - FACE_CENTRE[1])) - half
        alpha = np.clip(0.5 - inside * px_per_src, 0, 1)[..., None]
    canvas *= 1 - alpha
    canvas += alpha * np.clip(face, 0, 1)
