"""`python -m vssflow_core convert` from the command line: a checkpoint with non-tensor entries ends
in one line on stderr (not an AttributeError from deep inside the loader), and nothing is written.
(A bad output name: tests/test_cli_train.py.)"""
import torch
from safetensors.torch import load_file

from vssflow_core import cli


def test_convert_refuses_non_tensor_entries(tmp_path, official_fixtures, capsys):
    fixture = load_file(str(official_fixtures / "vaflow_condition.safetensors"))
    state = {k[len("weights."):]: v for k, v in fixture.items() if k.startswith("weights.")}
    ckpt = tmp_path / "ints.ckpt"
    torch.save({"state_dict": {**state, "vaflow.counter": 3}}, ckpt)
    rc = cli.main(["convert", str(ckpt), str(tmp_path / "m.safetensors"), "--attention-head-dim", "32"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "1 state_dict entries are not tensors (vaflow.counter (int))" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ints.ckpt"]
