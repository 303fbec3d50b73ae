"""pipeline on video files: streaming windows equal in-memory frames, clip windows by timestamp, muxing."""
import math

import numpy as np
import pytest
import torch

from vssflow_core.errors import VSSFlowError
from vssflow_core.frontend import num_frames
from vssflow_core.media.video import probe_video, read_audio, read_frames
from vssflow_core.pipeline import generate, load_bundle
from vssflow_core.video_clip import clip_from_frames, load_clip, write_with_audio

import media_factory
from tiny_models import make_model_file, one_thread

_one_thread = pytest.fixture(scope="module", autouse=True)(one_thread)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return load_bundle(make_model_file(tmp_path_factory.mktemp("m") / "tiny.safetensors", "embedded", duration_s=2.0))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return media_factory.make_video(tmp_path_factory.mktemp("v") / "c.mp4", fps=30000 / 1001, duration_s=5.2,
                                    audio="clicks", click_times_s=(1.0, 3.0))


def test_streamed_file_equals_frames_in_memory(bundle, clip):
    """3 windows decoded one by one from the file give the same audio as the same frames in memory."""
    info = probe_video(clip)
    from_file, sr = generate(bundle, str(clip), seed=2, steps=1)
    frames = read_frames(clip, info.fps).frames
    from_memory, _ = generate(bundle, frames=frames, fps=info.fps, seed=2, steps=1)
    assert from_file.shape == (1, 1, num_frames(info.duration_s, sr))
    torch.testing.assert_close(from_file, from_memory, atol=1e-5, rtol=1e-4)


def test_load_clip_window_by_timestamp(clip):
    c = load_clip(clip, start_s=2.0, duration_s=1.0, fps=25.0)
    assert c.frames.shape[0] == 25 and c.fps == 25.0 and c.source_fps == pytest.approx(30000 / 1001)
    # frame k of the window is the source frame shown at 2.0 + k / 25
    shown = [media_factory.decode_index(f) for f in c.frames[:5]]
    assert shown == [math.floor((2.0 + k / 25) * 30000 / 1001 + 1e-6) for k in range(5)]
    assert c.audio.shape[-1] == 16000 and c.sample_rate == 16000
    capped = load_clip(clip, max_frames=10)
    assert capped.frames.shape[0] == 10 and capped.duration_s == pytest.approx(10 / (30000 / 1001))
    with pytest.raises(VSSFlowError, match="outside the video"):
        load_clip(clip, start_s=6.0)
    with pytest.raises(VSSFlowError, match="not found"):
        load_clip(clip.with_name("missing.mp4"))


def test_clip_from_frames_matches_timestamps():
    frames = (np.arange(50) * 5).astype(np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 3), np.uint8)
    audio = (torch.arange(32000, dtype=torch.float32)[None] / 32000, 16000)
    c = clip_from_frames(frames, 25.0, audio, start_s=1.0, duration_s=0.5, out_fps=10.0)
    assert c.frames[:, 0, 0, 0].tolist() == [125, 135, 150, 160, 175]  # frames 25, 27, 30, 32, 35
    assert c.audio.shape == (1, 8000) and float(c.audio[0, 0]) == pytest.approx(0.5)


def test_clip_from_frames_pads_audio_that_ends_before_the_part():
    """A VIDEO whose sound is shorter than its pictures gives the part's full length, silence after."""
    frames = np.zeros((50, 4, 4, 3), np.uint8)  # 2 s of pictures
    audio = (torch.ones(1, 16000), 16000)  # 1 s of sound
    c = clip_from_frames(frames, 25.0, audio, start_s=0.5, duration_s=1.0)
    assert c.audio.shape == (1, 16000)
    assert float(c.audio[0, :8000].min()) == 1.0 and float(c.audio[0, 8000:].abs().max()) == 0.0
    late = clip_from_frames(frames, 25.0, audio, start_s=1.5, duration_s=0.5)
    assert late.audio.shape == (1, 8000) and float(late.audio.abs().max()) == 0.0


def test_write_with_audio_never_overwrites(tmp_path, clip):
    audio = torch.full((1, 16000 * 5), 0.2)
    first = write_with_audio(audio, 16000, tmp_path, "out/x", video_path=clip)
    second = write_with_audio(audio, 16000, tmp_path, "out/x", video_path=clip, mode="mix")
    assert (first.name, second.name) == ("x_00001_.mp4", "x_00002_.mp4")
    assert probe_video(first).num_frames == probe_video(clip).num_frames
    wave, _ = read_audio(first)
    assert abs(wave.abs().mean() - 0.2) < 0.05
    with pytest.raises(VSSFlowError, match="mode"):
        write_with_audio(audio, 16000, tmp_path, "bad", video_path=clip, mode="overlay")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x_00001_.mp4", "x_00002_.mp4"]


def test_write_with_audio_encodes_an_animated_webp(tmp_path):
    """GIF / WebP have no video stream to copy: their frames are encoded to H.264 instead."""
    anim = media_factory.make_video(tmp_path / "anim.webp", fps=10, num_frames=12)
    out = write_with_audio(torch.full((1, 19200), 0.2), 16000, tmp_path, "anim", video_path=anim)
    info = probe_video(out)
    assert info.num_frames == 12 and info.has_audio and info.duration_s == pytest.approx(1.2, abs=0.02)
    first = read_frames(out, 10.0).frames[3]
    assert media_factory.decode_index(first) == 3  # frames in order, by timestamp


def test_half_precision_weights_keep_the_solver_state_in_float32(tmp_path):
    """bf16 weights (the CUDA default) compute the DiT in bf16, but the ODE state and its updates stay
    float32: rounding the state to bf16 at every step doubled the error against fp32."""
    bundle = load_bundle(make_model_file(tmp_path / "tiny.safetensors", "embedded", duration_s=2.0), dtype="bf16")
    seen = []
    sample = bundle.model.sample

    def spy(noise, cond, **kwargs):
        latent = sample(noise, cond, **kwargs)
        seen.append((noise.dtype, next(bundle.model.parameters()).dtype, latent.dtype))
        return latent

    bundle.model.sample = spy
    frames = np.stack([media_factory.pattern_frame(i, i / 25.0) for i in range(25)])
    audio, _ = generate(bundle, frames=frames, fps=25.0, seed=1, steps=2)
    assert seen == [(torch.float32, torch.bfloat16, torch.float32)] and torch.isfinite(audio).all()


@pytest.mark.parametrize("fps", [16.0, 24000 / 1001])
def test_scan_lips_reads_each_picture_of_a_low_frame_rate_file_once(tmp_path, monkeypatch, fps):
    """A 16 or 23.976 fps file is decoded window by window at its own rate for the lips: every source
    picture is measured once, in order (the stand-in detector reads the index each frame shows)."""
    from types import SimpleNamespace

    from vssflow_core import frontend
    from vssflow_core.frontend import LipCondition
    from vssflow_core.pipeline import scan_lips
    from vssflow_core.video_source import open_video

    def by_index(frames, rate, face, **_):
        feats = np.zeros((len(frames), 6), np.float32)
        feats[:, 0], feats[:, 5] = [media_factory.decode_index(f) for f in frames], 1.0
        return LipCondition(feats, rate, 0.0, SimpleNamespace(preview=np.zeros((0, 1, 1, 3), np.uint8),
                                                              face_box=None))

    monkeypatch.setattr(frontend, "extract_lip_condition", by_index)
    path = media_factory.make_video(tmp_path / "low.mp4", fps=fps, duration_s=5.2)
    lips, _ = scan_lips(open_video(str(path)), 2.0, require_face=True)
    assert lips.fps == pytest.approx(fps)
    np.testing.assert_array_equal(lips.features[:, 0], np.arange(probe_video(path).num_frames))
