"""Every node's execute, without the ComfyUI server (the nodes' import shim), on a tiny random model
and generated media."""
import math
import os
from fractions import Fraction

import numpy as np
import pytest
import torch

from vssflow_core.errors import VSSFlowError
from vssflow_core.frontend import LipCondition, TextCondition, num_frames

import media_factory
from tiny_models import make_model_file, one_thread

import nodes  # the pack's nodes/ package (repo root on sys.path)
from nodes import _comfy, _convert, loader
from nodes.conditions import VSSFlowExtractLipFeatures, VSSFlowTextCondition
from nodes.loader import EMBEDDED, VSSFlowModelLoader
from nodes.sampler import VSSFlowSampler
from nodes.video import VSSFlowLoadVideo, VSSFlowMuxAudio

_one_thread = pytest.fixture(scope="module", autouse=True)(one_thread)


@pytest.fixture
def comfy_dirs(tmp_path, monkeypatch):
    dirs = {k: tmp_path / k for k in ("input", "output", "temp", _comfy.MODEL_FOLDER)}
    for d in dirs.values():
        d.mkdir()
    monkeypatch.setattr(_comfy, "FALLBACK_DIRS", dirs)
    monkeypatch.setattr(loader, "_CACHE", {})
    return dirs


@pytest.fixture
def model(comfy_dirs):
    make_model_file(comfy_dirs[_comfy.MODEL_FOLDER] / "tiny.safetensors", "embedded", duration_s=2.0)
    return VSSFlowModelLoader.execute("tiny.safetensors", "cpu", "fp32")[0]


def test_all_six_nodes_have_schemas_with_tooltips(comfy_dirs):
    ids = []
    for node in nodes.NODES:
        schema = node.define_schema()
        ids.append(schema.node_id)
        assert schema.kwargs["category"] == "audio/VSSFlow"
        for item in schema.inputs + schema.outputs:
            assert item.kwargs.get("tooltip"), f"{schema.node_id}.{item.id} has no tooltip"
            if str(item.id).endswith("_s"):  # the frontend rounds a value to its step: times must be frame-exact
                assert item.kwargs["step"] <= 0.01, f"{schema.node_id}.{item.id} step {item.kwargs['step']}"
    assert ids == ["VSSFlowModelLoader", "VSSFlowLoadVideo", "VSSFlowExtractLipFeatures", "VSSFlowTextCondition",
                   "VSSFlowSampler", "VSSFlowMuxAudio"]


def test_model_loader_lists_loads_and_caches(comfy_dirs, model):
    options = VSSFlowModelLoader.define_schema().inputs[0].kwargs["options"]
    assert options == [EMBEDDED, "tiny.safetensors"]
    assert model.bundle.config.name == "tiny-embedded" and model.patcher is None
    assert VSSFlowModelLoader.execute("tiny.safetensors", "cpu", "fp32")[0] is model
    with pytest.raises(VSSFlowError, match=r"'gone.safetensors' not found in .*models/vssflow|not found in"):
        VSSFlowModelLoader.execute("gone.safetensors", "cpu", "fp32")
    outside = comfy_dirs["input"] / "elsewhere.safetensors"  # a real model file, outside the model folder
    outside.write_bytes((comfy_dirs[_comfy.MODEL_FOLDER] / "tiny.safetensors").read_bytes())
    for name, problem in ((str(outside), "is absolute"), ("../input/elsewhere.safetensors", "contains '..'")):
        with pytest.raises(VSSFlowError, match=problem):
            VSSFlowModelLoader.execute(name, "cpu", "fp32")
    (comfy_dirs[_comfy.MODEL_FOLDER] / "broken.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(VSSFlowError, match="safetensors"):
        VSSFlowModelLoader.execute("broken.safetensors", "cpu", "fp32")
    if not torch.cuda.is_available():  # named at the Loader, not as a KeyError deep in ComfyUI at the Sampler
        with pytest.raises(VSSFlowError, match="VSSFlowModelLoader: device 'cuda': this torch sees no CUDA GPU; use auto or cpu"):
            VSSFlowModelLoader.execute("tiny.safetensors", "cuda", "fp32")


def test_load_video_whole_file_and_window(comfy_dirs):
    media_factory.make_video(comfy_dirs["input"] / "clip.mp4", fps=30000 / 1001, duration_s=2.0, audio="tone")
    assert "clip.mp4" in VSSFlowLoadVideo.define_schema().inputs[0].kwargs["options"]
    images, fps, audio, duration, video = VSSFlowLoadVideo.execute("clip.mp4").args
    assert images.dtype == torch.float32 and images.shape[-1] == 3 and 0 <= images.min() and images.max() <= 1
    assert fps == pytest.approx(30000 / 1001) and duration == pytest.approx(images.shape[0] / fps, abs=0.04)
    assert audio["waveform"].dim() == 3 and audio["sample_rate"] == 16000
    assert video.get_stream_source().endswith("clip.mp4")

    images, fps, audio, duration, video = VSSFlowLoadVideo.execute("clip.mp4", start_s=1.0, duration_s=0.5,
                                                                   fps=10.0).args
    assert fps == 10.0 and images.shape[0] == 5 and duration == pytest.approx(0.5)
    first = (images[0].numpy() * 255).round().astype(np.uint8)
    assert media_factory.decode_index(first) == math.floor(1.0 * 30000 / 1001 + 1e-6)  # frame shown at 1.0 s
    assert audio["waveform"].shape[-1] == round(0.5 * 16000)
    assert video.get_components().images.shape[0] == 5

    with pytest.raises(VSSFlowError, match="outside the video"):
        VSSFlowLoadVideo.execute("clip.mp4", start_s=5.0)
    assert "not found" in VSSFlowLoadVideo.validate_inputs("nope.mp4")
    assert VSSFlowLoadVideo.validate_inputs("clip.mp4") is True
    assert VSSFlowLoadVideo.validate_inputs("nope.mp4", input_types={"video_in": "VIDEO"}) is True  # file unused
    assert "needs a VIDEO, got IMAGE" in VSSFlowLoadVideo.validate_inputs("clip.mp4", input_types={"video_in": "IMAGE"})


def test_load_video_refuses_a_part_that_does_not_fit_in_memory(comfy_dirs, monkeypatch):
    media_factory.make_video(comfy_dirs["input"] / "big.mp4", fps=25.0, duration_s=2.0)
    frames, height, width = 50, 48, 96  # what the file holds (media_factory's default size)
    need = frames * height * width * 3 * 5
    monkeypatch.setattr(_comfy, "free_memory_bytes", lambda: int(need / 0.8) - 1)
    with pytest.raises(VSSFlowError, match=r"50 frames of 96x48 px.*duration_s, max_frames.*Sampler"):
        VSSFlowLoadVideo.execute("big.mp4")
    assert VSSFlowLoadVideo.execute("big.mp4", duration_s=1.0).args[0].shape[0] == 25  # half fits
    monkeypatch.setattr(_comfy, "free_memory_bytes", lambda: None)  # unknown: no check
    assert VSSFlowLoadVideo.execute("big.mp4").args[0].shape[0] == frames


def test_load_video_fingerprint_is_stable_without_its_file(comfy_dirs):
    """A shared workflow names a file this input folder lacks and feeds video_in instead: the
    fingerprint must equal itself, or ComfyUI re-runs the chain (and writes a new mp4) every queue."""
    assert VSSFlowLoadVideo.fingerprint_inputs("gone.mp4") == VSSFlowLoadVideo.fingerprint_inputs("gone.mp4")
    path = media_factory.make_video(comfy_dirs["input"] / "here.mp4", fps=25.0, duration_s=0.4)
    first = VSSFlowLoadVideo.fingerprint_inputs("here.mp4")
    assert first[0] == "here.mp4" and first[2] == path.stat().st_size


def test_loader_fingerprint_follows_the_files_size_and_time(comfy_dirs):
    """A model file replaced by another of a different size is seen as changed (as the loader's own
    cache sees it), even when the copy kept the modification time; a missing file is stable."""
    path = comfy_dirs[_comfy.MODEL_FOLDER] / "m.safetensors"
    path.write_bytes(b"a" * 10)
    os.utime(path, (1_000_000, 1_000_000))
    first = VSSFlowModelLoader.fingerprint_inputs("m.safetensors")
    path.write_bytes(b"a" * 11)
    os.utime(path, (1_000_000, 1_000_000))
    assert VSSFlowModelLoader.fingerprint_inputs("m.safetensors") != first
    assert VSSFlowModelLoader.fingerprint_inputs("gone.safetensors")[-1] is None


def test_load_video_refuses_paths_outside_the_input_folder(comfy_dirs, tmp_path):
    """A prompt sent through the API can carry any string as the file name: it must stay in input/."""
    secret = media_factory.make_video(tmp_path / "secret.mp4", fps=25.0, duration_s=0.4)
    (comfy_dirs["input"] / "link.mp4").symlink_to(secret)
    for name in (str(secret), "../secret.mp4", "link.mp4"):
        message = VSSFlowLoadVideo.validate_inputs(name)
        assert message is not True and "VSSFlowLoadVideo" in message and str(name) in message
        with pytest.raises(VSSFlowError, match="absolute|'..'|outside"):
            VSSFlowLoadVideo.execute(name)
        assert VSSFlowLoadVideo.fingerprint_inputs(name) == (name, None)  # nothing read from outside input/


class _TrimmedVideo(_comfy.InputImpl.VideoFromFile):
    """A file VIDEO trimmed after loading, as newer ComfyUI's Trim Video makes: its stream source is
    still the whole file; get_components() gives the trimmed part only."""

    def __init__(self, path, start_s, duration_s):
        super().__init__(path)
        self.window = (start_s, duration_s)

    def get_active_trim_window(self):
        return self.window

    def get_components(self):
        from vssflow_core.video_clip import load_clip

        clip = load_clip(self.get_stream_source(), *self.window)
        images = torch.from_numpy(clip.frames).float() / 255
        audio = {"waveform": clip.audio[None], "sample_rate": clip.sample_rate}
        return _comfy.Types.VideoComponents(images=images, frame_rate=Fraction(clip.fps), audio=audio)


def test_trimmed_video_is_used_as_trimmed(comfy_dirs, model):
    src = media_factory.make_video(comfy_dirs["input"] / "long.mp4", fps=25.0, duration_s=2.0, audio="tone")
    trimmed = _TrimmedVideo(str(src), 0.4, 0.8)
    assert _convert.video_file(trimmed) is None and _convert.video_file(_TrimmedVideo(str(src), 0, 0)) == str(src)
    images, fps, _, duration, _ = VSSFlowLoadVideo.execute("long.mp4", video_in=trimmed).args
    assert duration == pytest.approx(0.8) and images.shape[0] == 20
    first = (images[0].numpy() * 255).round().astype(np.uint8)
    assert media_factory.decode_index(first) == 10  # the frame shown at 0.4 s
    audio = VSSFlowSampler.execute(model, video=trimmed, steps=1)[0]
    assert audio["waveform"].shape == (1, 1, num_frames(0.8, 16000))
    out = VSSFlowMuxAudio.execute(audio, video=trimmed, filename_prefix="trim")[0]
    from vssflow_core.media.video import probe_video

    assert probe_video(out.get_stream_source()).duration_s == pytest.approx(0.8, abs=0.05)


def test_load_video_silence_for_silent_video(comfy_dirs):
    media_factory.make_video(comfy_dirs["input"] / "mute.mp4", fps=25.0, duration_s=1.0)
    images, fps, audio, duration, _ = VSSFlowLoadVideo.execute("mute.mp4").args
    assert audio["waveform"].abs().sum() == 0 and audio["waveform"].shape[-1] == num_frames(duration, 44100)


def test_text_condition(comfy_dirs):
    voice = {"waveform": torch.randn(1, 2, 8000) * 0.1, "sample_rate": 16000}
    text = VSSFlowTextCondition.execute("Hello there, friend.", 0.5, 2.0, voice)[0]
    assert isinstance(text, TextCondition) and text.speech_end_s == 2.0 and text.voice[0].shape == (2, 8000)
    with pytest.raises(VSSFlowError, match="VSSFlowTextCondition: transcript is empty"):
        VSSFlowTextCondition.execute("   ")
    with pytest.raises(VSSFlowError, match="after its start"):
        VSSFlowTextCondition.execute("hi", 2.0, 1.0)
    # caught in this node, where the user typed them, not later in the Sampler
    with pytest.raises(VSSFlowError, match="VSSFlowTextCondition: transcript '...!' has no words to speak"):
        VSSFlowTextCondition.execute("...!")
    with pytest.raises(VSSFlowError, match="VSSFlowTextCondition: transcript: only English text"):
        VSSFlowTextCondition.execute("Привет мир")
    with pytest.raises(VSSFlowError, match=r"VSSFlowTextCondition: transcript too long.*Widen the window to at least"):
        VSSFlowTextCondition.execute("This sentence has far too many words for a quarter second.", 1.0, 1.25)
    assert VSSFlowTextCondition.execute("This sentence has far too many words for a quarter second.")[0].automatic_window
    bad = {"waveform": torch.full((1, 1, 800), float("nan")), "sample_rate": 16000}
    with pytest.raises(VSSFlowError, match="NaN"):
        VSSFlowTextCondition.execute("hello", 0.0, 0.0, bad)
    with pytest.raises(VSSFlowError, match="sample rate 0"):
        VSSFlowTextCondition.execute("hello", 0.0, 0.0, {"waveform": torch.zeros(1, 1, 800), "sample_rate": 0})


def test_extract_lip_features_on_a_rendered_face(comfy_dirs):
    pytest.importorskip("mediapipe")
    from media_factory import render_talking_face

    openings = np.sin(np.arange(20) / 3.0)
    frames = render_talking_face(openings, size=192)
    images = torch.from_numpy(frames).float() / 255.0
    lips, preview = VSSFlowExtractLipFeatures.execute(images, 25.0, "largest").args
    assert isinstance(lips, LipCondition) and lips.features.shape == (20, 6) and lips.fps == 25.0
    assert lips.features[:, 5].min() == 1.0  # found in every frame
    assert preview.shape[0] == 20 and preview.dtype == torch.float32
    blank = torch.full((5, 64, 64, 3), 0.5)
    with pytest.raises(VSSFlowError, match="no face"):
        VSSFlowExtractLipFeatures.execute(blank, 25.0, "largest")
    with pytest.raises(VSSFlowError, match=r"face 3 \(counting from 0, left to right\) not found.*fewer than 4 faces"):
        VSSFlowExtractLipFeatures.execute(images, 25.0, "3")


def test_extract_lip_features_reads_a_video_file_window_by_window(comfy_dirs, monkeypatch):
    """A loaded VIDEO is not decoded whole (a long HD video would not fit in memory): it is read
    in windows, and the preview is thinned to a fixed number of frames."""
    pytest.importorskip("mediapipe")
    from nodes import conditions
    from media_factory import render_talking_face
    from vssflow_core.media.encode import write_video

    openings = np.sin(np.arange(30) / 3.0)
    path = write_video(comfy_dirs["input"] / "face.mp4", render_talking_face(openings, size=192), 25.0)
    video = _comfy.InputImpl.VideoFromFile(str(path))
    monkeypatch.setattr(video, "get_components", lambda: pytest.fail("the whole video was decoded"), raising=False)
    monkeypatch.setattr(conditions, "SCAN_WINDOW_S", 0.4)  # 3 windows of 10 frames
    monkeypatch.setattr(conditions, "PREVIEW_MAX_FRAMES", 7)
    lips, preview = VSSFlowExtractLipFeatures.execute(None, 25.0, "largest", video).args
    assert isinstance(lips, LipCondition) and lips.features.shape == (30, 6) and lips.fps == 25.0
    assert lips.features[:, 5].min() == 1.0  # found in every frame
    opening = lips.features[:, 0]
    assert np.corrcoef(opening, openings)[0, 1] > 0.9  # the mouth follows the rendered opening
    assert preview.shape[0] == 6 and preview.dtype == torch.float32  # every 5th frame of 30, at most 7


def test_sampler_images_and_video(comfy_dirs, model):
    images = torch.from_numpy(np.stack([media_factory.pattern_frame(i, i / 24.0) for i in range(60)])).float() / 255
    text = VSSFlowTextCondition.execute("a cat sat", 0.2, 2.0)[0]
    audio = VSSFlowSampler.execute(model, images=images, fps=24.0, text=text, seed=3, steps=1, variations=2)[0]
    assert audio["sample_rate"] == 16000 and audio["waveform"].shape == (2, 1, num_frames(2.5, 16000))

    path = media_factory.make_video(comfy_dirs["input"] / "v.mp4", fps=25.0, duration_s=1.2)
    video = _comfy.InputImpl.VideoFromFile(str(path))
    audio = VSSFlowSampler.execute(model, video=video, steps=1)[0]
    assert audio["waveform"].shape == (1, 1, num_frames(1.2, 16000))
    with pytest.warns(UserWarning, match="VSSFlowSampler: both IMAGE frames and a VIDEO are connected; using the VIDEO"):
        audio = VSSFlowSampler.execute(model, images=images, fps=24.0, video=video, steps=1)[0]
    assert audio["waveform"].shape == (1, 1, num_frames(1.2, 16000))
    with pytest.raises(VSSFlowError, match="connect IMAGE"):
        VSSFlowSampler.execute(model)


def test_sampler_guidance_rescale_is_last_optional_and_minus_one_means_the_models(comfy_dirs, model, monkeypatch):
    """The rescale widget comes last and is optional, so a workflow saved before it existed keeps its
    widget order and its API prompt still validates; -1 hands the choice to the model file."""
    from vssflow_core import pipeline

    schema = VSSFlowSampler.define_schema()
    last = schema.inputs[-1]
    assert last.id == "guidance_rescale" and last.kwargs["optional"] and last.kwargs["default"] == -1.0
    seen = []
    real = pipeline.generate
    monkeypatch.setattr(pipeline, "generate", lambda *a, **k: seen.append(k["guidance_rescale"]) or real(*a, **k))
    images = torch.from_numpy(np.stack([media_factory.pattern_frame(i, i / 25.0) for i in range(30)])).float() / 255
    VSSFlowSampler.execute(model, images=images, steps=1)
    VSSFlowSampler.execute(model, images=images, steps=1, guidance=4.0, guidance_rescale=0.0)
    VSSFlowSampler.execute(model, images=images, steps=1, guidance=4.0, guidance_rescale=0.6)
    assert seen == [None, 0.0, 0.6]


def test_mux_audio_file_and_images(comfy_dirs):
    from vssflow_core.media.video import probe_video, read_audio

    src = media_factory.make_video(comfy_dirs["input"] / "m.mp4", fps=25.0, duration_s=1.0, audio="clicks",
                                   click_times_s=(0.5,))  # the video's own sound: a click at 0.5 s
    clicks = media_factory.click_track(1.0, 16000, (0.3,))  # the new sound: a click at 0.3 s
    audio = {"waveform": torch.from_numpy(np.stack([clicks, clicks])), "sample_rate": 16000}
    video = _comfy.InputImpl.VideoFromFile(str(src))
    out1 = VSSFlowMuxAudio.execute(audio, video=video, filename_prefix="VSSFlow/t")
    out2 = VSSFlowMuxAudio.execute(audio, video=video, filename_prefix="VSSFlow/t", mode="mix", variation=1)
    out3 = VSSFlowMuxAudio.execute(audio, video=video, filename_prefix="VSSFlow/t", mode="mix", original_gain=0.0)
    files = sorted((comfy_dirs["output"] / "VSSFlow").iterdir())
    assert [f.name for f in files] == ["t_00001_.mp4", "t_00002_.mp4", "t_00003_.mp4"]
    assert out1[0].get_stream_source() == str(files[0])
    assert out1.ui.as_dict()["images"][0]["filename"] == "t_00001_.mp4"
    assert out1.ui.as_dict()["images"][0]["subfolder"] == "VSSFlow"
    info = probe_video(files[0])
    assert info.has_audio and info.duration_s == pytest.approx(1.0, abs=0.05)
    heard = []
    for out, path in zip((out1, out2, out3), files):
        assert out[0].get_stream_source() == str(path)
        wave, sr = read_audio(path)
        heard.append([round(t, 2) for t in media_factory.find_clicks(wave, sr)])
    assert heard == [[0.3], [0.3, 0.5], [0.3]]  # replace; mix; mix with the video's sound at gain 0

    images = torch.rand(10, 32, 48, 3)
    VSSFlowMuxAudio.execute(audio, images=images, fps=10.0, filename_prefix="img")
    assert (comfy_dirs["output"] / "img_00001_.mp4").is_file()
    assert not [p for p in comfy_dirs["output"].rglob("*") if p.name.startswith(".")]  # no temp left
    with pytest.raises(VSSFlowError, match="variation 5 does not exist"):
        VSSFlowMuxAudio.execute(audio, video=video, variation=5)
    with pytest.raises(VSSFlowError, match="connect a VIDEO"):
        VSSFlowMuxAudio.execute(audio)
    import time

    year = time.localtime().tm_year  # the server-side variables of core save nodes
    out = VSSFlowMuxAudio.execute(audio, images=images, fps=10.0, filename_prefix="d/%year%/c_%width%x%height%")[0]
    assert out.get_stream_source() == str(comfy_dirs["output"] / "d" / str(year) / "c_48x32_00001_.mp4")


def test_mux_audio_stores_the_workflow_like_core_save_video(comfy_dirs, monkeypatch):
    """Dropping the mp4 on ComfyUI restores the graph: prompt and workflow are container tags."""
    import json
    from types import SimpleNamespace

    import av

    src = media_factory.make_video(comfy_dirs["input"] / "w.mp4", fps=25.0, duration_s=0.6)
    audio = {"waveform": torch.zeros(1, 1, 8000) + 0.1, "sample_rate": 16000}
    prompt = {"7": {"class_type": "VSSFlowMuxAudio", "inputs": {"filename_prefix": "wf"}}}
    workflow = {"nodes": [{"id": 7, "type": "VSSFlowMuxAudio"}], "links": []}
    hidden = SimpleNamespace(prompt=prompt, extra_pnginfo={"workflow": workflow}, unique_id="7")
    monkeypatch.setattr(VSSFlowMuxAudio, "hidden", hidden, raising=False)
    for kwargs in ({"video": _comfy.InputImpl.VideoFromFile(str(src))}, {"images": torch.rand(5, 32, 48, 3)}):
        out = VSSFlowMuxAudio.execute(audio, filename_prefix="wf", **kwargs)[0].get_stream_source()
        with av.open(out) as container:
            tags = container.metadata
        assert json.loads(tags["prompt"]) == prompt and json.loads(tags["workflow"]) == workflow
