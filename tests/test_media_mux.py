"""Audio out: video packets copied byte for byte, audio placed, lengths, modes, sync, safety."""

import numpy as np
import pytest

from media_factory import click_track, decode_index, find_clicks, is_flash, make_video
from vssflow_core.errors import VSSFlowError
from vssflow_core.media.mux import mux_audio
from vssflow_core.media.video import probe_video, read_audio, read_frames, write_video


def video_packets(path):
    """[(bytes, pts, keyframe)] of the first video stream, in file order."""
    import av

    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        return [(bytes(p), p.pts, p.is_keyframe) for p in c.demux(vs) if p.size]


def audio_stream(path):
    import av

    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        return a.codec_context.name, a.codec_context.sample_rate, a.codec_context.channels


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    root = tmp_path_factory.mktemp("mux")
    return {
        "mp4": make_video(root / "s.mp4", fps=25, num_frames=50, audio="clicks", click_times_s=(0.5,)),
        "mkv": make_video(root / "s.mkv", fps=24, num_frames=48),
        "webm": make_video(root / "s.webm", fps=30, num_frames=60, audio="clicks", click_times_s=(0.5,)),
    }


@pytest.mark.parametrize("kind,ext", [("mp4", ".mp4"), ("mp4", ".mov"), ("mp4", ".mkv"), ("mkv", ".mp4"),
                                      ("webm", ".webm"), ("webm", ".mkv")])
def test_video_packets_are_copied_byte_for_byte(tmp_path, src, kind, ext):
    wave = click_track(1.0, 22050, (0.3,))
    out = mux_audio(src[kind], wave, 22050, tmp_path / f"out{ext}")
    before, after = video_packets(src[kind]), video_packets(out)
    assert len(after) == len(before)
    assert [p[0] for p in after] == [p[0] for p in before]
    assert [p[2] for p in after] == [p[2] for p in before]
    a, b = probe_video(src[kind]), probe_video(out)
    tol = 1e-3 if kind == "mp4" else 2.5e-3  # Matroska stores milliseconds
    assert b.num_frames == a.num_frames and b.duration_s == pytest.approx(a.duration_s, abs=tol)
    codec, rate, channels = audio_stream(out)
    assert codec == ("aac" if ext in (".mp4", ".mov") else "opus") and rate == 48000 and channels == 1
    got, sr = read_audio(out)
    np.testing.assert_allclose(find_clicks(got, sr), [0.3], atol=1.5e-3)


def test_surround_audio_is_folded_to_stereo_and_other_layouts_to_mono(tmp_path, src):
    """A 5.1 AUDIO (e.g. a loaded video's own track put back) is muxed as stereo (left from the left
    channels, right from the right ones), other layouts above stereo as mono; none is refused."""
    import torch

    silence = np.zeros((1, 16000), np.float32)
    front_left, front_right = click_track(1.0, 16000, (0.3,)), click_track(1.0, 16000, (0.7,))
    surround = np.concatenate([front_left, front_right, silence, silence, silence, silence])  # FL FR FC LFE BL BR
    out = mux_audio(src["mp4"], surround, 16000, tmp_path / "surround.mp4")
    assert audio_stream(out)[2] == 2
    wave, rate = read_audio(out)
    np.testing.assert_allclose(find_clicks(wave[:1], rate, threshold=0.1), [0.3], atol=1.5e-3)
    np.testing.assert_allclose(find_clicks(wave[1:], rate, threshold=0.1), [0.7], atol=1.5e-3)
    from vssflow_core.media.mux import _mix_tracks  # mix mode folds the video's own 5.1 track the same way

    mixed = _mix_tracks(silence, surround)
    assert mixed.shape == (2, 16000)
    assert find_clicks(mixed[:1], 16000, threshold=0.1) == pytest.approx([0.3], abs=1e-3)
    assert find_clicks(mixed[1:], 16000, threshold=0.1) == pytest.approx([0.7], abs=1e-3)
    quad = torch.from_numpy(np.repeat(click_track(1.0, 16000, (0.4,)), 4, axis=0))
    out = mux_audio(src["mp4"], quad, 16000, tmp_path / "quad.mp4")
    assert audio_stream(out)[2] == 1
    np.testing.assert_allclose(find_clicks(*read_audio(out)), [0.4], atol=1.5e-3)


def test_animated_webp_is_encoded_then_muxed(tmp_path):
    """GIF / WebP have no video stream to copy (the CLI and the node both land here)."""
    anim = make_video(tmp_path / "anim.webp", fps=10, num_frames=12)
    out = mux_audio(anim, click_track(1.2, 16000, (0.5,)), 16000, tmp_path / "anim.mp4")
    info = probe_video(out)
    assert info.num_frames == 12 and info.duration_s == pytest.approx(1.2, abs=0.02)
    assert decode_index(read_frames(out, 10.0).frames[3]) == 3
    np.testing.assert_allclose(find_clicks(*read_audio(out)), [0.5], atol=1.5e-3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["anim.mp4", "anim.webp"]  # no temporary left


def test_pad_and_trim(tmp_path, src):
    short = click_track(0.8, 16000, (0.1,), channels=2)
    padded = mux_audio(src["mp4"], short, 16000, tmp_path / "pad.mp4", length="pad")
    wave, sr = read_audio(padded, 0.0, 2.0)
    assert wave.shape == (2, 96000)
    assert float(wave[:, int(0.85 * sr):].abs().max()) < 0.02  # silence after the generated audio
    assert _audio_duration(padded) == pytest.approx(2.0, abs=1024 / 48000)
    trimmed = mux_audio(src["mp4"], short, 16000, tmp_path / "trim.mp4", length="trim")
    assert _audio_duration(trimmed) == pytest.approx(0.8, abs=1024 / 48000)
    long = click_track(3.0, 16000, (0.1, 2.5))
    cut = mux_audio(src["mp4"], long, 16000, tmp_path / "cut.mp4", length="trim")
    assert _audio_duration(cut) == pytest.approx(2.0, abs=1024 / 48000)
    assert find_clicks(*read_audio(cut)) == pytest.approx([0.1], abs=1.5e-3)  # the click at 2.5 s is gone
    assert probe_video(cut).num_frames == 50


def _audio_duration(path):
    import av

    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        return float(a.duration * a.time_base)


def test_mix_with_gains(tmp_path, src):
    generated = click_track(2.0, 24000, (1.2,))
    out = mux_audio(src["mp4"], generated, 24000, tmp_path / "mix.mp4", mode="mix", audio_gain=0.5,
                    original_gain=1.0)
    wave, sr = read_audio(out)
    np.testing.assert_allclose(find_clicks(wave, sr, threshold=0.2), [0.5, 1.2], atol=1.5e-3)
    peak = lambda t: float(wave[:, int(t * sr): int((t + 0.004) * sr)].abs().max())  # noqa: E731
    assert peak(0.5) == pytest.approx(0.8, abs=0.12) and peak(1.2) == pytest.approx(0.4, abs=0.08)
    replaced = mux_audio(src["mp4"], generated, 24000, tmp_path / "rep.mp4", mode="replace")
    wave, sr = read_audio(replaced)
    assert find_clicks(wave, sr, threshold=0.2) == pytest.approx([1.2], abs=1.5e-3)


def test_flash_and_click_stay_within_one_frame(tmp_path):
    """decode (29.97 fps) -> resample to 25 fps -> audio made on the 25 fps grid -> mux -> decode."""
    flashes = (0.6, 1.4, 2.2)
    source = make_video(tmp_path / "flash.mp4", fps=29.97, duration_s=3.0, flash_at_s=flashes)
    fr = read_frames(source, 25.0)
    seen = [float(t) for t, f in zip(fr.times_s, fr.frames) if is_flash(f)]
    assert len(seen) == 3
    np.testing.assert_allclose(seen, flashes, atol=1 / 25)
    generated = click_track(3.0, 16000, seen)  # what a generator would emit on the model's grid
    out = mux_audio(source, generated, 16000, tmp_path / "flash_out.mp4")
    back = read_frames(out, probe_video(out).fps)
    flash_times = [float(t) for t, f in zip(back.times_s, back.frames) if is_flash(f)]
    clicks = find_clicks(*read_audio(out))
    assert len(flash_times) == len(clicks) == 3
    assert np.abs(np.array(flash_times) - np.array(clicks)).max() <= 1 / 25
    # the original pictures are untouched
    assert [decode_index(f) for f in back.frames] == list(range(probe_video(source).num_frames))


def test_original_audio_keeps_sync_through_mux(tmp_path):
    source = make_video(tmp_path / "sync.mp4", fps=30, num_frames=60, flash_at_s=(0.9,), audio="clicks",
                        click_times_s=(0.9,), sample_rate=44100)
    wave, sr = read_audio(source)
    out = mux_audio(source, wave, sr, tmp_path / "sync_out.mkv")
    frames = read_frames(out, 30)
    flash = [float(t) for t, f in zip(frames.times_s, frames.frames) if is_flash(f)]
    assert flash == pytest.approx([0.9]) and find_clicks(*read_audio(out)) == pytest.approx([0.9], abs=1 / 30)


def test_rotation_survives_mux(tmp_path):
    source = make_video(tmp_path / "rot.mp4", fps=25, num_frames=10, rotation=90)
    out = mux_audio(source, np.zeros(1600, np.float32), 16000, tmp_path / "rot_out.mp4")
    assert probe_video(out).rotation == 90


def test_never_overwrites(tmp_path, src):
    wave = np.zeros((1, 1000), np.float32)
    target = tmp_path / "o.mp4"
    target.write_bytes(b"precious")
    with pytest.raises(VSSFlowError, match="already exists"):
        mux_audio(src["mp4"], wave, 16000, target)
    assert target.read_bytes() == b"precious"
    other = mux_audio(src["mp4"], wave, 16000, target, on_exists="counter")
    assert other.name == "o_00001_.mp4" and target.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4", "o_00001_.mp4"]  # no temp files left


def test_stream_the_container_cannot_hold_is_reencoded(tmp_path, src, caplog):
    """H.264 cannot go into WebM: the frames are re-encoded (VP9) at their own timestamps."""
    with caplog.at_level("WARNING", logger="vssflow_core.media.mux"):
        out = mux_audio(src["mp4"], click_track(2.0, 16000, (0.5,)), 16000, tmp_path / "x.webm")
    assert "re-encoding the video with libvpx-vp9" in caplog.text
    info, before = probe_video(out), probe_video(src["mp4"])
    assert info.codec == "vp9" and info.num_frames == before.num_frames
    assert info.duration_s == pytest.approx(before.duration_s, abs=1e-3)
    back = read_frames(out, 25)
    assert [decode_index(f) for f in back.frames] == list(range(before.num_frames))  # every picture, in place
    assert find_clicks(*read_audio(out)) == pytest.approx([0.5], abs=1 / 25)


def test_reencoded_rotated_video_is_turned_upright(tmp_path):
    source = make_video(tmp_path / "rot.mp4", fps=25, num_frames=10, rotation=90)
    out = mux_audio(source, np.zeros(1600, np.float32), 16000, tmp_path / "rot_out.webm")
    before, after = probe_video(source), probe_video(out)
    assert after.rotation == 0 and (after.width, after.height) == (before.width, before.height)
    shown, got = read_frames(source, 25).frames, read_frames(out, 25).frames  # as players show them
    assert got.shape == shown.shape and np.abs(got.astype(int) - shown).mean() < 4  # VP9 loss only


def test_failure_leaves_no_file(tmp_path, src, monkeypatch):
    import av

    from vssflow_core.media import mux

    def refuse(*args, **kwargs):
        raise av.error.FFmpegError(-1, "no encoder")

    monkeypatch.setattr(mux, "_encoder_like", refuse)
    with pytest.raises(VSSFlowError, match="neither copied .* nor re-encoded"):
        mux_audio(src["mp4"], np.zeros(100, np.float32), 16000, tmp_path / "x.webm")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(mode="blend"), "mode='blend'"),
        (dict(length="loop"), "length='loop'"),
        (dict(audio_gain=-1.0), "audio_gain=-1.0"),
        (dict(sample_rate=0), "sample_rate=0"),
        (dict(audio=np.zeros((2, 3, 100), np.float32)), r"shape \(2, 3, 100\)"),  # a batch of 2: pick one
        (dict(audio=np.full(100, np.nan, np.float32)), "NaN"),
        (dict(out_name="x.avi"), "extension '.avi'"),
    ],
)
def test_bad_arguments(tmp_path, src, kwargs, message):
    args = dict(audio=np.zeros(100, np.float32), sample_rate=16000, out_name="o.mp4")
    args.update(kwargs)
    out = tmp_path / args.pop("out_name")
    with pytest.raises(VSSFlowError, match=message):
        mux_audio(src["mp4"], args.pop("audio"), args.pop("sample_rate"), out, **args)


def test_mux_after_write_video_of_an_image_batch(tmp_path):
    torch = pytest.importorskip("torch")
    images = torch.rand(12, 32, 48, 3)
    video = write_video(tmp_path / "gen.mp4", images, 24)
    out = mux_audio(video, torch.zeros(1, 2, 8000), 16000, tmp_path / "gen_sound.mp4")
    assert video_packets(out) and [p[0] for p in video_packets(out)] == [p[0] for p in video_packets(video)]
    assert audio_stream(out)[2] == 2


def test_mix_channel_rules():
    from vssflow_core.media.mux import _mix_tracks

    mono = np.ones((1, 4), np.float32)
    stereo = np.stack([np.full(6, 0.5), np.full(6, -0.5)]).astype(np.float32)
    out = _mix_tracks(mono, stereo)  # mono meets stereo as stereo; the longer length wins
    np.testing.assert_allclose(out, [[1.5] * 4 + [0.5] * 2, [0.5] * 4 + [-0.5] * 2])
    surround = np.ones((6, 4), np.float32)
    assert _mix_tracks(stereo, surround).shape == (2, 6)  # 5.1 originals fold to mono first
