"""Trainer guards: a run folder is used by one trainer at a time, a resume cannot silently ignore
start options, damaged or stale state files and impossible numbers get one-line errors, and
--seed decides a fresh run's initial weights."""
import fcntl
import json

import pytest
import torch

from train_helpers import run_trainer
from vssflow_core.errors import VSSFlowError


def _base(tmp, data, cfg_path, name="g"):
    return ["--data", str(data), "--name", name, "--state-dir", str(tmp / "state"), "--config", str(cfg_path),
            "--batch-size", "2", "--warmup", "1", "--snapshot-steps", "0"]


def test_resume_refuses_other_start_options(train_setup):
    tmp, data, cfg_path = train_setup
    base = _base(tmp, data, cfg_path)
    assert run_trainer(base + ["--max-steps", "1"]) == 0
    other_config = tmp / "other.json"
    other_config.write_text(cfg_path.read_text())
    for extra, match in ((["--init", str(tmp / "w.safetensors")], "started with no --init.*--init .*w.safetensors "
                                                                   "applies only to a new run: choose another --name"),
                         (["--config", str(other_config)], f"started with --config {cfg_path}.*only to a new run"),
                         (["--preset", "official"], "started with no --preset.*only to a new run"),
                         (["--task", "v2s"], "trains --task joint, not v2s: resume it with --task joint")):
        args = [a for a in base if a not in ("--config", str(cfg_path))] if "--config" in extra else base
        with pytest.raises(VSSFlowError, match=f"exists at step 1 .*{match}"):
            run_trainer(args + ["--max-steps", "2", *extra])
    assert torch.load(tmp / "state" / "g" / "last.pt", weights_only=True)["step"] == 1  # untouched
    with pytest.raises(VSSFlowError, match="--task") as refused:  # the traceback kept alive holds the failed run's frames
        run_trainer(base + ["--max-steps", "2", "--task", "tts"])
    with open(tmp / "state" / "g" / ".lock", "a+") as handle:  # ...but the run folder's lock was released
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    del refused  # kept until here on purpose: the lock must be free while the traceback still lives
    assert run_trainer(base + ["--max-steps", "2"]) == 0  # the same options resume
    no_config = [a for a in base if a not in ("--config", str(cfg_path))]
    assert run_trainer(no_config + ["--max-steps", "3"]) == 0  # and so does leaving --config out,
    with pytest.raises(VSSFlowError, match=f"exists at step 3 \\(started with --config {cfg_path}\\)"):
        run_trainer(no_config + ["--max-steps", "4", "--config", str(other_config)])  # which the run remembers
    assert run_trainer(base + ["--max-steps", "4"]) == 0
    (tmp / "state" / "g" / "args.json").write_text('{"task": "jo')  # cut short
    with pytest.raises(VSSFlowError, match="args.json is damaged .*delete it"):
        run_trainer(base + ["--max-steps", "5"])


def test_a_second_trainer_on_one_run_is_refused(train_setup):
    tmp, data, cfg_path = train_setup
    run_dir = tmp / "state" / "busy"
    run_dir.mkdir(parents=True)
    with open(run_dir / ".lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("pid 4242")
        held.flush()
        with pytest.raises(VSSFlowError, match="in use by a trainer \\(pid 4242\\)"):
            run_trainer(_base(tmp, data, cfg_path, "busy") + ["--max-steps", "1"])
    assert not (run_dir / "last.pt").exists()
    assert run_trainer(_base(tmp, data, cfg_path, "busy") + ["--max-steps", "1"]) == 0  # free again


def test_init_refuses_a_file_with_weights_the_run_lacks(train_setup):
    import dataclasses

    from train_helpers import tiny_config

    tmp, data, cfg_path = train_setup
    assert run_trainer(_base(tmp, data, cfg_path, "src") + ["--max-steps", "1"]) == 0
    out = tmp / "two_layers.safetensors"
    cfg2 = dataclasses.replace(tiny_config(), dit=dataclasses.replace(tiny_config().dit, num_layers=2))
    (tmp / "cfg2.json").write_text(cfg2.to_json())
    assert run_trainer(_base(tmp, data, tmp / "cfg2.json", "big") + ["--max-steps", "1"]) == 0
    assert run_trainer(_base(tmp, data, tmp / "cfg2.json", "big") + ["--export", str(out)]) == 0
    with pytest.raises(VSSFlowError, match="in the file, not in the run"):
        run_trainer(_base(tmp, data, cfg_path, "small") + ["--max-steps", "1", "--init", str(out)])


def test_damaged_state_files_and_impossible_numbers_are_one_line_errors(train_setup):
    tmp, data, cfg_path = train_setup
    base = _base(tmp, data, cfg_path)
    for extra, match in ((["--batch-size", "0"], "--batch-size 0: must be at least 1"),
                         (["--val-every", "0"], "--val-every 0"), (["--lr", "-1"], "--lr -1.0"), (["--lr", "0"], "--lr 0.0"),
                         (["--config", str(tmp / "nope.json")], "--config .*nope.json: cannot read it")):
        with pytest.raises(VSSFlowError, match=match):
            run_trainer(base + ["--max-steps", "1", *extra])
    assert run_trainer(base + ["--max-steps", "1"]) == 0
    ckpt = tmp / "state" / "g" / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # a copy cut short
    with pytest.raises(VSSFlowError, match="last.pt cannot be read.*damaged.*Delete it"):
        run_trainer(base + ["--max-steps", "2"])
    with pytest.raises(VSSFlowError, match="\\*.safetensors"):
        run_trainer(base + ["--export", str(tmp / "model.pt")])
    with pytest.raises(VSSFlowError, match="train --name RUN --export"):
        run_trainer(_base(tmp, data, cfg_path, "new") + ["--max-steps", "1", "--init", str(ckpt)])
    with pytest.raises(VSSFlowError, match="--preset tiny: its codec is 'audioldm_vae'.*mel_patch"):
        run_trainer(["--data", str(data), "--name", "t", "--state-dir", str(tmp / "state"), "--preset", "tiny"])


def test_a_best_ema_ahead_of_the_checkpoint_is_set_aside(train_setup):
    tmp, data, cfg_path = train_setup
    base = _base(tmp, data, cfg_path)
    assert run_trainer(base + ["--max-steps", "1"]) == 0
    run_dir = tmp / "state" / "g"
    st = torch.load(run_dir / "last.pt", weights_only=True)
    torch.save({"ema": st["ema"], "step": 9, "val_loss": 0.001}, run_dir / "best_ema.pt")  # a killed attempt's
    assert run_trainer(base + ["--max-steps", "2"]) == 0
    assert not (run_dir / "best_ema.pt").exists() and (run_dir / "best_ema.stale-9.pt").is_file()
    earlier = (run_dir / "best_ema.stale-9.pt").read_bytes()
    torch.save({"ema": st["ema"], "step": 9, "val_loss": 0.002}, run_dir / "best_ema.pt")  # killed again at 9
    from vssflow_core.train.run_folder import kept_best_loss

    assert kept_best_loss(run_dir, 2) == float("inf")
    assert (run_dir / "best_ema.stale-9.pt").read_bytes() == earlier  # the first one kept, not replaced
    assert torch.load(run_dir / "best_ema.stale-9_00001_.pt", weights_only=True)["val_loss"] == 0.002


def test_seed_decides_a_fresh_runs_initial_weights(train_setup):
    tmp, data, cfg_path = train_setup
    losses = {}
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        assert run_trainer(_base(tmp, data, cfg_path, name) + ["--max-steps", "1", "--seed", seed]) == 0
        losses[name] = json.loads((tmp / "state" / name / "log.jsonl").read_text().splitlines()[0])["loss"]
        torch.manual_seed(1000 + len(losses))  # the global RNG moves on between runs, as in one session
    assert losses["a"] == losses["b"] != losses["c"]
