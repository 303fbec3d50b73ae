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


def test_embedded_preset_has_the_shipped_files_sampling_defaults():
    """Runs built from the preset (train, --init, export) have the shipped file's DiT and sample as it does."""
    from safetensors import safe_open

    from vssflow_core.config import ModelConfig
    from vssflow_core.embedded import EMBEDDED_WEIGHTS, embedded_config

    with safe_open(str(EMBEDDED_WEIGHTS), "pt") as f:
        shipped = ModelConfig.from_json(f.metadata()["config"])
    preset = embedded_config()
    for name in ("guidance_scale", "sound_guidance_scale", "solver", "steps", "time_shift", "sound_time_shift",
                 "noise_scale", "sound_noise_scale", "guidance_rescale", "sound_guidance_rescale",
                 "prediction", "dit"):  # phone_placement comes from the pack
        assert getattr(preset, name) == getattr(shipped, name), name
