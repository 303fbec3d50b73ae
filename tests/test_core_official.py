"""Official checkpoint compatibility: size inference, strict key report, conversion to our file."""
import json

import pytest
import torch
from safetensors.torch import load_file

from vssflow_core.errors import VSSFlowError
from vssflow_core.model import VSSFlow
from vssflow_core.official import check_keys, convert_checkpoint, infer_config, load_official, split_state_dict


@pytest.fixture(scope="module")
def full_keys(official_fixtures):
    """Meta tensors with the shapes of the full-size official Lightning state_dict."""
    listing = json.load(open(official_fixtures / "full_size_keys.json"))["vaflow_full"]["keys"]
    return {key: torch.empty(shape, device="meta") for key, shape, _dtype in listing}


@pytest.fixture(scope="module")
def reduced_state(official_fixtures):
    t = load_file(str(official_fixtures / "vaflow_condition.safetensors"))
    return t, {k[len("weights."):]: v for k, v in t.items() if k.startswith("weights.")}


def _with_layers(state: dict, n: int) -> dict:
    """The same state_dict with n DiT blocks (copies of block 0 for new indices)."""
    out = {k: v for k, v in state.items() if not k.startswith("vaflow.transformer_blocks.")}
    block0 = {k[len("vaflow.transformer_blocks.0."):]: v for k, v in state.items() if k.startswith("vaflow.transformer_blocks.0.")}
    for i in range(n):
        out.update({f"vaflow.transformer_blocks.{i}.{k}": v for k, v in block0.items()})
    return out


@pytest.mark.parametrize("layers", [5, 10, 15])
def test_full_size_keys_match(full_keys, layers):
    model_keys, frozen = split_state_dict(_with_layers(full_keys, layers))
    assert {k.split(".")[0] for k in frozen} == {"image_encoder", "vae", "vocoder"}
    cfg = infer_config(model_keys, attention_head_dim=64)
    assert (cfg.dit.num_layers, cfg.dit.width, cfg.dit.num_heads, cfg.dit.num_kv_heads, cfg.dit.cross_dim,
            cfg.dit.ff_inner_dim, cfg.in_channels) == (layers, 1536, 24, 12, 768, 6144, 1952)
    with torch.device("meta"):
        model = VSSFlow(cfg)
    assert check_keys(model.state_dict(), model_keys) == []
    if layers == 10:
        assert cfg.dit == __import__("vssflow_core.config", fromlist=["x"]).preset("official").dit
        assert sorted(model.state_dict()) == sorted(model_keys)


def test_reduced_fixture_sizes(reduced_state):
    cfg = load_official(reduced_state[1], attention_head_dim=32).config
    assert (cfg.dit.num_layers, cfg.dit.num_heads, cfg.dit.num_kv_heads, cfg.dit.cross_dim, cfg.in_channels) == (2, 4, 2, 64, 256)
    assert [c.out_dim for c in cfg.conditions] == [64, 16, 48, 64, 64]


def test_strict_key_report(reduced_state):
    state = dict(reduced_state[1])
    del state["vaflow.transformer_blocks.1.attn2.to_v.weight"]
    state["vaflow.extra_head.weight"] = torch.zeros(3)
    with pytest.raises(VSSFlowError) as err:
        load_official(state, attention_head_dim=32)
    msg = str(err.value)
    assert "missing     vaflow.transformer_blocks.1.attn2.to_v.weight" in msg
    assert "unexpected  vaflow.extra_head.weight" in msg
    with pytest.raises(VSSFlowError, match="attention_head_dim 48 does not divide"):
        load_official(reduced_state[1], attention_head_dim=48)
    with pytest.raises(VSSFlowError, match="heads 129 = 257"):
        load_official({**reduced_state[1], "lip_proj.2.weight": torch.zeros(65, 128)}, attention_head_dim=32)
    with pytest.raises(VSSFlowError, match="lacks 'vaflow.proj_in.weight'"):
        load_official({"foo": torch.zeros(1)})


def test_mis_shaped_key_reported(reduced_state):
    state = dict(reduced_state[1])
    state["vaflow.transformer_blocks.0.norm2.bias"] = torch.zeros(129)
    with pytest.raises(VSSFlowError, match=r"shape       vaflow.transformer_blocks.0.norm2.bias: checkpoint \[129\], model \[128\]"):
        load_official(state, attention_head_dim=32)


class NotAllowed:  # a pickled object that weights_only loading must refuse
    pass


def test_convert_roundtrip(tmp_path, reduced_state):
    from vssflow_core.model.checkpoint import load_model_file

    t, state = reduced_state
    ckpt = tmp_path / "epoch=0001.ckpt"
    torch.save({"state_dict": state, "epoch": 1, "global_step": 10, "optimizer_states": [{"state": {}, "param_groups": []}]}, ckpt)
    out = convert_checkpoint(ckpt, tmp_path / "vssflow.safetensors", attention_head_dim=32)
    model, extras, meta = load_model_file(out)
    assert set(extras) == {k for k in state if k.startswith(("image_encoder.", "vae.", "vocoder."))}
    assert meta["source_file"] == "epoch=0001.ckpt" and len(meta["source_sha256"]) == 64
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    with pytest.raises(VSSFlowError, match="already exists"):
        convert_checkpoint(ckpt, out, attention_head_dim=32)
    cond = model.encode_conditions(video_feat=t["input.video_feat"], ref_audio_ebd=t["input.ref_audio_ebd"],
                                   lip_feat=t["input.lip_feat"], phone_id=t["input.phone_id"], synch_feat=t["input.synch_feat"])
    with torch.no_grad():
        v = model.velocity(t["input.x_t_audio"], t["input.t_per_sample"], cond)
    torch.testing.assert_close(v, t["output.velocity"][:, :128], atol=1e-5, rtol=0)


def test_convert_refuses_a_checkpoint_whose_codec_or_clip_cannot_be_built(tmp_path, reduced_state):
    state = reduced_state[1]
    vae_key = next(k for k in state if k.startswith("vae.") and state[k].dim() == 4)
    clip_key = next(k for k in state if k.startswith("image_encoder.visual.") and state[k].dim() >= 2)
    cases = {"no_vae": ({k: v for k, v in state.items() if not k.startswith("vae.")}, "audio codec"),
             "bad_vae": ({**state, vae_key: state[vae_key][:1]}, "audio codec"),
             "bad_clip": ({**state, clip_key: state[clip_key][:1]}, "CLIP visual tower")}
    for name, (broken, what) in cases.items():
        ckpt = tmp_path / f"{name}.ckpt"
        torch.save({"state_dict": broken}, ckpt)
        with pytest.raises(VSSFlowError, match=f"{name}.ckpt: its tensors do not form the {what}"):
            convert_checkpoint(ckpt, tmp_path / f"{name}.safetensors", attention_head_dim=32)
        assert not (tmp_path / f"{name}.safetensors").exists()


def test_convert_refuses_pickled_objects(tmp_path, reduced_state):
    ckpt = tmp_path / "unsafe.ckpt"
    torch.save({"state_dict": reduced_state[1], "hyper_parameters": NotAllowed()}, ckpt)
    with pytest.raises(VSSFlowError, match=r"(?s)weights_only=True.*NotAllowed.*refuse"):
        convert_checkpoint(ckpt, tmp_path / "x.safetensors", attention_head_dim=32)
    assert not (tmp_path / "x.safetensors").exists()


def test_convert_cli(tmp_path, reduced_state, capsys):
    import argparse

    from vssflow_core.official import add_convert_arguments, run_convert

    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": reduced_state[1]}, ckpt)
    parser = argparse.ArgumentParser()
    add_convert_arguments(parser)
    args = parser.parse_args([str(ckpt), str(tmp_path / "m.safetensors"), "--attention-head-dim", "32"])
    assert args.synchformer is None and args.rawnet3 is None
    assert run_convert(args) == 0
    assert "official-2l" in capsys.readouterr().out


def _extractor_files(official_fixtures, tmp_path):
    """Synchformer and RawNet3 weights saved as their upstream projects ship them (plain .pth / {"model": sd})."""
    def strip(name):
        t = load_file(str(official_fixtures / f"{name}.safetensors"))
        return {k[len("weights."):]: v for k, v in t.items() if k.startswith("weights.")}

    sync = strip("synchformer")
    sync["afeat_extractor.dummy.weight"] = torch.zeros(2)  # audio branch: not needed, must be dropped
    torch.save(sync, tmp_path / "synchformer_state_dict.pth")
    torch.save({"model": strip("rawnet3")}, tmp_path / "model.pt")
    return tmp_path / "synchformer_state_dict.pth", tmp_path / "model.pt"


def test_convert_with_extractors(tmp_path, reduced_state, official_fixtures):
    from vssflow_core.features import official as ofeat
    from vssflow_core.model.checkpoint import load_model_file

    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": reduced_state[1]}, ckpt)
    sync_path, rn_path = _extractor_files(official_fixtures, tmp_path)
    out = convert_checkpoint(ckpt, tmp_path / "m.safetensors", attention_head_dim=32,
                             synchformer=sync_path, rawnet3=rn_path)
    _, extras, meta = load_model_file(out)
    assert meta["synchformer_file"] == "synchformer_state_dict.pth" and len(meta["rawnet3_sha256"]) == 64
    assert any(k.startswith("synchformer.vfeat_extractor.") for k in extras)
    assert not any("afeat_extractor" in k for k in extras)
    assert any(k.startswith("image_encoder.visual.") for k in extras)
    # the stored weights drive the same extractors as the original files
    import numpy as np

    from vssflow_core.features.official.synchformer import synch_features

    synch = ofeat.extractor_model("synchformer", extras, heads=2)
    assert synch_features(synch, np.zeros((16, 32, 32, 3), np.uint8), duration_s=16 / 25).shape == (1, 8, 64)
    original = torch.load(rn_path, weights_only=True)["model"]
    assert {k[len("rawnet3."):] for k in extras if k.startswith("rawnet3.")} == set(original)
    assert all(torch.equal(extras[f"rawnet3.{k}"], v) for k, v in original.items())
    from vssflow_core.config import preset
    from vssflow_core.frontend import speaker_from_voice

    emb = speaker_from_voice(preset("official"), (torch.sin(torch.arange(16000) / 7.0)[None].numpy(), 16000), extras)
    assert emb.shape == (256,) and torch.isfinite(emb).all()


def test_convert_refuses_wrong_extractor_file(tmp_path, reduced_state, official_fixtures):
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": reduced_state[1]}, ckpt)
    sync_path, rn_path = _extractor_files(official_fixtures, tmp_path)
    out = tmp_path / "m.safetensors"
    with pytest.raises(VSSFlowError, match=r"--synchformer .*model\.pt.*vfeat_extractor"):
        convert_checkpoint(ckpt, out, attention_head_dim=32, synchformer=rn_path)
    with pytest.raises(VSSFlowError, match=r"--rawnet3 .*synchformer_state_dict\.pth"):
        convert_checkpoint(ckpt, out, attention_head_dim=32, rawnet3=sync_path)
    (tmp_path / "fake.pt").write_bytes(b"not a pickle at all")
    with pytest.raises(VSSFlowError, match="fake.pt"):
        convert_checkpoint(ckpt, out, attention_head_dim=32, rawnet3=tmp_path / "fake.pt")
    assert not out.exists()


def test_read_checkpoint_non_safetensors(tmp_path):
    from vssflow_core.official import read_checkpoint

    bad = tmp_path / "state.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(VSSFlowError, match="state.safetensors"):
        read_checkpoint(bad)
    with pytest.raises(VSSFlowError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.ckpt")
    (tmp_path / "video.ckpt").write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 100)  # an mp4 renamed .ckpt
    with pytest.raises(VSSFlowError, match="not a readable PyTorch checkpoint"):
        read_checkpoint(tmp_path / "video.ckpt")
    with pytest.raises(VSSFlowError, match="expected the checkpoint's state_dict"):
        load_official(torch.zeros(3))
