"""Sound scenes: objects that make a sound exactly on the video frame where something visible happens.

Classes (``sfx.SOUND_CLASSES``) and what is seen:

=============  ==============================================  ===========================================
class          visible event (at frame k, time k/25 s)          sound (onset at sample round(k/25*22050))
=============  ==============================================  ===========================================
wood_impact    a brown wooden crate falls and lands (squash,   low thump + woody knock; bigger -> lower
               camera shake)
metal_impact   a grey/silver can falls and lands               ringing inharmonic partials + click
bounce         a coloured ball hits the floor (each contact)   short pitched 'bop'; smaller -> higher
flash          a lamp flashes white, the scene lights up       electric zap
shake          a striped rattle reverses direction (each       burst of bead grains
               stroke)
slide          a block is pushed and slides on the floor       friction scrape following its speed
bell           a hanging golden bell reaches a swing extreme   bell strike (real recording or partials)
               and glints
=============  ==============================================  ===========================================

A scene is a list of ``SceneObject``s drawn over a ``canvas.Background`` seen through a
``canvas.Camera``; each object carries its own events and audio track. All timing is on the
25 Hz frame grid, so every event time is exactly ``k / 25`` s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from vssflow_core.config import FEATURE_RATE_HZ
from vssflow_core.data import canvas, sfx

FPS = FEATURE_RATE_HZ  # frames per second of the rendered clips (the conditions' grid)
MIN_EVENT_GAP_FRAMES = 3  # events of different objects stay >= 120 ms apart


@dataclass
class SceneObject:
    """One sounding object: how to draw it at time t, its events and its audio."""

    cls: str
    draw: Callable[[np.ndarray, float, tuple[float, float]], None]  # (img, t_s, camera offset)
    events: list[tuple[int, str]]  # (frame index k, class)
    audio: np.ndarray  # [S] float32 at 22050 Hz, clip length
    brightness: Callable[[float], float] | None = None  # global light added at time t (flashes)
    shakes: list[tuple[float, float]] = field(default_factory=list)  # camera shakes (time_s, amplitude)


class FrameBook:
    """Keeps the event frames of a scene apart (``MIN_EVENT_GAP_FRAMES``)."""

    def __init__(self, n_frames: int):
        self.n_frames = n_frames
        self.taken: list[int] = []

    def free(self, frames) -> bool:
        """Whether all ``frames`` are inside the clip and at least ``MIN_EVENT_GAP_FRAMES`` from every taken one."""
        return all(0 < k < self.n_frames and all(abs(k - j) >= MIN_EVENT_GAP_FRAMES for j in self.taken)
                   for k in frames)

    def take(self, frames) -> None:
        """Mark ``frames`` as event frames."""
        self.taken.extend(int(k) for k in frames)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    import colorsys

    return np.asarray(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def _pick_frames(rng, book: FrameBook, count: int, lo_s: float, hi_s: float, gap_s: float, tries: int = 30):
    """Sorted frame indices in [lo_s, hi_s) at least gap_s apart and free in the book (or [])."""
    lo, hi = int(np.ceil(lo_s * FPS)), int(np.floor(hi_s * FPS))
    for _ in range(tries):
        if hi <= lo:
            return []
        ks = np.sort(rng.integers(lo, hi, count))
        if np.all(np.diff(ks) >= gap_s * FPS) and book.free(ks):
            book.take(ks)
            return [int(k) for k in ks]
    return []


def _uniform(rng, lo: float, hi: float) -> float:
    """rng.uniform(lo, hi), or the midpoint when the object is too big for its region (same draws)."""
    u = float(rng.uniform(0.0, 1.0))
    return lo + (hi - lo) * u if hi > lo else 0.5 * (lo + hi)


def _empty_audio(duration_s: float) -> np.ndarray:
    return np.zeros(int(round(duration_s * sfx.SAMPLE_RATE)), dtype=np.float32)


def make_drop(rng, cls: str, region, floor_y: float, duration_s: float, book: FrameBook) -> SceneObject | None:
    """A crate (wood_impact) or can (metal_impact) falling into view and landing on the floor."""
    count = int(rng.integers(1, 4))
    frames = _pick_frames(rng, book, count, 0.5, duration_s - 0.3, 0.7)
    if not frames:
        return None
    x0, x1 = region
    size = float(rng.uniform(0, 1))
    w = (0.08 + 0.14 * size) * (x1 - x0) / 0.5
    h = w * rng.uniform(0.7, 1.3)
    if cls == "wood_impact":
        color = _hsv(rng.uniform(0.05, 0.11), rng.uniform(0.5, 0.8), rng.uniform(0.35, 0.65))
    else:
        color = _hsv(rng.uniform(0.5, 0.7), rng.uniform(0.0, 0.15), rng.uniform(0.55, 0.85))
    audio = _empty_audio(duration_s)
    drops = []
    for k in frames:
        t_land = k / FPS
        fall_s = float(rng.uniform(0.3, 0.6))
        xc = float(_uniform(rng, x0 + w, x1 - w))
        drops.append((t_land, fall_s, xc))
        snd = sfx.wood_impact(rng, size) if cls == "wood_impact" else sfx.metal_impact(rng, size)
        sfx.place(audio, snd, t_land, float(rng.uniform(0.6, 1.0)))
    y_rest = floor_y - h / 2

    def draw(img, t, off):
        for t_land, fall_s, xc in drops:
            if t < t_land - fall_s:
                continue
            if t < t_land:
                y = y_rest - (y_rest + h) * ((t_land - t) / fall_s) ** 2
                ww, hh = w, h
            else:
                squash = 0.15 * np.exp(-(t - t_land) / 0.05)
                ww, hh = w * (1 + squash), h * (1 - squash)
                y = floor_y - hh / 2
            cx, cy = xc - off[0], y - off[1]
            canvas.draw_rect(img, cx, cy, ww, hh, color)
            if cls == "wood_impact":  # planks
                for j in (-1, 1):
                    canvas.draw_rect(img, cx, cy + j * hh / 4, ww, hh * 0.06, color * 0.6)
            else:  # highlight stripe of a metal can
                canvas.draw_rect(img, cx - ww / 4, cy, ww * 0.12, hh, np.minimum(color * 1.35, 1.0))

    shakes = [(k / FPS, float(0.004 + 0.01 * size)) for k in frames]
    return SceneObject(cls, draw, [(k, cls) for k in frames], audio, shakes=shakes)


def make_bounce(rng, region, floor_y: float, duration_s: float, book: FrameBook) -> SceneObject | None:
    """A ball dropped into view that bounces with shrinking hops; every floor contact sounds."""
    size = float(rng.uniform(0, 1))
    r = 0.03 + 0.06 * size
    interval = float(rng.uniform(0.45, 0.9))
    e = float(rng.uniform(0.6, 0.85))
    first_s = float(rng.uniform(0.4, max(0.5, duration_s - 2.5)))
    for _ in range(20):
        times = [first_s]
        iv = interval
        while iv >= 0.16 and times[-1] + iv < duration_s - 0.1 and len(times) < 10:
            times.append(times[-1] + iv)
            iv *= e
        frames = sorted(set(int(round(t * FPS)) for t in times))
        if np.all(np.diff(frames) >= MIN_EVENT_GAP_FRAMES) and book.free(frames):
            break
        first_s = float(rng.uniform(0.4, max(0.5, duration_s - 2.5)))
    else:
        return None
    book.take(frames)
    ts = [k / FPS for k in frames]
    x0, x1 = region
    xs0 = float(_uniform(rng, x0 + r, x1 - r))
    vx = float(rng.uniform(-0.08, 0.08))
    color = _hsv(rng.uniform(0, 1), rng.uniform(0.6, 1.0), rng.uniform(0.7, 1.0))
    y_floor = floor_y - r
    first_height = min(y_floor + r, 0.55)
    audio = _empty_audio(duration_s)
    for j, t in enumerate(ts):
        strength = 1.0 if j == 0 else float(np.sqrt((ts[j] - ts[j - 1]) / max(ts[1] - ts[0], 1e-3))) if len(ts) > 1 else 1.0
        sfx.place(audio, sfx.bounce(rng, size, strength), t, float(rng.uniform(0.6, 1.0)))

    def height(t):
        if t < ts[0]:  # initial drop from above the frame
            fall = 0.5
            return first_height * min(1.0, ((ts[0] - t) / fall) ** 2) * (1 + max(0.0, (ts[0] - t) - fall))
        for a, b in zip(ts[:-1], ts[1:]):
            if a <= t < b:
                hop = first_height * ((b - a) / (ts[1] - ts[0])) ** 2 * 0.8
                return 4 * hop * (t - a) * (b - t) / (b - a) ** 2
        return 0.0

    def draw(img, t, off):
        x = float(np.clip(xs0 + vx * (t - ts[0]), x0 + r, x1 - r))
        y = y_floor - height(t)
        if y < -r:
            return
        squash = 0.25 if any(abs(t - tk) < 0.5 / FPS for tk in ts) else 0.0
        canvas.draw_ellipse(img, x - off[0], y - off[1] + squash * r / 2, r * (1 + squash / 2), r * (1 - squash / 2), color)
        canvas.draw_ellipse(img, x - off[0] - r / 3, y - off[1] - r / 3, r / 4, r / 4, np.minimum(color + 0.35, 1.0))

    return SceneObject("bounce", draw, [(k, "bounce") for k in frames], audio)


def make_flash(rng, region, floor_y: float, duration_s: float, book: FrameBook) -> SceneObject | None:
    """A lamp on a stand that flashes; the whole scene lights up for a few frames."""
    frames = _pick_frames(rng, book, int(rng.integers(1, 5)), 0.3, duration_s - 0.3, 0.5)
    if not frames:
        return None
    x0, x1 = region
    size = float(rng.uniform(0, 1))
    r = 0.04 + 0.05 * size
    xc = float(_uniform(rng, x0 + 2 * r, x1 - 2 * r))
    yc = float(_uniform(rng, 0.25, floor_y - 0.2))
    dim = _hsv(rng.uniform(0.1, 0.18), 0.6, rng.uniform(0.35, 0.55))
    strength = float(rng.uniform(0.25, 0.6))
    ts = [k / FPS for k in frames]
    audio = _empty_audio(duration_s)
    for t in ts:
        sfx.place(audio, sfx.flash(rng, size), t, float(rng.uniform(0.6, 1.0)))

    def light(t):
        return sum(np.exp(-(t - tk) / 0.05) for tk in ts if 0 <= t - tk < 0.3)

    def draw(img, t, off):
        cx, cy = xc - off[0], yc - off[1]
        canvas.draw_rect(img, cx, (cy + floor_y - off[1]) / 2, r * 0.25, floor_y - yc, np.array([0.25, 0.25, 0.25]))
        lit = float(min(1.0, light(t)))
        canvas.draw_ellipse(img, cx, cy, r * (1 + 0.6 * lit), r * (1 + 0.6 * lit), dim * (1 - lit) + lit)

    return SceneObject("flash", draw, [(k, "flash") for k in frames], audio,
                       brightness=lambda t: strength * float(min(1.0, light(t))))


def make_shake(rng, region, floor_y: float, duration_s: float, book: FrameBook) -> SceneObject | None:
    """A striped rattle shaken left-right; each direction reversal (a stroke) sounds."""
    period = int(rng.integers(3, 6))  # frames between strokes
    n_strokes = int(rng.integers(3, 11))
    for _ in range(20):
        k0 = int(rng.integers(int(0.3 * FPS), max(int(0.3 * FPS) + 1, int((duration_s - 0.3) * FPS) - period * n_strokes)))
        frames = [k0 + j * period for j in range(1, n_strokes + 1)]
        if book.free(frames):
            break
    else:
        return None
    book.take(frames)
    x0, x1 = region
    size = float(rng.uniform(0, 1))
    w = 0.05 + 0.05 * size
    h = w * rng.uniform(1.8, 2.6)
    xc = float(_uniform(rng, x0 + 2 * w, x1 - 2 * w))
    yc = float(_uniform(rng, 0.3, floor_y - h / 2))
    amp = float(rng.uniform(0.02, 0.05))
    color = _hsv(rng.uniform(0, 1), rng.uniform(0.5, 0.9), rng.uniform(0.6, 0.95))
    stripe = _hsv(rng.uniform(0, 1), 0.2, 0.95)
    audio = _empty_audio(duration_s)
    for k in frames:
        sfx.place(audio, sfx.shake(rng, size, float(rng.uniform(0.6, 1.0))), k / FPS, float(rng.uniform(0.6, 1.0)))
    sign0 = 1.0 if rng.random() < 0.5 else -1.0

    def displacement(t):
        kf = t * FPS
        if kf <= k0:
            return 0.0
        if kf <= frames[0]:
            return sign0 * amp * (kf - k0) / period
        if kf <= frames[-1]:
            j = int((kf - frames[0]) // period)
            frac = (kf - frames[0]) / period - j
            a = sign0 * amp * (-1) ** j
            return a + (-2 * a) * frac
        last = sign0 * amp * (-1) ** (n_strokes - 1)
        return last * max(0.0, 1 - (kf - frames[-1]) / (2 * period))

    def draw(img, t, off):
        x = xc + displacement(t) - off[0]
        y = yc - off[1]
        tilt = 3.0 * displacement(t)
        canvas.draw_rect(img, x, y, w, h, color, angle=tilt)
        canvas.draw_rect(img, x, y, w, h * 0.15, stripe, angle=tilt)
        canvas.draw_ellipse(img, x + np.sin(tilt) * h / 2, y - h / 2 - w * 0.3, w * 0.35, w * 0.35, stripe)

    return SceneObject("shake", draw, [(k, "shake") for k in frames], audio)


def make_slide(rng, region, floor_y: float, duration_s: float, book: FrameBook) -> SceneObject | None:
    """A block pushed along the floor at frame k: it jumps to speed and decelerates to rest."""
    frames = _pick_frames(rng, book, 1, 0.3, duration_s - 1.0, 1.0)
    if not frames:
        return None
    k0 = frames[0]
    x0, x1 = region
    size = float(rng.uniform(0, 1))
    w = 0.1 + 0.12 * size
    h = w * rng.uniform(0.4, 0.8)
    slide_s = float(min(rng.uniform(0.6, 1.8), duration_s - k0 / FPS - 0.05))
    dist = float(rng.uniform(0.2, 0.45)) * (x1 - x0) / 0.5
    direction = 1.0 if rng.random() < 0.5 else -1.0
    start_x = x0 + w / 2 + 0.02 if direction > 0 else x1 - w / 2 - 0.02
    dist = min(dist, (x1 - x0) - w - 0.04)
    v0 = 2 * dist / slide_s  # uniform deceleration to rest in slide_s
    color = _hsv(rng.uniform(0, 1), rng.uniform(0.2, 0.6), rng.uniform(0.3, 0.8))

    def pos(t):
        tau = min(max(0.0, t - k0 / FPS), slide_s)
        return start_x + direction * (v0 * tau - 0.5 * (v0 / slide_s) * tau * tau)

    n_frames = int(np.ceil(slide_s * FPS)) + 1
    speed = np.array([max(0.0, v0 * (1 - j / FPS / slide_s)) for j in range(n_frames)])
    audio = _empty_audio(duration_s)
    sfx.place(audio, sfx.slide(rng, size, speed, FPS), k0 / FPS, float(rng.uniform(0.6, 1.0)))

    def draw(img, t, off):
        canvas.draw_rect(img, pos(t) - off[0], floor_y - h / 2 - off[1], w, h, color)
        canvas.draw_rect(img, pos(t) - off[0], floor_y - h * 0.8 - off[1], w, h * 0.12, color * 0.7)

    return SceneObject("slide", draw, [(k0, "slide")], audio)


def make_bell(rng, region, floor_y: float, duration_s: float, book: FrameBook, use_real: bool = True) -> SceneObject | None:
    """A hanging golden bell swinging; it strikes (and glints) at each swing extreme."""
    period = int(rng.integers(15, 31))  # frames between strikes
    n = int(rng.integers(2, 6))
    for _ in range(20):
        hi = int((duration_s - 0.5) * FPS) - period * (n - 1)
        if hi <= int(0.5 * FPS):
            n = max(1, n - 1)
            continue
        k1 = int(rng.integers(int(0.5 * FPS), hi))
        frames = [k1 + j * period for j in range(n)]
        if book.free(frames):
            break
    else:
        return None
    book.take(frames)
    x0, x1 = region
    size = float(rng.uniform(0, 1))
    bw = 0.07 + 0.07 * size
    pivot = (float(_uniform(rng, x0 + 2 * bw, x1 - 2 * bw)), -0.02)
    rope = float(rng.uniform(0.2, 0.35))
    theta_max = float(rng.uniform(0.3, 0.6))
    half_t = period / FPS
    t1, tn = frames[0] / FPS, frames[-1] / FPS
    gold = _hsv(rng.uniform(0.1, 0.15), rng.uniform(0.6, 0.9), rng.uniform(0.7, 0.95))
    audio = _empty_audio(duration_s)
    for k in frames:
        sfx.place(audio, sfx.bell(rng, size, use_real), k / FPS, float(rng.uniform(0.5, 0.9)))

    def angle(t):
        amp = theta_max * np.clip((t - (t1 - half_t / 2)) / (half_t / 2), 0, 1) * np.clip(1 - (t - tn) / half_t, 0, 1)
        return amp * np.cos(np.pi * (t - t1) / half_t)

    def draw(img, t, off):
        a = angle(t)
        bx, by = pivot[0] + rope * np.sin(a), pivot[1] + rope * np.cos(a)
        mx, my = (pivot[0] + bx) / 2, (pivot[1] + by) / 2
        canvas.draw_rect(img, mx - off[0], my - off[1], 0.008, rope, np.array([0.2, 0.2, 0.2]), angle=-a)
        canvas.draw_rect(img, bx - off[0], by + bw * 0.5 - off[1], bw, bw * 1.1, gold, angle=-a)
        canvas.draw_ellipse(img, bx - off[0] + np.sin(a) * bw, by + bw * 1.05 - off[1], bw * 0.75, bw * 0.25, gold * 0.85)
        glint = max((np.exp(-(t - tk) / 0.06) for tk in (k / FPS for k in frames) if 0 <= t - tk < 0.25), default=0.0)
        if glint > 0.05:
            canvas.draw_ellipse(img, bx - off[0], by + bw * 0.4 - off[1], bw * 0.3, bw * 0.3, np.ones(3), alpha=float(glint))

    return SceneObject("bell", draw, [(k, "bell") for k in frames], audio)


BUILDERS = {
    "wood_impact": lambda rng, region, fy, d, book, real: make_drop(rng, "wood_impact", region, fy, d, book),
    "metal_impact": lambda rng, region, fy, d, book, real: make_drop(rng, "metal_impact", region, fy, d, book),
    "bounce": lambda rng, region, fy, d, book, real: make_bounce(rng, region, fy, d, book),
    "flash": lambda rng, region, fy, d, book, real: make_flash(rng, region, fy, d, book),
    "shake": lambda rng, region, fy, d, book, real: make_shake(rng, region, fy, d, book),
    "slide": lambda rng, region, fy, d, book, real: make_slide(rng, region, fy, d, book),
    "bell": lambda rng, region, fy, d, book, real: make_bell(rng, region, fy, d, book, real),
}


def make_objects(rng, classes, region, floor_y: float, duration_s: float, n_frames: int,
                 use_real_sounds: bool = True) -> list[SceneObject]:
    """Build one object per requested class inside ``region`` = (x0, x1) (world units)."""
    book = FrameBook(n_frames)
    objs = []
    for cls in classes:
        obj = BUILDERS[cls](rng, region, floor_y, duration_s, book, use_real_sounds)
        if obj is not None:
            objs.append(obj)
    return objs
