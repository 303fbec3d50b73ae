"""The short sample videos in ``example_workflows/input/`` (used by the example workflows and the README).

``python -m vssflow_core make-samples --out example_workflows/input`` regenerates them (the rendered
frames and sound are deterministic; the multi-threaded H.264 encoder can code a few blocks
differently per run):

* ``talking_face.mp4``   a talking face (the warped astronaut photo) saying ``TALKING_FACE_TEXT``;
* ``sound_events.mp4``   a sound scene: a bouncing ball and a lamp that flashes;
* ``speech_and_sounds.mp4``  a talking face on one side and falling wooden crates on the other,
  saying ``MIXED_TEXT``.

Each is 6.0 s, 25 fps, 320x320 px, H.264 + AAC with the synthetic soundtrack, well under 1 MB.
The ground truth (transcripts, speech windows, event times) is written to ``samples.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vssflow_core.media.files import atomic_output

SAMPLE_SEED = 20261127
DURATION_S = 6.0
VIDEO_SIZE = 320
CRF = 30
TALKING_FACE_TEXT = "The quick brown fox jumps over the lazy dog. Please open the window."
MIXED_TEXT = "Look at the boxes falling."

SAMPLES = (
    # file name, kind, index, sentences, classes
    ("talking_face.mp4", "speech", 0, [s.strip() + "." for s in TALKING_FACE_TEXT.split(".") if s.strip()], None),
    ("sound_events.mp4", "sfx", 1, None, ["bounce", "flash"]),
    ("speech_and_sounds.mp4", "mixed", 2, [MIXED_TEXT], ["wood_impact"]),
)


def write_samples(out_dir: str | Path, overwrite: bool = False) -> list[dict]:
    """Render the sample videos into ``out_dir``; returns their ground-truth rows (also in samples.json)."""
    from vssflow_core.data import clips
    from vssflow_core.media.encode import write_video

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, kind, index, sentences, classes in SAMPLES:
        spec = clips.build_clip(SAMPLE_SEED, index, kind, DURATION_S, use_real_sounds=False,
                                sentences=sentences, classes=classes)
        path = out / name
        if path.exists() and overwrite:
            path.unlink()
        if not path.exists():
            frames = clips.render_frames(spec, VIDEO_SIZE)
            write_video(path, frames, clips.FPS, audio=spec.wave[None], sample_rate=clips.SAMPLE_RATE, crf=CRF)
        row = clips.manifest_row(spec, name)
        row.pop("file")
        rows.append(row)
    with atomic_output(out / "samples.json", replace=True) as tmp:  # the videos' ground truth, rewritten with them
        tmp.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m vssflow_core make-samples``."""
    parser.add_argument("--out", default="example_workflows/input", help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace existing videos")


def run(args: argparse.Namespace) -> int:
    """Write the samples and print their ground truth, one line each."""
    for row in write_samples(args.out, args.overwrite):
        print(f"{row['video']}: {row['kind']}, transcript {row['transcript']!r}, "
              f"speech {row['speech_start_s']}-{row['speech_end_s']} s, events {[(e['time_s'], e['class']) for e in row['events']]}")
    return 0
