"""Weights-file reading and the per-window extractor callables the front end uses."""
import numpy as np
import pytest
import torch

from vssflow_core.errors import VSSFlowError
from vssflow_core.features import official
from vssflow_core.features.official import rawnet3 as orn


def _load(official_fixtures, name):
    from safetensors.torch import load_file

    return load_file(str(official_fixtures / f"{name}.safetensors"))


def test_load_weights_formats(tmp_path):
    from safetensors.torch import save_file

    sd = {"a.weight": torch.randn(2, 3), "b": torch.zeros(1)}
    save_file(sd, str(tmp_path / "w.safetensors"))
    torch.save({"model": sd, "optimizer": {"lr": torch.tensor(1.0)}}, tmp_path / "w.pt")
    for name in ("w.safetensors", "w.pt"):
        got = official.load_weights(tmp_path / name)
        assert set(got) == set(sd) and torch.equal(got["a.weight"], sd["a.weight"])


def test_load_weights_refuses_unsafe(tmp_path):
    import datetime

    torch.save({"x": datetime.date(2020, 1, 1)}, tmp_path / "obj.pt")  # not a tensor type: refused
    with pytest.raises(VSSFlowError, match="weights_only=True"):
        official.load_weights(tmp_path / "obj.pt")
    import zipfile

    with zipfile.ZipFile(tmp_path / "ts.pt", "w") as z:  # the layout torch.jit.save writes
        z.writestr("ts/data.pkl", b"")
        z.writestr("ts/constants.pkl", b"")
        z.writestr("ts/code/__torch__/visual.py", "class VisionTransformer: ...")
    with pytest.raises(VSSFlowError, match="TorchScript"):
        official.load_weights(tmp_path / "ts.pt")
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(VSSFlowError, match="bad.safetensors"):
        official.load_weights(tmp_path / "bad.safetensors")
    with pytest.raises(VSSFlowError, match="does not exist"):
        official.load_weights(tmp_path / "missing.pt")


def test_extractor_tensors_naming(official_fixtures):
    clip = official.extractor_tensors("clip", _load(official_fixtures, "clip"))
    assert "image_encoder.visual.conv1.weight" in clip and not any("input." in k for k in clip)
    sync = official.extractor_tensors("synchformer", _load(official_fixtures, "synchformer"))
    assert all(k.startswith("synchformer.vfeat_extractor.") for k in sync)
    rn = official.extractor_tensors("rawnet3", _load(official_fixtures, "rawnet3"))
    assert "rawnet3.fc6.weight" in rn and "rawnet3.input.audio_long" not in rn
    with pytest.raises(VSSFlowError, match="unknown extractor"):
        official.extractor_tensors("avhubert", {})


def test_extractors_clip_and_rawnet_as_the_front_end_calls_them(official_fixtures, tmp_path):
    from vssflow_core.config import preset
    from vssflow_core.features.official.clip import clip_features
    from vssflow_core.frontend import speaker_from_voice

    t = _load(official_fixtures, "clip")
    extras = official.extractor_tensors("clip", t)
    frames = np.repeat(t["input.frames_uint8"].numpy(), [3, 2], axis=0)  # 5 frames at 25 fps = 0.2 s
    feats = clip_features(official.extractor_model("clip", extras), frames, 25.0, 0.2)
    assert feats.shape == (2, 128)  # 10 Hz: frames 0 and round(2.5) = 2
    torch.testing.assert_close(feats[0], t["output.extract_clip_feature"][0, 0], atol=1e-5, rtol=1e-4)
    assert official.extractor_model("clip", extras) is official.extractor_model("clip", extras)  # built once

    r = _load(official_fixtures, "rawnet3")
    rn_extras = official.extractor_tensors("rawnet3", r)
    short = r["input.audio_short"][:8000]  # 0.5 s, wrapped to 48001: windows start at 0 (x9) and 1
    emb = speaker_from_voice(preset("official"), (torch.stack([short, short]).numpy(), 16000), rn_extras)
    assert emb.shape == (256,) and torch.isfinite(emb).all()  # [C, T]: channels averaged
    model = orn.RawNet3.from_state_dict(r)
    wins = orn.official_windows(short)
    assert torch.equal(wins[0], wins[8]) and not torch.equal(wins[0], wins[9])
    with torch.no_grad():
        e = model(wins[[0, 9]])
    ref = (9 * e[0] + e[1]) / 10
    torch.testing.assert_close(emb, ref, atol=1e-5, rtol=1e-4)
    with pytest.raises(VSSFlowError, match=r"synchformer\.\*"):
        official.extractor_model("synchformer", extras)
    with pytest.raises(VSSFlowError, match="unknown extractor 'avhubert'"):
        official.extractor_model("avhubert", extras)


def test_synchformer_extractor_shapes(official_fixtures):
    from vssflow_core.features.official.synchformer import synch_features

    extras = official.extractor_tensors("synchformer", _load(official_fixtures, "synchformer"))
    model = official.extractor_model("synchformer", extras, heads=2)
    frames = np.zeros((10, 64, 64, 3), np.uint8)  # shorter than one 16-frame window: padded
    assert synch_features(model, frames, duration_s=16 / 25)[None].shape == (1, 1, 8, 64)
