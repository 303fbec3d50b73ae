"""Video in: exact durations, frame counts and timestamps; resampling by timestamp; streaming; audio."""

import math
from fractions import Fraction

import numpy as np
import pytest

from media_factory import click_track, decode_index, find_clicks, make_video, pattern_frame
from vssflow_core.errors import VSSFlowError
from vssflow_core.media.video import (
    iter_windows,
    num_frames,
    probe_video,
    read_audio,
    read_frames,
    resample_frames,
    write_video,
)

# (file name, fps as written, exact rate, frame count)
CLIPS = [
    ("c24.mkv", 24, Fraction(24), 48),
    ("c25.mp4", 25, Fraction(25), 50),
    ("c2997.mp4", 29.97, Fraction(30000, 1001), 60),
    ("c30.mov", 30, Fraction(30), 45),
    ("c60.webm", 60, Fraction(60), 60),
    ("c240.mp4", 240, Fraction(240), 96),
    ("c1.mp4", 1, Fraction(1), 3),
    ("c10.gif", 10, Fraction(10), 12),
    ("c10.webp", 10, Fraction(10), 12),
]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    return {name: make_video(root / name, fps=fps, num_frames=n) for name, fps, _, n in CLIPS}


def expected_indices(times_s, rate: Fraction, count: int) -> list[int]:
    """The source frame on screen at each time (frame i shown from i/rate on)."""
    return [min(count - 1, math.floor(t * float(rate) + 1e-6)) for t in times_s]


@pytest.mark.parametrize("name,fps,rate,count", CLIPS)
def test_probe_duration_rate_and_count_are_exact(clips, name, fps, rate, count):
    info = probe_video(clips[name])
    assert info.num_frames == count
    assert info.duration_s == pytest.approx(float(count / rate), abs=1e-6)
    assert info.fps == pytest.approx(float(rate), rel=1e-6)
    assert (info.width, info.height) == (96, 48)
    assert info.rotation == 0 and not info.has_audio


@pytest.mark.parametrize("name,fps,rate,count", CLIPS)
def test_native_rate_returns_every_frame_once(clips, name, fps, rate, count):
    fr = read_frames(clips[name], None)  # the source's own rate
    assert fr.fps == pytest.approx(float(rate), rel=1e-6)
    assert fr.frames.shape == (count, 48, 96, 3) and fr.frames.dtype == np.uint8
    assert [decode_index(f) for f in fr.frames] == list(range(count))
    np.testing.assert_allclose(fr.times_s, np.arange(count) / float(rate), atol=1e-12)
    np.testing.assert_allclose(fr.source_times_s, np.arange(count) / float(rate), atol=1e-3)


@pytest.mark.parametrize("name,fps,rate,count", CLIPS)
@pytest.mark.parametrize("target", [10.0, 25.0])
def test_resampling_picks_the_frame_on_screen(clips, name, fps, rate, count, target):
    fr = read_frames(clips[name], target)
    duration = float(count / rate)
    assert len(fr) == num_frames(duration, target)
    np.testing.assert_allclose(fr.times_s, np.arange(len(fr)) / target, atol=1e-12)
    assert fr.source_fps == pytest.approx(float(rate), rel=1e-6)
    assert fr.duration_s == pytest.approx(duration, abs=1e-6)
    assert [decode_index(f) for f in fr.frames] == expected_indices(fr.times_s, rate, count)


def test_first_n_frames_would_fail_this_test(clips):
    """60 fps -> 25 fps must skip source frames (taking the first N frames gives 0..N-1)."""
    fr = read_frames(clips["c60.webm"], 25.0)
    got = [decode_index(f) for f in fr.frames]
    assert got[:5] == [0, 2, 4, 7, 9]
    assert got != list(range(len(got)))


def test_window_with_seek_matches_full_decode(tmp_path):
    path = make_video(tmp_path / "gop.mp4", fps=30, num_frames=150, gop=10)
    fr = read_frames(path, 25.0, start_s=2.3, duration_s=1.5)
    assert len(fr) == num_frames(1.5, 25.0) == 38
    np.testing.assert_allclose(fr.times_s, 2.3 + np.arange(38) / 25.0, atol=1e-12)
    assert [decode_index(f) for f in fr.frames] == expected_indices(fr.times_s, Fraction(30), 150)
    full = read_frames(path, 30.0)
    again = resample_frames(full.frames, 30.0, 25.0, start_s=2.3, duration_s=1.5)
    assert np.array_equal(again.frames, fr.frames)  # same rule for IMAGE batches and files
    np.testing.assert_allclose(again.source_times_s, fr.source_times_s, atol=1e-9)


def test_read_frames_reports_progress_and_stops_when_it_raises(tmp_path):
    path = make_video(tmp_path / "long.mp4", fps=25, num_frames=120)
    calls = []
    fr = read_frames(path, 25.0, progress=lambda done, total: calls.append((done, total)))
    assert len(fr) == 120 and [c[0] for c in calls] == sorted({c[0] for c in calls})
    assert len(calls) >= 3 and all(total == 120 and 0 < done <= 120 for done, total in calls)

    class Cancelled(Exception):
        pass

    def cancel(done, total):
        raise Cancelled

    with pytest.raises(Cancelled):
        read_frames(path, 25.0, progress=cancel)


def test_resize_while_decoding(clips):
    short = read_frames(clips["c25.mp4"], 25.0, size=24)
    assert short.frames.shape == (50, 24, 48, 3)
    assert [decode_index(f) for f in short.frames] == list(range(50))
    exact = read_frames(clips["c25.mp4"], 25.0, size=(30, 40))
    assert exact.frames.shape == (50, 30, 40, 3)


def test_vfr_timestamps(tmp_path):
    times = [0.0, 0.033, 0.066, 0.2, 0.233, 0.5]
    path = make_video(tmp_path / "vfr.mp4", fps=25, frame_times_s=times)
    info = probe_video(path)
    assert info.num_frames == 6 and info.is_vfr
    assert info.duration_s == pytest.approx(0.54, abs=1e-3)
    fr = read_frames(path, 100.0)
    assert len(fr) == 54
    want = [max(i for i, s in enumerate(times) if s <= t + 1e-6) for t in fr.times_s]
    assert [decode_index(f) for f in fr.frames] == want
    np.testing.assert_allclose(np.unique(fr.source_times_s), times, atol=1e-4)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_metadata_is_applied(tmp_path, rotation):
    path = make_video(tmp_path / f"rot{rotation}.mp4", fps=25, num_frames=5, rotation=rotation)
    info = probe_video(path)
    assert info.rotation == rotation
    assert (info.height, info.width) == ((96, 48) if rotation in (90, 270) else (48, 96))
    fr = read_frames(path, 25.0)
    assert fr.frames.shape[1:3] == (info.height, info.width)
    for i, frame in enumerate(fr.frames):
        # FFmpeg convention: the angle is counter-clockwise (checked against the ffmpeg CLI's autorotate)
        want = np.rot90(pattern_frame(i, i / 25, 48, 96), k=rotation // 90).astype(np.float32)
        wrong = np.rot90(pattern_frame(i, i / 25, 48, 96), k=(rotation // 90 + 2) % 4).astype(np.float32)
        assert np.abs(frame - want).mean() < 10 < np.abs(frame - wrong).mean()


def test_anamorphic_pixels_are_stretched_to_the_display_size(tmp_path):
    path = make_video(tmp_path / "sar.mp4", fps=25, num_frames=3, size=(48, 48), sample_aspect=Fraction(2, 1))
    info = probe_video(path)
    assert (info.width, info.height, info.coded_width) == (96, 48, 48)
    fr = read_frames(path, 25.0)
    assert fr.frames.shape == (3, 48, 96, 3) and [decode_index(f) for f in fr.frames] == [0, 1, 2]


def test_odd_size_and_one_frame(tmp_path):
    odd = make_video(tmp_path / "odd.mp4", fps=25, num_frames=4, size=(47, 95))
    fr = read_frames(odd, 25.0)
    assert fr.frames.shape == (4, 47, 95, 3)
    assert [decode_index(f) for f in fr.frames] == [0, 1, 2, 3]
    one = make_video(tmp_path / "one.mp4", fps=25, num_frames=1)
    info = probe_video(one)
    assert info.num_frames == 1 and info.duration_s == pytest.approx(0.04)
    fr = read_frames(one, 100.0)
    assert len(fr) == 4 and [decode_index(f) for f in fr.frames] == [0, 0, 0, 0]


def test_iter_windows_streams_two_rates_with_overlap(tmp_path):
    path = make_video(tmp_path / "long.mp4", fps=30, num_frames=300, gop=15)
    wins = list(iter_windows(path, (10.0, 25.0), window_s=4.0, hop_s=3.0, size=24))
    assert [w[0].start_s for w in wins] == [0.0, 3.0, 6.0]
    assert [len(w[0]) for w in wins] == [40, 40, 40] and [len(w[1]) for w in wins] == [100, 100, 100]
    full10 = read_frames(path, 10.0, size=24)
    for w in wins:
        for fr, rate in zip(w, (10.0, 25.0)):
            np.testing.assert_allclose(fr.times_s, fr.start_s + np.arange(len(fr)) / rate, atol=1e-9)
            assert [decode_index(f) for f in fr.frames] == expected_indices(fr.times_s, Fraction(30), 300)
        a = round(w[0].start_s * 10)
        assert np.array_equal(w[0].frames, full10.frames[a:a + 40])
    # last window shorter when the hop does not divide the length
    tail = list(iter_windows(path, 25.0, window_s=4.0, start_s=1.0))
    assert [len(t) for t in tail] == [100, 100, 25] and tail[-1].duration_s == pytest.approx(1.0)


def test_resample_frames_accepts_torch_images():
    torch = pytest.importorskip("torch")
    images = torch.stack([torch.full((4, 6, 3), i / 100.0) for i in range(60)])  # brightness = index
    out = resample_frames(images, 60.0, 25.0)
    assert isinstance(out.frames, torch.Tensor) and out.frames.dtype == torch.float32
    idx = [round(float(f[0, 0, 0]) * 100) for f in out.frames]
    assert idx == [math.floor(k / 25 * 60 + 1e-6) for k in range(25)]
    part = resample_frames(images, 60.0, 10.0, start_s=0.5, duration_s=0.3)
    assert [round(float(f[0, 0, 0]) * 100) for f in part.frames] == [30, 36, 42]


def test_read_audio_keeps_click_times(tmp_path):
    clicks = (0.25, 0.8, 1.55)
    path = make_video(tmp_path / "a.mp4", fps=25, num_frames=50, audio="clicks", click_times_s=clicks,
                      sample_rate=16000)
    info = probe_video(path)
    assert info.has_audio and info.audio_sample_rate == 16000
    wave, sr = read_audio(path)
    assert sr == 16000 and wave.dtype.is_floating_point and wave.shape[0] == 1
    np.testing.assert_allclose(find_clicks(wave, sr), clicks, atol=1e-3)
    part, sr = read_audio(path, start_s=0.5, duration_s=1.2)
    assert part.shape == (1, round(1.2 * 16000))
    np.testing.assert_allclose(find_clicks(part, sr), [0.3, 1.05], atol=1e-3)


def test_read_audio_none_without_track(clips):
    assert read_audio(clips["c25.mp4"]) is None


def test_write_video_round_trip(tmp_path):
    frames = np.stack([pattern_frame(i, i / 30, 47, 95) for i in range(30)])
    wave = click_track(1.2, 22050, (0.4,), channels=2)  # longer than the video: trimmed
    out = write_video(tmp_path / "w.mp4", frames, 29.97, audio=wave, sample_rate=22050)
    info = probe_video(out)
    assert info.num_frames == 30 and info.fps == pytest.approx(30000 / 1001)
    assert (info.width, info.height) == (96, 48)  # padded to even
    assert info.audio_sample_rate == 22050 and info.audio_channels == 2
    fr = read_frames(out, 30000 / 1001)
    assert [decode_index(f[:47, :95]) for f in fr.frames] == list(range(30))
    wave_back, sr = read_audio(out, 0.0, info.duration_s)
    np.testing.assert_allclose(find_clicks(wave_back, sr), [0.4], atol=1e-3)
    with pytest.raises(VSSFlowError, match="already exists"):
        write_video(out, frames, 30)


def test_write_video_accepts_float_images(tmp_path):
    torch = pytest.importorskip("torch")
    images = torch.from_numpy(np.stack([pattern_frame(i, 0, 32, 96) for i in range(3)])).float() / 255
    out = write_video(tmp_path / "f.webm", images, 10)
    assert [decode_index(f) for f in read_frames(out, 10).frames] == [0, 1, 2]


def test_iter_windows_memory_is_one_window_not_the_video(tmp_path):
    import tracemalloc

    path = make_video(tmp_path / "stream.mp4", fps=25, num_frames=600, size=(48, 96))  # 24 s
    frame_bytes = 48 * 96 * 3
    tracemalloc.start()
    try:
        count = 0
        for w in iter_windows(path, 25.0, window_s=2.0):
            count += len(w)
            del w
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 600
    assert peak < 4 * 50 * frame_bytes  # a few 2 s windows (50 frames each), far below 600 frames
