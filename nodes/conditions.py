"""VSSFlowExtractLipFeatures (frames -> VSSFLOW_LIPS + preview) and VSSFlowTextCondition (-> VSSFLOW_TEXT)."""
from __future__ import annotations

from . import _comfy, _convert
from ._comfy import io

LipsType = io.Custom("VSSFLOW_LIPS")
TextType = io.Custom("VSSFLOW_TEXT")
FACES = ["largest", "center", "0", "1", "2", "3"]
SCAN_WINDOW_S = 10.0  # a loaded VIDEO file is read this many seconds at a time
PREVIEW_MAX_FRAMES = 250  # preview of a loaded VIDEO file: at most this many frames, spread evenly


class VSSFlowExtractLipFeatures(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VSSFlowExtractLipFeatures",
            display_name="VSSFlow Extract Lip Features",
            category="audio/VSSFlow",
            description="Finds a face in every frame and measures its mouth (offline face landmarks), so speech "
                        "follows the lips. Gives the lip track and a preview with the mouth boxes.",
            inputs=[
                io.Image.Input("images", optional=True, tooltip="Video frames, IMAGE [frames, height, width, 3]."),
                io.Float.Input("fps", default=25.0, min=1.0, max=240.0, step=1.0,
                               tooltip="Frame rate of the images (frames per second); ignored for a VIDEO."),
                io.Combo.Input("face", options=FACES, default="largest",
                               tooltip="Which face speaks: the largest, the one nearest the centre, or the n-th "
                                       "from the left (0 = leftmost)."),
                io.Video.Input("video", optional=True, tooltip="A VIDEO instead of IMAGE + fps. A loaded file is read "
                                                                f"{SCAN_WINDOW_S:g} s at a time, so long videos fit "
                                                                "in memory."),
            ],
            outputs=[
                LipsType.Output(display_name="lips", tooltip="Lip movement over time, for the VSSFlow Sampler (which "
                                                             "also finds the speech window from it when the Text "
                                                             "Condition's start and end are 0)."),
                io.Image.Output(display_name="preview", tooltip="The frames with the mouth boxes drawn (green = "
                                                                "detected, yellow = interpolated). For a loaded VIDEO "
                                                                f"file: at most {PREVIEW_MAX_FRAMES} frames, spread "
                                                                "over the video."),
            ],
        )

    @classmethod
    def execute(cls, images=None, fps=25.0, face="largest", video=None) -> io.NodeOutput:
        from vssflow_core.frontend import extract_lip_condition

        face = int(face) if face.isdigit() else face
        source = _convert.frame_source(images, fps, video, "VSSFlowExtractLipFeatures",
                                       "connect IMAGE frames (+ fps) or a VIDEO")
        if source.path is not None:  # a loaded file: decoded window by window, memory stays flat
            from vssflow_core.pipeline import scan_lips
            from vssflow_core.video_source import open_video

            lips, preview = scan_lips(open_video(source.path), SCAN_WINDOW_S, face, require_face=True,
                                      preview_frames=PREVIEW_MAX_FRAMES, progress=_comfy.progress(None))
            return io.NodeOutput(lips, _convert.uint8_to_image(preview))
        frames, fps = source.frames, source.fps
        lips = extract_lip_condition(frames, fps, face, require_face=True, progress=_comfy.progress(len(frames)))
        preview = lips.track.preview if lips.track is not None and len(lips.track.preview) else frames
        return io.NodeOutput(lips, _convert.uint8_to_image(preview))


class VSSFlowTextCondition(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VSSFlowTextCondition",
            display_name="VSSFlow Text Condition",
            category="audio/VSSFlow",
            description="The words to speak and when: a transcript placed in the video's time, with an optional "
                        "reference voice.",
            inputs=[
                io.String.Input("transcript", multiline=True, default="",
                                placeholder="The words the person in the video says.",
                                tooltip="The words to speak (English)."),
                io.Float.Input("speech_start_s", default=0.0, min=0.0, max=1e6, step=0.01,
                               tooltip="When speech starts, in seconds of the video. 0 and 0 = find the speech "
                                       "window from the lips automatically."),
                io.Float.Input("speech_end_s", default=0.0, min=0.0, max=1e6, step=0.01,
                               tooltip="When speech ends, in seconds of the video (after the start); 0 and 0 = "
                                       "automatic."),
                io.Audio.Input("voice", optional=True,
                               tooltip="Optional recording of the voice to imitate (a few seconds are enough). "
                                       "Used by official checkpoints (RawNet3 speaker encoder). The embedded "
                                       "model was trained on one voice and keeps speaking in it."),
            ],
            outputs=[TextType.Output(display_name="text", tooltip="The transcript in time, for the VSSFlow Sampler.")],
        )

    @classmethod
    def execute(cls, transcript, speech_start_s=0.0, speech_end_s=0.0, voice=None) -> io.NodeOutput:
        from vssflow_core.errors import VSSFlowError
        from vssflow_core.frontend import make_text_condition

        ref = _convert.audio_item(voice, "VSSFlowTextCondition") if voice is not None else None
        try:
            return io.NodeOutput(make_text_condition(transcript, speech_start_s, speech_end_s, ref))
        except VSSFlowError as e:
            raise VSSFlowError(f"VSSFlowTextCondition: {e}") from None
