"""Training data: task filtering, growing manifests, timestamp crops and official add/insert mixing."""
import json

import numpy as np
import pytest

from train_helpers import write_data
from vssflow_core.errors import VSSFlowError
from vssflow_core.train import data as train_data
from vssflow_core.train.data import ClipSource, ExampleSampler, collate, crop_clip, mix_speech_into

SR = 22050


def test_tasks_and_refresh(tmp_path):
    root = write_data(tmp_path / "d", n=4)
    assert [r["kind"] for r in ClipSource(root, "tts").rows] == ["speech", "speech"]
    assert [r["kind"] for r in ClipSource(root, "v2s").rows] == ["sfx", "sfx"]
    src = ClipSource(root, "joint")
    assert len(src.rows) == 4
    with open(root / "manifest.jsonl", "a") as f:  # a half-written row and a row whose file is missing
        f.write(json.dumps({"id": "x", "kind": "sfx", "file": "clips/missing.safetensors"}) + "\n{\"id\": ")
    assert src.refresh() == 4
    with pytest.raises(VSSFlowError, match="task"):
        ClipSource(root, "music")


def test_crop_is_by_timestamp(tmp_path):
    src = ClipSource(write_data(tmp_path / "d", n=2, duration_s=3.0), "joint")
    clip = src.load(src.rows[0])
    out = crop_clip(clip, 1.0, 2.0, 2 * SR, SR)
    assert out["wave"].shape == (2 * SR,) and np.array_equal(out["wave"][:100], clip.wave[SR: SR + 100])
    assert out["lip_feat"].shape == (50, 6) and np.array_equal(out["lip_feat"][0], clip.features["lip_feat"][25])
    assert out["appearance_feat"].shape == (20, 768) and np.array_equal(out["appearance_feat"][0], clip.features["appearance_feat"][10])
    late = crop_clip(clip, 2.0, 2.0, 2 * SR, SR)  # past the end: zero padded
    assert np.all(late["wave"][SR + 10:] == 0) and np.all(late["motion_feat"][25:] == 0)


def test_feature_grids_come_from_the_condition_table(monkeypatch):
    # the make-data format the shipped model was trained on, read from embedded.embedded_conditions
    assert train_data.FEATURE_RATES == {"lip_feat": 25.0, "phone_id": 25.0, "motion_feat": 25.0, "event_feat": 25.0,
                                        "appearance_feat": 10.0}
    assert train_data.FEATURE_SHAPES == {"lip_feat": ((6,), np.float32), "phone_id": ((), np.int64),
                                         "motion_feat": ((256,), np.float32), "event_feat": ((1,), np.float32),
                                         "appearance_feat": ((768,), np.float32)}
    import dataclasses

    from vssflow_core import embedded

    table = embedded.embedded_conditions()
    changed = tuple(dataclasses.replace(c, rate_hz=5.0, input_dim=512) if c.name == "appearance" else c for c in table)
    monkeypatch.setattr(embedded, "embedded_conditions", lambda: changed)
    rates, shapes = train_data._feature_table()
    assert rates["appearance_feat"] == 5.0 and shapes["appearance_feat"] == ((512,), np.float32)
    assert list(rates) == ["lip_feat", "phone_id", "motion_feat", "event_feat", "appearance_feat"]  # table order; ref has no rate


def test_add_and_insert_mixing():
    n, f25, f10 = 2 * SR, 50, 20
    base = {"wave": np.full(n, 0.5, np.float32), "lip_feat": np.zeros((f25, 6), np.float32),
            "phone_id": np.zeros(f25, np.int64), "motion_feat": np.ones((f25, 256), np.float32),
            "appearance_feat": np.ones((f10, 768), np.float32), "ref_audio_ebd": None}
    speech = {"wave": np.full(n, 0.25, np.float32), "lip_feat": np.full((f25, 6), 2.0, np.float32),
              "phone_id": np.full(f25, 7, np.int64), "motion_feat": np.full((f25, 256), 3.0, np.float32),
              "appearance_feat": np.full((f10, 768), 3.0, np.float32), "ref_audio_ebd": np.ones(256, np.float32)}
    add = mix_speech_into(base, speech, (0.2, 0.6), 1.0, "add", 0.5, SR)
    assert add["wave"][int(1.1 * SR)] == pytest.approx(0.5 * 0.5 + 0.25) and add["wave"][int(0.5 * SR)] == 0.5
    assert add["phone_id"][25:35].tolist() == [7] * 10 and add["phone_id"][:25].sum() == 0 and add["phone_id"][35:].sum() == 0
    assert add["motion_feat"][30, 0] == 4.0 and add["motion_feat"][10, 0] == 1.0
    assert add["appearance_feat"][10, 0] == 4.0 and add["ref_audio_ebd"] is speech["ref_audio_ebd"]
    ins = mix_speech_into(base, speech, (0.2, 0.6), 1.0, "insert", 0.5, SR)
    assert ins["wave"][int(1.1 * SR)] == 0.25 and ins["motion_feat"][30, 0] == 3.0
    assert base["wave"][int(1.1 * SR)] == 0.5  # inputs untouched


def test_sampler_is_deterministic_and_collates(tmp_path):
    src = ClipSource(write_data(tmp_path / "d", n=4, duration_s=3.0), "joint")
    sampler = ExampleSampler(src, 2.0, 2 * SR, p_mix=1.0)
    a, b = sampler.example((0, 5, 0, 1)), sampler.example((0, 5, 0, 1))
    assert all(np.array_equal(a[k], b[k]) for k in ("wave", "lip_feat", "phone_id"))
    batch = collate([sampler.example((0, s, 0, 0)) for s in range(3)])
    assert batch["wave"].shape == (3, 2 * SR) and batch["phone_id"].dtype.is_floating_point is False
    assert batch["motion_feat"].shape == (3, 50, 256) and batch["appearance_feat"].shape == (3, 20, 768)
