"""Drawing helpers for the synthetic scenes: backgrounds, camera, anti-aliased shapes.

World coordinates are fractions of the frame side (x right, y down, 0..1 is the visible frame
when the camera is at rest); a frame of side ``size`` px is float32 RGB in 0..1 while drawing.
Shapes have soft (1 px) edges so that a scene rendered at 64 px and at 320 px averages to nearly
the same 16x16 thumbnails (the visual features).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

# scikit-image sample images bundled in its wheel (no download), public domain / CC0 per skimage.data
_PHOTOS = ("coffee", "chelsea", "rocket", "grass", "gravel", "brick", "camera", "moon",
           "hubble_deep_field", "immunohistochemistry")
PAN_MARGIN = 0.15  # the background extends this far (fraction of frame) beyond each side


@functools.lru_cache(maxsize=16)
def _photo(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3]).astype(np.float32) / 255.0


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    import cv2

    interp = cv2.INTER_AREA if img.shape[0] > h else cv2.INTER_LINEAR
    return cv2.resize(img, (w, h), interpolation=interp)


@dataclass
class Background:
    """A background image larger than the frame (for camera pans) in 0..1 RGB, [H, W, 3]."""

    image: np.ndarray
    floor_y: float  # world y of the floor line (objects rest on it)


def make_background(rng: np.random.Generator, size: int, style: str | None = None) -> Background:
    """A random background covering the frame plus ``PAN_MARGIN`` on each side.

    Styles: ``gradient`` (sky/wall + floor band), ``texture`` (smooth coloured noise + floor),
    ``photo`` (a blurred, tinted skimage sample image), ``tiles`` (stripes/checker + floor).
    """
    style = style or ("gradient", "texture", "photo", "tiles")[int(rng.integers(4))]
    full = int(round(size * (1 + 2 * PAN_MARGIN)))
    yy = (np.arange(full)[:, None] / full) * np.ones((1, full))
    floor_y = float(rng.uniform(0.68, 0.88))
    floor_px = (floor_y + PAN_MARGIN) / (1 + 2 * PAN_MARGIN)
    c_top, c_bot, c_floor = rng.uniform(0.05, 0.95, (3, 3))
    if style == "photo":
        name = _PHOTOS[int(rng.integers(len(_PHOTOS)))]
        photo = _photo(name)
        h, w = photo.shape[:2]
        side = int(min(h, w) * rng.uniform(0.5, 1.0))
        y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        img = _resize(photo[y0:y0 + side, x0:x0 + side], full, full)
        if rng.random() < 0.5:
            img = img[:, ::-1]
        img = img * rng.uniform(0.5, 1.1) * rng.uniform(0.85, 1.15, 3) + rng.uniform(-0.1, 0.1)
    elif style == "texture":
        small = rng.random((int(rng.integers(3, 9)),) * 2 + (3,)).astype(np.float32)
        img = _resize(small, full, full)
        img = c_top * 0.5 + img * rng.uniform(0.3, 0.9)
    elif style == "tiles":
        n = int(rng.integers(3, 12))
        xx = np.arange(full)[None, :] / full * n
        pat = ((np.floor(xx) + (np.floor(yy * n) if rng.random() < 0.5 else 0)) % 2)[..., None]
        img = c_top * pat + c_bot * (1 - pat)
    else:
        g = yy[..., None]
        img = c_top * (1 - g) + c_bot * g
    floor = (yy >= floor_px)[..., None]
    shade = 1.0 - 0.4 * np.clip((yy - floor_px) / max(1e-6, 1 - floor_px), 0, 1)[..., None]
    if style == "photo":  # a translucent table/floor band so objects visibly rest on something
        img = np.where(floor, 0.5 * img + 0.5 * c_floor * shade, img)
    else:
        img = np.where(floor, c_floor * shade, img)
    return Background(np.clip(img, 0, 1).astype(np.float32), floor_y)


@dataclass
class Camera:
    """Camera offset over time (world units): a linear pan, handheld jitter, and impact shakes."""

    pan_velocity: tuple[float, float]  # world units per second
    jitter_amp: float
    jitter_freq_hz: tuple[float, float]
    jitter_phase: tuple[float, float]
    shakes: tuple[tuple[float, float], ...] = ()  # (time_s, amplitude) of short impact shakes

    @classmethod
    def random(cls, rng: np.random.Generator, still_prob: float = 0.4) -> "Camera":
        """A camera drawn from ``rng``: still with probability ``still_prob``, else drifting, zooming
        and/or shaking."""
        if rng.random() < still_prob:
            return cls((0.0, 0.0), 0.0, (1.0, 1.0), (0.0, 0.0))
        v = rng.uniform(-0.02, 0.02, 2) if rng.random() < 0.6 else np.zeros(2)
        return cls((float(v[0]), float(v[1])), float(rng.uniform(0.0, 0.01)),
                   tuple(float(f) for f in rng.uniform(0.3, 1.5, 2)), tuple(float(p) for p in rng.uniform(0, 6.28, 2)))

    def offset(self, t: float) -> tuple[float, float]:
        """Camera position (dx, dy) in world units at time t (s), clamped to the pan margin."""
        dx = self.pan_velocity[0] * t + self.jitter_amp * np.sin(2 * np.pi * self.jitter_freq_hz[0] * t + self.jitter_phase[0])
        dy = self.pan_velocity[1] * t + self.jitter_amp * np.sin(2 * np.pi * self.jitter_freq_hz[1] * t + self.jitter_phase[1])
        for t0, amp in self.shakes:
            if 0.0 <= t - t0 < 0.2:
                k = (t - t0) / 0.04  # one swing per frame at 25 fps
                dy += amp * np.exp(-(t - t0) / 0.06) * np.cos(np.pi * round(k))
        lim = PAN_MARGIN * 0.9
        return float(np.clip(dx, -lim, lim)), float(np.clip(dy, -lim, lim))


def view(bg: Background, size: int, offset: tuple[float, float]) -> np.ndarray:
    """The visible part of the background for a camera offset: float32 [size, size, 3] (a copy)."""
    full = bg.image.shape[0]
    scale = full / (1 + 2 * PAN_MARGIN)
    x0 = (PAN_MARGIN + offset[0]) * scale
    y0 = (PAN_MARGIN + offset[1]) * scale
    ix, iy = int(np.floor(x0)), int(np.floor(y0))
    fx, fy = x0 - ix, y0 - iy
    ix, iy = min(max(ix, 0), full - size - 1), min(max(iy, 0), full - size - 1)
    a = bg.image[iy:iy + size + 1, ix:ix + size + 1]
    # bilinear sub-pixel shift so slow pans are smooth at any resolution
    top = a[:-1, :-1] * (1 - fx) + a[:-1, 1:] * fx
    bot = a[1:, :-1] * (1 - fx) + a[1:, 1:] * fx
    return (top * (1 - fy) + bot * fy).astype(np.float32)


def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in world units: (ys [size, 1], xs [1, size])."""
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    return c[:, None], c[None, :]


def _coverage(dist_px: np.ndarray) -> np.ndarray:
    """Signed distance in px (negative inside) -> soft coverage 0..1 over a 1 px edge."""
    return np.clip(0.5 - dist_px, 0.0, 1.0)


def _window(size: int, cx: float, cy: float, radius: float):
    """Pixel window (y0, y1, x0, x1) covering a disc of ``radius`` (world units) + 1 px, or None if off-frame."""
    r_px = radius * size + 1.5
    x0, x1 = max(0, int(np.floor(cx * size - r_px))), min(size, int(np.ceil(cx * size + r_px)) + 1)
    y0, y1 = max(0, int(np.floor(cy * size - r_px))), min(size, int(np.ceil(cy * size + r_px)) + 1)
    return None if x0 >= x1 or y0 >= y1 else (y0, y1, x0, x1)


def _paint(img: np.ndarray, win, cov: np.ndarray, color) -> None:
    y0, y1, x0, x1 = win
    sub = img[y0:y1, x0:x1]
    sub *= 1 - cov
    sub += cov * np.asarray(color, dtype=np.float32)


def draw_ellipse(img: np.ndarray, cx: float, cy: float, rx: float, ry: float, color, alpha: float = 1.0) -> None:
    """Paint a filled anti-aliased ellipse (world units) into img [S, S, 3] in place.

    Only the pixels the shape can touch are computed (coverage is 0 elsewhere, so this is exact).
    """
    size = img.shape[0]
    reach = 1.0 + 0.5 / max(min(rx, ry) * size, 1e-6)  # normalised radius where coverage reaches 0
    win = _window(size, cx, cy, max(rx, ry) * reach)
    if win is None:
        return
    ys, xs = grid(size)
    ys, xs = ys[win[0]:win[1]], xs[:, win[2]:win[3]]
    d = np.sqrt(((xs - cx) / max(rx, 1e-6)) ** 2 + ((ys - cy) / max(ry, 1e-6)) ** 2)
    cov = _coverage((d - 1.0) * min(rx, ry) * size)[..., None] * alpha
    _paint(img, win, cov, color)


def draw_rect(img: np.ndarray, cx: float, cy: float, w: float, h: float, color, alpha: float = 1.0,
              angle: float = 0.0) -> None:
    """Paint a filled anti-aliased rectangle centred at (cx, cy), rotated by ``angle`` rad (in place)."""
    size = img.shape[0]
    edge = 0.5 / size
    win = _window(size, cx, cy, float(np.hypot(w / 2 + edge, h / 2 + edge)))
    if win is None:
        return
    ys, xs = grid(size)
    ys, xs = ys[win[0]:win[1]], xs[:, win[2]:win[3]]
    ca, sa = np.cos(angle), np.sin(angle)
    u = (xs - cx) * ca + (ys - cy) * sa
    v = -(xs - cx) * sa + (ys - cy) * ca
    d = np.maximum(np.abs(u) - w / 2, np.abs(v) - h / 2) * size
    cov = _coverage(d)[..., None] * alpha
    _paint(img, win, cov, color)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """float 0..1 [..., 3] -> uint8 (rounded, clipped)."""
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
