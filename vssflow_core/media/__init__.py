"""Media I/O with PyAV: decode video by timestamp, stream long files, read/write audio, mux by stream copy.

Everything here works on plain numpy/torch values (frames uint8 [F, H, W, 3] RGB + times in s, audio
float32 [C, S] + sample rate in Hz) and never imports ComfyUI.
"""

from vssflow_core.media.audio_io import save_audio
from vssflow_core.media.files import atomic_output, safe_join, unique_path
from vssflow_core.media.mux import mux_audio
from vssflow_core.media.video import (
    Frames,
    VideoInfo,
    iter_windows,
    num_frames,
    probe_video,
    read_audio,
    read_frames,
    resample_frames,
    write_video,
)

__all__ = [
    "Frames", "VideoInfo", "iter_windows", "num_frames", "probe_video", "read_audio", "read_frames",
    "resample_frames", "write_video", "mux_audio", "save_audio", "atomic_output",
    "safe_join", "unique_path",
]
