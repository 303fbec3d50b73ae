"""bench.gpu: the GPU benchmark runs end to end on the CPU (quick sizes), records errors and budget
skips per item instead of failing, and picks the headline solver as documented."""
import json
import math

import pytest

from vssflow_core.bench import gpu
from vssflow_core.bench.gpu_headline import pick_solver

from tiny_models import one_thread

_one_thread = pytest.fixture(scope="module", autouse=True)(one_thread)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench_gpu") / "gpu.json"
    result = gpu.run(json_out=str(path), device="cpu", quick=True, budget_s=600)
    return result, json.loads(path.read_text())


def test_quick_cpu_run_writes_every_item(quick):
    result, data = quick
    assert data["device"] == "cpu" and data["gpu_name"] is None and data["torch"]
    for item in ("model", "eval", "sampling", "memory", "decode", "features", "throughput", "compile"):
        assert isinstance(data[item], dict) and "error" not in data[item], (item, data[item])
    assert _number(data["total_10s_s"]) and data["total_10s_s"] > 0
    assert data["headline_solver"] in data["sampling"] and "target < 1 s" in data["headline"]
    assert data["total_10s_by_nfe_est_s"]["mode"] == "fp32" and data["total_10s_by_nfe_est_s"]["26"] > 0
    assert data["total_10s_s"] == result["total_10s_s"]


def test_quick_eval_fp32_paths_agree(quick):
    ev = quick[1]["eval"]
    assert ev["official_two_pass_fp32_ms"] > 0 and ev["batched_fp32_ms"] > 0 and ev["batched_fp32_speedup"] > 0
    assert ev["batched_fp32_dev"] < 1e-5  # the batched pass computes the official guided velocity
    for mode in ("tf32", "bf16", "fp16"):
        assert ev[f"batched_{mode}_ms"] == "skipped: cpu"
    assert quick[1]["compile"]["batched_bf16_compiled_ms"] == "skipped: cpu"
    assert quick[1]["memory"]["peak_mb"] == "skipped: cpu"


def test_quick_sampling_rows(quick):
    samp, steps = quick[1]["sampling"], gpu.QUICK.steps
    assert samp["reference"]["nfe"] >= 6
    expected_nfe = {f"euler{steps}": steps, f"midpoint{steps}": 2 * steps, f"heun{steps}": 2 * steps}
    for name, nfe in expected_nfe.items():
        assert samp[name]["nfe"] == nfe and samp[name]["precision"] == "fp32"
    for name in (*expected_nfe, "dopri5"):
        assert samp[name]["seconds"] > 0 and _number(samp[name]["rel_error"]) and samp[name]["rel_error"] < 1
    assert "dopri5_fp32" not in samp  # on the CPU the dopri5 row already is fp32


def test_quick_codec_features_throughput(quick):
    data = quick[1]
    assert data["decode"]["fp32_ms"] > 0 and data["decode"]["samples"] == 640 * round(25 * gpu.QUICK.seconds)
    feats = data["features"]
    assert feats["clip_shape"] == [round(10 * gpu.QUICK.seconds), 768]
    assert feats["synchformer_shape"] == [1, 1, 8, 768] and feats["rawnet3_shape"] == [256]
    assert all(feats[f"{k}_fp32_ms"] > 0 for k in ("clip", "synchformer", "rawnet3"))
    for b in gpu.QUICK.batches:
        assert data["throughput"][f"batch{b}"]["audio_s_per_s"] > 0


def test_failing_items_are_recorded_and_the_rest_runs(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no model today")

    monkeypatch.setattr(gpu, "setup_dit", broken)
    monkeypatch.setattr(gpu, "bench_features", broken)
    path = tmp_path / "g.json"
    gpu.run(json_out=str(path), device="cpu", quick=True, budget_s=600)
    data = json.loads(path.read_text())
    assert "no model today" in data["model"]["error"] and "no model today" in data["features"]["error"]
    for item in ("eval", "sampling", "throughput"):
        assert data[item]["error"].startswith("model build failed")
    assert data["decode"]["fp32_ms"] > 0  # independent of the DiT
    assert data["total_10s_s"] is None and data["headline"].startswith("incomplete")


def test_items_skipped_when_the_budget_is_spent(monkeypatch):
    monkeypatch.setattr(gpu, "setup_dit", lambda s, device: {"info": {}})
    result = gpu.run(device="cpu", settings=gpu.QUICK, budget_s=1.0)
    for item in gpu.ITEM_NEED_S:
        assert result[item] == "skipped: budget"


def test_no_cuda_means_skipped(monkeypatch):
    monkeypatch.setattr(gpu.torch.cuda, "is_available", lambda: False)
    assert gpu.run() == {"skipped": "no CUDA device"}


def test_pick_solver():
    rows = {"euler10": {"seconds": 1.0, "rel_error": 0.2}, "midpoint10": {"seconds": 2.0, "rel_error": 0.01},
            "dopri5": {"seconds": 5.0, "rel_error": 1e-4}}
    assert pick_solver(rows, 0.05) == "midpoint10"
    assert pick_solver(rows, 1e-5) == "dopri5"  # none within: the most accurate
    no_ref = {k: {**v, "rel_error": None} for k, v in rows.items()}
    assert pick_solver(no_ref, 0.05) == "dopri5"


def test_main_passes_arguments(monkeypatch):
    seen = {}
    monkeypatch.setattr(gpu, "run", lambda **kw: seen.update(kw) or {})
    assert gpu.main(["--json", "o.json", "--budget-s", "50", "--device", "cpu", "--quick"]) == 0
    assert seen == {"json_out": "o.json", "device": "cpu", "quick": True, "budget_s": 50.0, "only": None}
    gpu.main(["--items", " eval, compile "])
    assert seen["only"] == ["eval", "compile"]


def test_items_option_runs_only_those_in_that_order(tmp_path, capsys):
    path = tmp_path / "only.json"
    gpu.main(["--device", "cpu", "--quick", "--json", str(path), "--items", "decode,eval"])
    data = json.loads(path.read_text())
    assert "decode" in data and "eval" in data
    assert not any(item in data for item in ("sampling", "memory", "features", "throughput", "compile"))
    out = capsys.readouterr().out
    assert out.index("== decode") < out.index("== eval")
    with pytest.raises(SystemExit):
        gpu.main(["--device", "cpu", "--quick", "--items", "eval,warp"])
    assert "unknown item(s) warp" in capsys.readouterr().err
    before = path.read_bytes()
    with pytest.raises(SystemExit):  # an earlier run's results are refused before any work, not rewritten
        gpu.main(["--device", "cpu", "--quick", "--json", str(path), "--items", "decode"])
    assert path.read_bytes() == before and "exists; choose another name" in capsys.readouterr().err
