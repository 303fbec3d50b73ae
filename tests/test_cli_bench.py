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
