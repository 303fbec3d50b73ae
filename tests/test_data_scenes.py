"""Synthetic sound scenes: determinism, sounds start on the event frame, events are visible there."""

import numpy as np
import pytest

from vssflow_core.data import clips, scenes, sfx
from vssflow_core.features.visual import motion_features

SR = sfx.SAMPLE_RATE
HOP = SR // 25  # 882 samples per video frame


def _objects(cls, seed=3, duration_s=4.0):
    rng = np.random.default_rng(seed)
    return scenes.make_objects(rng, [cls], (0.05, 0.95), 0.8, duration_s, clips.num_frames(duration_s, 25),
                               use_real_sounds=False)


@pytest.mark.parametrize("cls", sfx.SOUND_CLASSES)
def test_each_class_sounds_exactly_from_its_first_event_sample(cls):
    objs = _objects(cls)
    assert len(objs) == 1
    obj = objs[0]
    assert obj.events and all(c == cls for _, c in obj.events)
    k0 = obj.events[0][0]
    nonzero = np.flatnonzero(np.abs(obj.audio) > 1e-6)
    assert nonzero[0] == k0 * HOP  # onset on the exact sample of frame k0 (time k0 / 25 s)
    for k, _ in obj.events:  # every event starts a sound: energy right after >> right before
        after = np.abs(obj.audio[k * HOP:k * HOP + 220]).max()
        assert after > 0.1


def _scene_frames(cls, seed=3, duration_s=4.0, size=64):
    objs = _objects(cls, seed, duration_s)
    spec = clips.ClipSpec(seed=seed, index=0, kind="sfx", duration_s=duration_s,
                          wave=np.zeros(int(duration_s * SR), np.float32), objects=objs,
                          camera=None, background_style="gradient", floor_y=0.8)
    return spec, clips.render_frames(spec, size)


def test_flash_lights_up_the_event_frame_not_before():
    spec, frames = _scene_frames("flash")
    mean = frames.reshape(len(frames), -1).mean(axis=1)
    for ev in spec.events:
        k = ev["frame"]
        assert mean[k] > mean[k - 1] + 10  # visible jump in brightness on frame k
        assert mean[k] >= mean[k + 1]


def test_drop_lands_on_event_frame():
    spec, frames = _scene_frames("wood_impact")
    energy = np.abs(motion_features(frames)).sum(axis=1)
    k = spec.events[0]["frame"]
    assert energy[k] > 0.5  # still falling into frame k
    assert energy[k + 4] < 0.2 * energy[k]  # at rest a few frames after landing


def test_bounce_ball_is_lowest_at_contacts():
    spec, frames = _scene_frames("bounce", size=96)
    grey = frames.astype(np.float32).mean(axis=3)
    background = np.median(grey, axis=0)
    for ev in spec.events[:3]:
        k = ev["frame"]
        rows = lambda j: np.flatnonzero(np.abs(grey[j] - background).max(axis=1) > 40)  # noqa: E731
        # the ball's lowest pixel row is at least as low at contact as two frames before/after
        assert rows(k).max() >= rows(k - 2).max() and rows(k).max() >= rows(k + 2).max()


def test_build_clip_is_deterministic_and_seed_dependent():
    a = clips.build_clip(5, 7, "sfx", duration_s=3.0, use_real_sounds=False)
    b = clips.build_clip(5, 7, "sfx", duration_s=3.0, use_real_sounds=False)
    c = clips.build_clip(6, 7, "sfx", duration_s=3.0, use_real_sounds=False)
    np.testing.assert_array_equal(a.wave, b.wave)
    assert a.events == b.events
    np.testing.assert_array_equal(clips.render_frames(a, 32), clips.render_frames(b, 32))
    assert not np.array_equal(a.wave, c.wave)


def test_events_times_are_frame_times_and_features_line_up():
    spec = clips.build_clip(2, 1, "sfx", duration_s=4.0, use_real_sounds=False)
    t = clips.clip_tensors(spec)
    assert spec.events
    for ev in spec.events:
        assert ev["time_s"] == pytest.approx(ev["frame"] / 25.0)
        assert ev["class"] in sfx.SOUND_CLASSES
    assert t["wave"].shape == (4 * SR,) and np.abs(t["wave"]).max() <= 1.0
    assert t["motion_feat"].shape == (100, 256) and t["appearance_feat"].shape == (40, 768)
    assert t["lip_feat"].shape == (100, 6) and not t["lip_feat"].any()  # no face in a sound scene
    assert t["phone_id"].shape == (100,) and t["phone_id"].dtype == np.int64 and not t["phone_id"].any()


def test_kind_cycle_proportions():
    kinds = [clips.kind_for_index("all", i) for i in range(100)]
    assert kinds.count("speech") == 40 and kinds.count("sfx") == 40 and kinds.count("mixed") == 20
    assert clips.kind_for_index("sfx", 3) == "sfx"


@pytest.mark.parametrize("cls", sfx.SOUND_CLASSES)
def test_objects_fit_half_frame_regions(cls):
    for seed in range(6):  # mixed scenes put the objects in one half of the frame
        rng = np.random.default_rng(seed)
        for obj in scenes.make_objects(rng, [cls], (0.52, 0.98), 0.7, 3.0, 75, use_real_sounds=False):
            assert all(0 < k < 75 for k, _ in obj.events)


def test_shapes_clip_at_frame_edges_and_cover_their_area():
    from vssflow_core.data import canvas

    img = np.zeros((40, 40, 3), np.float32)
    canvas.draw_rect(img, 2.0, 2.0, 0.2, 0.2, (1, 1, 1))  # fully off-frame: nothing drawn
    assert not img.any()
    canvas.draw_ellipse(img, 0.0, 0.5, 0.25, 0.25, (1, 0, 0))  # half off the left edge
    assert img[20, 0, 0] == 1.0 and img[20, 12, 0] == 0.0
    area = img[..., 0].sum() / 40 ** 2
    assert area == pytest.approx(np.pi * 0.25 ** 2 / 2, rel=0.05)
    img[:] = 0
    canvas.draw_rect(img, 0.5, 0.5, 0.5, 0.25, (0, 1, 0), angle=np.pi / 2)  # rotated: tall, narrow
    cols, rows = np.flatnonzero(img[..., 1].max(axis=0) > 0.5), np.flatnonzero(img[..., 1].max(axis=1) > 0.5)
    assert len(rows) == 20 and len(cols) == 10
