"""Shared pytest set-up: one torch thread and the fixture folder.

One thread: on the 2-core CI machine, two torch threads per test process were measured 10-20x slower
than one when anything else runs at the same time (thread oversubscription).
"""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
OFFICIAL_FIXTURES = Path(os.environ.get("VSSFLOW_FIXTURES", REPO_ROOT.parent / "shared" / "fixtures" / "official"))


def pytest_configure(config):
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def official_fixtures() -> Path:
    """Folder of the parity fixtures made with the official code (read-only)."""
    if not OFFICIAL_FIXTURES.is_dir():
        pytest.skip(f"official fixtures not found at {OFFICIAL_FIXTURES}; set VSSFLOW_FIXTURES")
    return OFFICIAL_FIXTURES


@pytest.fixture()
def train_setup(tmp_path):
    """``(tmp_path, data_folder, config_json)`` for the training tests: four generated clips of 3 s and a
    one-layer model config (see train_helpers)."""
    from train_helpers import tiny_config, write_data

    data = write_data(tmp_path / "data")
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(tiny_config().to_json())
    return tmp_path, data, cfg_path
