"""End-to-end benchmark: video file -> decode -> features -> sampling -> vocoder -> mux, on CPU.

Clips are 1280x720 at 30 fps (H.264, a moving box; made once in ``/tmp/vssflow_bench`` by
``bench.decode.make_clip``). Each length runs in a fresh subprocess so its peak resident memory
is its own. Reported per length: wall time, real-time factor (seconds of audio per second of
compute), peak RSS, and the time per stage.

Run by ``python -m vssflow_core bench --parts end_to_end [--durations 10 60 600] [--model embedded] [--json OUT]``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLIP_DIR = Path("/tmp/vssflow_bench")


def clip_path(duration_s: float, fps: int = 30) -> Path:
    """The 720p clip of this length (generated on first use)."""
    from vssflow_core.bench.decode import make_clip

    path = CLIP_DIR / f"bench_720p{fps}_{int(duration_s)}s.mp4"
    if not path.exists():
        make_clip(path, duration_s, fps=fps)
    return path


def measure(video: str, model: str = "embedded", steps: int | None = None, threads: int = 0) -> dict:
    """One end-to-end run in this process: generate for ``video`` and mux into a temporary mp4."""
    import torch

    from vssflow_core.bench.decode import peak_rss_mb
    from vssflow_core.media.video import probe_video
    from vssflow_core.pipeline import generate_to_file, load_bundle

    if threads:
        torch.set_num_threads(threads)
    info = probe_video(video)
    t0 = time.perf_counter()
    bundle = load_bundle(model)
    load_s = time.perf_counter() - t0
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t1 = time.perf_counter()
        generate_to_file(bundle, video, Path(tmp) / "out.mp4", steps=steps, timings=timings)
        wall_s = time.perf_counter() - t1
    return {
        "video_s": round(info.duration_s, 3),
        "resolution": f"{info.width}x{info.height}@{info.fps:g}",
        "model": model,
        "steps": steps or bundle.config.steps,
        "solver": bundle.config.solver,
        "load_s": round(load_s, 3),
        "wall_s": round(wall_s, 3),
        "rtf": round(info.duration_s / wall_s, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "stages_s": {k: round(v, 3) for k, v in timings.items()},
        "threads": torch.get_num_threads(),
    }


def _measure_in_subprocess(video: Path, model: str, steps: int | None, threads: int) -> dict:
    code = ("import json, sys; from vssflow_core.bench.end_to_end import measure; "
            "print(json.dumps(measure(sys.argv[1], sys.argv[2], int(sys.argv[3]) or None, int(sys.argv[4]))))")
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    done = subprocess.run([sys.executable, "-c", code, str(video), model, str(steps or 0), str(threads)],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"end-to-end benchmark on {video} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(durations_s=(10, 60, 600), model: str = "embedded", steps: int | None = None, threads: int = 0) -> dict:
    """Measure each clip length; print a table; return ``{"runs": {...}, "rtf_10s", "peak_rss_mb_10min", ...}``."""
    results: dict = {"runs": {}}
    for duration in durations_s:
        r = _measure_in_subprocess(clip_path(duration), model, steps, threads)
        results["runs"][f"{int(duration)}s"] = r
        stages = "  ".join(f"{k} {v:.2f}" for k, v in r["stages_s"].items())
        print(f"{int(duration):>5d} s {r['resolution']}  wall {r['wall_s']:8.2f} s  RTF {r['rtf']:6.2f}  "
              f"peak RSS {r['peak_rss_mb']:7.0f} MB  [{stages}]", flush=True)
    runs = results["runs"]
    if "10s" in runs:
        results["rtf_10s"] = runs["10s"]["rtf"]
        results["wall_s_10s"] = runs["10s"]["wall_s"]
    if "600s" in runs:
        results["peak_rss_mb_10min"] = runs["600s"]["peak_rss_mb"]
        results["rtf_10min"] = runs["600s"]["rtf"]
    if len(runs) > 1:  # growth with length: seconds per audio second and MB, first vs last
        first, last = runs[next(iter(runs))], runs[list(runs)[-1]]
        results["wall_per_audio_s_ratio_last_first"] = round((last["wall_s"] / last["video_s"]) /
                                                             (first["wall_s"] / first["video_s"]), 3)
        results["peak_rss_ratio_last_first"] = round(last["peak_rss_mb"] / first["peak_rss_mb"], 3)
    return results
