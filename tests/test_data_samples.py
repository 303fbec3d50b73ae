"""make-samples: the example workflows' input videos and their ground truth."""
import json
from pathlib import Path

from vssflow_core.data.samples import SAMPLES, write_samples
from vssflow_core.media.probe import probe_video

COMMITTED = Path(__file__).resolve().parents[1] / "example_workflows" / "input"


def test_samples_are_rendered_as_committed_and_existing_videos_are_kept(tmp_path):
    """The ground truth is deterministic and equals the committed samples.json; each video is 6 s at
    25 fps with its soundtrack; without --overwrite a video already there is left as it was."""
    kept = tmp_path / SAMPLES[0][0]
    kept.write_bytes(b"the user's own file")
    rows = write_samples(tmp_path)
    assert kept.read_bytes() == b"the user's own file"
    assert json.loads((tmp_path / "samples.json").read_text()) == rows
    assert rows == json.loads((COMMITTED / "samples.json").read_text())
    for name, *_ in SAMPLES[1:]:
        info = probe_video(tmp_path / name)
        assert abs(info.duration_s - 6.0) < 0.05 and info.fps == 25 and info.has_audio
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left behind
