"""scripts/train_embedded.sh's control flow, with a stand-in interpreter that logs each command
(the real chain, with tiny sizes, takes minutes; its run is recorded in docs/embedded_model_history.md): a relative
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
if [ "$STUB_V2S" = wait ]; then  # a trainer that stops on SIGTERM or SIGINT, as the real one does
  stop() {{ trap '' INT TERM; kill $! 2>/dev/null; echo "$1" >> "$STUB_LOG"; exit "$2"; }}
  trap 'stop TERM 143' TERM
  trap 'stop INT 130' INT
fi
shift 2  # -m vssflow_core
echo "$*" >> "$STUB_LOG"
case "$1" in
  make-data) out=$3; mkdir -p "$out"; for i in 1 2 3; do echo '{{}}' ; done > "$out/manifest.jsonl" ;;
  pack) out=$5; mkdir -p "$out"; echo '{{"clips": 3}}' > "$out/pack.json" ;;
  train) case "$*" in *--export*) exit 0 ;; esac
    case "$*" in *"--task v2s"*) case "$STUB_V2S" in fail) echo "v2s broke" >&2; exit 1 ;; stopped) exit 143 ;; esac ;; esac
    if [ "$STUB_V2S" = wait ]; then sleep 60 & wait; fi ;;
esac
"""


def _start(tmp_path, caller, v2s, **popen):
    """Start the script with the stand-in interpreter; ``v2s``: what the v2s trainer does (``fail``:
    exit 1, ``stopped``: exit 143 as after a signal, ``wait``: every trainer waits for SIGTERM)."""
    stub = tmp_path / "python"
    stub.write_text(STUB.format(python=sys.executable))
    stub.chmod(0o755)
    env = {**os.environ, "PYTHON": str(stub), "STUB_LOG": str(tmp_path / "log.txt"), "STUB_V2S": v2s}
    return subprocess.Popen(["bash", str(ROOT / "scripts" / "train_embedded.sh"), "work", "cpu", "1"], cwd=caller,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _run(tmp_path, caller, fail_v2s=True):
    proc = _start(tmp_path, caller, "fail" if fail_v2s else "")
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


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


def test_a_trainer_stopped_by_a_signal_stops_the_script_without_export(tmp_path):
    proc = _start(tmp_path, tmp_path, "stopped")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "the v2s run(s) were stopped by a signal; run again to resume" in err, err
    assert not any("--export" in line for line in (tmp_path / "log.txt").read_text().splitlines())


def _stop_while_training(tmp_path, send):
    """Start the script with trainers that wait for a signal, call ``send(proc)`` once the three
    run, and return (exit status, stderr, the log's lines)."""
    import signal
    import time

    def like_a_terminal():  # a foreground script gets SIGINT (a background job of a script ignores it)
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = _start(tmp_path, tmp_path, "wait", start_new_session=True, preexec_fn=like_a_terminal)
    log = tmp_path / "log.txt"
    deadline = time.time() + 30
    while time.time() < deadline and sum(line.startswith("train") for line in
                                         (log.read_text().splitlines() if log.exists() else [])) < 3:
        time.sleep(0.1)
    time.sleep(0.5)  # the script is in `wait`
    send(proc)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err, log.read_text().splitlines()


def test_sigterm_to_the_script_alone_reaches_the_trainers(tmp_path):
    import signal

    rc, err, lines = _stop_while_training(tmp_path, lambda proc: proc.send_signal(signal.SIGTERM))
    assert rc == 130 and "stopped; run again to resume" in err, err
    assert lines.count("TERM") == 3 and not any("--export" in line for line in lines)


def test_ctrl_c_to_the_process_group_stops_the_trainers_and_the_script(tmp_path):
    import signal

    rc, err, lines = _stop_while_training(tmp_path, lambda proc: os.killpg(proc.pid, signal.SIGINT))
    assert rc == 130 and "run again to resume" in err, err
    assert lines.count("TERM") + lines.count("INT") == 3 and not any("--export" in line for line in lines)
