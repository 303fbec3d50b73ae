"""python -m vssflow_core: exit 0 with the output, exit 2 with one line on stderr and no output."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vssflow_core import cli
from vssflow_core.media.video import probe_video, read_audio

import media_factory
from tiny_models import make_model_file, one_thread

REPO = Path(__file__).resolve().parents[1]
_one_thread = pytest.fixture(scope="module", autouse=True)(one_thread)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    return {
        "model": make_model_file(d / "tiny.safetensors", "embedded", duration_s=2.0),
        "video": media_factory.make_video(d / "in.mp4", fps=25.0, duration_s=2.6, audio="tone"),
        "dir": d,
    }


def run(argv, capsys):
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_generate_writes_video_with_new_audio(files, capsys, tmp_path):
    out = tmp_path / "out.mp4"
    rc, stdout, err = run(["generate", files["video"], "--out", out, "--model", files["model"], "--steps", "1",
                           "--text", "hello world", "--speech-start", "0.3", "--speech-end", "2.0", "--seed", "7"],
                          capsys)
    assert rc == 0, err
    assert stdout.strip() == str(out)
    src, dst = probe_video(files["video"]), probe_video(out)
    assert (dst.num_frames, dst.width, dst.height) == (src.num_frames, src.width, src.height)
    assert dst.duration_s == pytest.approx(src.duration_s, abs=0.05) and dst.has_audio
    wave, sr = read_audio(out)
    assert abs(wave.shape[-1] / sr - src.duration_s) < 0.05
    # the video's own tone is gone: the track is what the library generates with the same arguments
    from vssflow_core.audio.resample import resample
    from vssflow_core.pipeline import generate, load_bundle

    expected, rate = generate(load_bundle(files["model"]), str(files["video"]), text="hello world",
                              speech_start_s=0.3, speech_end_s=2.0, seed=7, steps=1)
    expected = resample(expected.reshape(-1), rate, sr)  # the muxer writes AAC at 48 kHz
    n = min(wave.shape[-1], expected.shape[-1])
    heard, made = wave.mean(0)[:n].double(), expected.reshape(-1)[:n].double()
    assert float(torch.corrcoef(torch.stack([heard, made]))[0, 1]) > 0.9


@pytest.mark.parametrize("case", ["missing video", "not a video", "audio only", "zero frames", "bad model",
                                  "existing out", "bad steps", "bad window", "empty text", "unknown command",
                                  "bad voice", "bad out name", "video is a folder", "out is a folder", "bad threads",
                                  "window without text", "guidance below 1", "bad rescale", "bad device",
                                  "seed too large"])
def test_bad_input_exits_2_with_one_line_and_no_output(files, capsys, tmp_path, case):
    out = tmp_path / "out.mp4"
    args = ["generate", files["video"], "--out", out, "--model", files["model"], "--steps", "1"]
    if case == "missing video":
        args[1] = tmp_path / "nope.mp4"
    elif case == "not a video":
        args[1] = media_factory.make_not_video(tmp_path / "x.mp4")
    elif case == "audio only":
        args[1] = media_factory.make_audio_only(tmp_path / "a.m4a")
    elif case == "zero frames":
        args[1] = media_factory.make_zero_frames(tmp_path / "z.mp4")
    elif case == "bad voice":
        args += ["--text", "hi", "--voice", tmp_path / "no_voice.wav"]
    elif case == "video is a folder":
        (tmp_path / "clips").mkdir()
        args[1] = tmp_path / "clips"
    elif case == "out is a folder":
        (tmp_path / "outdir").mkdir()
        args[3] = tmp_path / "outdir"
    elif case == "bad threads":
        args += ["--threads", "-1"]
    elif case == "window without text":
        args += ["--speech-start", "0.5", "--speech-end", "1.0"]
    elif case == "guidance below 1":  # below 1 the model ignores the video: refused, not silently unconditional
        args += ["--guidance", "0.5"]
    elif case == "bad rescale":
        args += ["--guidance-rescale", "1.5"]
    elif case == "bad device":
        args += ["--device", "tpu"]
    elif case == "seed too large":
        args += ["--seed", str(2**64)]
    elif case == "bad out name":
        out = tmp_path / "out.txt"
        args[3] = out
    elif case == "bad model":
        (tmp_path / "m.safetensors").write_bytes(b"garbage" * 10)
        args[5] = tmp_path / "m.safetensors"
    elif case == "existing out":
        out.write_bytes(b"keep me")
    elif case == "bad steps":
        args[-1] = "0"
    elif case == "bad window":
        args += ["--text", "hi", "--speech-start", "9", "--speech-end", "12"]
    elif case == "empty text":
        args += ["--text", "  "]
    elif case == "unknown command":
        args[0] = "generat"
    before = sorted(tmp_path.iterdir())
    rc, stdout, err = run(args, capsys)
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    after = sorted(tmp_path.iterdir())
    assert after == before  # nothing written, nothing left behind
    if case == "existing out":
        assert out.read_bytes() == b"keep me"
    if case == "bad voice":
        assert "--voice" in err and "no such file" in err  # named as the voice, not as a video


def test_missing_command_module_is_a_clear_message(capsys, monkeypatch):
    monkeypatch.setitem(cli.COMMANDS, "train", ("vssflow_core.no_such_module", "add_arguments", "run", "x"))
    rc, _, err = run(["train", "--help"], capsys)
    assert rc == 2 and "the 'train' command is not available" in err and "no_such_module" in err


def test_subprocess_exit_code(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "vssflow_core", "generate", str(tmp_path / "none.mp4"), "--out",
                           str(tmp_path / "o.mp4")], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "not found" in proc.stderr
    assert not (tmp_path / "o.mp4").exists()


def test_help_lists_commands(capsys):
    rc, out, _ = run(["--help"], capsys)
    assert rc == 0 and all(name in out for name in cli.COMMANDS)


def test_sigterm_removes_the_temporary_output(tmp_path, capsys, monkeypatch):
    """kill / timeout / job schedulers send SIGTERM: it unwinds like Ctrl-C, so no hidden partial
    file is left next to the output."""
    import os
    import signal

    from vssflow_core.media.files import atomic_output

    out = tmp_path / "out.mp4"

    def run_generate(args):
        with atomic_output(out) as tmp:
            tmp.write_bytes(b"partial")
            os.kill(os.getpid(), signal.SIGTERM)
        return 0

    monkeypatch.setattr(cli, "run_generate", run_generate)
    rc, _, err = run(["generate", "v.mp4", "--out", out], capsys)
    assert rc == 143 and err.strip() == "error: terminated"
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored after the command


def test_device_names_are_checked_against_this_machine():
    import torch

    from vssflow_core.errors import VSSFlowError
    from vssflow_core.pipeline import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(VSSFlowError, match="expected auto, cpu, cuda, cuda:N or mps"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(VSSFlowError, match="this torch sees no CUDA GPU; use auto or cpu"):
            resolve_device("cuda:1")
