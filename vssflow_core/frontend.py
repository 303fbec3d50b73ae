"""Condition front-ends: video frames, lips, transcript and voice -> the raw features a model asks for.

The model's condition table names each condition's ``feature_key`` (the keyword of
``VSSFlow.encode_conditions``). This module builds those features for one generation window,
dispatching on ``(config.frontend, feature_key)``:

==================  =====================================  =========================================
feature_key         embedded front-end                     official front-end
==================  =====================================  =========================================
motion_feat         ``features.visual.motion_features``    -
event_feat          ``features.events.event_probabilities``  -
appearance_feat     ``features.visual.appearance_features``  -
video_feat          -                                      CLIP ViT-B/16 (weights in the model file)
synch_feat          -                                      Synchformer (weights in the model file)
lip_feat            normalised 6-d lip track               absent (zeros, as the official inference)
phone_id            phonemes over the speech window        same (uniform stretch, as official)
ref_audio_ebd       ``features.speaker.speaker_embedding``  RawNet3 (weights in the model file)
==================  =====================================  =========================================

A feature that cannot be computed (no transcript, no voice, extractor weights missing) is left
absent, which the model treats as the zero/"unconditional" value. Missing extractor weights are
reported once with a warning.

Letters: F video frames, N feature frames, D width. Rates: lips and phonemes 25 Hz, appearance 10 Hz.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Iterator

import numpy as np
import torch

from vssflow_core.config import FEATURE_RATE_HZ
from vssflow_core.errors import VSSFlowError
from vssflow_core.media.probe import frame_shown_at, num_frames  # noqa: F401  (num_frames re-exported)

FRAME_SHORT_SIDE = 256  # frames decoded for features are scaled so the short side is this (px)
LIP_FRAME_SHORT_SIDE = 480  # larger frames for the face-landmark detector (px)


@dataclass(frozen=True)
class LipCondition:
    """A measured lip track over a video (the ``VSSFLOW_LIPS`` value).

    Attributes:
        features: float32 [F, 6] raw lip features (``lip_space.LIP_FEATURE_NAMES``), row k at
            ``start_s + k / fps`` seconds of the video.
        fps: rate of the rows (Hz).
        start_s: video time of row 0 (s).
        track: the extractor's full ``LipTrack`` (boxes, crops, preview) or None.
    """

    features: np.ndarray
    fps: float
    start_s: float = 0.0
    track: Any = None

    @property
    def duration_s(self) -> float:
        """Seconds the track covers (rows / fps)."""
        return len(self.features) / self.fps


@dataclass(frozen=True)
class TextCondition:
    """A transcript placed in video time (the ``VSSFLOW_TEXT`` value).

    Attributes:
        transcript: the words to speak.
        speech_start_s, speech_end_s: the speech window in seconds of the video; both 0 means
            "automatic" (from the lips, else the whole video).
        voice: optional reference voice ``(wave float32 [C, S], sample_rate Hz)``.
    """

    transcript: str
    speech_start_s: float = 0.0
    speech_end_s: float = 0.0
    voice: tuple[torch.Tensor, int] | None = None

    @property
    def automatic_window(self) -> bool:
        """True when the speech window is to be found automatically (start and end both 0)."""
        return self.speech_start_s == 0.0 and self.speech_end_s == 0.0


def make_text_condition(transcript: str, speech_start_s: float = 0.0, speech_end_s: float = 0.0,
                        voice: tuple[torch.Tensor, int] | None = None) -> TextCondition:
    """Check and bundle a transcript, its speech window (s; 0/0 = automatic) and a reference voice."""
    text = (transcript or "").strip()
    if not text:
        raise VSSFlowError("transcript is empty: type the words to speak, or give no transcript (no --text, or "
                           "the text input unconnected) for sound effects only")
    start, end = float(speech_start_s), float(speech_end_s)
    if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end < 0:
        raise VSSFlowError(f"speech window must be non-negative seconds, got start={start} end={end}")
    if not (start == 0.0 and end == 0.0) and end <= start:
        raise VSSFlowError(f"speech window end ({end} s) must be after its start ({start} s); "
                           "use 0/0 to find the window from the lips automatically")
    from vssflow_core.features.phone_timing import check_window
    from vssflow_core.features.text import BLANK, phoneme_ids, text_to_phonemes

    phonemes = text_to_phonemes(text)  # raises for letters of other scripts
    if not any(ph != BLANK for ph in phonemes):
        raise VSSFlowError(f"transcript {text[:60]!r} has no words to speak (only punctuation or symbols); type "
                           "the words, or give no transcript (no --text, or the text input unconnected) for sound "
                           "effects only")
    if end > start:  # a given window: does the text fit? (an automatic one is checked once found)
        check_window(len(phoneme_ids(phonemes)), start, end, math.inf, FEATURE_RATE_HZ)  # video length unknown here
    if voice is not None:
        wave, sample_rate = voice
        wave = torch.as_tensor(wave, dtype=torch.float32)
        if wave.dim() == 1:
            wave = wave[None]
        if wave.dim() == 3:  # ComfyUI AUDIO [B, C, S]: first item
            wave = wave[0]
        if wave.dim() != 2 or wave.shape[-1] == 0:
            raise VSSFlowError(f"reference voice must be audio [C, S] with samples, got shape {list(wave.shape)}")
        if not torch.isfinite(wave).all():
            raise VSSFlowError("reference voice contains NaN or infinite samples; connect a clean recording")
        if not (isinstance(sample_rate, (int, float)) and sample_rate > 0):
            raise VSSFlowError(f"reference voice has sample rate {sample_rate!r}; expected a positive rate in Hz")
        voice = (wave, int(sample_rate))
    return TextCondition(text, start, end, voice)


def sample_track(features: np.ndarray, src_rate_hz: float, src_start_s: float, start_s: float,
                 count: int, dst_rate_hz: float) -> np.ndarray:
    """Read a track [N, D] at ``src_rate_hz`` on a new grid by timestamp (the row shown at each time).

    Row k of the result is the source row displayed at ``start_s + k / dst_rate_hz``; times before
    or after the source are zeros. Returns [count, D] (or [count]) in the dtype of ``features``.
    """
    features = np.asarray(features)
    times = start_s + np.arange(count) / dst_rate_hz
    return _rows_at(features, frame_shown_at(times, src_rate_hz, src_start_s))


def _rows_at(features: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Rows ``features[idx]`` [len(idx), ...], zeros where ``idx`` falls outside the track."""
    inside = (idx >= 0) & (idx < len(features))
    out = np.zeros((len(idx),) + features.shape[1:], dtype=features.dtype)
    out[inside] = features[idx[inside]]
    return out


def lips_on_grid(features: np.ndarray, src_rate_hz: float, src_start_s: float, start_s: float,
                 count: int) -> np.ndarray:
    """Read a measured lip track [N, 6] at ``src_rate_hz`` onto the 25 Hz grid by linear interpolation.

    The lips move smoothly, so row k of the result (time ``start_s + k / 25``) lies between the
    source rows measured just before and just after that time, weighted by distance. A video made at
    16 fps thus gives a lip track that moves on every 25 Hz frame, instead of one that stands still
    on 9 of 25 and lags by up to one source frame. Where one of the two rows is absent (all zeros: no
    face found), the row shown at that time is taken, as :func:`sample_track` does; so are times in
    the last row's frame; times outside the track are zeros. At 25 Hz it equals
    :func:`sample_track`. Returns float32 [count, 6].
    """
    features = np.asarray(features, dtype=np.float32)
    times = start_s + np.arange(count) / FEATURE_RATE_HZ
    left = frame_shown_at(times, src_rate_hz, src_start_s)  # the row measured last before each time
    out = _rows_at(features, left)
    if len(features) < 2:
        return out
    frac = (times - src_start_s) * src_rate_hz - left  # how far towards the next row, 0..1
    between = (left >= 0) & (left + 1 < len(features)) & (frac > 1e-6)
    present = np.any(features != 0, axis=1)
    k = np.flatnonzero(between)
    k = k[present[left[k]] & present[left[k] + 1]]
    w = frac[k, None].astype(np.float32)
    out[k] = (1 - w) * features[left[k]] + w * features[left[k] + 1]
    return out


@dataclass
class WindowInputs:
    """Everything the front-ends need for one generation window.

    Attributes:
        start_s, duration_s: the part of the video in this window (s); at most ``window_s``.
        frames: uint8 [F, H, W, 3] at 25 fps over the window (row k at start_s + k/25), or None.
        lips_raw: float32 [F25, 6] raw lip features on the window's 25 Hz grid, or None.
        phone_ids: int64 [F25] phoneme ids on the window's 25 Hz grid (0 = none), or None.
        speaker: float32 [256] speaker embedding, or None.
    """

    start_s: float
    duration_s: float
    frames: np.ndarray | None = None
    lips_raw: np.ndarray | None = None
    phone_ids: torch.Tensor | None = None
    speaker: torch.Tensor | None = None
    window_s: float = 0.0  # the model's window (s): features are padded to it (official extractors pad themselves)

    @cached_property
    def grey(self) -> np.ndarray:
        """float32 [F, 256]: ``visual.grey_grid`` of ``frames`` (most of the cost of the motion features
        and of the shot cuts the event detector reads), made once per window for both."""
        from vssflow_core.features.visual import grey_grid

        return grey_grid(self.frames)

    @cached_property
    def cuts(self) -> np.ndarray:
        """bool [F]: ``visual.shot_cuts`` of ``frames`` (from ``grey``), found once per window for the
        motion features and the event detector."""
        from vssflow_core.features.visual import shot_cuts

        return shot_cuts(self.frames, self.grey)


def warn(message: str) -> None:
    """Warn about a missing part (Python's default filter shows each message once per place)."""
    warnings.warn(message, stacklevel=3)


def _frames_at(frames: np.ndarray, rate_hz: float, duration_s: float) -> np.ndarray:
    """Frames at 25 fps -> frames at ``rate_hz`` by timestamp (index of the frame shown)."""
    count = num_frames(duration_s, rate_hz)
    idx = np.minimum(frame_shown_at(np.arange(count) / rate_hz, FEATURE_RATE_HZ), len(frames) - 1)
    return frames[idx]


def _motion(w: WindowInputs, spec, extras) -> torch.Tensor | None:
    if w.frames is None:
        return None
    from vssflow_core.features.visual import motion_features

    return torch.as_tensor(motion_features(w.frames, w.grey, w.cuts), dtype=torch.float32)[None]  # [1, F25, 256]


def _events(w: WindowInputs, spec, extras) -> torch.Tensor | None:
    if w.frames is None:
        return None
    from vssflow_core.features.events import event_probabilities

    return torch.as_tensor(event_probabilities(w.frames, cuts=w.cuts), dtype=torch.float32)[None]  # [1, F25, 1]


def _appearance(w: WindowInputs, spec, extras) -> torch.Tensor | None:
    if w.frames is None:
        return None
    from vssflow_core.features.visual import appearance_features

    frames = _frames_at(w.frames, spec.rate_hz, w.duration_s)  # the condition table's rate (embedded: 10 Hz)
    return torch.as_tensor(appearance_features(frames), dtype=torch.float32)[None]  # [1, F10, 768]


def _lips_embedded(w: WindowInputs, spec, extras) -> torch.Tensor | None:
    if w.lips_raw is None:
        return None
    from vssflow_core.features.lip_space import normalise_lip_track

    return torch.as_tensor(normalise_lip_track(w.lips_raw), dtype=torch.float32)[None]  # [1, F25, 6]


def _phones(w: WindowInputs, spec, extras) -> torch.Tensor | None:
    return None if w.phone_ids is None else w.phone_ids.to(torch.long)[None]  # [1, F25]


def _speaker(w: WindowInputs, spec, extras) -> torch.Tensor | None:
    return None if w.speaker is None else w.speaker.to(torch.float32).reshape(1, -1)  # [1, 256]


def _official_visual(kind: str) -> Callable:
    """CLIP (``video_feat``, 10 Hz) or Synchformer (``synch_feat``, 24 tokens/s) from the model file."""

    def build(w: WindowInputs, spec, extras) -> torch.Tensor | None:
        if w.frames is None or (kind == "synchformer" and len(w.frames) < 16):  # one 16-frame segment minimum
            return None
        from vssflow_core.features.official.extractors import extractor_model

        try:
            extractor = extractor_model(kind, extras)
        except VSSFlowError as e:
            warn(f"official {kind} features unavailable ({e}); this condition is left at zeros, "
                 "which lowers quality. Convert a checkpoint that includes the extractor weights.")
            return None
        from vssflow_core.features.official import clip, synchformer

        with torch.inference_mode():
            full_s = max(w.window_s, w.duration_s)  # black frames past the video's end, as official
            if kind == "clip":
                return clip.clip_features(extractor, w.frames, FEATURE_RATE_HZ, full_s)[None]  # [1, N10, 768]
            return synchformer.synch_features(extractor, w.frames, full_s)[None]  # [1, S, 8, 768]

    return build


FEATURE_BUILDERS: dict[tuple[str, str], Callable] = {
    ("embedded", "motion_feat"): _motion,
    ("embedded", "event_feat"): _events,
    ("embedded", "appearance_feat"): _appearance,
    ("embedded", "lip_feat"): _lips_embedded,
    ("embedded", "phone_id"): _phones,
    ("embedded", "ref_audio_ebd"): _speaker,
    ("official", "video_feat"): _official_visual("clip"),
    ("official", "synch_feat"): _official_visual("synchformer"),
    ("official", "lip_feat"): lambda w, spec, extras: None,  # AV-HuBERT is zeros in the official inference
    ("official", "phone_id"): _phones,
    ("official", "ref_audio_ebd"): _speaker,
}
# the builders above that read ``WindowInputs.frames``: the pipeline decodes the video only for these
FRAME_FEATURES = frozenset({"motion_feat", "event_feat", "appearance_feat", "video_feat", "synch_feat"})


def feature_key(spec) -> str:
    """The ``encode_conditions`` keyword of a condition-table row."""
    return spec.feature_key


def needs(config, key: str) -> bool:
    """Whether the model's condition table has a condition with this feature key."""
    return any(feature_key(c) == key for c in config.conditions)


def needs_frames(config) -> bool:
    """Whether any condition of the model is computed from video frames (:data:`FRAME_FEATURES`)."""
    return any(feature_key(c) in FRAME_FEATURES for c in config.conditions)


@contextlib.contextmanager
def official_extractors_on(config, extras: dict, device: torch.device | str) -> Iterator[None]:
    """Run the official visual extractors the model needs (CLIP, Synchformer) on ``device`` for the
    length of the block, then move them back to the CPU: they are built from the model file's extra
    weights, not part of the model, so a host such as ComfyUI does not manage their memory. On a
    GPU this turns seconds of CPU work per window into milliseconds."""
    device = torch.device(device)
    modules = []
    if config.frontend == "official" and device.type != "cpu":
        from vssflow_core.features.official.extractors import extractor_model

        for kind, key in (("clip", "video_feat"), ("synchformer", "synch_feat")):
            if needs(config, key):
                try:
                    modules.append(extractor_model(kind, extras))
                except VSSFlowError:
                    continue  # weights absent: said once when the feature is built
    try:
        with torch.inference_mode(False):
            for m in modules:
                m.to(device)
        yield
    finally:
        with torch.inference_mode(False):
            for m in modules:
                m.to("cpu")


def window_features(config, window: WindowInputs, extras: dict | None = None) -> dict[str, torch.Tensor]:
    """Raw features for one window, keyed by feature key; absent conditions are left out.

    Returns: {feature_key: tensor [1, N, D] (sequences at their native rate over the window),
    [1, N] int64 (phone_id) or [1, D] (global)}.
    """
    frontend = config.frontend
    out = {}
    for spec in config.conditions:
        key = feature_key(spec)
        builder = FEATURE_BUILDERS.get((frontend, key))
        if builder is None:
            raise VSSFlowError(f"model {config.name!r}: no front-end for condition {key!r} with frontend "
                               f"{frontend!r}; known: {sorted(FEATURE_BUILDERS)}")
        value = builder(window, spec, extras or {})
        if value is not None:
            out[key] = value
    return out


def pad_to_window(config, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Zero-pad (or crop) each sequence feature [1, N, ...] to the model's window at its rate.

    Training crops clips into windows of ``config.duration_s`` and zero-pads what a clip lacks, so the
    last, shorter window of a video is padded the same way (zeros = absent / phoneme id 0).
    """
    out = dict(features)
    for spec in config.conditions:
        key = feature_key(spec)
        if key not in out or spec.rate_hz is None or spec.fold_segments:
            continue
        value, n = out[key], num_frames(config.duration_s, spec.rate_hz)
        if value.shape[1] < n:
            pad = torch.zeros((value.shape[0], n - value.shape[1]) + tuple(value.shape[2:]), dtype=value.dtype)
            value = torch.cat([value, pad], dim=1)
        out[key] = value[:, :n]
    return out


def extract_lip_condition(frames: np.ndarray, fps: float, face: str | int = "largest",
                          start_s: float = 0.0, require_face: bool = False,
                          progress: Callable[[int, int], None] | None = None,
                          follow_box: tuple[float, float, float, float] | None = None) -> LipCondition:
    """Measure the lips of a frame batch uint8 [F, H, W, 3] at ``fps`` (mediapipe face mesh).

    ``require_face``: raise when no face is found in any frame (else an all-absent track).
    ``progress(done, total)`` is called every 25 frames (raising from it cancels).
    ``follow_box``: the previous window's ``track.face_box``, to keep following its face.
    """
    from vssflow_core.features.lips import extract_lips

    if len(frames) == 0:
        raise VSSFlowError("extract lips: the video has 0 frames; check the loader's start/duration window")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no face" is raised here or left to the caller
        track = extract_lips(frames, fps=fps, face=face, progress=progress, follow_box=follow_box)
    if require_face and not np.any(track.found):
        raise no_face_error(len(frames), face)
    return LipCondition(np.asarray(track.features, dtype=np.float32), float(fps), float(start_s), track)


def no_face_error(num_frames_checked: int, face: str | int) -> VSSFlowError:
    """The error for a lip track that found its face in none of ``num_frames_checked`` frames."""
    which = "no face found" if isinstance(face, str) else f"face {face} (counting from 0, left to right) not found"
    hint = "" if isinstance(face, str) else (
        f"; with fewer than {int(face) + 1} faces in view choose 'largest', 'center' or a lower index")
    return VSSFlowError(f"extract lips: {which} in any of the {num_frames_checked} frames{hint}; use a video where "
                        "a face is visible (frontal, at least ~60 px wide), or leave lips unconnected")


def speaker_from_voice(config, voice, extras: dict | None = None) -> torch.Tensor | None:
    """Speaker embedding float32 [256] of a reference voice ``(wave [C, S], sample_rate)``, or None."""
    if voice is None or not needs(config, "ref_audio_ebd"):
        return None
    wave, sample_rate = voice
    if config.frontend == "official":
        from vssflow_core.audio.resample import resample
        from vssflow_core.features.official import rawnet3
        from vssflow_core.features.official.extractors import extractor_model

        try:
            model = extractor_model("rawnet3", extras if extras is not None else {})
        except VSSFlowError as e:
            warn(f"official speaker encoder unavailable ({e}); the reference voice is ignored")
            return None
        mono = resample(torch.as_tensor(wave, dtype=torch.float32).mean(0), int(sample_rate), rawnet3.SAMPLE_RATE)
        with torch.inference_mode():
            return rawnet3.speaker_embedding(model, mono, rawnet3.SAMPLE_RATE)
    import importlib.util

    from vssflow_core.features.speaker import RESEMBLYZER_INSTALL_HINT, speaker_embedding

    if importlib.util.find_spec("resemblyzer") is None:
        warn(f"the reference voice is ignored: its speaker embedding needs resemblyzer. {RESEMBLYZER_INSTALL_HINT}")
        return None
    emb = speaker_embedding(wave, sample_rate)
    return None if emb is None else torch.as_tensor(emb, dtype=torch.float32).reshape(-1)


def check_speech_start(start_s: float, duration_s: float) -> None:
    """Refuse a speech window that starts at or after the end of the video (both in seconds)."""
    if start_s >= duration_s:
        raise VSSFlowError(f"speech window starts at {start_s:.2f} s but the video lasts {duration_s:.2f} s; "
                           "set speech start/end inside the video (or 0/0 for automatic)")


def phoneme_track(text: TextCondition, duration_s: float, lips: LipCondition | None,
                  placement: str = "uniform") -> tuple[torch.Tensor, tuple[float, float]]:
    """Phoneme ids on the 25 Hz grid of the whole video, and the speech window used.

    The window is the text's (s), or, when 0/0, found from the lips (else the whole video). Inside
    it the phonemes are stretched uniformly (``placement="uniform"``, official) or follow the
    mouth (``"lips"``: DTW against its opening and width; ``"lipread"``: forced alignment to the lip
    reader; see ``features.phone_timing.mouth_placement``; uniform without lips).
    Returns: (int64 [num_frames(duration_s, 25)], (start_s, end_s)).
    """
    from vssflow_core.features import phone_timing
    from vssflow_core.features import text as text_mod

    start, end = text.speech_start_s, text.speech_end_s
    if text.automatic_window:
        start, end = 0.0, duration_s
        if lips is None:
            warn("no lips to find the speech window from: the transcript is spread over the whole "
                 "video; set the speech start/end to place it")
        else:
            try:
                start, end = phone_timing.speech_window_from_lips(lips.features, lips.fps)
                start, end = start + lips.start_s, end + lips.start_s
                warn(f"speech window found from the lips: {start:.2f} s to {end:.2f} s "
                     "(set the speech start/end to place the transcript yourself)")
            except VSSFlowError as e:
                warn(f"speech window not found from the lips ({e}); the transcript is spread over "
                     "the whole video; set the speech start/end to place it")
    check_speech_start(start, duration_s)
    ids = text_mod.phoneme_ids(text_mod.text_to_phonemes(text.transcript))
    if end > duration_s:  # the window is cut by the end of the video: say so if the text no longer fits
        try:
            phone_timing.check_window(len(ids), start, duration_s, duration_s, FEATURE_RATE_HZ)
        except VSSFlowError:
            need = len(ids) / text_mod.MAX_PHONEMES_PER_S
            raise VSSFlowError(
                f"speech window {start:.2f}-{end:.2f} s runs past the end of the video ({duration_s:.2f} s), which "
                f"leaves {duration_s - start:.2f} s for the {len(ids)} phonemes of the transcript; they need at least "
                f"{need:.2f} s: start the speech by {max(0.0, duration_s - need):.2f} s or shorten the text") from None
        end = duration_s
    if placement != "uniform" and lips is not None:
        on_grid = lips_on_grid(lips.features, lips.fps, lips.start_s, 0.0, num_frames(duration_s, FEATURE_RATE_HZ))
        track = phone_timing.mouth_placement(placement)(ids, on_grid, start, end, duration_s, rate_hz=FEATURE_RATE_HZ)
    else:
        track = phone_timing.place_phonemes(ids, start, end, duration_s, rate_hz=FEATURE_RATE_HZ)
    return torch.as_tensor(track, dtype=torch.long), (start, end)
