"""Helpers shared by the training tests: a tiny model config, a generated data folder, edits of that folder
(real-looking visual features, a speech transcript with its mouth track) and an in-process run of the
trainer's command line. The ``train_setup`` fixture that combines them is in conftest.py."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from vssflow_core.config import DiTConfig
from vssflow_core.embedded import embedded_config

REPO = Path(__file__).resolve().parents[1]


def tiny_config():
    cfg = embedded_config()
    return dataclasses.replace(cfg, name="embedded-test", duration_s=2.0,
                               dit=DiTConfig(num_layers=1, num_heads=2, head_dim=16, num_kv_heads=1, cross_dim=32,
                                             ff_inner_dim=64),
                               conditions=tuple(dataclasses.replace(c, out_dim=8 if c.route == "concat" else 32,
                                                                    hidden_dim=16) for c in cfg.conditions))


def write_data(root: Path, n: int = 4, duration_s: float = 3.0) -> Path:
    """A make-data-format folder with noise/tone clips (speech rows carry lips and phonemes)."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    (root / "clips").mkdir(parents=True)
    rows = []
    f25, f10, sr = int(np.ceil(duration_s * 25)), int(np.ceil(duration_s * 10)), 22050
    for i in range(n):
        kind = ["speech", "sfx"][i % 2]
        t = np.arange(int(duration_s * sr)) / sr
        wave = (0.2 * np.sin(2 * np.pi * (200 + 50 * i) * t)).astype(np.float32)
        tensors = {"wave": wave, "motion_feat": rng.normal(size=(f25, 256)).astype(np.float32),
                   "appearance_feat": rng.normal(size=(f10, 768)).astype(np.float32),
                   "lip_feat": (rng.normal(size=(f25, 6)) * (kind == "speech")).astype(np.float32),
                   "phone_id": (rng.integers(1, 70, size=f25) * (kind == "speech")).astype(np.int64),
                   "event_feat": rng.uniform(size=(f25, 1)).astype(np.float32)}
        if kind == "speech":
            tensors["ref_audio_ebd"] = rng.normal(size=256).astype(np.float32)
        save_file(tensors, str(root / "clips" / f"{i:06d}.safetensors"))
        rows.append({"id": f"{i:06d}", "kind": kind, "duration_s": duration_s, "file": f"clips/{i:06d}.safetensors",
                     "speech_start_s": 0.5 if kind == "speech" else None, "speech_end_s": 2.0 if kind == "speech" else None,
                     "transcript": "a b" if kind == "speech" else "", "events": []})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def run_trainer(args):
    """In-process run of the trainer's command line (exceptions propagate, unlike ``cli.main``)."""
    import argparse

    from vssflow_core.train.trainer import add_arguments, run

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    threads = torch.get_num_threads()
    try:
        return run(parser.parse_args(args))
    finally:
        torch.set_num_threads(threads)


def valid_visuals(root):
    """Give the generated clips appearance features of real thumbnails and motion in [-1, 1]."""
    from safetensors.numpy import load_file, save_file

    from vssflow_core.features.visual import appearance_features

    rng = np.random.default_rng(1)
    for f in sorted((root / "clips").iterdir()):
        t = load_file(str(f))
        frames = rng.integers(0, 256, size=(t["appearance_feat"].shape[0], 32, 32, 3), dtype=np.uint8)
        t["appearance_feat"] = appearance_features(frames)
        t["motion_feat"] = np.tanh(t["motion_feat"]).astype(np.float32)
        save_file(t, str(f))
    return root


def speech_lips(root):
    """Give the speech clips the transcript "ma pa" and a real mouth track for it (lip_raw)."""
    from safetensors.numpy import load_file, save_file

    from vssflow_core.features.lip_space import lip_features_from_openings, openings_from_phoneme_timings

    segs = [("<blank>", 0.0, 0.3), ("M", 0.3, 0.4), ("AA1", 0.4, 1.2), ("P", 1.2, 1.32), ("AA1", 1.32, 1.5),
            ("<blank>", 1.5, 1.7)]
    lips = lip_features_from_openings(*openings_from_phoneme_timings(segs, 2.0, fps=25.0), fps=25.0).astype(np.float32)
    rows = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    for row in rows:
        if row["kind"] == "speech":
            row.update(transcript="ma pa", speech_start_s=0.3, speech_end_s=1.5)
            t = load_file(str(root / row["file"]))
            t["lip_raw"] = lips
            save_file(t, str(root / row["file"]))
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root, lips
