"""pipeline: window planning, cross-fade, exact durations, seeds/variations, progress and cancel."""
import math

import numpy as np
import pytest
import torch

from vssflow_core.errors import VSSFlowError
from vssflow_core.frontend import LipCondition, lips_on_grid, num_frames, sample_track
from vssflow_core.pipeline import _window_inputs, generate, load_bundle
from vssflow_core.timeline import Window, crossfade_gains, plan_windows, window_spans

from tiny_models import make_model_file, one_thread

_one_thread = pytest.fixture(scope="module", autouse=True)(one_thread)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path = make_model_file(tmp_path_factory.mktemp("m") / "tiny.safetensors", "embedded", duration_s=2.0)
    return load_bundle(path)


def frames_by_index(n, h=16, w=24):
    """Frame i has brightness i (mod 256): the content gives away the position."""
    return (np.arange(n) % 256).astype(np.uint8)[:, None, None, None] * np.ones((1, h, w, 3), np.uint8)


def test_plan_windows_known_answers():
    assert plan_windows(3.0, 10.0) == [Window(0.0, 3.0)]
    assert plan_windows(10.0, 10.0) == [Window(0.0, 10.0)]
    ws = plan_windows(18.5, 10.0, 2.0)  # explicit overlap
    assert [w.start_s for w in ws] == [0.0, 8.0, 16.0]
    assert ws[-1].end_s == pytest.approx(18.5) and ws[-1].duration_s > 2.0
    assert len(plan_windows(600.0, 10.0, 2.0)) == 75  # hop 8 s: 0..584 full, then 592..600
    assert len(plan_windows(600.0, 10.0)) == 69  # default overlap 1.25 s: hop 8.75 s, 68 full + 595..600
    ws = plan_windows(5.2052, 2.0)  # hop 1.75 s rounds to 44 frames at 25 Hz = 1.76 s
    assert [w.start_s for w in ws] == [0.0, 1.76, 3.52]
    assert all(abs(w.start_s * 25 - round(w.start_s * 25)) < 1e-9 for w in plan_windows(600.0, 8.0, 1.3))


@pytest.mark.parametrize("duration_s", [10.5, 18.5, 37.3333, 600.0])
def test_crossfade_gains_sum_to_one_and_at_most_two_windows(duration_s):
    sr = 16000
    total = num_frames(duration_s, sr)
    spans = window_spans(plan_windows(duration_s, 10.0, 2.0), sr, total)
    cover, acc = torch.zeros(total), torch.zeros(total)
    for (a, b), g in zip(spans, crossfade_gains(spans)):
        acc[a:b] += g
        cover[a:b] += 1
    assert spans[0][0] == 0 and spans[-1][1] == total
    torch.testing.assert_close(acc, torch.ones(total), atol=1e-6, rtol=0)
    assert cover.max() == 2 and cover.min() == 1


def test_plan_windows_rejects_bad_values():
    with pytest.raises(VSSFlowError, match="duration must be positive"):
        plan_windows(0.0, 10.0)
    with pytest.raises(VSSFlowError, match="half a window"):
        plan_windows(30.0, 10.0, 6.0)


def test_window_inputs_are_sliced_by_time():
    """Window [8, 10): lip row k is the lips at 8 + k/25 s, interpolated between the rows of a 30 fps
    track (row i = i, so the value is the time in 30 fps frames); phonemes are read by timestamp."""
    lips30 = np.arange(300, dtype=np.float32)[:, None] * np.ones((1, 6), np.float32)  # row i = i, at 30 fps
    w = Window(8.0, 2.0)
    phones = torch.arange(250)  # id k on frame k at 25 Hz
    inputs = _window_inputs(w, None, LipCondition(lips30, 30.0), phones, None)
    np.testing.assert_allclose(inputs.lips_raw[:, 0], (8.0 + np.arange(50) / 25.0) * 30.0, rtol=0, atol=1e-3)
    assert inputs.phone_ids.tolist() == list(range(200, 250))


def test_lips_on_grid_interpolates_a_low_frame_rate_and_never_blends_in_a_missing_face():
    """A mouth opening linearly measured at 16 fps reads as the same line at 25 Hz (held, 9 of 25 rows
    would repeat and lag by up to 62 ms); rows next to a frame without a face are not blended with
    its zeros; a 25 Hz track is read unchanged; times outside the track are zeros."""
    opening = np.zeros((32, 6), np.float32)  # 2 s at 16 fps
    opening[:, 0], opening[:, 5] = np.arange(32) / 16.0, 1.0  # opening = time (s)
    on_grid = lips_on_grid(opening, 16.0, 0.0, 0.0, 50)
    np.testing.assert_allclose(on_grid[:49, 0], np.arange(49) / 25.0, atol=1e-6)
    assert on_grid[49, 0] == opening[31, 0]  # in the last row's frame: that row
    held = sample_track(opening, 16.0, 0.0, 0.0, 50, 25.0)
    assert (np.diff(held[:, 0]) == 0).sum() == 18 and (np.diff(on_grid[:49, 0]) > 0).all()

    opening[10] = 0.0  # no face at 10/16 s
    gap = lips_on_grid(opening, 16.0, 0.0, 0.0, 50)
    near = [k for k in range(50) if int(np.floor(k / 25 * 16 + 1e-6)) in (9, 10)]  # rows that would blend row 10
    np.testing.assert_array_equal(gap[near], sample_track(opening, 16.0, 0.0, 0.0, 50, 25.0)[near])

    track25 = np.random.default_rng(0).random((40, 6)).astype(np.float32)
    np.testing.assert_array_equal(lips_on_grid(track25, 25.0, 1.0, 0.0, 100), sample_track(track25, 25.0, 1.0, 0.0, 100, 25.0))
    assert lips_on_grid(track25, 25.0, 1.0, 0.0, 100)[:25].sum() == 0


def test_sample_track_outside_is_zero():
    out = sample_track(np.ones((10, 2), np.float32), 25.0, 1.0, 0.0, 60, 25.0)
    assert out[:25].sum() == 0 and out[25:35].min() == 1 and out[35:].sum() == 0


@pytest.mark.parametrize("n,fps", [(130, 25.0), (157, 30000 / 1001), (31, 12.0)])
def test_generate_exact_duration(bundle, n, fps):
    audio, sr = generate(bundle, frames=frames_by_index(n), fps=fps, seed=0, steps=1)
    assert sr == 16000
    assert audio.shape == (1, 1, math.ceil(n / fps * sr - 1e-6))
    assert torch.isfinite(audio).all() and audio.abs().max() <= 1.0


def test_variations_are_seeded_batch(bundle):
    frames = frames_by_index(60)
    batch, _ = generate(bundle, frames=frames, fps=25.0, seed=5, variations=2, steps=1)
    single, _ = generate(bundle, frames=frames, fps=25.0, seed=5, steps=1)
    second, _ = generate(bundle, frames=frames, fps=25.0, seed=6, steps=1)
    torch.testing.assert_close(batch[0], single[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(batch[1], second[0], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(batch[0], batch[1])


def test_long_video_windows_and_progress(bundle):
    """5.2 s with 2 s windows -> 3 windows; callback counts every solver step over all windows."""
    calls = []
    audio, sr = generate(bundle, frames=frames_by_index(130), fps=25.0, steps=2,
                         callback=lambda done, total: calls.append((done, total)))
    assert audio.shape[-1] == num_frames(5.2, sr)
    assert calls == [(k, 6) for k in range(1, 7)]


def test_duration_limit_and_cancel(bundle):
    audio, sr = generate(bundle, frames=frames_by_index(130), fps=25.0, steps=1, duration_s=1.5)
    assert audio.shape[-1] == num_frames(1.5, sr)

    class Cancelled(Exception):
        pass

    calls = []

    def cancel(done, total):
        calls.append(done)
        raise Cancelled

    with pytest.raises(Cancelled):
        generate(bundle, frames=frames_by_index(130), fps=25.0, steps=3, callback=cancel)
    assert calls == [1]  # stopped within one step


def test_bad_inputs(bundle):
    with pytest.raises(VSSFlowError, match="solver"):
        generate(bundle, frames=frames_by_index(10), fps=25.0, solver="rk4")
    with pytest.raises(VSSFlowError, match="steps"):
        generate(bundle, frames=frames_by_index(10), fps=25.0, steps=0)
    with pytest.raises(VSSFlowError, match="fps"):
        generate(bundle, frames=frames_by_index(10), fps=0.0)
    with pytest.raises(VSSFlowError, match="no frames"):
        generate(bundle, frames=np.zeros((0, 4, 4, 3), np.uint8), fps=25.0)
    with pytest.raises(VSSFlowError, match="uint8"):
        generate(bundle, frames=np.zeros((5, 4, 4, 3), np.float32), fps=25.0)
    with pytest.raises(VSSFlowError, match="duration"):
        generate(bundle, frames=frames_by_index(10), fps=25.0, duration_s=2.0)
    with pytest.raises(VSSFlowError, match="no video"):
        generate(bundle)


def test_load_bundle_errors(tmp_path):
    with pytest.raises(VSSFlowError, match="not found"):
        load_bundle(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(VSSFlowError, match="safetensors"):
        load_bundle(bad)


def test_official_layout_without_extractor_weights_warns_and_runs(tmp_path):
    official = load_bundle(make_model_file(tmp_path / "official.safetensors", "official", duration_s=2.0))
    with pytest.warns(UserWarning, match="features unavailable"):
        audio, sr = generate(official, frames=frames_by_index(40), fps=25.0, steps=1, text="hello",
                             speech_start_s=0.2, speech_end_s=1.4)
    assert audio.shape == (1, 1, num_frames(1.6, sr))


def test_every_window_is_sampled_at_the_trained_length(bundle, monkeypatch):
    """A short clip and the short last window are padded to the model's window (as in training)."""
    seen = []
    real_encode = bundle.model.encode_conditions

    def encode(latent_length=None, **features):
        seen.append((latent_length, {k: tuple(v.shape) for k, v in features.items()}))
        return real_encode(latent_length=latent_length, **features)

    monkeypatch.setattr(bundle.model, "encode_conditions", encode)
    audio, sr = generate(bundle, frames=frames_by_index(80), fps=25.0, steps=1, text="hi there",
                         speech_start_s=0.5, speech_end_s=2.5)  # 3.2 s: windows [0, 2) and [1.76, 3.2)
    assert audio.shape[-1] == num_frames(3.2, sr)
    assert [length for length, _ in seen] == [50, 50]
    for _, shapes in seen:
        assert shapes["motion_feat"] == (1, 50, 256) and shapes["appearance_feat"] == (1, 20, 768)
        assert shapes["phone_id"] == (1, 50)


def test_pad_to_window_zero_pads_sequences_only(bundle):
    from vssflow_core.frontend import pad_to_window

    feats = {"motion_feat": torch.ones(1, 7, 256), "ref_audio_ebd": torch.ones(1, 256),
             "phone_id": torch.ones(1, 60, dtype=torch.long)}
    out = pad_to_window(bundle.config, feats)
    assert out["motion_feat"].shape == (1, 50, 256) and out["motion_feat"][:, 7:].abs().sum() == 0
    assert out["ref_audio_ebd"].shape == (1, 256) and out["phone_id"].shape == (1, 50)


def test_reference_voice_reaches_the_model(bundle, monkeypatch):
    pytest.importorskip("resemblyzer")
    seen = []
    real_encode = bundle.model.encode_conditions

    def encode(latent_length=None, **features):
        seen.append(features.get("ref_audio_ebd"))
        return real_encode(latent_length=latent_length, **features)

    monkeypatch.setattr(bundle.model, "encode_conditions", encode)
    t = torch.arange(16000 * 3) / 16000
    voice = (0.3 * torch.sin(2 * math.pi * 140 * t * (1 + 0.1 * torch.sin(3 * t))))[None], 16000
    generate(bundle, frames=frames_by_index(40), fps=25.0, steps=1, text="hello", speech_start_s=0.1,
             speech_end_s=1.5, voice=voice)
    assert seen and seen[0] is not None and seen[0].shape == (1, 256) and torch.isfinite(seen[0]).all()


def test_automatic_speech_window_comes_from_the_lips_and_says_so():
    """0/0 speech window: found where the mouth moves (1.0-3.0 s here), and reported to the user."""
    from vssflow_core.features.lip_space import lip_features_from_openings
    from vssflow_core.frontend import LipCondition, make_text_condition, phoneme_track

    fps, seconds = 25.0, 4.0
    t = np.arange(int(fps * seconds)) / fps
    speaking = (t >= 1.0) & (t < 3.0)
    inner = np.where(speaking, 0.09 + 0.25 * (0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t)), 0.08)
    raw = lip_features_from_openings(inner, inner + 0.17, np.full_like(inner, 1.0), fps=fps)
    lips = LipCondition(np.asarray(raw, dtype=np.float32), fps)
    with pytest.warns(UserWarning, match="speech window found from the lips"):
        track, (start, end) = phoneme_track(make_text_condition("hello there"), seconds, lips)
    assert abs(start - 1.0) < 0.2 and abs(end - 3.0) < 0.25
    voiced = np.nonzero(track.numpy())[0] / fps
    assert voiced.min() >= start - 0.05 and voiced.max() <= end + 0.05


def test_a_speech_window_cut_by_the_end_of_the_video_is_named_as_the_cause():
    from vssflow_core.frontend import make_text_condition, phoneme_track

    text = make_text_condition("This sentence has quite a few words to say.", 1.5, 6.0)
    with pytest.raises(VSSFlowError, match=r"speech window 1.50-6.00 s runs past the end of the video \(2.00 s\).*"
                                           r"start the speech by 0.\d\d s or shorten the text"):
        phoneme_track(text, 2.0, None)
    track, (start, end) = phoneme_track(make_text_condition("hi", 1.5, 6.0), 2.0, None)  # fits: cut quietly
    assert (start, end) == (1.5, 2.0) and track.numpy()[38:50].any()


def test_loud_audio_is_scaled_not_clipped():
    from vssflow_core.audio.level import PEAK_CEILING, limit_peak

    t = torch.linspace(0, 1, 1000)
    loud = torch.stack([3.0 * torch.sin(40 * t), 0.5 * torch.sin(40 * t)])[:, None]  # [2, 1, S]
    out = limit_peak(loud.clone())
    assert out[0].abs().max() == pytest.approx(PEAK_CEILING)
    assert torch.allclose(out[0] / out[0].abs().max(), loud[0] / loud[0].abs().max())  # shape kept, no flat tops
    assert torch.equal(out[1], loud[1])  # a quiet variation is untouched
    assert torch.equal(limit_peak(torch.zeros(1, 1, 10)), torch.zeros(1, 1, 10))


def test_default_guidance_time_shift_and_noise_scale_depend_on_the_transcript(bundle, monkeypatch):
    """With sound_guidance_scale / sound_time_shift / sound_noise_scale / sound_guidance_rescale set,
    sound-only generation uses them and speech keeps guidance_scale / time_shift / noise_scale /
    guidance_rescale; an explicit guidance wins over both (and keeps the model's rescale). The noise
    scale multiplies the same seeded noise."""
    import dataclasses

    cfg = dataclasses.replace(bundle.config, guidance_scale=3.0, sound_guidance_scale=1.5, time_shift=2.5,
                              sound_time_shift=2.0, noise_scale=0.5, sound_noise_scale=1.0, sound_guidance_rescale=0.7)
    shifted = dataclasses.replace(bundle, config=cfg)
    seen, noises = [], []
    real_sample = bundle.model.sample

    def sample(*args, **kwargs):
        seen.append((kwargs["guidance_scale"], kwargs["time_shift"], kwargs["guidance_rescale"]))
        noises.append(args[0].clone())
        assert kwargs["x_range"] == bundle.codec.latent_range
        return real_sample(*args, **kwargs)

    monkeypatch.setattr(bundle.model, "sample", sample)
    generate(shifted, frames=frames_by_index(40), fps=25.0, steps=1)
    generate(shifted, frames=frames_by_index(40), fps=25.0, steps=1, text="hello", speech_start_s=0.1, speech_end_s=1.5)
    generate(shifted, frames=frames_by_index(40), fps=25.0, steps=1, guidance=4.0)
    # an explicit rescale wins over the task's default, 0 included (plain guidance)
    generate(shifted, frames=frames_by_index(40), fps=25.0, steps=1, guidance_rescale=0.0)
    generate(shifted, frames=frames_by_index(40), fps=25.0, steps=1, text="hello", speech_start_s=0.1,
             speech_end_s=1.5, guidance_rescale=0.5)
    assert seen == [(1.5, 2.0, 0.7), (3.0, 2.5, 0.0), (4.0, 2.0, 0.7), (1.5, 2.0, 0.0), (3.0, 2.5, 0.5)]
    torch.testing.assert_close(noises[1], noises[0] * 0.5)  # speech: the same noise at half its scale
    torch.testing.assert_close(noises[2], noises[0])


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.5", True])
def test_guidance_rescale_out_of_range_is_refused_before_sampling(bundle, monkeypatch, bad):
    called = []
    monkeypatch.setattr(bundle.model, "sample", lambda *a, **k: called.append(1))
    with pytest.raises(VSSFlowError, match="guidance rescale must be a number from 0"):
        generate(bundle, frames=frames_by_index(40), fps=25.0, steps=1, guidance_rescale=bad)
    assert not called


@pytest.mark.parametrize("fps", [16.0, 24000 / 1001, 30000 / 1001])
def test_scan_lips_measures_a_video_below_25_fps_at_its_own_rate(monkeypatch, fps):
    """Below 25 fps the mouth is measured once per source picture, at its own time (no picture read
    twice), over several windows whose rows continue one another (a 23.976 fps window holds whole
    frames); at 25 fps and above it is measured at 25 Hz. The stand-in detector reports each frame's
    index (its brightness) as the mouth opening."""
    from types import SimpleNamespace

    from vssflow_core import frontend, pipeline
    from vssflow_core.video_source import open_video

    def by_brightness(frames, rate, face, **_):
        feats = np.zeros((len(frames), 6), np.float32)
        feats[:, 0], feats[:, 5] = frames[:, 0, 0, 0], 1.0
        return LipCondition(feats, rate, 0.0, SimpleNamespace(preview=np.zeros((0, 1, 1, 3), np.uint8),
                                                              face_box=None))

    monkeypatch.setattr(frontend, "extract_lip_condition", by_brightness)
    n = int(7.3 * fps)  # several 2 s windows, the last one short
    lips, _ = pipeline.scan_lips(open_video(frames=frames_by_index(n), fps=fps), 2.0, require_face=True)
    rate = min(25.0, fps)
    assert lips.fps == rate
    shown = frontend.frame_shown_at(np.arange(num_frames(n / fps, rate)) / rate, fps)
    np.testing.assert_array_equal(lips.features[:, 0], shown)
    if fps < 25:
        np.testing.assert_array_equal(shown, np.arange(n))


def test_scan_lips_follows_one_face_from_window_to_window(monkeypatch):
    """Each window starts from the face box the previous one ended on, so the speaker cannot switch
    at a window boundary (the stand-in reports a new box per window)."""
    from types import SimpleNamespace

    from vssflow_core import frontend, pipeline
    from vssflow_core.video_source import open_video

    given = []

    def stand_in(frames, rate, face, follow_box=None, **_):
        given.append(follow_box)
        feats = np.zeros((len(frames), 6), np.float32)
        feats[:, 5] = 1.0
        box = (float(len(given)), 0.0, 10.0, 10.0)
        return LipCondition(feats, rate, 0.0, SimpleNamespace(preview=np.zeros((0, 1, 1, 3), np.uint8), face_box=box))

    monkeypatch.setattr(frontend, "extract_lip_condition", stand_in)
    pipeline.scan_lips(open_video(frames=frames_by_index(150), fps=25.0), 2.0, require_face=True)
    assert given == [None, (1.0, 0.0, 10.0, 10.0), (2.0, 0.0, 10.0, 10.0)]


def test_scan_lips_warns_and_goes_on_when_mediapipe_is_installed_but_unusable(monkeypatch):
    """The Sampler's own lip scan (require_face=False) turns a broken mediapipe (e.g. protobuf 5
    under mediapipe 0.10) into a warning; the Extract node (require_face=True) still raises."""
    from vssflow_core import pipeline
    from vssflow_core.features import face_landmarks, lips
    from vssflow_core.video_source import open_video

    def broken(*args, **kwargs):
        raise VSSFlowError("Lip extraction needs mediapipe (face landmarks), which is not usable here (protobuf).")

    monkeypatch.setattr(face_landmarks, "make_backend", broken)
    monkeypatch.setattr(lips, "make_backend", broken)
    with pytest.warns(UserWarning, match="without lip sync: Lip extraction needs mediapipe.*not usable"):
        found, preview = pipeline.scan_lips(open_video(frames=frames_by_index(50), fps=25.0), 2.0)
    assert found is None and len(preview) == 0
    with pytest.raises(VSSFlowError, match="not usable"):
        pipeline.scan_lips(open_video(frames=frames_by_index(50), fps=25.0), 2.0, require_face=True)


def test_a_reference_voice_without_resemblyzer_is_ignored_with_a_warning(monkeypatch):
    """The embedded model embeds a reference voice with resemblyzer; where it is not installed the
    voice is dropped with a warning that says what to install, instead of failing the Sampler."""
    import importlib.util

    from vssflow_core.embedded import embedded_config
    from vssflow_core.frontend import speaker_from_voice

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "resemblyzer" else real_find_spec(name, *a))
    with pytest.warns(UserWarning, match="reference voice is ignored.*pip install --no-deps resemblyzer"):
        assert speaker_from_voice(embedded_config(), (np.zeros((1, 16000), np.float32), 16000)) is None


def test_a_speech_window_after_the_end_of_the_video_is_refused_before_the_lips_are_scanned(bundle, monkeypatch):
    from vssflow_core import pipeline

    scanned = []
    monkeypatch.setattr(pipeline, "scan_lips", lambda *a, **k: scanned.append(1))
    with pytest.raises(VSSFlowError, match=r"speech window starts at 2\.00 s but the video lasts 1\.60 s"):
        generate(bundle, frames=frames_by_index(40), fps=25.0, steps=1, text="hello", speech_start_s=2.0,
                 speech_end_s=3.0)
    assert not scanned
