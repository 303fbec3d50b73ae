"""VSSFlowLoadVideo (file or VIDEO -> frames, fps, audio, duration, VIDEO) and VSSFlowMuxAudio."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from vssflow_core.errors import VSSFlowError

from . import _comfy, _convert
from ._comfy import InputImpl, Types, io, ui

PACK_SAMPLES = Path(__file__).resolve().parents[1] / "example_workflows" / "input"
VIDEO_EXTENSIONS = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".gif"}
SILENCE_RATE = 44100  # sample rate of the silent AUDIO given for videos without sound (Hz)
IMAGE_BYTES_PER_VALUE = 5  # the uint8 decode plus its float32 IMAGE copy, per pixel channel
MEMORY_SHARE = 0.8  # share of the free memory one Load Video may take
SAMPLES_MARKER = ".vssflow_samples"  # in the input folder: the sample clips already copied there once


def install_samples() -> None:
    """Copy the pack's sample clips into ComfyUI's input folder, each once: never over a file of that
    name, and never again after the user deleted it (the names copied are kept in ``SAMPLES_MARKER``
    in that folder)."""
    if not PACK_SAMPLES.is_dir():
        return
    from vssflow_core.media.files import atomic_output  # here, not at import: vssflow_core.media loads all its I/O
    target = _comfy.directory("input")
    marker = target / SAMPLES_MARKER
    done = set(marker.read_text().split()) if marker.is_file() else set()
    copied = set()
    for src in sorted(PACK_SAMPLES.iterdir()):
        if src.suffix.lower() not in VIDEO_EXTENSIONS or src.name in done:
            continue
        dst = target / src.name
        try:
            if not dst.exists():
                with atomic_output(dst) as tmp:  # never replaces a file that appeared meanwhile
                    shutil.copyfile(src, tmp)
        except (OSError, VSSFlowError):
            continue  # not there: try again next time
        copied.add(src.name)
    if copied:
        with atomic_output(marker, replace=True) as tmp:
            Path(tmp).write_text("\n".join(sorted(done | copied)) + "\n")


def input_videos() -> list[str]:
    """Video file names in ComfyUI's input folder (sorted), after copying the pack's samples there;
    not symlinks that lead out of it, which loading refuses. An unreadable folder gives an empty list
    (ComfyUI still starts; the error shows on use)."""
    try:
        install_samples()
    except (OSError, VSSFlowError):  # a read-only input folder: list what is there
        pass
    try:
        root = _comfy.directory("input")
        return sorted(p.name for p in root.iterdir()
                      if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS and _stays_inside(root, p.name))
    except (OSError, VSSFlowError):
        return []


def _stays_inside(root: Path, name: str) -> bool:
    """False for a symlink that leads out of the input folder, which loading refuses (``safe_join``)."""
    from vssflow_core.media.files import safe_join

    try:
        safe_join(root, name)
    except VSSFlowError:
        return False
    return True


class VSSFlowLoadVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VSSFlowLoadVideo",
            display_name="VSSFlow Load Video",
            category="audio/VSSFlow",
            description="Loads a video from ComfyUI's input folder (or takes a VIDEO) and gives its frames, frame "
                        "rate, sound, duration and the VIDEO itself. The pack's sample clips are listed too.",
            inputs=[
                io.Combo.Input("video", options=input_videos(), upload=io.UploadType.video,
                               tooltip="A video file from ComfyUI's input folder (upload with the button)."),
                io.Float.Input("start_s", default=0.0, min=0.0, max=1e6, step=0.01,
                               tooltip="Start of the part to load, in seconds from the beginning of the video."),
                io.Float.Input("duration_s", default=0.0, min=0.0, max=1e6, step=0.01,
                               tooltip="Length of the part to load in seconds; 0 = to the end of the video."),
                io.Int.Input("max_frames", default=0, min=0, max=1_000_000,
                             tooltip="Load at most this many frames (shortens the part); 0 = no limit."),
                io.Float.Input("fps", default=0.0, min=0.0, max=240.0, step=1.0,
                               tooltip="Resample to this frame rate (frames per second, by timestamp); "
                                       "0 = the video's own rate."),
                io.Video.Input("video_in", optional=True,
                               tooltip="Optional VIDEO (e.g. from core Load Video or Create Video); used instead "
                                       "of the file when connected."),
            ],
            outputs=[
                io.Image.Output(display_name="images", tooltip="The frames, IMAGE [frames, height, width, 3]."),
                io.Float.Output(display_name="fps", tooltip="Frame rate of the images (frames per second)."),
                io.Audio.Output(display_name="audio", tooltip="The video's own sound over the same part (silence "
                                                              "if it has none)."),
                io.Float.Output(display_name="duration_s", tooltip="Duration of the loaded part in seconds."),
                io.Video.Output(display_name="video", tooltip="The loaded part as a VIDEO (for Mux Audio and "
                                                              "core video nodes)."),
            ],
        )

    @classmethod
    def execute(cls, video, start_s=0.0, duration_s=0.0, max_frames=0, fps=0.0, video_in=None) -> io.NodeOutput:
        from vssflow_core.media.encode import frame_rate_fraction
        from vssflow_core.video_clip import clip_from_frames, load_clip

        path = _convert.video_file(video_in) if video_in is not None else _comfy.input_path(video)
        if path is not None:
            frames = _check_fits_in_memory(path, start_s, duration_s, max_frames, fps)
            clip = load_clip(path, start_s, duration_s, max_frames, fps, progress=_comfy.progress(frames))
        else:
            frames, src_fps, audio = _convert.video_components(video_in, "VSSFlowLoadVideo")
            clip = clip_from_frames(frames, src_fps, audio, start_s, duration_s, max_frames, fps)
        images = _convert.uint8_to_image(clip.frames)
        whole = path is not None and start_s == 0 and clip.fps == clip.source_fps and \
            abs(clip.duration_s - clip.source_duration_s) < 1e-6
        if clip.audio is not None:
            audio = _convert.audio_dict(clip.audio, clip.sample_rate)
        else:
            import torch

            from vssflow_core.frontend import num_frames

            audio = _convert.audio_dict(torch.zeros(1, num_frames(clip.duration_s, SILENCE_RATE)), SILENCE_RATE)
        out_video = InputImpl.VideoFromFile(path) if whole else InputImpl.VideoFromComponents(
            Types.VideoComponents(images=images, frame_rate=frame_rate_fraction(clip.fps),
                                  audio=audio if clip.audio is not None else None))
        return io.NodeOutput(images, clip.fps, audio, clip.duration_s, out_video)

    @classmethod
    def fingerprint_inputs(cls, video, **kwargs):
        try:
            path = _comfy.input_path(video)
            return (video, os.path.getmtime(path), os.path.getsize(path))
        except (OSError, TypeError, VSSFlowError):
            # no such file: only valid with video_in connected, whose own changes ComfyUI already tracks;
            # a stable value keeps the result cached (NaN would re-run the node on every queue)
            return (video, None)

    @classmethod
    def validate_inputs(cls, video, input_types=None):
        # only `video` named (and the linked inputs' types): ComfyUI keeps its range checks for the others
        if input_types and "video_in" in input_types:  # a connected VIDEO is used instead of the file
            # naming input_types turns off ComfyUI's own link type check, so it is done here
            kind = input_types["video_in"]
            return True if kind in ("VIDEO", "*") else f"VSSFlowLoadVideo: video_in needs a VIDEO, got {kind}"
        try:
            path = _comfy.input_path(video)
        except VSSFlowError as e:
            return f"VSSFlowLoadVideo: video '{video}': {e}"
        if not os.path.isfile(path):
            return f"VSSFlowLoadVideo: video file '{video}' not found in the input folder; upload it or pick another"
        return True


def _check_fits_in_memory(path: str, start_s: float, duration_s: float, max_frames: int, fps: float) -> int:
    """Refuse, before decoding, a part whose IMAGE would not fit in free memory (a long full-HD clip
    is tens of GB as float32 frames): better a message than a server killed for memory. Returns
    the number of frames the part holds."""
    from vssflow_core.video_clip import clip_frame_shape

    frames, height, width = clip_frame_shape(path, start_s, duration_s, max_frames, fps)
    needed = frames * height * width * 3 * IMAGE_BYTES_PER_VALUE
    free = _comfy.free_memory_bytes()
    if free is not None and needed > MEMORY_SHARE * free:
        raise VSSFlowError(
            f"VSSFlowLoadVideo: {Path(path).name}: the part to load is {frames} frames of {width}x{height} px, "
            f"about {needed / 1e9:.1f} GB as IMAGE, and {free / 1e9:.1f} GB of memory is free. Load a shorter part "
            f"(duration_s, max_frames) or a lower fps; for the whole video, load it with ComfyUI's core Load "
            f"Video node, whose VIDEO the VSSFlow Sampler and Mux Audio read window by window.")
    return frames


class VSSFlowMuxAudio(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VSSFlowMuxAudio",
            display_name="VSSFlow Mux Audio",
            category="audio/VSSFlow",
            description="Puts the generated sound on the video and saves an mp4 in the output folder (the video "
                        "stream is copied, not re-encoded, when it comes from a file; old codecs that MP4 cannot "
                        "hold, such as cinepak or MS-MPEG4 AVIs, are re-encoded to H.264).",
            is_output_node=True,
            inputs=[
                io.Audio.Input("audio", tooltip="The sound to put on the video (e.g. the VSSFlow Sampler's output)."),
                io.Video.Input("video", optional=True, tooltip="The VIDEO to add the sound to (from VSSFlow Load "
                                                                "Video or core nodes)."),
                io.Image.Input("images", optional=True, tooltip="Frames to encode when no VIDEO is connected."),
                io.Float.Input("fps", default=25.0, min=1.0, max=240.0, step=1.0,
                               tooltip="Frame rate of the images (frames per second); ignored for a VIDEO."),
                io.Combo.Input("mode", options=["replace", "mix"], default="replace",
                               tooltip="replace = only the new sound; mix = new sound added to the video's own."),
                io.Float.Input("audio_gain", default=1.0, min=0.0, max=4.0, step=0.05,
                               tooltip="Gain of the new sound (1 = unchanged)."),
                io.Float.Input("original_gain", default=1.0, min=0.0, max=4.0, step=0.05,
                               tooltip="Gain of the video's own sound in mix mode (1 = unchanged)."),
                io.Int.Input("variation", default=0, min=0, max=63,
                             tooltip="Which item of an AUDIO batch (variations) to use, from 0."),
                io.String.Input("filename_prefix", default="VSSFlow/vssflow",
                                tooltip="Name of the saved mp4 inside the output folder; a counter is added. "
                                        "%year% %month% %day% %hour% %minute% %second% %width% %height% are filled "
                                        "in, as core save nodes do."),
            ],
            outputs=[io.Video.Output(display_name="video", tooltip="The saved video with the new sound.")],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],  # stored in the mp4, as core Save Video does
        )

    @classmethod
    def execute(cls, audio, video=None, images=None, fps=25.0, mode="replace", audio_gain=1.0, original_gain=1.0,
                variation=0, filename_prefix="VSSFlow/vssflow") -> io.NodeOutput:
        from vssflow_core.video_clip import write_with_audio

        wave, sample_rate = _convert.audio_item(audio, "VSSFlowMuxAudio", variation)
        source = _mux_source(video, images, fps)
        out_dir = _comfy.directory("output")
        prefix = _comfy.expand_save_variables(filename_prefix, lambda: _frame_size(source))
        out = write_with_audio(wave, sample_rate, out_dir, prefix, mode=mode, audio_gain=audio_gain,
                               original_gain=original_gain, metadata=_comfy.workflow_metadata(cls), **source)
        rel = out.relative_to(out_dir)
        saved = ui.SavedResult(rel.name, str(rel.parent) if str(rel.parent) != "." else "", io.FolderType.output)
        return io.NodeOutput(InputImpl.VideoFromFile(str(out)), ui=ui.PreviewVideo([saved]))


def _frame_size(source: dict) -> tuple[int, int]:
    """(width, height) in px of a mux source (a file is probed)."""
    if "video_path" in source:
        from vssflow_core.media.probe import probe_video

        info = probe_video(source["video_path"])
        return info.width, info.height
    return source["frames"].shape[2], source["frames"].shape[1]


def _mux_source(video, images, fps) -> dict:
    """``write_with_audio``'s video arguments: a file path, or frames + fps (+ the VIDEO's own sound)."""
    s = _convert.frame_source(images, fps, video, "VSSFlowMuxAudio",
                              "connect a VIDEO (e.g. VSSFlow Load Video's video output) or IMAGE frames")
    if s.path is not None:
        return {"video_path": s.path}
    return {"frames": s.frames, "fps": s.fps, "original_audio": s.audio}
