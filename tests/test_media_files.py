"""Output files: counters, atomic writes that never overwrite, paths that cannot escape, WAV/FLAC."""

import os

import numpy as np
import pytest

from vssflow_core.errors import VSSFlowError
from vssflow_core.media.audio_io import save_audio
from vssflow_core.media.files import atomic_output, safe_join, unique_path


def test_unique_path_counts_like_comfyui(tmp_path):
    first = unique_path(tmp_path, "video/VSSFlow", "mp4")
    assert first == tmp_path / "video" / "VSSFlow_00001_.mp4" and first.parent.is_dir()
    first.write_bytes(b"x")
    (tmp_path / "video" / "VSSFlow_00007_.mp4").write_bytes(b"x")
    (tmp_path / "video" / "VSSFlow_00009_.wav").write_bytes(b"x")  # other extension: ignored
    (tmp_path / "video" / "VSSFlowX_00020_.mp4").write_bytes(b"x")  # other prefix: ignored
    assert unique_path(tmp_path, "video/VSSFlow", ".mp4").name == "VSSFlow_00008_.mp4"


@pytest.mark.parametrize("prefix", ["../up", "/etc/passwd", "a/../../b"])
def test_unique_path_refuses_escapes(tmp_path, prefix):
    with pytest.raises(VSSFlowError, match="absolute|'\\.\\.'"):
        unique_path(tmp_path, prefix, "mp4")


def test_safe_join(tmp_path):
    assert safe_join(tmp_path, "a/b.mp4") == tmp_path / "a" / "b.mp4"
    assert safe_join(tmp_path, "") == tmp_path
    for bad in ("..", "../x", "a/../../x", "/tmp/x", "a\x00b"):
        with pytest.raises(VSSFlowError):
            safe_join(tmp_path, bad)
    outside = tmp_path.parent / "outside_dir"
    outside.mkdir(exist_ok=True)
    os.symlink(outside, tmp_path / "link")
    with pytest.raises(VSSFlowError, match="outside"):
        safe_join(tmp_path, "link/file.mp4")


def test_atomic_output_renames_on_success_only(tmp_path):
    target = tmp_path / "sub" / "out.bin"
    with atomic_output(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".bin" and tmp != target
        tmp.write_bytes(b"done")
        assert not target.exists()
    assert target.read_bytes() == b"done"
    with pytest.raises(VSSFlowError, match="already exists"):
        with atomic_output(target):
            pass
    failing = tmp_path / "sub" / "fail.bin"
    with pytest.raises(RuntimeError):
        with atomic_output(failing) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("writer crashed")
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["out.bin"]


def test_atomic_output_refuses_a_file_that_appeared(tmp_path):
    target = tmp_path / "race.bin"
    with pytest.raises(VSSFlowError, match="appeared while writing|already exists"):
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"mine")
            target.write_bytes(b"theirs")
    assert target.read_bytes() == b"theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["race.bin"]


def test_atomic_output_replace_swaps_in_or_keeps_the_old_file(tmp_path):
    target = tmp_path / "state.pt"
    target.write_bytes(b"old")
    with pytest.raises(VSSFlowError, match=r"cannot write .*state.pt \(.*No space left.*\); is the disk full"):
        with atomic_output(target, replace=True) as tmp:
            tmp.write_bytes(b"ne")
            raise OSError(28, "No space left on device")
    with pytest.raises(FileNotFoundError):  # other file system errors pass through as they are
        with atomic_output(target, replace=True) as tmp:
            tmp.write_bytes(b"ne")
            open(tmp_path / "missing" / "input.bin", "rb")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["state.pt"]
    with atomic_output(target, replace=True) as tmp:
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"
    assert target.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["state.pt"]


# Every writer of checkpoints, shards, clips and model files under a real file-size limit (the
# stand-in for a full disk): the previous file stays, no temporary file is left, one-line error.
_FULL_DISK = r"""
import json, resource, sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, sys.argv[2])
from train_helpers import tiny_config
from vssflow_core.data import generate
from vssflow_core.errors import VSSFlowError
from vssflow_core.model import VSSFlow
from vssflow_core.model.checkpoint import save_model_file
from vssflow_core.train import pack, run_folder

root = Path(sys.argv[1])
big = np.random.default_rng(0).standard_normal(100_000).astype(np.float32)  # 400 kB, does not compress
model = VSSFlow(tiny_config())
writers = {"last.pt": lambda p, x: run_folder.atomic_save({"w": torch.from_numpy(x)}, p),
           "pack_000.safetensors.xz": lambda p, x: pack._write_shard(p, {"a": x}),
           "clip.safetensors": lambda p, x: generate._save_tensors(p, {"wave": x}, {}),
           "model.safetensors": lambda p, x: save_model_file(p, model, {"extra": torch.from_numpy(x)}, overwrite=True)}
for name, write in writers.items():
    write(root / name, big[:10])
resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
errors = {}
for name, write in writers.items():
    try:
        write(root / name, big)
    except VSSFlowError as e:
        errors[name] = str(e)
print(json.dumps(errors))
"""


def test_writers_under_a_full_disk_keep_the_old_file_and_leave_no_temp_file(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    from safetensors.numpy import load_file

    tests = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": str(tests.parent), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _FULL_DISK, str(tmp_path), str(tests)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    errors = json.loads(done.stdout.splitlines()[-1])
    names = ["clip.safetensors", "last.pt", "model.safetensors", "pack_000.safetensors.xz"]
    assert sorted(errors) == names
    for name, message in errors.items():
        assert message.startswith(f"cannot write {tmp_path / name} (") and "is the disk full?" in message
        assert "\n" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # no temporary file left
    assert load_file(str(tmp_path / "clip.safetensors"))["wave"].shape == (10,)  # the old files are whole


@pytest.mark.parametrize("ext,subtype,tol", [(".wav", None, 1e-4), (".flac", "PCM_24", 1e-6), (".wav", "FLOAT", 0)])
def test_save_audio_and_read_it_back(tmp_path, ext, subtype, tol):
    from vssflow_core.media.video import read_audio

    torch = pytest.importorskip("torch")
    t = torch.arange(16000) / 16000
    wave = torch.stack([0.5 * torch.sin(2 * torch.pi * 440 * t), 0.25 * torch.sin(2 * torch.pi * 220 * t)])
    path = save_audio(tmp_path / f"a{ext}", wave[None], 16000, subtype=subtype)
    back, sr = read_audio(path)
    assert sr == 16000 and back.shape == (2, 16000)
    assert float((back - wave).abs().max()) <= tol + 1e-7
    with pytest.raises(VSSFlowError, match="already exists"):
        save_audio(path, wave, 16000)


def test_save_audio_errors(tmp_path):
    with pytest.raises(VSSFlowError, match="wav or .flac"):
        save_audio(tmp_path / "a.mp3", np.zeros(10), 16000)
    with pytest.raises(VSSFlowError, match="sample_rate"):
        save_audio(tmp_path / "a.wav", np.zeros(10), 0)
    with pytest.raises(VSSFlowError, match="NaN"):
        save_audio(tmp_path / "a.wav", np.full(10, np.nan), 16000)
    with pytest.raises(VSSFlowError, match="shape"):
        save_audio(tmp_path / "a.wav", np.zeros((2, 3, 4)), 16000)
    assert list(tmp_path.iterdir()) == []


def test_a_voice_recording_is_read_from_a_video_or_refused_with_the_reason(tmp_path):
    from media_factory import find_clicks, make_video
    from vssflow_core.features.speaker import read_voice_file

    video = make_video(tmp_path / "v.mp4", fps=25, num_frames=25, audio="clicks", click_times_s=(0.4,))
    wave, sr = read_voice_file(video, "--voice")
    assert sr == 16000 and find_clicks(wave, sr) == pytest.approx([0.4], abs=1e-3)
    silent = make_video(tmp_path / "s.mp4", fps=25, num_frames=5)
    with pytest.raises(VSSFlowError, match=r"^--voice .*s\.mp4: the file has no audio stream"):
        read_voice_file(silent, "--voice")
    (tmp_path / "notes.wav").write_text("not audio")
    with pytest.raises(VSSFlowError, match=r"^--voice .*notes\.wav: not a readable recording"):
        read_voice_file(tmp_path / "notes.wav", "--voice")
