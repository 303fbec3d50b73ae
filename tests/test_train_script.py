"""scripts/train_embedded.sh's control flow, with a stand-in interpreter that logs each command
(the real chain, with tiny sizes, takes minutes; its run is recorded in the model card): a relative
WORK_DIR is the caller's, a failed training run stops the script before export and evaluation, and a
pack that no longer holds every clip is refused."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STUB = """#!/usr/bin/env bash
# `python -c ...` (the script's own small checks) runs for real; vssflow_core commands are logged
if [ "$1" = -c ]; then exec {python} "$@"; fi
shift 2  # -m vssflow_core
echo "$*" >> "$STUB_LOG"
case "$1" in
  make-data) out=$3; mkdir -p "$out"; for i in 1 2 3; do echo '{{}}' ; done > "$out/manifest.jsonl" ;;
  pack) out=$5; mkdir -p "$out"; echo '{{"clips": 3}}' > "$out/pack.json" ;;
  train) case "$*" in *--export*) ;; *"--task v2s"*) echo "v2s broke" >&2; exit 1 ;; *) sleep 0.2 ;; esac ;;
esac
"""


def _run(tmp_path, caller, fail_v2s=True):
    stub = tmp_path / "python"
    text = STUB.format(python=sys.executable)
    stub.write_text(text if fail_v2s else text.replace('*"--task v2s"*)', '*"--task none"*)'))
    stub.chmod(0o755)
    env = {**os.environ, "PYTHON": str(stub), "STUB_LOG": str(tmp_path / "log.txt")}
    return subprocess.run(["bash", str(ROOT / "scripts" / "train_embedded.sh"), "work", "cpu", "1"], cwd=caller,
                          env=env, capture_output=True, text=True, timeout=60)


def test_a_failed_run_stops_the_script_and_work_dir_is_the_callers(tmp_path):
    caller = tmp_path / "caller"
    caller.mkdir()
    r = _run(tmp_path, caller)
    assert r.returncode == 1 and "the v2s run failed" in r.stderr and "v2s broke" in r.stderr
    log = (tmp_path / "log.txt").read_text().splitlines()
    assert sum(line.startswith("train") for line in log) == 3  # the three runs, no export
    assert not any("--export" in line or line.startswith("eval") for line in log)
    assert (caller / "work" / "runs").is_dir() and not (ROOT / "work").exists()
    assert all(str(caller / "work") in line for line in log if line.startswith(("make-data", "train")))


def test_all_runs_done_exports_and_evaluates_and_a_grown_data_set_is_not_trained_on_an_old_pack(tmp_path):
    r = _run(tmp_path, tmp_path, fail_v2s=False)
    assert r.returncode == 0, r.stderr
    log = (tmp_path / "log.txt").read_text().splitlines()
    assert sum("--export" in line for line in log) == 3 and sum(line.startswith("eval") for line in log) == 3
    (tmp_path / "work" / "pack" / "train" / "pack.json").write_text('{"clips": 2}')  # packed before N_TRAIN grew
    r = _run(tmp_path, tmp_path, fail_v2s=False)
    assert r.returncode == 1 and "holds 2 clips" in r.stderr and "delete" in r.stderr
