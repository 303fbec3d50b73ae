"""One "frame shown at time t" rule (media.probe.frame_shown_at) for training crops and inference
windows. The shipped model was trained with the training side's indices, so every user of the rule
must pick exactly the rows the earlier hand-written copies picked; those formulas are the reference."""
import math

import numpy as np
import pytest

from vssflow_core import frontend
from vssflow_core.data import clips
from vssflow_core.media.probe import frame_shown_at
from vssflow_core.train.data import _crop_stream

RATES = (10.0, 24.0, 25.0, 30000 / 1001, 30.0, 60.0, 21.533203125)
STARTS = (0.0, 0.04, 0.1, 1 / 3, 0.5, 2.96, 7.987664399092971, 13.0)


def _old_sample_track_idx(times, src_rate, src_start):
    return np.floor((times - src_start) * src_rate + 1e-6).astype(np.int64)


@pytest.mark.parametrize("rate", RATES)
def test_inference_track_reading_is_unchanged(rate):
    track = np.arange(400, dtype=np.float32)[:, None]
    for src_start in (0.0, 0.5, 1 / 3):
        for start in STARTS:
            for dst in (25.0, rate):
                got = frontend.sample_track(track, rate, src_start, start, 250, dst)
                times = start + np.arange(250) / dst
                idx = _old_sample_track_idx(times, rate, src_start)
                want = np.where(((idx >= 0) & (idx < 400))[:, None], track[np.clip(idx, 0, 399)], 0)
                np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("rate", RATES)
def test_training_crops_are_unchanged(rate):
    x = np.arange(600, dtype=np.float32)[:, None]
    for start in STARTS:
        for duration in (2.0, 8.0, 7.987664399092971):
            n = math.ceil(duration * rate - 1e-6)
            idx = np.floor((start + np.arange(n) / rate) * rate + 1e-6).astype(np.int64)  # the old formula
            want = np.where(((idx >= 0) & (idx < 600))[:, None], x[np.clip(idx, 0, 599)], 0)
            np.testing.assert_array_equal(_crop_stream(x, start, duration, rate, (1,), np.float32), want)


def test_lower_rate_frame_picks_are_unchanged_and_training_equals_inference():
    for duration in (0.2, 2.0, 8.0, 7.987664399092971, 10.0):
        count = math.ceil(duration * 10.0 - 1e-6)
        old = np.floor(np.arange(count) / 10.0 * 25.0 + 1e-6).astype(np.int64)
        np.testing.assert_array_equal(clips.appearance_indices(duration), old)
        frames = np.arange(math.ceil(duration * 25 - 1e-6))
        np.testing.assert_array_equal(frontend._frames_at(frames, 10.0, duration), np.minimum(old, len(frames) - 1))


def test_the_rule_itself():
    # a time exactly on a frame boundary shows that frame, even after float rounding (0.1 * 3 / 0.04)
    assert frame_shown_at([0.0, 0.04, 0.1 * 3, 0.039999], 25.0).tolist() == [0, 1, 7, 0]
    assert frame_shown_at([0.5, 0.49], 25.0, start_s=0.5).tolist() == [0, -1]  # before the stream: negative
