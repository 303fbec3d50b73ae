"""Every bad video input gives a VSSFlowError that names the file and the problem."""

import numpy as np
import pytest

from media_factory import (
    make_audio_only,
    make_not_video,
    make_random_bytes,
    make_still_image,
    make_truncated,
    make_video,
    make_zero_frames,
)
from vssflow_core.errors import VSSFlowError
from vssflow_core.media.video import iter_windows, probe_video, read_audio, read_frames, resample_frames


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("good") / "good.mp4", fps=25, num_frames=50)


def test_missing_file(tmp_path):
    with pytest.raises(VSSFlowError, match=r"nope\.mp4 does not exist"):
        probe_video(tmp_path / "nope.mp4")
    with pytest.raises(VSSFlowError, match="does not exist"):
        read_audio(tmp_path / "nope.mp4")


def test_folder_and_empty_file(tmp_path):
    with pytest.raises(VSSFlowError, match="is not a file"):
        read_frames(tmp_path, 25)
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VSSFlowError, match=r"empty\.mp4 is empty \(0 bytes\)"):
        probe_video(tmp_path / "empty.mp4")


@pytest.mark.parametrize("maker", [make_not_video, make_random_bytes])
def test_not_a_video(tmp_path, maker):
    path = maker(tmp_path / "clip.mp4")
    with pytest.raises(VSSFlowError, match=r"clip\.mp4 is not a readable video"):
        read_frames(path, 25)


def test_audio_only_file(tmp_path):
    path = make_audio_only(tmp_path / "voice.mp4")
    with pytest.raises(VSSFlowError, match=r"voice\.mp4 has no video stream \(it contains: audio\)"):
        probe_video(path)
    wave, sr = read_audio(path)  # the audio itself is still readable
    assert sr == 16000 and wave.shape[1] >= 16000


def test_still_image_renamed(tmp_path):
    path = make_still_image(tmp_path / "photo.mp4")
    with pytest.raises(VSSFlowError, match="still image"):
        probe_video(path)


def test_zero_frames(tmp_path):
    path = make_zero_frames(tmp_path / "zero.mkv")
    with pytest.raises(VSSFlowError, match="0 frames"):
        probe_video(path)


def test_truncated_index_at_end(tmp_path, good):
    cut = make_truncated(good, tmp_path / "cut.mp4", 0.5)
    with pytest.raises(VSSFlowError, match=r"cut\.mp4 is not a readable video.*download it again"):
        probe_video(cut)


def test_truncated_data_with_index_in_front(tmp_path):
    full = make_video(tmp_path / "fs.mp4", fps=25, num_frames=50, faststart=True)
    cut = make_truncated(full, tmp_path / "cut_fs.mp4", 0.6)
    info = probe_video(cut)  # the header still claims 2 s
    assert info.duration_s == pytest.approx(2.0)
    with pytest.raises(VSSFlowError, match=r"cut_fs\.mp4 is truncated: its header says 2\.000 s but frames stop at"):
        read_frames(cut, 25)
    first = read_frames(cut, 25, duration_s=0.2)  # the part that is there still decodes
    assert len(first) == 5


@pytest.mark.parametrize(
    "start_s,duration_s,message",
    [
        (2.0, None, r"start_s=2\.000 s is outside .*lasts 2\.000 s"),
        (5.0, 1.0, "is outside"),
        (-0.1, None, "before the start"),
        (1.5, 1.0, r"reaches past the end .* use duration_s <= 0\.500"),
        (0.0, 0.0, "must be a positive number of seconds"),
        (0.0, float("nan"), "must be a positive number of seconds"),
    ],
)
def test_window_outside_the_video(good, start_s, duration_s, message):
    with pytest.raises(VSSFlowError, match=message):
        read_frames(good, 25, start_s=start_s, duration_s=duration_s)


@pytest.mark.parametrize("fps", [0, -5, float("nan"), "fast"])
def test_bad_rate(good, fps):
    with pytest.raises(VSSFlowError, match="fps="):
        read_frames(good, fps)


@pytest.mark.parametrize("size", [0, -3, (10,), (0, 5), "big"])
def test_bad_size(good, size):
    with pytest.raises(VSSFlowError, match="size="):
        read_frames(good, 25, size=size)


def test_bad_windows(good):
    with pytest.raises(VSSFlowError, match="must be positive seconds"):
        next(iter_windows(good, 25, window_s=0))


def test_resample_frames_bad_input():
    with pytest.raises(VSSFlowError, match=r"shape \(4, 5, 3\)"):
        resample_frames(np.zeros((4, 5, 3), np.uint8), 25, 25)
    with pytest.raises(VSSFlowError, match="outside"):
        resample_frames(np.zeros((4, 5, 6, 3), np.uint8), 25, 25, start_s=1.0)
