"""Trainer: a tiny mel-patch model trains on a generated data folder, resumes, exports, and runs 2-process gloo."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from train_helpers import REPO, run_trainer, tiny_config


def free_port() -> int:
    """A TCP port free on this machine now (bound as port 0, read, closed), so that two test runs at
    once do not meet on one fixed rendezvous port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_torchrun(args, nproc):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--master_port={free_port()}",
           "-m", "vssflow_core", "train", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_train_resume_export(train_setup):
    tmp, data, cfg_path = train_setup
    base = ["--data", str(data), "--run", "r1", "--state-dir", str(tmp / "state"), "--config", str(cfg_path),
            "--batch-size", "2", "--warmup", "2", "--snapshot-steps", "2"]
    assert run_trainer(base + ["--max-steps", "2"]) == 0
    rows = [json.loads(l) for l in (tmp / "state" / "r1" / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2] and all(np.isfinite(row["loss"]) for row in rows)
    snap = torch.load(tmp / "state" / "r1" / "ema_step0000002.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for v in snap.values() if v.is_floating_point())
    assert run_trainer(base + ["--max-steps", "3", "--weight-decay", "0.05"]) == 0  # resumes at step 2
    rows = [json.loads(l) for l in (tmp / "state" / "r1" / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3]
    last = torch.load(tmp / "state" / "r1" / "last.pt", weights_only=True)
    assert {g["weight_decay"] for g in last["opt"]["param_groups"]} == {0.05}  # the resumed run's setting
    args_json = json.loads((tmp / "state" / "r1" / "args.json").read_text())
    assert args_json["max_steps"] == 3 and len(args_json["earlier_commands"]) == 1  # the first command kept
    out = tmp / "w.safetensors"
    assert run_trainer(base + ["--export", str(out)]) == 0
    from safetensors import safe_open

    from vssflow_core.model.checkpoint import load_model_file

    with safe_open(str(out), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}
    model, extra, meta = load_model_file(out)
    assert model.config.name == "embedded-test"
    assert json.loads(meta["training"])["steps"] == 3
    with pytest.raises(Exception, match="exists"):
        run_trainer(base + ["--export", str(out)])  # never overwrites


def test_two_process_gloo_keeps_replicas_identical(train_setup):
    tmp, data, cfg_path = train_setup
    r = run_torchrun(["--data", str(data), "--name", "ddp", "--state-dir", str(tmp / "state"), "--config", str(cfg_path),
                     "--batch-size", "1", "--max-steps", "2"], nproc=2)
    assert r.returncode == 0, r.stderr[-3000:]
    st = torch.load(tmp / "state" / "ddp" / "last.pt", weights_only=True)
    assert st["step"] == 2 and st["examples"] == 4


def test_two_processes_stop_together_on_a_time_budget(train_setup):
    """--max-minutes with a cooldown: both replicas take rank 0's clock, so they apply the same
    learning rate and stop at the same step (else they drift apart or one waits forever)."""
    tmp, data, cfg_path = train_setup
    r = run_torchrun(["--data", str(data), "--name", "timed", "--state-dir", str(tmp / "state"), "--config",
                      str(cfg_path), "--batch-size", "1", "--max-steps", "100000", "--max-minutes", "0.05",
                      "--cooldown", "0.5", "--warmup", "1"], nproc=2)
    assert r.returncode == 0, r.stderr[-3000:]  # the replica check at the end passed
    st = torch.load(tmp / "state" / "timed" / "last.pt", weights_only=True)
    assert st["step"] > 1 and st["examples"] == 2 * st["step"]


def test_cooldown_lowers_the_lr_linearly_to_zero(train_setup):
    from vssflow_core.train.trainer import budget_left, lr_at

    assert lr_at(10, 1e-3, 5, left=0.9, cooldown=0.3) == 1e-3
    assert lr_at(10, 1e-3, 5, left=0.15, cooldown=0.3) == pytest.approx(5e-4)
    assert lr_at(10, 1e-3, 5, left=-0.1, cooldown=0.3) == 0.0
    assert budget_left(0, 30.0, 100, 1.0) == pytest.approx(0.5)  # time budget wins when set
    assert budget_left(25, 30.0, 100, 0.0) == pytest.approx(0.75)
    tmp, data, cfg_path = train_setup
    base = ["--data", str(data), "--run", "cool", "--state-dir", str(tmp / "state"), "--config", str(cfg_path),
            "--batch-size", "2", "--warmup", "1", "--lr", "1e-3", "--snapshot-steps", "0"]
    assert run_trainer(base + ["--max-steps", "4", "--cooldown", "0.5"]) == 0
    rows = [json.loads(l) for l in (tmp / "state" / "cool" / "log.jsonl").read_text().splitlines()]
    assert [row["lr"] for row in rows] == pytest.approx([1e-3, 1e-3, 1e-3, 5e-4])
    with pytest.raises(Exception, match="--cooldown 1.5"):
        run_trainer(base + ["--max-steps", "5", "--cooldown", "1.5"])


def test_t_shift_draws_training_times_towards_the_noise(train_setup, monkeypatch):
    """--t-shift S maps each uniform draw through flow.shift_time (the sampler's grid shift): with
    S = 3 a quarter of the draws fall below t = 0.1 (a tenth with uniform t); bad values are refused."""
    from vssflow_core import flow

    u = torch.rand(200_000, generator=torch.Generator().manual_seed(0))
    t = flow.shift_time(u, 3.0)
    assert (t < 0.1).float().mean().item() == pytest.approx(0.25, abs=0.005)
    assert (t > 0.5).float().mean().item() == pytest.approx(0.25, abs=0.005)
    torch.testing.assert_close(flow.shift_time(torch.tensor([0.0, 1.0]), 3.0), torch.tensor([0.0, 1.0]))

    seen = []
    real_loss = flow.flow_matching_loss

    def spy(model, x1, cond, **kw):
        seen.append(kw["t"].clone())
        return real_loss(model, x1, cond, **kw)

    monkeypatch.setattr(flow, "flow_matching_loss", spy)
    tmp, data, cfg_path = train_setup
    base = ["--data", str(data), "--state-dir", str(tmp / "state"), "--config", str(cfg_path),
            "--batch-size", "2", "--warmup", "1", "--snapshot-steps", "0", "--max-steps", "3"]
    assert run_trainer(base + ["--run", "plain"]) == 0
    assert run_trainer(base + ["--run", "shifted", "--t-shift", "3"]) == 0
    plain, shifted = torch.cat(seen[:3]), torch.cat(seen[3:])
    # same run seed, so the same uniform draws: the shifted run's are those draws moved by shift_time
    torch.testing.assert_close(shifted, flow.shift_time(plain, 3.0))
    assert (shifted < plain).all()
    with pytest.raises(Exception, match="--t-shift 0.0"):
        run_trainer(base + ["--run", "bad", "--t-shift", "0"])
    with pytest.raises(Exception, match="--t-sampling uniform"):
        run_trainer(base + ["--run", "bad", "--t-shift", "3", "--t-sampling", "logit-normal"])


def test_a_stop_mid_step_checkpoints_whole_steps_and_a_divergence_keeps_the_good_checkpoint(train_setup, monkeypatch):
    """SIGTERM during an optimiser step ends the run after that step (the checkpoint's counter
    matches its weights, exit 143); a NaN loss raises without writing the NaN state over last.pt."""
    import signal

    from vssflow_core.train import trainer

    tmp, data, cfg_path = train_setup
    base = ["--data", str(data), "--run", "s", "--state-dir", str(tmp / "state"), "--config", str(cfg_path),
            "--batch-size", "2", "--warmup", "1", "--snapshot-steps", "0", "--max-steps", "5"]
    real_step = trainer.train_step

    def step_with_sigterm(state, *a, **kw):
        if state.step == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives in the middle of step 2
        return real_step(state, *a, **kw)

    monkeypatch.setattr(trainer, "train_step", step_with_sigterm)
    assert run_trainer(base) == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored
    ckpt = tmp / "state" / "s" / "last.pt"
    good = torch.load(ckpt, weights_only=True)
    assert good["step"] == 2  # the step in progress was finished, then the run stopped

    def diverging_step(state, *a, **kw):
        real_step(state, *a, **kw)
        with torch.no_grad():
            next(state.model.parameters()).fill_(float("nan"))
        return torch.tensor(float("nan"))

    monkeypatch.setattr(trainer, "train_step", diverging_step)
    with pytest.raises(Exception, match="loss is nan at step 3.*keeps the last good state.*lower --lr"):
        run_trainer(base)
    kept = torch.load(ckpt, weights_only=True)
    assert kept["step"] == 2 and all(torch.equal(kept["model"][k], good["model"][k]) for k in good["model"])


def test_train_only_moves_the_named_weights_and_keeps_the_rest(train_setup):
    """--train-only motion_proj: after a few steps the motion projection has moved, every other weight
    (and its EMA) is bit for bit the --init file's; batches whose motion was dropped are fine;
    a prefix naming no weight is refused with the model's module names."""
    from vssflow_core.model import VSSFlow
    from vssflow_core.model.checkpoint import save_model_file

    tmp, data, cfg_path = train_setup
    torch.manual_seed(3)
    start = VSSFlow(tiny_config())
    init = tmp / "init.safetensors"
    save_model_file(init, start, metadata={"config": start.config.to_json()})
    base = ["--data", str(data), "--state-dir", str(tmp / "state"), "--config", str(cfg_path), "--init", str(init),
            "--batch-size", "2", "--warmup", "1", "--lr", "1e-2", "--snapshot-steps", "0",
            "--p-uncond", "0.5"]  # half the steps drop every condition: nothing reaches the motion projection
    assert run_trainer(base + ["--run", "only", "--max-steps", "6", "--train-only", "motion_proj"]) == 0
    last = torch.load(tmp / "state" / "only" / "last.pt", weights_only=True)
    first = {k: v.float() for k, v in start.state_dict().items()}
    for key in ("model", "ema"):
        moved = {k for k, v in last[key].items() if not torch.equal(v.float(), first[k])}
        assert moved == {"motion_proj.0.weight", "motion_proj.2.weight"}, (key, sorted(moved))
    with pytest.raises(Exception, match=r"--train-only 'motion_prj' names no weight.*'motion_proj'"):
        run_trainer(base + ["--run", "typo", "--max-steps", "1", "--train-only", "motion_prj"])
