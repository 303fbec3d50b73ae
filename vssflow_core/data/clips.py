"""Build one synthetic audio-visual clip (speech, sound scene, or both) from (seed, index).

A clip is a ``ClipSpec``: everything random is drawn once from ``numpy.random.default_rng([seed,
index])``, so the same (seed, index) gives the same clip in any order, in any process, and at
any render size. ``render_frames(spec, size)`` draws the video at any resolution (64 px for the
training features, 256-384 px for mp4s); ``clip_tensors(spec)`` gives the training tensors.

Letters: F25 frames at 25 Hz, F10 frames at 10 Hz, S audio samples at 22050 Hz.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vssflow_core.config import FEATURE_RATE_HZ
from vssflow_core.data import canvas, faces, scenes, sfx
from vssflow_core.data.sentences import make_sentence
from vssflow_core.media.probe import frame_shown_at, num_frames

SAMPLE_RATE = 22050
FPS = FEATURE_RATE_HZ  # the clips are rendered on the conditions' grid
APPEARANCE_FPS = 10.0
KINDS = ("speech", "sfx", "mixed")
FEATURE_RENDER_SIZE = 64  # px; the features squash frames to 16x16 anyway
EVENT_RENDER_SIZE = 128  # px; the event detector reads a 32x32 grid (4 x 4 pixels per cell)
KIND_CYCLE = ("speech", "sfx", "speech", "sfx", "mixed")  # --kind all: 40 % / 40 % / 20 %
LOW_FRAME_RATES = (8.0, 10.0, 12.0, 12.5, 15.0, 16.0, 20.0, 24.0)  # video generators, animation, film


def kind_for_index(kind: str, index: int) -> str:
    """The kind of clip ``index`` for ``--kind`` (``all`` cycles speech, sfx, speech, sfx, mixed)."""
    return KIND_CYCLE[index % len(KIND_CYCLE)] if kind == "all" else kind


@dataclass
class ClipSpec:
    """Everything needed to render and store one clip."""

    seed: int
    index: int
    kind: str
    duration_s: float
    wave: np.ndarray  # [S] float32, peak <= 1
    transcript: str = ""
    speech_start_s: float | None = None
    speech_end_s: float | None = None
    segments: list = field(default_factory=list)  # ARPAbet (symbol, start_s, end_s) from the TTS
    lip_raw: np.ndarray | None = None  # [F25, 6] raw lip track (lip_space), None without a face
    face: faces.FaceTrack | None = None
    objects: list = field(default_factory=list)  # scenes.SceneObject
    camera: canvas.Camera | None = None
    background_style: str = "gradient"
    floor_y: float = 0.8
    voice: str | None = None  # who speaks (speech.voice_ids()), None without speech

    @property
    def clip_id(self) -> str:
        """The clip's six-digit id (its index), as in the manifest and file names."""
        return f"{self.index:06d}"

    @property
    def events(self) -> list[dict]:
        """The visible sound events of all objects, in time order: ``{time_s, frame (25 fps), class}``."""
        evs = sorted((k, c) for o in self.objects for k, c in o.events)
        return [{"time_s": round(k / FPS, 6), "frame": int(k), "class": c} for k, c in evs]


def _background_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, index, 1])


def _voice_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, index, 2])


def build_clip(seed: int, index: int, kind: str, duration_s: float = 8.0, use_real_sounds: bool = True,
               sentences: list[str] | None = None, classes: list[str] | None = None,
               voices: tuple[str, ...] = ("joe",)) -> ClipSpec:
    """Draw the content of clip ``index`` of a dataset with ``seed`` (deterministic).

    Args:
        kind: ``speech`` (talking face), ``sfx`` (sound scene) or ``mixed`` (both in one frame).
        duration_s: clip length in seconds (8.0 by default).
        use_real_sounds: allow the freedesktop bell recording (if installed) for the ``bell`` class.
        sentences: fixed sentences to speak (in order) instead of random ones (sample videos).
        classes: fixed sound classes (``sfx.SOUND_CLASSES``) instead of random ones.
        voices: the voices a speaking clip may use (``speech.voice_ids()``), one drawn per clip
            from its own generator, so the rest of the clip is the same whatever the list.
    """
    from vssflow_core.data import speech as speech_mod
    from vssflow_core.features.lip_space import lip_features_from_openings, openings_from_phoneme_timings

    if kind not in KINDS:
        raise ValueError(f"clip kind must be one of {KINDS}, got {kind!r}")
    rng = np.random.default_rng([seed, index])
    n25 = num_frames(duration_s, FPS)
    n_samples = int(round(duration_s * SAMPLE_RATE))
    style = ("gradient", "texture", "photo", "tiles")[int(rng.integers(4))]
    bg = canvas.make_background(_background_rng(seed, index), 16, style)
    spec = ClipSpec(seed, index, kind, duration_s, np.zeros(n_samples, np.float32), background_style=style,
                    floor_y=bg.floor_y)
    spec.camera = canvas.Camera.random(rng, still_prob=0.6 if kind == "speech" else 0.4)
    mix = np.zeros(n_samples, dtype=np.float64)
    face_side = None
    if kind in ("speech", "mixed"):
        face_side = "centre" if kind == "speech" else ("left" if rng.random() < 0.5 else "right")
        if sentences:
            queue = list(sentences)
            make_text, max_sentences = (lambda _rng: queue.pop(0) if queue else "Okay."), len(sentences)
        else:
            make_text, max_sentences = make_sentence, 3 if kind == "speech" else 2
        spec.voice = voices[int(_voice_rng(seed, index).integers(len(voices)))] if len(voices) > 1 else voices[0]
        sp = speech_mod.compose_speech(rng, duration_s, make_text, max_sentences=max_sentences,
                                       earliest_s=0.1, latest_s=duration_s - 0.15, all_sentences=bool(sentences),
                                       voice=spec.voice)
        spec.transcript, spec.segments = sp.transcript, sp.segments
        spec.speech_start_s, spec.speech_end_s = sp.speech_start_s, sp.speech_end_s
        inner, outer, width = openings_from_phoneme_timings(sp.segments, duration_s, FPS, rng=rng)
        spec.lip_raw = lip_features_from_openings(inner, outer, width, fps=FPS)
        region = {"centre": (0.15, 0.15, 0.85, 0.85), "left": (0.0, 0.2, 0.5, 0.8),
                  "right": (0.5, 0.2, 1.0, 0.8)}[face_side]
        spec.face = faces.random_face_track(rng, inner, FPS, region=region)
        mix += sp.wave
    if kind in ("sfx", "mixed"):
        if kind == "sfx":
            n_cls = 1 if rng.random() < 0.7 else 2
            region = (0.03, 0.97)
        else:
            n_cls = 1
            region = (0.52, 0.98) if face_side == "left" else (0.02, 0.48)
        drawn = list(rng.choice(sfx.SOUND_CLASSES, size=n_cls, replace=False))
        classes = list(classes) if classes else drawn
        spec.objects = scenes.make_objects(rng, classes, region, bg.floor_y, duration_s, n25, use_real_sounds)
        if not spec.objects:  # crowded timeline: fall back to one flash, which always fits
            spec.objects = scenes.make_objects(rng, ["flash"], region, bg.floor_y, duration_s, n25, use_real_sounds)
        shakes = tuple(s for o in spec.objects for s in o.shakes)
        if shakes:
            spec.camera.shakes = spec.camera.shakes + shakes
        fx = np.sum([o.audio for o in spec.objects], axis=0) if spec.objects else np.zeros(n_samples)
        peak = float(np.max(np.abs(fx))) or 1.0
        mix += fx / peak * (float(rng.uniform(0.3, 0.7)) if kind == "mixed" else 1.0)
    if rng.random() < 0.5:
        mix += sfx.room_tone(rng, n_samples, float(rng.uniform(0.002, 0.02)))
    peak = float(np.max(np.abs(mix))) or 1.0
    spec.wave = (mix / peak * float(rng.uniform(0.5, 0.95))).astype(np.float32)
    return spec


def render_frames(spec: ClipSpec, size: int, rate_hz: float = FPS) -> np.ndarray:
    """Draw the clip's video: uint8 ``[F, size, size, 3]`` at ``rate_hz`` (frame k at time k/rate)."""
    bg = canvas.make_background(_background_rng(spec.seed, spec.index), size, spec.background_style)
    n = num_frames(spec.duration_s, rate_hz)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for k in range(n):
        t = k / rate_hz
        off = spec.camera.offset(t) if spec.camera is not None else (0.0, 0.0)
        img = canvas.view(bg, size, off)
        if spec.face is not None:
            k25 = min(int(frame_shown_at(t, FPS)), len(spec.face.inner_open) - 1)
            pose = spec.face.pose(k25)
            pose.cx -= off[0]
            pose.cy -= off[1]
            faces.render_face(img, pose, float(spec.face.inner_open[k25]), spec.face.composite)
        light = 0.0
        for obj in spec.objects:
            obj.draw(img, t, off)
            if obj.brightness is not None:
                light += obj.brightness(t)
        if light > 0:
            img = 1.0 - (1.0 - img) * (1.0 - min(light, 0.9))
        out[k] = canvas.to_uint8(img)
    return out


def render_frames_held(spec: ClipSpec, size: int, source_fps: float) -> np.ndarray:
    """The clip's video made at ``source_fps`` (a video generator's 16 fps, animation's 12) and read
    onto the 25 fps grid as the decoder reads such a file: each grid time k/25 shows the latest source
    frame (``frame_shown_at``), so pictures repeat. uint8 ``[F25, size, size, 3]``; at 25 fps it is
    :func:`render_frames`."""
    if source_fps == FPS:
        return render_frames(spec, size)
    made = render_frames(spec, size, source_fps)
    shown = frame_shown_at(np.arange(num_frames(spec.duration_s, FPS)) / FPS, source_fps)
    return made[np.minimum(shown, len(made) - 1)]


def appearance_indices(duration_s: float) -> np.ndarray:
    """Index of the 25 fps frame shown at each 10 fps time k/10 (as the inference front-end picks)."""
    count = num_frames(duration_s, APPEARANCE_FPS)
    return frame_shown_at(np.arange(count) / APPEARANCE_FPS, FPS)


def video_frame_rate(seed: int, index: int, kind: str, low_fps_share: float, low_fps_lips_share: float = 0.0) -> float:
    """The frame rate (fps) clip ``index`` of ``seed`` has its video made at: 25, or one of
    ``LOW_FRAME_RATES`` (held on the 25 fps grid, ``render_frames_held``) for a ``low_fps_share`` of
    the sound clips and a ``low_fps_lips_share`` of the speech and mixed clips, chosen by (seed,
    index) whatever the order or share of the others. A speaking clip made at a low rate has its
    lips measured from that video (``clip_tensors``, :func:`lips_seen_at`)."""
    rng = np.random.default_rng([seed, index, 16])
    chosen, rate = rng.random(), float(rng.choice(LOW_FRAME_RATES))  # both drawn always: same stream
    share = low_fps_share if kind == "sfx" else low_fps_lips_share
    return rate if chosen < share else FPS


def lips_seen_at(lip_raw: np.ndarray, fps: float) -> np.ndarray:
    """The raw lip track [F25, 6] of a synthetic face as the front-end reads it from a video of the
    same face made at ``fps``: the face drawn at each ``k / fps`` (the 25 Hz pose shown then, as
    :func:`render_frames` draws it), measured there (velocity per second at ``fps``, as
    ``extract_lips`` computes it) and put back on the 25 Hz grid (``frontend.lips_on_grid``)."""
    from vssflow_core.features.lip_space import lip_features_from_openings
    from vssflow_core.frontend import lips_on_grid, sample_track

    count = len(lip_raw)
    pose = sample_track(lip_raw, FPS, 0.0, 0.0, num_frames(count / FPS, fps), fps)
    measured = lip_features_from_openings(pose[:, 0], pose[:, 1], pose[:, 2], fps=fps, found=pose[:, 5])
    return lips_on_grid(measured, fps, 0.0, 0.0, count)


def clip_tensors(spec: ClipSpec, frames25: np.ndarray | None = None, video_fps: float = FPS) -> dict[str, np.ndarray]:
    """The stored tensors of a clip (see ``generate`` for the file format). ``frames25`` uint8
    [F25, H, W, 3] replaces the video the features are computed from (default: the clip drawn at
    ``FEATURE_RENDER_SIZE``); ``video_fps`` is the frame rate the video is made at (held on the 25 fps
    grid, see :func:`video_frame_rate`), for the motion, appearance and event features and, for a
    speaking clip, the lips (:func:`lips_seen_at`).

    Returns: wave float32 [S]; lip_feat float32 [F25, 6] (normalised, model input; zeros without a
    face); lip_raw float32 [F25, 6]; phone_id int64 [F25]; motion_feat float32 [F25, 256];
    event_feat float32 [F25, 1] (the event detector on the video drawn at ``EVENT_RENDER_SIZE``);
    appearance_feat float32 [F10, 768].
    """
    from vssflow_core.features.events import event_probabilities
    from vssflow_core.features.lip_space import normalise_lip_track
    from vssflow_core.features.visual import appearance_features, motion_features

    n25 = num_frames(spec.duration_s, FPS)
    if frames25 is None:
        frames25 = render_frames_held(spec, FEATURE_RENDER_SIZE, video_fps)
    if spec.lip_raw is None:
        lip_raw = np.zeros((n25, 6), np.float32)
    elif video_fps != FPS:  # the face filmed at a low rate: its lips as the front-end measures them
        lip_raw = lips_seen_at(spec.lip_raw, video_fps)
    else:
        lip_raw = spec.lip_raw
    phone = np.zeros(n25, dtype=np.int64)
    if spec.transcript:
        from vssflow_core.features.phone_timing import place_phonemes
        from vssflow_core.features.text import phoneme_ids, text_to_phonemes

        ids = phoneme_ids(text_to_phonemes(spec.transcript))
        phone = np.asarray(place_phonemes(ids, spec.speech_start_s, spec.speech_end_s, spec.duration_s, FPS),
                           dtype=np.int64)
    return {
        "wave": spec.wave.astype(np.float32),
        "lip_feat": normalise_lip_track(lip_raw).astype(np.float32),
        "lip_raw": np.asarray(lip_raw, dtype=np.float32),
        "phone_id": phone,
        "motion_feat": motion_features(frames25),
        "event_feat": event_probabilities(render_frames_held(spec, EVENT_RENDER_SIZE, video_fps)),
        "appearance_feat": appearance_features(frames25[appearance_indices(spec.duration_s)]),
    }


def manifest_row(spec: ClipSpec, video: str | None = None, video_fps: float = FPS) -> dict:
    """The manifest.jsonl row of a clip (ground truth for training and evaluation); ``video_fps`` is
    the frame rate its video features were made at (``fps`` is the 25 Hz grid they are on)."""
    speech = spec.kind in ("speech", "mixed")
    return {
        "id": spec.clip_id,
        "kind": spec.kind,
        "duration_s": spec.duration_s,
        "transcript": spec.transcript,
        "speech_start_s": round(spec.speech_start_s, 6) if speech else None,
        "speech_end_s": round(spec.speech_end_s, 6) if speech else None,
        "events": spec.events,
        "classes": sorted({e["class"] for e in spec.events}),
        "seed": spec.seed,
        "index": spec.index,
        "file": f"clips/{spec.clip_id}.safetensors",
        "video": video,
        "phones": [[a, round(s, 4), round(e, 4)] for a, s, e in spec.segments],
        "face": None if spec.face is None else ("composite" if spec.face.composite else "photo"),
        "voice": spec.voice,
        "sample_rate": SAMPLE_RATE,
        "fps": FPS,
        "video_fps": video_fps,
    }
