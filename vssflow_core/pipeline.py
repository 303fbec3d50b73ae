"""Video (+ transcript, lips, voice) -> audio of exactly the video's duration.

``load_bundle`` loads a model file (DiT + codec + extractor weights); ``generate`` covers any
duration with windows of the model's length that overlap by ``overlap_s`` and are cross-faded with
complementary raised-cosine ramps (the weights sum to one at every sample). Video is decoded window
by window, so memory stays flat in the video's length; only the tiny per-frame tracks (lips,
phonemes at 25 Hz) and the output waveform span the whole video.

Noise is drawn once for the whole timeline at the latent rate (one ``torch.Generator`` per
variation, seeded ``seed + b``) and each window takes its slice, so overlapping windows start from
the same noise where they overlap, and variation 0 of a batch equals a single run with ``seed``.

Letters: B variations, C audio channels (1), S samples, L latent frames, F video frames.
The windows and their cross-fade are in ``timeline``, the video sources in ``video_source``.
"""
from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from vssflow_core import flow, frontend
from vssflow_core.config import FEATURE_RATE_HZ, PRECISIONS, is_guidance_rescale
from vssflow_core.audio.level import limit_peak
from vssflow_core.errors import VSSFlowError
from vssflow_core.frontend import LipCondition, TextCondition, num_frames
from vssflow_core.timeline import Window, crossfade_gains, plan_windows, window_spans
from vssflow_core.video_source import open_video


@dataclass
class Bundle:
    """A loaded model: the DiT, its audio codec, its config, and extra tensors (extractor weights)."""

    model: Any
    codec: Any
    config: Any
    source: str = ""
    extras: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        """Device of the model's weights."""
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the model's weights (float32, float16 or bfloat16)."""
        return next(self.model.parameters()).dtype

    @property
    def sample_rate(self) -> int:
        """Sample rate (Hz) of the audio the codec decodes to."""
        return int(self.codec.sample_rate)

    def to(self, device=None, dtype=None) -> "Bundle":
        """Move model and codec (in place) and return self."""
        with torch.inference_mode(False):
            self.model.to(device=device, dtype=dtype)
            self.codec.to(device=device, dtype=dtype)
        return self


def resolve_model_path(model: str | Path) -> Path:
    """``"embedded"`` -> the shipped weights; anything else is a path to a model file."""
    if str(model) == "embedded":
        from vssflow_core.embedded import EMBEDDED_WEIGHTS

        path = Path(EMBEDDED_WEIGHTS)
        if not path.is_file():
            raise VSSFlowError(f"the embedded default model is missing: expected {path}. Reinstall the pack "
                               "(the file ships with it) or pass a model file with --model PATH")
        return path
    path = Path(model).expanduser()
    if not path.is_file():
        raise VSSFlowError(f"model file not found: {path} (looked at {path.resolve()}). Pass 'embedded' or the "
                           "path of a .safetensors file made by `python -m vssflow_core convert`")
    return path


def resolve_dtype(precision: str | torch.dtype | None, device: torch.device | str) -> torch.dtype:
    """``auto|fp32|fp16|bf16`` -> a dtype; ``auto`` is fp32 on CPU and bf16 (else fp16) on CUDA."""
    if isinstance(precision, torch.dtype):
        return precision
    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, None: None, "auto": None}
    if precision is not None and precision not in PRECISIONS:
        raise VSSFlowError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    dtype = table[precision]
    if dtype is None:
        device = torch.device(device)
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return dtype


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cpu``, ``cuda``, ``cuda:N`` and ``mps`` are checked
    against this machine (VSSFlowError naming the fix)."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise VSSFlowError(f"device {device!r}: expected auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise VSSFlowError(f"device {device!r}: this torch sees no CUDA GPU; use auto or cpu")
        if dev.index is not None and dev.index >= count:
            raise VSSFlowError(f"device {device!r}: this machine has {count} CUDA GPU(s), cuda:0..cuda:{count - 1}")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise VSSFlowError(f"device {device!r}: this torch has no Apple GPU (MPS) here; use auto or cpu")
    elif dev.type != "cpu":
        raise VSSFlowError(f"device {device!r}: expected auto, cpu, cuda, cuda:N or mps")
    return dev


def load_bundle(model: str | Path = "embedded", device: str | torch.device = "cpu",
                dtype: str | torch.dtype | None = None) -> Bundle:
    """Load a VSSFlow model file (or the embedded default) with its audio codec.

    Args:
        model: ``"embedded"`` or the path of a ``.safetensors`` model file.
        device: ``cpu``, ``cuda``, ``cuda:1`` or ``auto``.
        dtype: ``auto|fp32|fp16|bf16`` or a torch dtype (``None`` = fp32, whatever the file stores).
    Raises:
        VSSFlowError: missing file, not a VSSFlow model file, truncated file.
    """
    from vssflow_core.audio.codec import build_codec
    from vssflow_core.model.checkpoint import load_model_file

    path = resolve_model_path(model)
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device) if dtype is not None else torch.float32
    with torch.inference_mode(False):  # ComfyUI runs nodes in inference mode; keep weights normal tensors
        net, extras, metadata = load_model_file(str(path), device="cpu", dtype=None)
        codec = build_codec(net.config.codec, extras)
        bundle = Bundle(net.eval(), codec.eval(), net.config, str(model), extras, metadata)
        bundle.model.to(device=device, dtype=dtype)
        bundle.codec.to(device=device)  # the vocoder stays fp32: it is cheap and fp16 vocoders click
    return bundle


# --- generation ---------------------------------------------------------------------------------

def _check_sampling(bundle: Bundle, steps, guidance, solver, variations, with_text: bool):
    cfg = bundle.config
    steps = int(cfg.steps if steps is None else steps)
    guidance = float(cfg.guidance_for(with_text) if guidance is None else guidance)
    solver = cfg.solver if solver is None else solver
    flow.check_solver(solver)
    if not 1 <= steps <= 1000:
        raise VSSFlowError(f"steps must be 1..1000, got {steps}")
    if not (math.isfinite(guidance) and 1.0 <= guidance <= 30.0):
        raise VSSFlowError(f"guidance must be in 1..30 (1 = no guidance, higher = follow the video and text more), "
                           f"got {guidance}; below 1 the model would ignore the video and the text")
    if not 1 <= int(variations) <= 64:
        raise VSSFlowError(f"variations must be 1..64, got {variations}")
    return steps, guidance, solver, int(variations)


def _check_rescale(bundle: Bundle, guidance_rescale, with_text: bool) -> float:
    """The guidance rescale to sample with: ``guidance_rescale``, or the model's default for the task when None."""
    if guidance_rescale is None:
        return bundle.config.guidance_rescale_for(with_text)
    if not is_guidance_rescale(guidance_rescale):
        raise VSSFlowError(f"guidance rescale must be a number from 0 (plain guidance) to 1 (None = the model's "
                           f"default), got {guidance_rescale!r}")
    return float(guidance_rescale)


def _as_text(text, speech_start_s, speech_end_s, voice) -> TextCondition | None:
    if text is None or isinstance(text, TextCondition):
        if isinstance(text, TextCondition) and voice is not None:
            return TextCondition(text.transcript, text.speech_start_s, text.speech_end_s,
                                 frontend.make_text_condition(text.transcript, voice=voice).voice)
        return text
    return frontend.make_text_condition(text, speech_start_s or 0.0, speech_end_s or 0.0, voice)


def _as_lips(lips) -> LipCondition | None:
    if lips is None or isinstance(lips, LipCondition):
        return lips
    if hasattr(lips, "features"):  # a LipTrack from features.lips at 25 fps
        return LipCondition(np.asarray(lips.features, dtype=np.float32), FEATURE_RATE_HZ, 0.0, lips)
    raise VSSFlowError(f"lips must be a LipCondition (from extract_lip_condition), got {type(lips).__name__}")


def scan_lips(source, window_s: float, face: str | int = "largest", *, require_face: bool = False,
              preview_frames: int = 0, progress: Callable[[int, int], None] | None = None,
              ) -> tuple[LipCondition | None, np.ndarray]:
    """Lip track of a whole video, decoded window by window, so that memory stays flat however long
    the video is (``source`` from :func:`open_video`). The mouth is measured at 25 fps, or at the
    video's own rate when that is lower (a 16 fps video generator's output): each measurement then
    keeps its own time, and ``frontend.lips_on_grid`` interpolates between them, instead of reading
    repeated pictures as a mouth that stands still and jumps.

    Args:
        window_s: seconds decoded at a time.
        face: which face speaks (see ``features.lips.extract_lips``).
        require_face: raise when mediapipe is missing or no frame shows a face; else warn and
            return no condition.
        preview_frames: keep at most this many preview frames (mouth boxes drawn), evenly spread
            over the video; 0 = none.
        progress: ``progress(done_windows, total_windows)`` before each window (raising cancels).
    Returns:
        (LipCondition at min(25, source fps) Hz from 0 s, or None; preview uint8 [P, h, w, 3],
        P <= preview_frames).
    """
    from vssflow_core.features.face_landmarks import backend_problem

    none = np.zeros((0, 1, 1, 3), np.uint8)
    problem = None if require_face else backend_problem()
    if problem is not None:  # missing or broken (e.g. protobuf 5 under mediapipe 0.10): warn and go on
        frontend.warn(f"speech follows the transcript only, without lip sync: {problem}")
        return None, none
    rate = min(FEATURE_RATE_HZ, source.fps)
    total = num_frames(source.duration_s, rate)
    step = max(1, round(window_s * rate))  # whole frames per window, so window k's rows continue k - 1's
    windows = [Window(first / rate, min(step, total - first) / rate) for first in range(0, total, step)]
    stride = max(1, math.ceil(total / preview_frames)) if preview_frames else 0
    rows, previews, first_row, face_box = [], [], 0, None
    for done, frames in enumerate(source.iter_frames(windows, rate, size=frontend.LIP_FRAME_SHORT_SIDE)):
        if progress is not None:
            progress(done, len(windows))
        lips = frontend.extract_lip_condition(frames, rate, face, follow_box=face_box)
        face_box = lips.track.face_box  # the next window follows the same face
        rows.append(lips.features)
        if stride and len(lips.track.preview):
            previews.append(lips.track.preview[(-first_row) % stride::stride])
        first_row += len(frames)
    features = np.concatenate(rows)[:total]
    preview = np.concatenate(previews)[:preview_frames] if previews else none
    if not features[:, -1].any():  # the `found` column
        if require_face:
            raise frontend.no_face_error(len(features), face)
        warnings.warn("no face found in the video: speech follows the transcript only (no lip sync)", stacklevel=3)
        return None, preview
    return LipCondition(features, rate, 0.0, None), preview


def _latent_noise(bundle: Bundle, seed: int, variations: int, total_latent: int, scale: float = 1.0) -> torch.Tensor:
    """Noise float32 [B, Ca, L_total] for the whole timeline, one generator per variation, times
    ``scale`` (its standard deviation, ``ModelConfig.noise_scale_for``)."""
    cfg = bundle.config
    gens = [torch.Generator().manual_seed(int(seed) + b) for b in range(variations)]
    return torch.stack([torch.randn(cfg.audio_channels, total_latent, generator=g) for g in gens]) * scale


def generate(bundle: Bundle, video=None, *, frames: np.ndarray | None = None, fps: float | None = None,
             text: str | TextCondition | None = None, speech_start_s: float | None = None,
             speech_end_s: float | None = None, voice: tuple[torch.Tensor, int] | None = None,
             lips: LipCondition | None = None, seed: int = 0, steps: int | None = None,
             guidance: float | None = None, solver: str | None = None, variations: int = 1,
             callback: Callable[[int, int | None], None] | None = None,
             duration_s: float | None = None, overlap_s: float | None = None,
             face: str | int = "largest", timings: dict | None = None,
             guidance_rescale: float | None = None) -> tuple[torch.Tensor, int]:
    """Generate the audio of a video: sound effects, plus speech when a transcript is given.

    Args:
        bundle: from :func:`load_bundle`.
        video: path of a video file (decoded window by window), or
        frames, fps: frames uint8 [F, H, W, 3] at ``fps`` Hz.
        text: transcript (str or :class:`TextCondition`); ``speech_start_s``/``speech_end_s`` place it
            in video time (s; 0/0 or None = automatic from the lips).
        voice: reference voice ``(wave float32 [C, S], sample_rate)``.
        lips: a :class:`LipCondition` over the video; when a transcript is given and no lips are,
            they are extracted automatically for a model that reads lips (the embedded one) and for
            any model when the speech window is automatic (0/0: it is found from the lips).
        seed: variation b uses ``seed + b``. steps/guidance/solver: model defaults when None (the
            default guidance, its rescale, time shift and noise scale depend on whether a transcript is
            given: ``ModelConfig.guidance_for`` / ``guidance_rescale_for`` / ``time_shift_for`` /
            ``noise_scale_for``).
        guidance_rescale: 0..1 (:meth:`VSSFlow.velocity`; 0 = plain guidance); None = the model's
            default for the task (embedded model: 0.7 without a transcript, 0 with one).
        variations: B, the batch of variations.
        callback: ``callback(done, total)`` after each solver step over all windows (total None for
            dopri5); raising from it cancels.
        duration_s: generate for the first seconds only (None/0 = the whole video).
        overlap_s: overlap of consecutive windows (s; default an eighth of the window). face: which face the lips come from.
        timings: if a dict, seconds spent per stage are added to it (decode, lips, features, sampling, vocoder).
    Returns:
        (audio float32 [B, 1, S] in -1..1, sample_rate Hz) with S = ceil(duration * sample_rate).
    """
    text_cond = _as_text(text, speech_start_s, speech_end_s, voice)
    with_text = text_cond is not None
    steps, guidance, solver, variations = _check_sampling(bundle, steps, guidance, solver, variations, with_text)
    rescale = _check_rescale(bundle, guidance_rescale, with_text)
    if isinstance(seed, bool) or int(seed) != seed or not 0 <= int(seed) <= 2**64 - variations:
        raise VSSFlowError(f"seed must be a whole number in 0..{2**64 - variations} (variation n uses seed + n), "
                           f"got {seed!r}")
    source = open_video(video, frames, fps, duration_s)
    cfg, codec = bundle.config, bundle.codec
    time_shift = cfg.time_shift_for(with_text)
    duration_s = source.duration_s
    sample_rate = int(codec.sample_rate)
    latent_rate = float(codec.latent_rate_hz)
    lip_cond = _as_lips(lips)

    if text_cond is not None and not text_cond.automatic_window:  # before the lips are scanned
        frontend.check_speech_start(text_cond.speech_start_s, duration_s)
    latent_len = int(cfg.latent_length)  # every window is sampled at the trained length (L frames)
    windows = plan_windows(duration_s, latent_len / latent_rate, overlap_s)
    total_steps = None if solver == "dopri5" else steps * len(windows)
    wants_lips = frontend.needs(cfg, "lip_feat") and cfg.frontend == "embedded"
    if text_cond is not None and lip_cond is None and (wants_lips or text_cond.automatic_window):
        with _Clock(timings)("lips"):
            lip_cond, _ = scan_lips(source, cfg.duration_s, face, progress=(
                (lambda done, total: callback(0, total_steps)) if callback is not None else None))
    phones = None
    if text_cond is not None and frontend.needs(cfg, "phone_id"):
        phones, _ = frontend.phoneme_track(text_cond, duration_s, lip_cond, cfg.phone_placement)
    speaker = frontend.speaker_from_voice(cfg, text_cond.voice if text_cond else None, bundle.extras)

    total_samples = num_frames(duration_s, sample_rate)
    spans = window_spans(windows, sample_rate, total_samples)
    gains = crossfade_gains(spans)
    total_latent = max(int(round(w.start_s * latent_rate)) for w in windows) + latent_len
    noise = _latent_noise(bundle, seed, variations, total_latent, cfg.noise_scale_for(with_text))
    out = torch.zeros(variations, 1, total_samples)
    progress = {"done": 0}

    def on_step(done, total):
        progress["done"] += 1
        if callback is not None:
            callback(progress["done"], total_steps)

    window_frames = source.iter_frames(windows, FEATURE_RATE_HZ) if frontend.needs_frames(cfg) else None
    clock = _Clock(timings)
    with frontend.official_extractors_on(cfg, bundle.extras, bundle.device):
        for window, (first_sample, end_sample), gain in zip(windows, spans, gains):
            with clock("decode"):
                frames25 = next(window_frames) if window_frames is not None else None
            with clock("features"):
                inputs = _window_inputs(window, frames25, lip_cond, phones, speaker, cfg.duration_s)
                feats = frontend.pad_to_window(cfg, frontend.window_features(cfg, inputs, bundle.extras))
            count = end_sample - first_sample
            first = int(round(window.start_s * latent_rate))
            # [B, Ca, L]; the solver state stays float32 whatever the weights (the model casts its input)
            x0 = noise[:, :, first:first + latent_len].to(bundle.device, torch.float32)
            needed = min(latent_len, num_frames(count / sample_rate, latent_rate) + 4)  # + context for the vocoder
            with torch.inference_mode():
                with clock("sampling"):
                    feats = {k: _batch(v, variations).to(bundle.device) for k, v in feats.items()}
                    feats = {k: (v.to(bundle.dtype) if v.is_floating_point() else v) for k, v in feats.items()}
                    cond = bundle.model.encode_conditions(latent_length=latent_len, **feats)
                    latent = bundle.model.sample(x0, cond, solver=solver, steps=steps, guidance_scale=guidance,
                                                 callback=on_step, time_shift=time_shift, x_range=codec.latent_range,
                                                 guidance_rescale=rescale)
                with clock("vocoder"):
                    codec_dtype = next(iter(codec.parameters()), torch.zeros(0)).dtype
                    wave = codec.decode(latent[:, :, :needed].to(codec_dtype)).float().cpu()  # [B, S_w]
            out[:, 0, first_sample:end_sample] += _fit(wave, count) * gain
    return limit_peak(out), sample_rate


class _Clock:
    """``with clock("stage"):`` adds the block's wall time (s) to ``timings[stage]`` (no-op if None)."""

    def __init__(self, timings: dict | None):
        self.timings = timings

    @contextlib.contextmanager
    def __call__(self, stage: str):
        if self.timings is None:
            yield
            return
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - t0


def _batch(t: torch.Tensor, n: int) -> torch.Tensor:
    return t.expand(n, *t.shape[1:]).contiguous() if t.shape[0] == 1 else t


def _fit(wave: torch.Tensor, count: int) -> torch.Tensor:
    """Crop or zero-pad [B, S] to ``count`` samples."""
    if wave.shape[-1] >= count:
        return wave[:, :count]
    return torch.nn.functional.pad(wave, (0, count - wave.shape[-1]))


def _window_inputs(window: Window, frames: np.ndarray | None, lips: LipCondition | None,
                   phones: torch.Tensor | None, speaker, window_s: float | None = None) -> frontend.WindowInputs:
    """The window's slice of every track, on its own 25 Hz grid (row k at window.start_s + k / 25)."""
    rate = FEATURE_RATE_HZ
    count = num_frames(window.duration_s, rate)
    lips_raw = None
    if lips is not None:
        lips_raw = frontend.lips_on_grid(lips.features, lips.fps, lips.start_s, window.start_s, count)
    phone_ids = None
    if phones is not None:
        phone_ids = frontend.sample_track(phones.numpy(), rate, 0.0, window.start_s, count, rate)
        phone_ids = torch.from_numpy(phone_ids)
    return frontend.WindowInputs(window.start_s, window.duration_s, frames, lips_raw, phone_ids, speaker,
                                 window_s=window_s or window.duration_s)


def generate_to_file(bundle: Bundle, video: str | Path, out_path: str | Path, *, mode: str = "replace",
                     callback=None, **kwargs) -> Path:
    """Generate audio for a video file and write the video with it (video stream copied) to ``out_path``."""
    from vssflow_core.media.mux import mux_audio

    out_path = Path(out_path)
    if out_path.exists():
        raise VSSFlowError(f"output file already exists: {out_path}; choose another name (nothing is overwritten)")
    if not out_path.parent.is_dir():
        raise VSSFlowError(f"output folder does not exist: {out_path.parent}")
    audio, sample_rate = generate(bundle, video, callback=callback, **kwargs)
    with _Clock(kwargs.get("timings"))("mux"):
        return Path(mux_audio(str(video), audio[0], sample_rate, str(out_path), mode=mode))


__all__: Sequence[str] = ("Bundle", "load_bundle", "generate", "generate_to_file", "resolve_dtype", "resolve_device",
                          "scan_lips")
