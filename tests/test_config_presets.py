"""The official preset reproduces the official layout numbers (research/vssflow_official.md)."""

from vssflow_core.config import ModelConfig, preset


def test_official_layout_numbers():
    cfg = preset("official")
    assert cfg.in_channels == 1952
    assert cfg.latent_length == 250
    assert cfg.cross_conditions[0].name == "ref"
    assert cfg.dit.width == 1536


def test_config_json_round_trip():
    cfg = preset("official")
    again = ModelConfig.from_json(cfg.to_json())
    assert again == cfg
