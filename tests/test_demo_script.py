"""The README's main command, `bash scripts/demo.sh`, on the bundled sample video with the shipped model."""

import subprocess
import sys
from pathlib import Path

import pytest

from vssflow_core.media.video import probe_video, read_audio

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "example_workflows" / "input" / "speech_and_sounds.mp4"


@pytest.mark.skipif(Path(sys.prefix).resolve() != (REPO / ".venv").resolve(),
                    reason="demo.sh sets up and uses the repo's .venv; run the tests with it (bash scripts/test.sh)")
def test_demo_writes_the_sample_video_with_new_sound_and_never_overwrites(tmp_path):
    out = tmp_path / "demo.mp4"
    done = subprocess.run(["bash", str(REPO / "scripts" / "demo.sh"), str(out)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith(f"wrote {out}")
    src, dst = probe_video(SAMPLE), probe_video(out)
    assert (dst.num_frames, dst.width, dst.height) == (src.num_frames, src.width, src.height)
    wave, sample_rate = read_audio(out)
    assert dst.has_audio and abs(wave.shape[-1] / sample_rate - src.duration_s) < 0.05
    assert float(wave.abs().max()) > 0.05  # sound, not silence
    before = out.read_bytes()
    again = subprocess.run(["bash", str(REPO / "scripts" / "demo.sh"), str(out)], capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 2 and "already exists" in again.stderr and out.read_bytes() == before
