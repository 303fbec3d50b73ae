"""`diagnose`: the condition-reliance table on a packed held-out set."""
import json

import pytest
import torch

from train_helpers import tiny_config, valid_visuals, write_data
from vssflow_core.audio.codec import build_codec
from vssflow_core.model import VSSFlow
from vssflow_core.model.checkpoint import save_model_file
from vssflow_core.cli import main as cli_main
from vssflow_core.train.diagnose import DROPS, condition_reliance, error_by_component
from vssflow_core.train.pack import PackedClips, pack


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("diag")
    data = valid_visuals(write_data(root / "data", n=4, duration_s=2.0))
    pack(data, root / "pack", config=tiny_config())
    torch.manual_seed(0)
    model = VSSFlow(tiny_config()).eval()
    save_model_file(root / "m.safetensors", model)
    return root, model


def test_table_per_kind_and_condition(setup):
    root, model = setup
    clips = PackedClips(root / "pack")
    codec = build_codec(model.config.codec)
    table = condition_reliance(model, codec, clips, times=(0.0, 0.5), chunk=1)
    assert set(table) == {"speech", "sfx"} and table["speech"]["clips"] == 2
    row = table["speech"]["t=0"]
    assert set(row) == {"mean_baseline", *DROPS}
    x1 = codec.mel_to_latent(clips.log_mel[clips.kind == 0])[..., : model.config.latent_length]
    assert row["mean_baseline"] == pytest.approx(float(((x1 - x1.mean(0)) ** 2).mean()), abs=1e-4)
    # a random model still reacts to its inputs: leaving conditions out changes the estimate
    assert row["unconditional"] != row["all"] and row["no_lips_phones"] != row["all"]
    assert table["speech"]["t=0.5"]["all"] != row["all"]
    # chunking does not change the figures
    again = condition_reliance(model, codec, clips, times=(0.0,), chunk=8)
    assert again["speech"]["t=0"] == pytest.approx(row, abs=2e-4)
    # a model without the event condition gets no "no_event" row (it would repeat "all")
    import dataclasses

    cfg = model.config
    blind = VSSFlow(dataclasses.replace(cfg, conditions=tuple(c for c in cfg.conditions if c.name != "event"))).eval()
    assert set(condition_reliance(blind, codec, clips, times=(0.0,), chunk=8)["sfx"]["t=0"]) == {"mean_baseline", *DROPS} - {"no_event"}


def test_error_by_component_splits_the_estimate_error(setup):
    """The principal components are orthonormal: the bands' errors add up to the estimate's MSE (the
    same noise as the reliance table), and their data variances to the latent's variance."""
    root, model = setup
    clips = PackedClips(root / "pack")
    codec = build_codec(model.config.codec)
    ca = model.config.audio_channels
    bands = ((0, 3), (3, 40), (40, None))
    split = error_by_component(model, codec, clips, times=(0.3,), bands=bands, chunk=3)["t=0.3"]
    assert list(split) == ["0-3", "3-40", f"40-{ca}"]
    sizes = [3, 37, ca - 40]
    whole = condition_reliance(model, codec, clips, times=(0.3,))
    n = {k: v["clips"] for k, v in whole.items()}
    mse = sum(whole[k]["t=0.3"]["all"] * n[k] for k in n) / sum(n.values())
    assert sum(v["error"] * s for v, s in zip(split.values(), sizes)) / ca == pytest.approx(mse, rel=2e-3)
    x1 = codec.mel_to_latent(clips.log_mel)[..., : model.config.latent_length]
    total_var = float(x1.transpose(1, 2).reshape(-1, ca).var(0).sum())
    assert sum(v["data_var"] * s for v, s in zip(split.values(), sizes)) == pytest.approx(total_var, rel=2e-3)
    assert split["0-3"]["data_var"] > split["3-40"]["data_var"] > split[f"40-{ca}"]["data_var"]


def test_cli_writes_json_and_refuses_bad_input(setup, capsys):
    root, _ = setup
    out = root / "d.json"
    base = ["diagnose", "--model", str(root / "m.safetensors"), "--val", str(root / "pack")]
    assert cli_main([*base, "--times", "0.2", "--json", str(out)]) == 0
    assert "no_lips_phones" in capsys.readouterr().out
    written = json.loads(out.read_text())
    assert set(written["table"]) == {"speech", "sfx"} and set(written["by_component"]) == {"t=0.2"}
    before = out.read_bytes()
    assert cli_main([*base, "--json", str(out)]) == 2
    assert "exists; choose another name" in capsys.readouterr().err and out.read_bytes() == before
    assert cli_main([*base, "--times", "1.0"]) == 2
    assert "must be in [0, 1)" in capsys.readouterr().err
