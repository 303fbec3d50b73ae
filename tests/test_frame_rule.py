"""One "frame shown at time t" rule (media.probe.frame_shown_at) for training crops and inference
windows. The shipped model was trained with the training side's indices, so every user of the rule
must pick exactly the rows the earlier hand-written copies picked; those formulas are the reference."""
import math

import numpy as np
import pytest

from vssflow_core import frontend
from vssflow_core.data import clips
from vssflow_core.media.probe import TIME_EPS_S, frame_shown_at, num_frames
from vssflow_core.media.video import resample_frames
from vssflow_core.train.data import FEATURE_RATES, _crop_stream, mix_feature_streams

RATES = (10.0, 24.0, 25.0, 30000 / 1001, 30.0, 60.0, 21.533203125)
STARTS = (0.0, 0.04, 0.1, 1 / 3, 0.5, 2.96, 7.987664399092971, 13.0,
          *np.random.default_rng(0).uniform(0.0, 14.0, 40).tolist())  # and arbitrary crop starts


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


@pytest.mark.parametrize("rate", RATES)
def test_no_drift_over_an_hour(rate):
    # a stream read on its own grid from 0 gives 0, 1, 2, ... for an hour (no floating-point slip)
    n = num_frames(3600.0, rate)
    np.testing.assert_array_equal(frame_shown_at(np.arange(n) / rate, rate), np.arange(n))


def test_scalar_times_give_the_old_floor():
    # the data generator's face pose per rendered frame and the speech mix's first rows read scalars
    for rate in (10.0, 25.0, 30000 / 1001, 30.0):
        for t in [k / r for r in (10.0, 24.0, 25.0, 30.0) for k in range(300)] + list(STARTS):
            assert int(frame_shown_at(t, rate)) == math.floor(t * rate + 1e-6)


def _old_mix_rows(a, b, offset_s, rate, out_len, speech_len):
    src0, dst0 = int(math.floor(a * rate + 1e-6)), int(math.floor(offset_s * rate + 1e-6))
    m = max(0, min(int(math.ceil((b - a) * rate)), out_len - dst0, speech_len - src0))
    return src0, dst0, m


def test_speech_mix_rows_are_unchanged():
    rng = np.random.default_rng(1)
    for _ in range(300):
        a = float(rng.choice([rng.uniform(0, 6), round(rng.uniform(0, 6), 2), int(rng.integers(0, 150)) / 25]))
        b = a + float(rng.uniform(0.2, 8.0 - a if a < 7.8 else 0.3))
        offset_s = float(rng.choice([rng.uniform(0, 7), round(rng.uniform(0, 7), 2)]))
        out = {k: np.full(num_frames(8.0, r), -1.0) for k, r in FEATURE_RATES.items()}
        speech = {k: np.arange(num_frames(8.0, r), dtype=np.float64) for k, r in FEATURE_RATES.items()}
        mix_feature_streams(out, speech, (a, b), offset_s, "insert")
        for key, rate in FEATURE_RATES.items():
            src0, dst0, m = _old_mix_rows(a, b, offset_s, rate, len(out[key]), len(speech[key]))
            want = np.full(len(out[key]), 0.0 if key in ("lip_feat", "phone_id") else -1.0)
            want[dst0: dst0 + m] = np.arange(src0, src0 + m)
            np.testing.assert_array_equal(out[key], want, err_msg=f"{key} a={a} b={b} offset={offset_s}")


SOURCE_FPS = (24.0, 24000 / 1001, 25.0, 30000 / 1001, 30.0, 50.0, 60000 / 1001, 60.0)


@pytest.mark.parametrize("src_fps", SOURCE_FPS)
def test_frame_decoding_rule_agrees_with_the_feature_rule_on_usual_rates(src_fps):
    # resample_frames (the decoder's timestamp rule) and frame_shown_at pick the same frame for the
    # usual source rates -> 25 / 10 Hz at starts in whole milliseconds
    count = int(12 * src_fps)
    frames = np.arange(count, dtype=np.int32)[:, None, None, None]
    for dst in (25.0, 10.0):
        for start_ms in range(0, 3000, 7):
            got = resample_frames(frames, src_fps, dst, start_s=start_ms / 1000, duration_s=8.0)
            want = np.clip(frame_shown_at(got.times_s, src_fps), 0, count - 1)
            np.testing.assert_array_equal(got.frames[:, 0, 0, 0], want, err_msg=f"{src_fps} -> {dst} at {start_ms} ms")


def test_frame_decoding_rule_counts_a_time_within_a_microsecond_as_the_next_frame():
    # the one documented difference: 0.5 us before frame 25's timestamp the decoder shows frame 25,
    # the feature rule (tolerance 1e-6 frame = 40 ns at 25 fps) still frame 24
    frames = np.arange(100, dtype=np.int32)[:, None, None, None]
    t = 1.0 - 0.5 * TIME_EPS_S
    got = resample_frames(frames, 25.0, 25.0, start_s=t, duration_s=0.2)
    assert got.frames[:, 0, 0, 0].tolist() == [25, 26, 27, 28, 29]
    assert frame_shown_at(got.times_s, 25.0).tolist() == [24, 25, 26, 27, 28]
