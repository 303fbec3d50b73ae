"""features/visual.py: shapes, exact values on frames whose content gives away position/time."""

import numpy as np
import pytest

from vssflow_core.errors import VSSFlowError
from vssflow_core.features.visual import (APPEARANCE_DIM, MOTION_DIM, MOTION_GAIN, appearance_features,
                                          motion_features, shot_cuts, thumbnails)


def _frames(count=6, size=32, value=0):
    return np.full((count, size, size, 3), value, dtype=np.uint8)


def test_shapes_and_dtypes():
    frames = _frames(7, 48)
    m = motion_features(frames)
    a = appearance_features(frames[:3])
    assert m.shape == (7, MOTION_DIM) == (7, 256) and m.dtype == np.float32
    assert a.shape == (3, APPEARANCE_DIM) == (3, 768) and a.dtype == np.float32
    assert motion_features(_frames(0)).shape == (0, 256)
    assert motion_features(_frames(1)).shape == (1, 256)


def test_motion_row_k_marks_change_in_frame_k_at_its_cell():
    frames = _frames(6, 64, 100)
    frames[3:, :4, :4] = 200  # top-left cell (64 px / 16 = 4 px per cell) brightens in frame 3
    m = motion_features(frames)
    assert np.all(m[[0, 1, 2, 4, 5]] == 0)
    d = 100 / 255.0
    expected = np.log1p(MOTION_GAIN * d) / np.log1p(MOTION_GAIN)
    assert m[3, 0] == pytest.approx(expected, rel=1e-5)
    assert np.all(m[3, 1:] == 0)
    frames[5, :4, :4] = 0  # darkening -> negative
    assert motion_features(frames)[5, 0] < 0


def test_features_do_not_depend_on_resolution_or_aspect_scaling():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    big = np.repeat(np.repeat(small, 8, axis=1), 5, axis=2)  # 128 x 80 px, blocky
    np.testing.assert_allclose(motion_features(big), motion_features(small), atol=1e-6)
    np.testing.assert_allclose(appearance_features(big), appearance_features(small), atol=1e-6)


def test_appearance_layout_rgb_innermost_row_major():
    frames = _frames(1, 32)
    frames[0, :, :16] = (255, 0, 0)  # left half red
    frames[0, :, 16:] = (0, 0, 255)  # right half blue
    a = appearance_features(frames).reshape(16, 16, 3)
    hi, lo = (1 - 0.45) / 0.25, (0 - 0.45) / 0.25
    np.testing.assert_allclose(a[:, :8], np.broadcast_to([hi, lo, lo], (16, 8, 3)), atol=1e-6)
    np.testing.assert_allclose(a[:, 8:], np.broadcast_to([lo, lo, hi], (16, 8, 3)), atol=1e-6)
    assert thumbnails(frames).max() <= 1.0


def _scene(seed: int, count: int, size: int = 64, pan_px: int = 0) -> np.ndarray:
    """``count`` frames of one smooth random picture (a shot), panned ``pan_px`` px per frame."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(20, 235, (8, 8 + count, 3)).astype(np.uint8)
    big = np.repeat(np.repeat(coarse, size // 8, axis=0), size // 8, axis=1)  # [size, wide, 3]
    return np.stack([big[:, i * pan_px: i * pan_px + size] for i in range(count)])


def test_hard_cut_between_shots_is_found_and_its_motion_row_zeroed():
    frames = np.concatenate([_scene(1, 10), _scene(2, 10)])  # shot B starts at frame 10
    frames[5:, 8:16, 8:16] = 255  # a small change inside shot A: real motion, kept
    assert np.flatnonzero(shot_cuts(frames)).tolist() == [10]
    m = motion_features(frames)
    assert np.all(m[10] == 0)  # the cut would otherwise change every cell at once
    assert np.abs(m[5]).sum() > 0


def test_cut_from_black_is_a_cut():
    frames = np.concatenate([np.zeros((3, 64, 64, 3), np.uint8), _scene(3, 8)])
    assert np.flatnonzero(shot_cuts(frames)).tolist() == [3]


def test_cut_between_two_flat_colours_is_a_cut():
    frames = np.concatenate([np.zeros((4, 32, 32, 3), np.uint8), np.full((4, 32, 32, 3), 255, np.uint8)])
    assert np.flatnonzero(shot_cuts(frames)).tolist() == [4]
    assert not np.any(motion_features(frames))


@pytest.mark.parametrize("case", ["flash", "glitch", "pan", "last_frame"])
def test_flash_glitch_pan_and_last_frame_are_not_cuts(case):
    frames = _scene(4, 16, pan_px=2 if case == "pan" else 0)
    if case == "flash":  # a white frame, then the same picture again
        frames[6] = 255
    elif case == "glitch":  # one frame of another picture
        frames[6] = _scene(5, 1)[0]
    elif case == "last_frame":  # a new picture on the last frame cannot be confirmed
        frames[-1] = _scene(6, 1)[0]
    assert not shot_cuts(frames).any()
    if case == "flash":
        assert np.abs(motion_features(frames)[6]).sum() > 0  # the flash still makes motion


@pytest.mark.parametrize("bad, match", [
    (np.zeros((4, 8, 8), np.uint8), "expected video frames uint8"),
    (np.zeros((4, 8, 8, 3), np.float32), "expected dtype uint8"),
])
def test_bad_frames_raise(bad, match):
    with pytest.raises(VSSFlowError, match=match):
        motion_features(bad)
    with pytest.raises(VSSFlowError, match=match):
        appearance_features(bad)


def test_the_appearance_front_end_reads_its_rate_from_the_condition_table():
    import dataclasses

    from vssflow_core import frontend
    from vssflow_core.embedded import embedded_config

    spec = next(c for c in embedded_config().conditions if c.feature_key == "appearance_feat")
    w = frontend.WindowInputs(start_s=0.0, duration_s=2.0, frames=np.zeros((50, 32, 32, 3), np.uint8))
    assert spec.rate_hz == 10.0 and frontend._appearance(w, spec, None).shape == (1, 20, APPEARANCE_DIM)
    assert frontend._appearance(w, dataclasses.replace(spec, rate_hz=5.0), None).shape == (1, 10, APPEARANCE_DIM)


def test_only_models_with_a_frame_feature_make_the_pipeline_decode_video():
    import dataclasses

    from vssflow_core import config, frontend

    assert frontend.needs_frames(config.embedded()) and frontend.needs_frames(config.official())
    for cfg in (config.embedded(), config.official()):
        blind = dataclasses.replace(cfg, conditions=tuple(c for c in cfg.conditions
                                                          if c.feature_key not in ("motion_feat", "event_feat",
                                                                                   "appearance_feat", "video_feat",
                                                                                   "synch_feat")))
        assert not frontend.needs_frames(blind)  # lips, phonemes and voice come from the lip scan / inputs
    # every frame feature has a front-end that reads frames: each returns None without them
    w = frontend.WindowInputs(start_s=0.0, duration_s=1.0)
    builders = {key: b for (_, key), b in frontend.FEATURE_BUILDERS.items() if key in frontend.FRAME_FEATURES}
    assert set(builders) == frontend.FRAME_FEATURES
    for key, build in builders.items():
        spec = next(c for cfg in (config.embedded(), config.official()) for c in cfg.conditions if c.feature_key == key)
        assert build(w, spec, {}) is None, key


def test_the_video_front_ends_share_one_grey_grid_per_window(monkeypatch):
    """The motion features and the event detector read the window's 16x16 grey grid and its shot
    cuts, each made once; their values are those of the stand-alone functions. The clip has a hard cut."""
    from vssflow_core import frontend
    from vssflow_core.embedded import embedded_config
    from vssflow_core.features import visual
    from vssflow_core.features.events import event_probabilities

    frames = np.concatenate([_scene(3, 30, pan_px=1), _scene(4, 30, pan_px=1)])
    assert visual.shot_cuts(frames)[30]
    specs = {c.feature_key: c for c in embedded_config().conditions}
    calls = []
    real_grey_grid = visual.grey_grid
    monkeypatch.setattr(visual, "grey_grid", lambda f, grid=visual.GRID: calls.append(grid) or real_grey_grid(f, grid))
    cut_calls = []
    real_cuts_in = visual._cuts_in
    monkeypatch.setattr(visual, "_cuts_in", lambda grey: cut_calls.append(len(grey)) or real_cuts_in(grey))
    w = frontend.WindowInputs(start_s=0.0, duration_s=60 / 25, frames=frames)
    motion = frontend._motion(w, specs["motion_feat"], None)
    events = frontend._events(w, specs["event_feat"], None)
    assert calls.count(visual.GRID) == 1  # one 16x16 grid for both (the detector's own grid is 32x32)
    assert cut_calls == [60]  # the shot cuts found once for both
    monkeypatch.setattr(visual, "grey_grid", real_grey_grid)
    monkeypatch.setattr(visual, "_cuts_in", real_cuts_in)
    np.testing.assert_array_equal(motion[0].numpy(), visual.motion_features(frames))
    np.testing.assert_array_equal(events[0].numpy(), event_probabilities(frames))
