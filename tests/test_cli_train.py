"""The data and training commands from the command line: impossible options, files in the way and a
full disk end in one line on stderr that names the file and the fix, never a traceback."""
import os
import resource
import subprocess
import sys

from vssflow_core import cli

from train_helpers import REPO, run_trainer


def _run(argv, capsys):
    rc = cli.main([str(a) for a in argv])
    _, err = capsys.readouterr()
    return rc, err


def test_bad_options_and_files_in_the_way_are_one_line(tmp_path, capsys):
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    for argv, rc_wanted, match in (
            (["pack", "--data", tmp_path / "data", "--out", a_file], 2, f"--out {a_file} is a file; give a new folder"),
            (["pack", "--data", tmp_path / "data", "--out", tmp_path / "p", "--limit", "0"], 2, "--limit 0: the number"),
            (["convert", tmp_path / "x.ckpt", tmp_path / "out.pt"], 2, "out.pt: name the model file *.safetensors"),
            (["make-data", "--out", "/dev/null/data", "--n", "1"], 1, "Not a directory: '/dev/null/data")):
        rc, err = _run(argv, capsys)
        assert rc == rc_wanted and len(err.strip().splitlines()) == 1 and match in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_full_disk_while_training_is_one_line_and_keeps_the_checkpoint(train_setup):
    tmp, data, cfg_path = train_setup
    args = ["--data", str(data), "--name", "full", "--state-dir", str(tmp / "state"), "--config", str(cfg_path),
            "--batch-size", "2", "--warmup", "1", "--snapshot-steps", "0", "--threads", "1"]
    assert run_trainer(args + ["--max-steps", "1"]) == 0
    run_dir = tmp / "state" / "full"
    before = (run_dir / "last.pt").read_bytes()

    def small_files():  # a file-size limit below the checkpoint's size stands in for a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) // 2, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    done = subprocess.run([sys.executable, "-m", "vssflow_core", "train", *args, "--max-steps", "2"],
                          capture_output=True, text=True, preexec_fn=small_files, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot write {run_dir / 'last.pt'} (") and "is the disk full?" in last, last
    assert (run_dir / "last.pt").read_bytes() == before
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock", "args.json", "last.pt", "log.jsonl"]


def test_the_run_records_the_command_it_was_given(train_setup):
    """args.json keeps the command line as typed (through cli.main, even in-process), so a run can be
    repeated from its record; a direct run() from Python says so instead of recording pytest's argv."""
    import json
    import shlex

    import torch

    tmp, data, cfg_path = train_setup
    args = ["--data", str(data), "--name", "rec", "--state-dir", str(tmp / "state"), "--config", str(cfg_path),
            "--batch-size", "2", "--warmup", "1", "--snapshot-steps", "0", "--threads", "1", "--max-steps", "1"]
    threads = torch.get_num_threads()
    try:
        assert cli.main(["train", *args]) == 0
    finally:
        torch.set_num_threads(threads)
    record = json.loads((tmp / "state" / "rec" / "args.json").read_text())
    assert shlex.split(record["command"])[1:] == ["-m", "vssflow_core", "train", *args]
    assert "command_line" not in record
    assert run_trainer([*args[:3], "direct", *args[4:]]) == 0
    direct = json.loads((tmp / "state" / "direct" / "args.json").read_text())
    assert direct["command"].endswith("vssflow_core train '(run from Python)'")
