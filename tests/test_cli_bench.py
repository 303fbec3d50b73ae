"""bench: the end-to-end measurement and the aggregator's JSON (headline keys from each part)."""
import argparse
import json
import sys
import types

import pytest

from vssflow_core import bench
from vssflow_core.bench import end_to_end

import media_factory
from tiny_models import make_model_file, one_thread

_one_thread = pytest.fixture(scope="module", autouse=True)(one_thread)


def test_end_to_end_measure_reports_stages(tmp_path):
    model = make_model_file(tmp_path / "tiny.safetensors", "embedded", duration_s=2.0)
    video = media_factory.make_video(tmp_path / "v.mp4", fps=30.0, duration_s=3.0)
    r = end_to_end.measure(str(video), str(model), steps=1)
    assert r["video_s"] == pytest.approx(3.0, abs=0.04) and r["steps"] == 1
    assert r["rtf"] == pytest.approx(r["video_s"] / r["wall_s"], rel=1e-2)
    assert {"decode", "features", "sampling", "vocoder", "mux"} <= set(r["stages_s"])
    assert r["peak_rss_mb"] > 0


def test_aggregator_merges_headline_keys(tmp_path, monkeypatch, capsys):
    fake = types.ModuleType("fake_official_bench")
    fake.run = lambda quick=False: {"guided_eval_speedup": 2.7, "official_nfe_matched": 10, "detail": {"x": 1}}
    monkeypatch.setitem(sys.modules, "fake_official_bench", fake)
    monkeypatch.setitem(bench.PARTS, "official", "fake_official_bench")
    out = tmp_path / "b.json"
    args = argparse.Namespace(parts=["official"], quick=True, model="embedded", durations=None, json=str(out))
    assert bench.run(args) == 0
    data = json.loads(out.read_text())
    assert data["guided_eval_speedup"] == 2.7 and data["official_nfe_matched"] == 10
    assert data["official"]["detail"] == {"x": 1}
    assert '"guided_eval_speedup": 2.7' in capsys.readouterr().out
    # an earlier run's file is kept; a missing folder is refused before any measuring, not after
    from vssflow_core.errors import VSSFlowError

    fake.run = lambda quick=False: pytest.fail("measured before the --json path was checked")
    with pytest.raises(VSSFlowError, match="exists; choose another name"):
        bench.run(args)
    assert json.loads(out.read_text())["guided_eval_speedup"] == 2.7
    args.json = str(tmp_path / "no_such_folder" / "b.json")
    with pytest.raises(VSSFlowError, match="no_such_folder does not exist; create it first"):
        bench.run(args)


def test_matmul_gflop_counts_the_multiplies():
    import torch

    from vssflow_core.bench.official_dit import matmul_gflop, sgemm_gflops

    layer = torch.nn.Linear(64, 32)
    x = torch.randn(10, 64)
    with torch.no_grad():
        assert matmul_gflop(lambda: layer(x)) == pytest.approx(2 * 10 * 64 * 32 / 1e9)
        assert matmul_gflop(lambda: torch.relu(x)) == 0.0
    rate = sgemm_gflops(n=256, rounds=2)
    assert 0.1 < rate < 1e5  # GFLOP/s of a real product on this machine


def test_official_bench_reports_the_compute_ceiling():
    """One official-width layer: the batched path multiplies less than the official one, and the
    ceiling is the official time over the batched multiplies at the machine's GEMM rate."""
    from vssflow_core.bench.official_dit import bench_eval

    r = bench_eval(layers=1, rounds=1, include_bf16=False)
    assert 0 < r["batched_fp32_gflop"] < r["official_two_pass_fp32_gflop"]
    assert r["batched_fp32_gflops_per_s"] == pytest.approx(r["batched_fp32_gflop"] / r["batched_fp32_ms"] * 1000, rel=0.01)
    ceiling = r["official_two_pass_fp32_ms"] / (r["batched_fp32_gflop"] / r["sgemm_gflops_per_s"] * 1000)
    assert r["fp32_speedup_ceiling"] == pytest.approx(ceiling, rel=0.01)
    assert r["batched_fp32_dev"] < 1e-4
