"""The eval command end to end on a tiny model and a generated data folder (lip + onset metrics, Griffin-Lim)."""
import json

import numpy as np
import pytest
import torch

from test_train_trainer import tiny_config, write_data


def test_eval_writes_metrics_json(tmp_path):
    pytest.importorskip("librosa")
    from vssflow_core.model import VSSFlow
    from vssflow_core.model.checkpoint import save_model_file
    from vssflow_core.train.evaluate import main

    torch.manual_seed(0)
    model_path = save_model_file(tmp_path / "tiny.safetensors", VSSFlow(tiny_config()))
    data = write_data(tmp_path / "data", n=4)
    out = tmp_path / "eval.json"
    threads = torch.get_num_threads()
    try:
        rc = main(["--model", str(model_path), "--data", str(data), "--n", "4", "--metrics", "lip,onset", "--steps", "2",
                   "--vocoder", "griffinlim", "--json", str(out), "--centroid-data", ""])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["n"] == 4 and res["kinds"] == {"speech": 2, "sfx": 2, "mixed": 0}
    assert 0.0 <= res["lip_offset_ok_frac"] <= 1.0 and len(res["lip_offsets"]) == 2
    assert 0.0 <= res["onset_f1"] <= 1.0
    assert set(res["reference"]) >= {"lip_offset_ok_frac", "onset_f1"}
    assert "wer" not in res  # not requested


def test_eval_refuses_a_training_seed(tmp_path):
    from vssflow_core.errors import VSSFlowError
    from vssflow_core.train.evaluate import eval_data, add_arguments
    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p)
    with pytest.raises(VSSFlowError, match="training seed"):
        eval_data(p.parse_args(["--seed", "1", "--cache-dir", str(tmp_path)]))
