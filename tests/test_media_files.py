"""Output files: counters, atomic writes that never overwrite, paths that cannot escape, WAV/FLAC."""

import os

import numpy as np
import pytest

from vssflow_core.errors import VSSFlowError
from vssflow_core.media.audio_io import load_audio, save_audio
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
    with pytest.raises(OSError):  # e.g. a full disk in the middle of the write
        with atomic_output(target, replace=True) as tmp:
            tmp.write_bytes(b"ne")
            raise OSError(28, "No space left on device")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["state.pt"]
    with atomic_output(target, replace=True) as tmp:
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"
    assert target.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["state.pt"]


def test_checkpoint_writers_leave_no_temp_file_when_the_write_fails(tmp_path, monkeypatch):
    import pathlib

    import torch

    from vssflow_core.train import pack, run_folder

    def half_write_then_disk_full(target, *args, **kwargs):
        with open(target, "wb") as f:
            f.write(b"half")
        raise OSError(28, "No space left on device")

    ckpt = tmp_path / "last.pt"
    run_folder.atomic_save({"step": 1}, ckpt)
    monkeypatch.setattr(torch, "save", lambda obj, f: half_write_then_disk_full(f))
    with pytest.raises(OSError, match="No space"):
        run_folder.atomic_save({"step": 2}, ckpt)
    monkeypatch.setattr(pathlib.Path, "write_bytes", half_write_then_disk_full)
    with pytest.raises(OSError, match="No space"):
        pack._write_shard(tmp_path / "pack_000.safetensors.xz", {"a": np.zeros(3, np.float32)})
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    assert torch.load(ckpt, weights_only=True) == {"step": 1}


@pytest.mark.parametrize("ext,subtype,tol", [(".wav", None, 1e-4), (".flac", "PCM_24", 1e-6), (".wav", "FLOAT", 0)])
def test_save_and_load_audio(tmp_path, ext, subtype, tol):
    torch = pytest.importorskip("torch")
    t = torch.arange(16000) / 16000
    wave = torch.stack([0.5 * torch.sin(2 * torch.pi * 440 * t), 0.25 * torch.sin(2 * torch.pi * 220 * t)])
    path = save_audio(tmp_path / f"a{ext}", wave[None], 16000, subtype=subtype)
    back, sr = load_audio(path)
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


def test_load_audio_from_a_video(tmp_path):
    from media_factory import find_clicks, make_video

    video = make_video(tmp_path / "v.mp4", fps=25, num_frames=25, audio="clicks", click_times_s=(0.4,))
    wave, sr = load_audio(video)
    assert sr == 16000 and find_clicks(wave, sr) == pytest.approx([0.4], abs=1e-3)
    silent = make_video(tmp_path / "s.mp4", fps=25, num_frames=5)
    with pytest.raises(VSSFlowError, match="no audio track"):
        load_audio(silent)
