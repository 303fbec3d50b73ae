"""Decode benchmark: frames/s and peak memory of ``media.video`` on 60 s and 10 min 720p clips.

The clips (1280x720, 25 fps, H.264 at a low bitrate, a moving box) are generated once in
``/tmp/vssflow_bench``. Each measurement runs in a fresh subprocess so its peak RSS is its own.

Modes:
  raw        PyAV decode only (no colour conversion): the ceiling
  native     ``iter_windows`` at 25 fps, full 1280x720 RGB, 10 s windows
  model      ``iter_windows`` at (10, 25) fps, short side 224, 10 s windows (what the pipeline needs)

Run by ``python -m vssflow_core bench --parts decode [--json OUT.json]`` (60 s clips with ``--quick``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

from vssflow_core.config import FEATURE_RATE_HZ

CLIP_DIR = Path("/tmp/vssflow_bench_decode")
MODES = ("raw", "native", "model")


def make_clip(path: Path, duration_s: float, fps: int = 25, width: int = 1280, height: int = 720) -> Path:
    """Write a low-bitrate 720p H.264 clip (moving box on a gradient, yuv420p drawn directly)."""
    import av
    import numpy as np

    from vssflow_core.media.files import atomic_output

    count = int(round(duration_s * fps))
    luma = np.tile(np.linspace(30, 200, width, dtype=np.float32).astype(np.uint8), (height, 1))
    chroma = np.full((height // 2, width // 2), 128, np.uint8)
    with atomic_output(path, replace=True) as tmp:
        with av.open(str(tmp), "w") as out:
            vs = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "32", "g": "250"})
            vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
            vs.codec_context.time_base = Fraction(1, fps)
            for i in range(count):
                y = luma.copy()
                x = (i * 7) % (width - 160)
                y[280:440, x:x + 160] = 235
                frame = _yuv_frame(av, y, chroma)
                frame.pts = i
                for packet in vs.encode(frame):
                    out.mux(packet)
            for packet in vs.encode(None):
                out.mux(packet)
    return path


def _yuv_frame(av, y, chroma):
    frame = av.VideoFrame(y.shape[1], y.shape[0], "yuv420p")
    frame.planes[0].update(y.tobytes())
    frame.planes[1].update(chroma.tobytes())
    frame.planes[2].update(chroma.tobytes())
    return frame


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB; Linux ru_maxrss is in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def measure(path: str, mode: str) -> dict:
    """Run one measurement in this process; returns frames decoded/returned, seconds, peak RSS (MB)."""
    import av

    from vssflow_core.media.video import iter_windows, probe_video

    info = probe_video(path)
    base_mb = peak_rss_mb()
    t0 = time.perf_counter()
    returned = 0
    if mode == "raw":
        with av.open(path) as c:
            vs = c.streams.video[0]
            vs.thread_type = "AUTO"
            for _ in c.decode(vs):
                returned += 1
    elif mode == "native":
        for w in iter_windows(path, FEATURE_RATE_HZ, window_s=10.0):
            returned += len(w)
    elif mode == "model":
        for w10, w25 in iter_windows(path, (10.0, FEATURE_RATE_HZ), window_s=10.0, size=224):
            returned += len(w10) + len(w25)
    else:
        raise ValueError(f"mode {mode!r}; expected one of {MODES}")
    seconds = time.perf_counter() - t0
    return {
        "mode": mode,
        "video_s": info.duration_s,
        "source_frames": info.num_frames,
        "returned_frames": returned,
        "seconds": round(seconds, 3),
        "source_fps_decoded": round(info.num_frames / seconds, 1),
        "realtime_factor": round(info.duration_s / seconds, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_before_decode_mb": round(base_mb, 1),
    }


def _measure_in_subprocess(path: Path, mode: str) -> dict:
    code = (
        "import json, sys; from vssflow_core.bench.decode import measure; "
        "print(json.dumps(measure(sys.argv[1], sys.argv[2])))"
    )
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    done = subprocess.run([sys.executable, "-c", code, str(path), mode], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark {mode} on {path} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(durations_s=(60, 600), modes=MODES) -> dict:
    """Generate the clips (if missing), measure every mode on each (clip lengths in seconds), print a
    table; returns the results."""
    results = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "clips": {}}
    for duration in durations_s:
        path = CLIP_DIR / f"bench_720p_{int(duration)}s.mp4"
        t0 = time.perf_counter()
        if not path.exists():
            make_clip(path, duration)
        entry = {"path": str(path), "size_mb": round(path.stat().st_size / 1e6, 2),
                 "generate_s": round(time.perf_counter() - t0, 1), "modes": {}}
        for mode in modes:
            r = _measure_in_subprocess(path, mode)
            entry["modes"][mode] = r
            print(f"{int(duration):>5d} s 720p  {mode:<7s} {r['source_fps_decoded']:>8.1f} source frames/s "
                  f"({r['realtime_factor']:.1f}x realtime)  peak RSS {r['peak_rss_mb']:.0f} MB "
                  f"(before decode {r['rss_before_decode_mb']:.0f} MB)", flush=True)
        results["clips"][f"{int(duration)}s"] = entry
    return results
