"""Official feature extractors (CLIP ViT-B/16 visual, Synchformer, RawNet3) vs the fixtures made with
the official code (reduced widths, random weights). Measured: CLIP tokens 7e-7, Synchformer 6e-8,
RawNet3 8e-7 (all within atol 1e-5)."""
import numpy as np
import pytest
import torch

from vssflow_core.audio.codec import split_prefixed
from vssflow_core.errors import VSSFlowError
from vssflow_core.features.official import clip as oclip
from vssflow_core.features.official import rawnet3 as orn
from vssflow_core.features.official import synchformer as osync

def _load(official_fixtures, name):
    from safetensors.torch import load_file

    return load_file(str(official_fixtures / f"{name}.safetensors"))


def _frames(T, offset, H=224, W=224):
    t, y, x, c = np.meshgrid(np.arange(T), np.arange(H), np.arange(W), np.arange(3), indexing="ij")
    return ((x * (c + 1) * 3 + y * 5 + t * 17 + (x // 8) * (y // 8) * 13 + offset) % 256).astype(np.uint8)


# ---------------------------------------------------------------- CLIP
@pytest.fixture(scope="module")
def clip_fx(official_fixtures):
    return _load(official_fixtures, "clip")


@pytest.fixture(scope="module")
def clip_enc(clip_fx):
    return oclip.ClipImageEncoder.from_state_dict(clip_fx)  # weights.visual.* accepted


def test_clip_frames_formula_matches_fixture(clip_fx):
    assert np.array_equal(_frames(2, 29), clip_fx["input.frames_uint8"].numpy())


def test_clip_tokens_and_cls_match(clip_enc, clip_fx):
    pixels = oclip.preprocess_frames(clip_fx["input.frames_uint8"].numpy())
    with torch.no_grad():
        tokens = clip_enc(pixels)
        ln = clip_enc.visual.ln_post(tokens[:, 0])
    assert tokens.shape == (2, 197, 128) and clip_enc.visual.transformer.resblocks[0].attn.num_heads == 2
    torch.testing.assert_close(tokens, clip_fx["output.tokens"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(clip_enc.encode_cls(pixels), clip_fx["output.extract_clip_feature"][0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ln, clip_fx["output.vaflow_encode_image"][0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ln @ clip_enc.visual.proj, clip_fx["output.vaflow_encode_image_proj"][0], atol=1e-5, rtol=1e-4)


def test_clip_features_sampling_and_black_padding(clip_enc, clip_fx):
    frames = clip_fx["input.frames_uint8"].numpy()
    feats = oclip.clip_features(clip_enc, frames, source_fps=10.0, duration_s=0.4)
    assert feats.shape == (4, 128)
    torch.testing.assert_close(feats[:2], clip_fx["output.extract_clip_feature"][0], atol=1e-5, rtol=1e-4)
    assert torch.equal(feats[2], feats[3]) and feats[2].abs().sum() > 0  # black frames: non-zero features
    assert oclip.official_frame_indices(300, 30.0)[:4] == [0, 3, 6, 9]
    assert oclip.official_frame_indices(12, 25.0, duration_s=1.0) == [0, 2, 5, 8, 10]  # round(2.5)=2, drops >11
    assert oclip.preprocess_frames(np.zeros((1, 90, 160, 3), np.uint8)).shape == (1, 3, 224, 224)


def test_clip_loads_from_vssflow_checkpoint(official_fixtures):
    t = split_prefixed(_load(official_fixtures, "vaflow_condition"), "weights.")
    enc = oclip.ClipImageEncoder.from_state_dict(t)  # image_encoder.visual.*, other models' keys ignored
    assert enc.width == 64
    assert enc.encode_cls(torch.zeros(1, 3, 224, 224)).shape == (1, 64)


def test_clip_bad_input(clip_enc, clip_fx):
    sd = dict(clip_fx)
    del sd["weights.visual.ln_pre.bias"]
    with pytest.raises(VSSFlowError, match=r"missing 1 keys: visual\.ln_pre\.bias"):
        oclip.ClipImageEncoder.from_state_dict(sd)
    with pytest.raises(VSSFlowError, match="visual.conv1.weight"):
        oclip.ClipImageEncoder.from_state_dict({"foo": torch.zeros(1)})
    with pytest.raises(VSSFlowError, match=r"\[N, 3, 224, 224\]"):
        clip_enc(torch.zeros(1, 3, 200, 200))
    with pytest.raises(VSSFlowError, match="uint8"):
        oclip.clip_features(clip_enc, np.zeros((2, 8, 8, 3), np.float32), 10.0)


# ---------------------------------------------------------------- Synchformer
@pytest.fixture(scope="module")
def sync_fx(official_fixtures):
    return _load(official_fixtures, "synchformer")


def test_synchformer_matches(sync_fx):
    model = osync.SynchformerVisual.from_state_dict(sync_fx, heads=2)
    frames = _frames(24, 58)
    assert int(frames.astype(np.int64).sum()) == 460772608
    x = osync.preprocess_frames(frames, duration_s=None)
    out = osync.encode_video(model, x[None])
    assert out.shape == (1, 2, 8, 64)
    torch.testing.assert_close(out, sync_fx["output.sync_features"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out[:, :1], sync_fx["output.segment0_features"], atol=1e-5, rtol=1e-4)


def test_synchformer_preprocess_pads_and_crops():
    frames = np.full((3, 120, 160, 3), 255, np.uint8)
    x = osync.preprocess_frames(frames, duration_s=0.2)  # 5 frames: 3 real + 2 black
    assert x.shape == (5, 3, 224, 224)
    assert torch.allclose(x[:3], torch.ones(1)) and torch.equal(x[3:], -torch.ones_like(x[3:]))


def test_synchformer_bad_input(sync_fx):
    sd = {k: v for k, v in sync_fx.items() if "spatial_attn_agg.norm2" not in k}
    with pytest.raises(VSSFlowError, match=r"vfeat_extractor\.spatial_attn_agg\.norm2\.bias"):
        osync.SynchformerVisual.from_state_dict(sd, heads=2)
    model = osync.SynchformerVisual.from_state_dict(sync_fx, heads=2)
    with pytest.raises(VSSFlowError, match="T>=16"):
        osync.encode_video(model, torch.zeros(1, 8, 3, 224, 224))
    with pytest.raises(VSSFlowError, match=r"\[B, S, 16, 3, 224, 224\]"):
        model(torch.zeros(1, 1, 16, 3, 112, 112))


# ---------------------------------------------------------------- RawNet3
@pytest.fixture(scope="module")
def rn_fx(official_fixtures):
    return _load(official_fixtures, "rawnet3")


@pytest.fixture(scope="module")
def rawnet(rn_fx):
    return orn.RawNet3.from_state_dict(rn_fx)


def test_rawnet3_windows():
    audio = torch.arange(64000, dtype=torch.float32)
    w = orn.official_windows(audio)
    starts = [int(s) for s in np.linspace(0, 16000, 10)]
    assert w.shape == (10, 48000) and [int(r[0]) for r in w] == starts
    short = orn.official_windows(torch.arange(32000, dtype=torch.float32))
    assert short.shape == (10, 48000) and int(short[0, 32000]) == 0 and int(short[-1, 0]) == 1 and int(short[-1, -1]) == 16000  # wrapped to 48001


def test_rawnet3_embeddings_match(rawnet, rn_fx):
    assert rawnet.fc6.out_features == 256 and rawnet.layer1.conv3.out_channels == 64
    # 2 of the 10 windows (linspace(0, 16000, 2) = windows 0 and 9 of the official 10)
    m = orn.speaker_embedding(rawnet, rn_fx["input.audio_long"][None], n_windows=2)
    torch.testing.assert_close(m, rn_fx["output.embd_long"][[0, 9]].mean(0), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(rn_fx["output.embd_long"].mean(0), rn_fx["output.ref_audio_ebd_long"], atol=1e-6, rtol=0)
    s = orn.speaker_embedding(rawnet, rn_fx["input.audio_short"], per_window=True, n_windows=1)
    torch.testing.assert_close(s, rn_fx["output.embd_short"][:1], atol=1e-5, rtol=1e-4)


def test_rawnet3_bad_input(rawnet, rn_fx):
    with pytest.raises(VSSFlowError, match="16000 Hz"):
        orn.speaker_embedding(rawnet, torch.zeros(44100), sample_rate=44100)
    with pytest.raises(VSSFlowError, match="mono"):
        orn.speaker_embedding(rawnet, torch.zeros(2, 16000))
    with pytest.raises(VSSFlowError, match="NaN"):
        orn.speaker_embedding(rawnet, torch.full((16000,), float("nan")))
    sd = {k: v for k, v in rn_fx.items() if k != "weights.attention.3.bias"}
    with pytest.raises(VSSFlowError, match=r"missing 1 keys: attention\.3\.bias"):
        orn.RawNet3.from_state_dict(sd)
    with pytest.raises(VSSFlowError, match="fc6.weight"):
        orn.RawNet3.from_state_dict({"fc7.weight": torch.zeros(1)})


def test_extractors_run_on_the_models_device_and_go_back_to_the_cpu(monkeypatch):
    """On a GPU the official CLIP / Synchformer run there while a clip is generated (seconds of CPU
    work per window otherwise), then return to the CPU (no host manages their memory)."""
    import torch

    from vssflow_core import frontend
    from vssflow_core.config import preset
    from vssflow_core.features.official import extractors

    moves = []

    class Recorder(torch.nn.Module):
        def __init__(self, kind):
            super().__init__()
            self.kind = kind

        def to(self, device):
            moves.append((self.kind, str(device)))
            return self

    monkeypatch.setattr(extractors, "extractor_model", lambda kind, extras, heads=None: Recorder(kind))
    cfg = preset("official")
    with frontend.official_extractors_on(cfg, {}, "cuda:0"):
        assert moves == [("clip", "cuda:0"), ("synchformer", "cuda:0")]
    assert moves[2:] == [("clip", "cpu"), ("synchformer", "cpu")]
    moves.clear()
    with frontend.official_extractors_on(cfg, {}, "cpu"), frontend.official_extractors_on(preset("embedded"), {}, "cuda"):
        pass
    assert moves == []  # nothing to move on the CPU, nothing to move for the embedded model
