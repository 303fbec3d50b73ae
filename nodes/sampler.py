"""VSSFlowSampler: model + video (+ lips, text) -> AUDIO of the video's duration."""
from __future__ import annotations

from vssflow_core.config import SOLVERS

from . import _comfy, _convert
from ._comfy import io
from .conditions import LipsType, TextType
from .loader import ModelType


class VSSFlowSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VSSFlowSampler",
            display_name="VSSFlow Sampler",
            category="audio/VSSFlow",
            description="Generates the sound of a video: sound effects that follow what is seen, plus speech when a "
                        "text condition is connected. Long videos are done in overlapping windows.",
            inputs=[
                ModelType.Input("model", tooltip="From VSSFlow Model Loader."),
                io.Image.Input("images", optional=True, tooltip="Video frames, IMAGE [frames, height, width, 3] "
                                                                "(or connect a VIDEO)."),
                io.Float.Input("fps", default=25.0, min=1.0, max=240.0, step=1.0,
                               tooltip="Frame rate of the images (frames per second); ignored for a VIDEO."),
                io.Video.Input("video", optional=True, tooltip="A VIDEO instead of IMAGE + fps (a loaded file is "
                                                               "decoded window by window: less memory)."),
                LipsType.Input("lips", optional=True, tooltip="From VSSFlow Extract Lip Features: speech follows "
                                                              "these lips."),
                TextType.Input("text", optional=True, tooltip="From VSSFlow Text Condition: what to say and when."),
                io.Int.Input("seed", default=0, min=0, max=2**63 - 1, control_after_generate=True,
                             tooltip="Random seed; variation n uses seed + n."),
                io.Int.Input("steps", default=0, min=0, max=200,
                             tooltip="Solver steps per window (more = slower, finer); 0 = the model's default."),
                io.Float.Input("guidance", default=0.0, min=0.0, max=30.0, step=0.1,
                               tooltip="How strongly the sound follows the video and text (classifier-free "
                                       "guidance, 1 = off); 0 = the model's default (embedded model: 3, "
                                       "for sound only with its rescale 0.7). Values between 0 and 1 are "
                                       "refused: they would ignore the video."),
                io.Combo.Input("solver", options=["default", *SOLVERS], default="default",
                               tooltip="ODE solver: euler/midpoint/heun use the given steps; dopri5 is adaptive "
                                       "(slow, reference quality); default = the model's choice."),
                io.Int.Input("variations", default=1, min=1, max=16,
                             tooltip="How many different versions to make (the AUDIO batch size)."),
                io.Float.Input("duration_s", default=0.0, min=0.0, max=1e6, step=0.01,
                               tooltip="Seconds of audio to make from the start of the video; 0 = the whole "
                                       "video."),
                # last and optional: workflows saved before it existed keep their widget order and still run
                io.Float.Input("guidance_rescale", default=-1.0, min=-1.0, max=1.0, step=0.05, optional=True,
                               tooltip="Pulls the guided result's spread back towards the unguided one (guidance "
                                       "rescale, 0..1; 0 = plain guidance): strong guidance keeps its timing "
                                       "without thinning the sound. -1 = the model's default (embedded model: "
                                       "0.7 for sound effects, 0 for speech)."),
            ],
            outputs=[io.Audio.Output(display_name="audio", tooltip="The generated sound, exactly as long as the video (or duration_s), "
                                                                   "at the model's sample rate; one item per "
                                                                   "variation.")],
        )

    @classmethod
    def execute(cls, model, images=None, fps=25.0, video=None, lips=None, text=None, seed=0, steps=0, guidance=0.0,
                solver="default", variations=1, duration_s=0.0, guidance_rescale=-1.0) -> io.NodeOutput:
        from vssflow_core.pipeline import generate

        source = _video_source(images, fps, video)
        bundle = model.prepare()
        cfg = bundle.config
        n_steps = steps or cfg.steps
        audio, sample_rate = generate(
            bundle, **source, text=text, lips=lips, seed=seed, steps=n_steps, guidance=guidance or None,
            solver=None if solver == "default" else solver, variations=variations, duration_s=duration_s or None,
            guidance_rescale=None if guidance_rescale < 0 else guidance_rescale, callback=_comfy.progress(n_steps))
        return io.NodeOutput(_convert.audio_dict(audio, sample_rate))


def _video_source(images, fps, video) -> dict:
    """``generate``'s video arguments: a file path, or frames + fps."""
    s = _convert.frame_source(images, fps, video, "VSSFlowSampler", "connect IMAGE frames (+ fps) or a VIDEO")
    return {"video": s.path} if s.path is not None else {"frames": s.frames, "fps": s.fps}
