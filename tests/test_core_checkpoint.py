"""Our model file: round trip, metadata, and clear errors for wrong or damaged files."""
import pytest
import torch
from safetensors.torch import save_file

from vssflow_core.config import preset
from vssflow_core.errors import VSSFlowError
from vssflow_core.model import VSSFlow
from vssflow_core.model.checkpoint import load_model_file, save_model_file


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return VSSFlow(preset("tiny")).eval()


def test_roundtrip(tmp_path, tiny):
    path = save_model_file(tmp_path / "m.safetensors", tiny, extra_tensors={"vae.w": torch.arange(4.0)},
                           metadata={"note": "hello", "steps": 12})
    model, extras, meta = load_model_file(path, dtype=torch.float64)
    assert model.config == tiny.config and not model.training
    assert torch.equal(extras["vae.w"], torch.arange(4.0))
    assert meta["format"] == "vssflow" and meta["version"] == "1" and meta["note"] == "hello" and meta["steps"] == "12"
    for k, v in tiny.state_dict().items():
        assert torch.equal(model.state_dict()[k].float(), v), k
    assert model.vaflow.proj_in.weight.dtype == torch.float64
    video = torch.randn(1, 100, 768)
    with torch.no_grad():  # a float64 model takes float32 latents; batch-1 conditions serve 2 rows
        v64 = model.velocity(torch.ones(2, 128, 250), 0.5, model.encode_conditions(video_feat=video), guidance_scale=2.0)
        v32 = tiny.velocity(torch.ones(2, 128, 250), 0.5, tiny.encode_conditions(video_feat=video), guidance_scale=2.0)
    assert v64.dtype == torch.float32
    torch.testing.assert_close(v64, v32, atol=1e-4, rtol=1e-4)
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left


def test_refuses_overwrite_and_clash(tmp_path, tiny):
    path = save_model_file(tmp_path / "m.safetensors", tiny)
    with pytest.raises(VSSFlowError, match="already exists"):
        save_model_file(path, tiny)
    save_model_file(path, tiny, overwrite=True)
    with pytest.raises(VSSFlowError, match="clashes"):
        save_model_file(tmp_path / "n.safetensors", tiny, extra_tensors={"vaflow.proj_in.weight": torch.zeros(1)})


def test_bad_files(tmp_path, tiny):
    with pytest.raises(VSSFlowError, match="does not exist"):
        load_model_file(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"PK\x03\x04 this is a zip, not safetensors" * 10)
    with pytest.raises(VSSFlowError, match="not a safetensors file"):
        load_model_file(junk)
    good = save_model_file(tmp_path / "good.safetensors", tiny)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:-1000])
    with pytest.raises(VSSFlowError, match="truncated"):
        load_model_file(cut)
    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, str(other))
    with pytest.raises(VSSFlowError, match="not a VSSFlow model"):
        load_model_file(other)
    # a vssflow file that lacks a weight
    from safetensors.torch import load_file

    tensors = load_file(str(good))
    del tensors["vaflow.proj_out.weight"]
    partial = tmp_path / "partial.safetensors"
    save_file(tensors, str(partial), metadata={"format": "vssflow", "version": "1", "config": tiny.config.to_json()})
    with pytest.raises(VSSFlowError, match="lacks 1 weight.*vaflow.proj_out.weight"):
        load_model_file(partial)
