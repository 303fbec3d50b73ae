"""Lip front-end: face landmarks -> mouth crops, 6-d lip features, face-found mask, preview.

``extract_lips(frames, fps)`` finds the faces (at reduced resolution), keeps one face consistently
over time, and runs a landmark model on a square crop around it; landmarks are interpolated over
short gaps and smoothed; features follow ``lip_space`` (raw space; the embedded model consumes
``normalise_lip_track(track.features)``).

The landmark backends (mediapipe ``solutions`` or ``tasks``) are in ``features.face_landmarks``.
Frames are expected at the lip rate already (25 fps for the model; resample by timestamp with
``vssflow_core.media.video.resample_frames``).

Measured here (2 shared cores, heavy load): 20-60 ms per frame; opening correlation with the true
warp 0.99 for faces of 64-192 px in 256 px to 1920x1080 frames.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from vssflow_core.config import FEATURE_RATE_HZ
from vssflow_core.errors import VSSFlowError
from vssflow_core.features.face_landmarks import box_iou, make_backend
from vssflow_core.features.lip_space import LIP_DIM, lip_features_from_openings

CROP_SIZE = 88
# mediapipe face-mesh indices
_EYE_L = (33, 133)
_EYE_R = (362, 263)
_NOSE = 1
_LIP_TOP_OUTER, _LIP_BOTTOM_OUTER = 0, 17
_CORNER_L, _CORNER_R = 61, 291
_INNER_PAIRS = ((13, 14), (82, 87), (312, 317))
_MOUTH_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
_FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
              152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
_KEEP = sorted(set(_EYE_L + _EYE_R + (_NOSE, _LIP_TOP_OUTER, _LIP_BOTTOM_OUTER, _CORNER_L, _CORNER_R)
                   + tuple(i for p in _INNER_PAIRS for i in p) + _MOUTH_OUTER + _FACE_OVAL))
_IDX = {k: i for i, k in enumerate(_KEEP)}
# In the 88x88 crop, the eye-centre distance maps to this many pixels (the mouth, ~0.9 IOD wide,
# then spans about half the crop, as in AV-HuBERT's 88x88 mouth ROI).
_CROP_IOD_PX = 48.0
_MESH_SIZE = 256


@dataclass
class LipTrack:
    """Result of ``extract_lips``.

    Attributes:
        features: float32 ``[T, 6]`` raw lip features (``lip_space.LIP_FEATURE_NAMES``), zeros where
            not found.
        crops: uint8 ``[T, 88, 88]`` grey mouth crops (eyes levelled, scale from the inter-ocular
            distance, centred on the mouth); zeros where not found.
        found: bool ``[T]``: face measured or interpolated over a short gap.
        boxes: float32 ``[T, 4]`` mouth boxes (x0, y0, x1, y1) in input pixels; NaN where not found.
        missing_frames: frames where no face was detected (before interpolation).
        preview: uint8 ``[T, h, w, 3]`` frames (downscaled to ``preview_max_side``) with the mouth
            box drawn (green = detected, yellow = interpolated); ``[0]``-shaped if disabled.
        fps: frame rate in Hz of the rows.
        detected: bool ``[T]``: face actually detected in that frame.
        face_box: the chosen face's detection box (x0, y0, x1, y1, input px) at the end of the frames,
            or None when it was lost for longer than the gap; pass it as ``follow_box`` to measure
            the next part of the same video with the same face.
    """

    features: np.ndarray
    crops: np.ndarray
    found: np.ndarray
    boxes: np.ndarray
    missing_frames: int
    preview: np.ndarray
    fps: float = FEATURE_RATE_HZ
    detected: np.ndarray | None = None
    face_box: tuple[float, float, float, float] | None = None

    @property
    def num_frames(self) -> int:
        """Rows of the track (frames at its rate)."""
        return int(self.features.shape[0])


def _import_cv2():
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover
        raise VSSFlowError(
            f"Lip extraction needs OpenCV ({exc}). Install it with: pip install 'opencv-python-headless<5'"
        ) from exc
    return cv2


def _as_frames(frames) -> np.ndarray:
    if hasattr(frames, "detach"):
        frames = frames.detach().cpu().numpy()
    arr = np.asarray(frames)
    if arr.ndim == 3 and arr.shape[-1] == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise VSSFlowError(
            f"extract_lips: expected frames [T, H, W, 3] RGB, got shape {tuple(arr.shape)}. "
            "Pass video frames (an IMAGE batch or media.read_frames(...).frames)."
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0 or arr.shape[2] == 0:
        raise VSSFlowError(f"extract_lips: the frame batch is empty (shape {tuple(arr.shape)}); the video "
                           "window has no frames. Check the video file and the start/duration you asked for.")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating):
            arr = np.nan_to_num(arr)
            scale = 255.0 if arr.size == 0 or float(arr.max()) <= 1.5 else 1.0  # 0..1 (ComfyUI) or 0..255
            arr = np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8)
        else:
            arr = np.clip(arr, 0, 255).astype(np.uint8)
    return arr


def _choose(dets, prev_box, face, frame_wh):
    """Pick one detection box (x0,y0,x1,y1 px) consistently over time."""
    if not dets:
        return None
    if prev_box is not None:
        ious = [box_iou(d, prev_box) for d in dets]
        k = int(np.argmax(ious))
        if ious[k] > 0.2:
            return dets[k]
        # the chosen face moved a lot or vanished: follow the nearest centre if it is close
        pc = np.array([(prev_box[0] + prev_box[2]) / 2, (prev_box[1] + prev_box[3]) / 2])
        size = prev_box[2] - prev_box[0]
        dist = [np.hypot((d[0] + d[2]) / 2 - pc[0], (d[1] + d[3]) / 2 - pc[1]) for d in dets]
        k = int(np.argmin(dist))
        if dist[k] < 1.0 * size:
            return dets[k]
        if not isinstance(face, str):
            return None  # a user-chosen face that left: do not jump to another person
    if face == "largest":
        return max(dets, key=lambda d: (d[2] - d[0]) * (d[3] - d[1]))
    if face == "center":
        cx, cy = frame_wh[0] / 2, frame_wh[1] / 2
        return min(dets, key=lambda d: np.hypot((d[0] + d[2]) / 2 - cx, (d[1] + d[3]) / 2 - cy))
    order = sorted(dets, key=lambda d: (d[0] + d[2]) / 2)
    return order[face] if face < len(order) else None


def _crop_affine(center, side, out_size):
    """2x3 affine mapping a square of `side` px centred at `center` onto out_size x out_size."""
    s = out_size / side
    return np.array([[s, 0, out_size / 2 - s * center[0]], [0, s, out_size / 2 - s * center[1]]], np.float64)


def _interp_gaps(points: np.ndarray, ok: np.ndarray, max_gap: int):
    """Linear interpolation over gaps <= max_gap frames (edges held). points [T,K,2] (NaN = missing)."""
    t = points.shape[0]
    filled = ok.copy()
    if not ok.any():
        return points, filled
    idx = np.flatnonzero(ok)
    out = points.copy()
    # interior gaps
    for a, b in zip(idx[:-1], idx[1:]):
        gap = b - a - 1
        if 0 < gap <= max_gap:
            w = (np.arange(1, gap + 1) / (gap + 1))[:, None, None]
            out[a + 1:b] = (1 - w) * points[a][None] + w * points[b][None]
            filled[a + 1:b] = True
    # leading / trailing gaps: hold the edge value
    if 0 < idx[0] <= max_gap:
        out[: idx[0]] = points[idx[0]][None]
        filled[: idx[0]] = True
    if 0 < t - 1 - idx[-1] <= max_gap:
        out[idx[-1] + 1:] = points[idx[-1]][None]
        filled[idx[-1] + 1:] = True
    return out, filled


def _smooth_runs(points: np.ndarray, ok: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over `window` frames, within each run of valid frames."""
    if window <= 1:
        return points
    out = points.copy()
    half = window // 2
    for k, e in _true_runs(ok):
        run = points[k:e]
        csum = np.concatenate([np.zeros_like(run[:1]), np.cumsum(run, axis=0)], axis=0)
        n = e - k
        lo = np.clip(np.arange(n) - half, 0, n)
        hi = np.clip(np.arange(n) + (window - half), 0, n)
        out[k:e] = (csum[hi] - csum[lo]) / (hi - lo)[:, None, None]
    return out


def _true_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) index pairs (end exclusive) of the runs of True in a bool mask [T]."""
    m = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(m[1:] != m[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def extract_lips(frames, fps: float = FEATURE_RATE_HZ, face="largest", max_gap_s: float = 0.5,
                 detect_max_side: int = 640, redetect_every: int = 10, smooth_frames: int = 1,
                 preview: bool = True, preview_max_side: int = 512, min_confidence: float = 0.5,
                 progress=None, backend: str = "auto", tracking: bool = False,
                 follow_box: tuple[float, float, float, float] | None = None) -> LipTrack:
    """Find one face per frame and measure its mouth.

    Args:
        frames: uint8 ``[T, H, W, 3]`` RGB at ``fps`` (float 0..1 arrays/tensors are converted).
        fps: frame rate in Hz (25 for the model); sets the velocity unit and the gap length.
        face: ``"largest"``, ``"center"`` or an int (0 = leftmost face when first seen); the choice
            is kept over time by box overlap.
        max_gap_s: gaps in detection up to this many seconds are interpolated (and counted in
            ``missing_frames``); longer gaps stay absent (found=False, zero features).
        detect_max_side: the face detector runs on frames downscaled to this longer side (px).
        redetect_every: run the detector at least every N frames (in between, the crop follows the
            previous landmarks).
        smooth_frames: centred moving-average window (frames) for the mouth landmarks (1 = none:
            measured jitter on a still face is 0.004 IOD, while a 3-frame average erases one-frame lip
            closures); the eye/nose points used for scale and alignment are smoothed over 12 frames
            as official.
        preview: build the preview batch with mouth boxes drawn.
        preview_max_side: longer side (px) of the preview frames.
        min_confidence: face detector score threshold (0..1).
        progress: optional callable ``progress(done, total)`` called every 25 frames.
        backend: ``"auto"`` (legacy mediapipe face mesh if available, else the tasks FaceLandmarker),
            ``"solutions"`` or ``"tasks"``.
        tracking: legacy backend only: track landmarks inside a fixed crop instead of a full mesh
            detection per frame. Measured: ~1.5x faster on still faces, slower on moving ones (crop
            resets), opening correlation 0.96-0.97 vs 0.97-0.98 for the default per-frame detection.
        follow_box: ``LipTrack.face_box`` of the previous part of the same video: the face chosen
            there is followed (by box overlap, as from frame to frame) instead of choosing afresh,
            so a video measured window by window keeps one speaker.

    Returns:
        ``LipTrack`` (features [T,6] raw, crops [T,88,88], found [T], boxes [T,4], missing_frames,
        preview). No face in any frame: ``warnings.warn`` and an all-absent track (zeros, found all
        False, missing_frames = T).
    """
    if not (isinstance(face, str) and face in ("largest", "center")) and not (
            isinstance(face, (int, np.integer)) and not isinstance(face, bool) and face >= 0):
        raise VSSFlowError(f"extract_lips: face must be 'largest', 'center' or an index >= 0, got {face!r}.")
    if not fps or fps <= 0:
        raise VSSFlowError(f"extract_lips: fps must be > 0 Hz, got {fps}.")
    arr = _as_frames(frames)
    t_total, h, w = arr.shape[0], arr.shape[1], arr.shape[2]
    cv2 = _import_cv2()
    engine = make_backend(backend, min_confidence, tracking)

    pts = np.full((t_total, len(_KEEP), 2), np.nan, dtype=np.float64)
    detected = np.zeros(t_total, dtype=bool)
    det_scale = min(1.0, detect_max_side / max(h, w)) if max(h, w) > 0 else 1.0
    keep = np.array(_KEEP)
    prev_box = follow_box  # chosen detection box, full-res px
    prev_lm = None  # previous frame landmarks (full-res px)
    since_detect = 0
    absent_run = 0
    crop = None  # (center, side) of the square the mesh sees; kept fixed while the face stays inside
    try:
        for t in range(t_total):
            frame = np.ascontiguousarray(arr[t])
            lm_box = None
            if prev_lm is not None:
                oval = prev_lm[[_IDX[k] for k in _FACE_OVAL]]
                lo, hi = oval.min(0), oval.max(0)
                lm_box = (lo[0], lo[1], hi[0], hi[1])
            box = None
            if prev_lm is None or since_detect >= redetect_every:
                box = _detect(engine, frame, det_scale, prev_box if prev_box is not None else lm_box, face, cv2)
                since_detect = 0
                if box is not None:
                    prev_box = box
            since_detect += 1
            if lm_box is not None and (box is None or box_iou(box, lm_box) > 0.2):
                want = (((lm_box[0] + lm_box[2]) / 2, (lm_box[1] + lm_box[3]) / 2),
                        1.45 * max(lm_box[2] - lm_box[0], lm_box[3] - lm_box[1]))
            elif box is not None:
                want = (((box[0] + box[2]) / 2, (box[1] + box[3]) / 2 + 0.05 * (box[3] - box[1])),
                        engine.box_scale * max(box[2] - box[0], box[3] - box[1]))
            else:
                prev_lm = None
                absent_run += 1
                if absent_run > 2 * max(1, int(round(max_gap_s * fps))):
                    prev_box = None  # the face is gone for long: choose afresh when one appears
                _maybe_progress(progress, t, t_total)
                continue
            crop, moved = _follow(crop, want)
            if moved:
                engine.reset()
            lm = _mesh_on_crop(engine, frame, crop[0], crop[1], cv2, keep)
            if lm is None and box is None:
                # tracking lost: try a fresh detection on this frame
                box = _detect(engine, frame, det_scale, prev_box, face, cv2)
                since_detect = 1
                if box is not None:
                    prev_box = box
                    crop = (((box[0] + box[2]) / 2, (box[1] + box[3]) / 2 + 0.05 * (box[3] - box[1])),
                            engine.box_scale * max(box[2] - box[0], box[3] - box[1]))
                    engine.reset()
                    lm = _mesh_on_crop(engine, frame, crop[0], crop[1], cv2, keep)
            if lm is None:
                prev_lm = None
                crop = None
                absent_run += 1
                _maybe_progress(progress, t, t_total)
                continue
            pts[t] = lm
            detected[t] = True
            prev_lm = lm
            absent_run = 0
            _maybe_progress(progress, t, t_total)
    finally:
        engine.close()

    track = _track_from_points(arr, pts, detected, fps, max_gap_s, smooth_frames, preview,
                               preview_max_side, cv2)
    track.face_box = None if prev_box is None else tuple(float(v) for v in prev_box)
    return track


def _maybe_progress(progress, t, total):
    if progress is not None and ((t + 1) % 25 == 0 or t + 1 == total):
        progress(t + 1, total)


def _follow(crop, want, tol: float = 0.1):
    """Keep the mesh crop fixed unless the wanted one moved > tol x side or changed size > 15 %."""
    if crop is None:
        return want, True
    (cx, cy), side = crop
    (wx, wy), wside = want
    if np.hypot(wx - cx, wy - cy) > tol * side or not (0.87 < wside / side < 1.15):
        return want, True
    return crop, False


def _detect(engine, frame, scale, prev_box, face, cv2):
    h, w = frame.shape[:2]
    small = frame if scale >= 1.0 else cv2.resize(
        frame, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    dets = [(x0 * w, y0 * h, x1 * w, y1 * h) for x0, y0, x1, y1 in engine.faces(small)]
    return _choose(dets, prev_box, face, (w, h))


def _mesh_on_crop(engine, frame, center, side, cv2, keep):
    side = max(side, 16.0)
    m = _crop_affine(center, side, _MESH_SIZE)
    crop = cv2.warpAffine(frame, m, (_MESH_SIZE, _MESH_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    rel = engine.landmarks(crop)
    if rel is None:
        return None
    xy = rel[keep] * _MESH_SIZE
    s = m[0, 0]
    return np.stack([(xy[:, 0] - m[0, 2]) / s, (xy[:, 1] - m[1, 2]) / s], axis=1)


def _track_from_points(arr, pts, detected, fps, max_gap_s, smooth_frames, preview, preview_max_side, cv2):
    t_total, h, w = arr.shape[:3]
    missing = int(t_total - detected.sum())
    if not detected.any():
        warnings.warn(
            f"extract_lips: no face found in any of the {t_total} frames ({w}x{h} px); returning an "
            "all-absent lip track (zeros, found=False). Check the preview, use a video with a visible "
            "frontal face, or run without lips.", stacklevel=3)
        return _absent_track(arr, fps, preview, preview_max_side, cv2)
    max_gap = max(0, int(round(max_gap_s * fps)))
    pts, found = _interp_gaps(pts, detected, max_gap)
    mouth_idx = [_IDX[k] for k in _MOUTH_OUTER] + [_IDX[k] for p in _INNER_PAIRS for k in p]
    mouth = _smooth_runs(pts, found, smooth_frames)
    stable = _smooth_runs(pts, found, 12)

    def p(src, k):
        return src[:, _IDX[k]]

    eye_l = (p(stable, _EYE_L[0]) + p(stable, _EYE_L[1])) / 2
    eye_r = (p(stable, _EYE_R[0]) + p(stable, _EYE_R[1])) / 2
    iod = np.linalg.norm(eye_r - eye_l, axis=1)
    iod = np.where(found & (iod > 1e-6), iod, np.nan)
    inner = np.mean([np.linalg.norm(p(mouth, a) - p(mouth, b), axis=1) for a, b in _INNER_PAIRS], axis=0) / iod
    outer = np.linalg.norm(p(mouth, _LIP_TOP_OUTER) - p(mouth, _LIP_BOTTOM_OUTER), axis=1) / iod
    width = np.linalg.norm(p(mouth, _CORNER_L) - p(mouth, _CORNER_R), axis=1) / iod
    ok = found & np.isfinite(inner) & np.isfinite(outer) & np.isfinite(width)
    feats = lip_features_from_openings(np.nan_to_num(inner), np.nan_to_num(outer), np.nan_to_num(width),
                                       fps=fps, found=ok)
    # velocity across a found/absent boundary is meaningless: recompute inside runs only
    feats[:, 4] = 0.0
    for k, e in _true_runs(ok):
        if e - k >= 2:
            feats[k:e, 4] = np.gradient(inner[k:e]) * fps

    crops = np.zeros((t_total, CROP_SIZE, CROP_SIZE), dtype=np.uint8)
    boxes = np.full((t_total, 4), np.nan, dtype=np.float32)
    mouth_pts = mouth[:, mouth_idx[: len(_MOUTH_OUTER)]]
    mouth_center_stable = stable[:, [_IDX[k] for k in _MOUTH_OUTER]].mean(axis=1)
    for t in np.flatnonzero(ok):
        lo, hi = mouth_pts[t].min(0), mouth_pts[t].max(0)
        boxes[t] = (lo[0], lo[1], hi[0], hi[1])
        d = eye_r[t] - eye_l[t]
        ang = math.atan2(d[1], d[0])
        s = _CROP_IOD_PX / iod[t]
        ca, sa = math.cos(-ang) * s, math.sin(-ang) * s
        cx, cy = mouth_center_stable[t]
        m = np.array([[ca, -sa, CROP_SIZE / 2 - (ca * cx - sa * cy)],
                      [sa, ca, CROP_SIZE / 2 - (sa * cx + ca * cy)]], dtype=np.float64)
        grey = cv2.cvtColor(np.ascontiguousarray(arr[t]), cv2.COLOR_RGB2GRAY)
        crops[t] = cv2.warpAffine(grey, m, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)
    prev = _draw_preview(arr, boxes, ok, detected, preview, preview_max_side, cv2)
    return LipTrack(features=feats.astype(np.float32), crops=crops, found=ok, boxes=boxes,
                    missing_frames=missing, preview=prev, fps=float(fps), detected=detected)


def _preview_size(h, w, max_side):
    s = min(1.0, max_side / max(h, w)) if max(h, w) > 0 else 1.0
    return max(1, round(h * s)), max(1, round(w * s)), s


def _draw_preview(arr, boxes, ok, detected, enabled, max_side, cv2):
    t_total, h, w = arr.shape[:3]
    if not enabled:
        return np.zeros((0, 1, 1, 3), dtype=np.uint8)
    ph, pw, s = _preview_size(h, w, max_side)
    out = np.empty((t_total, ph, pw, 3), dtype=np.uint8)
    thick = max(1, round(max(ph, pw) / 256))
    for t in range(t_total):
        img = arr[t] if s == 1.0 else cv2.resize(arr[t], (pw, ph), interpolation=cv2.INTER_AREA)
        img = np.ascontiguousarray(img).copy()
        if ok[t]:
            x0, y0, x1, y1 = (boxes[t] * s).tolist()
            mx, my = 0.25 * (x1 - x0), 0.4 * (y1 - y0)
            color = (0, 255, 0) if detected[t] else (255, 220, 0)
            cv2.rectangle(img, (int(x0 - mx), int(y0 - my)), (int(x1 + mx), int(y1 + my)), color, thick)
        else:
            cv2.putText(img, "no face", (4, 14 + 4 * thick), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick,
                        (255, 0, 0), thick)
        out[t] = img
    return out


def _absent_track(arr, fps, preview, preview_max_side, cv2) -> LipTrack:
    t_total = arr.shape[0]
    return LipTrack(
        features=np.zeros((t_total, LIP_DIM), dtype=np.float32),
        crops=np.zeros((t_total, CROP_SIZE, CROP_SIZE), dtype=np.uint8),
        found=np.zeros(t_total, dtype=bool),
        boxes=np.full((t_total, 4), np.nan, dtype=np.float32),
        missing_frames=int(t_total),
        preview=_draw_preview(arr, np.full((t_total, 4), np.nan), np.zeros(t_total, bool),
                              np.zeros(t_total, bool), preview, preview_max_side, cv2),
        fps=float(fps), detected=np.zeros(t_total, dtype=bool))
