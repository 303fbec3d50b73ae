"""Model configuration: DiT sizes, the condition table, and the audio codec.

The condition table is what "disentangled condition aggregation" means in code: each
:class:`ConditionSpec` names a condition, its input width, its native rate, how it is
resampled to the latent grid, how it is projected, and its route:

* ``route="concat"``: time-dense conditions (lips, phonemes, sync/motion) are resampled to
  the latent rate, projected, and channel-concatenated with the noisy latent, so they reach
  the DiT through self-attention.
* ``route="cross"``: semantic conditions (visual content, speaker) become tokens of the
  cross-attention context. A condition with ``rate_hz=None`` is global (one token); global
  tokens come first (the official layout puts the speaker token first).

The same code serves the official layout (:func:`official`) and any other size, e.g. the
embedded default (:func:`embedded`) and the tiny test models (:func:`tiny`).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Literal

Route = Literal["concat", "cross"]
Resample = Literal["nearest", "nearest-exact", "pad"]
Projection = Literal["mlp2", "embedding", "identity"]


@dataclass(frozen=True)
class ConditionSpec:
    """One row of the condition table.

    Attributes:
        name: condition name used everywhere (``lip``, ``phone``, ``synch``, ``video``, ``ref``, ...).
        module_name: attribute name of the projection inside the model, which is also the
            state-dict key prefix (official: ``lip_proj``, ``phone_embedding``, ``synch_proj``,
            ``cond_proj``, ``ref_proj``).
        input_dim: feature width of the raw condition ``[B, N, input_dim]``; for
            ``projection="embedding"`` the vocabulary size (number of embedding rows).
        out_dim: width after projection (channels added to the latent, or the cross-attention
            width for ``route="cross"``).
        hidden_dim: hidden width of the bias-free 2-layer MLP (``mlp2``); unused otherwise.
        route: ``concat`` (channel-concat with the latent) or ``cross`` (context tokens).
        rate_hz: native rate in frames per second; ``None`` for a global (one-vector) condition.
        resample: how a ``[B, N, D]`` sequence is mapped to the latent length ``L``:
            ``nearest`` / ``nearest-exact`` (``F.interpolate`` modes, as official) or ``pad``
            (zero-pad or crop to ``L``, used by the official lips and phonemes which are already
            on the 25 Hz grid).
        projection: ``mlp2`` (Linear-SiLU-Linear, no biases), ``embedding`` (``nn.Embedding``,
            integer ids, 0 = "no phoneme"), or ``identity``.
        fold_segments: if True, an input ``[B, S, K, D]`` is reshaped to ``[B, S*K, D]`` before
            resampling (the official Synchformer layout ``[B, 30, 8, 768]``).
        feature_key: keyword of :meth:`VSSFlow.encode_conditions` that carries this condition
            (official: ``lip_feat``, ``phone_id``, ``synch_feat``, ``ref_audio_ebd``,
            ``video_feat``); defaults to ``<name>_feat``.
        input_scale: fixed gain applied to the raw feature before its projection (1.0 = none,
            as official); brings a feature of small magnitude (e.g. frame differences) to about
            unit scale. Not applied to integer ids.
        context_frames: how many neighbouring native frames on each side the projection sees with
            each frame: frames ``k - c .. k + c`` are concatenated (zeros beyond the ends) at the
            native rate, before resampling, so the projection input is ``(2c + 1) * input_dim``
            wide. A per-frame projection then sees change over time (where a motion reverses,
            which a single frame-difference frame cannot show). 0 = the frame alone (official).
    """

    name: str
    module_name: str
    input_dim: int
    out_dim: int
    route: Route
    rate_hz: float | None
    resample: Resample = "nearest"
    projection: Projection = "mlp2"
    hidden_dim: int = 0
    fold_segments: bool = False
    feature_key: str = ""
    input_scale: float = 1.0
    context_frames: int = 0

    def __post_init__(self):
        if not self.feature_key:
            object.__setattr__(self, "feature_key", f"{self.name}_feat")
        if self.route not in ("concat", "cross"):
            raise ValueError(f"condition {self.name!r}: route must be 'concat' or 'cross', got {self.route!r}")
        if self.resample not in ("nearest", "nearest-exact", "pad"):
            raise ValueError(f"condition {self.name!r}: unknown resample {self.resample!r}")
        if self.projection not in ("mlp2", "embedding", "identity"):
            raise ValueError(f"condition {self.name!r}: unknown projection {self.projection!r}")
        if self.projection == "mlp2" and self.hidden_dim <= 0:
            raise ValueError(f"condition {self.name!r}: projection 'mlp2' needs hidden_dim > 0")
        if self.context_frames < 0:
            raise ValueError(f"condition {self.name!r}: context_frames must be >= 0, got {self.context_frames}")
        if self.context_frames and (self.projection == "embedding" or self.rate_hz is None):
            raise ValueError(f"condition {self.name!r}: context_frames needs a float feature with a rate "
                             "(not integer ids, not a global condition)")
        if self.projection == "identity" and self.projection_input_dim != self.out_dim:
            raise ValueError(f"condition {self.name!r}: identity projection needs (2 * context_frames + 1) * input_dim "
                             "== out_dim")
        if self.route == "concat" and self.rate_hz is None:
            raise ValueError(f"condition {self.name!r}: a concat condition needs a rate (rate_hz)")

    @property
    def projection_input_dim(self) -> int:
        """Width of what the projection reads: ``(2 * context_frames + 1) * input_dim`` (the
        vocabulary size for an embedding)."""
        return (2 * self.context_frames + 1) * self.input_dim


@dataclass(frozen=True)
class DiTConfig:
    """Sizes of the Stable-Audio-style DiT.

    ``in_channels`` = audio channels + sum of the ``concat`` conditions' ``out_dim``;
    it is derived by :class:`ModelConfig`, not stored here.
    """

    num_layers: int = 10
    num_heads: int = 24
    head_dim: int = 64
    num_kv_heads: int = 12
    cross_dim: int = 768
    time_proj_dim: int = 256  # Fourier features: 128 frequencies -> [cos | sin]
    ff_inner_dim: int = 6144
    rope_fraction: float = 0.5  # RoPE on the first half of each head (32 of 64 dims)
    rope_theta: float = 10000.0

    def __post_init__(self):
        if min(self.num_layers, self.num_heads, self.head_dim, self.num_kv_heads, self.cross_dim, self.ff_inner_dim) <= 0:
            raise ValueError(f"DiTConfig sizes must be positive, got {self}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"DiTConfig: num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})")
        if self.rope_dim % 2:
            raise ValueError(f"DiTConfig: rotary dims per head ({self.rope_dim}) must be even")
        if self.time_proj_dim % 2:
            raise ValueError(f"DiTConfig: time_proj_dim ({self.time_proj_dim}) must be even (cos | sin)")

    @property
    def width(self) -> int:
        """Model width in channels (heads x head_dim; official 1536)."""
        return self.num_heads * self.head_dim

    @property
    def rope_dim(self) -> int:
        """Rotated channels per head (official: 32 of 64)."""
        return int(round(self.head_dim * self.rope_fraction))


@dataclass(frozen=True)
class CodecConfig:
    """The audio representation the DiT works on.

    kind:
        ``audioldm_vae``: official; 16 kHz, 64-mel, AudioLDM VAE latent 8x16 packed to 128 ch
        at 25 Hz, HiFi-GAN 16 kHz vocoder.
        ``mel_patch``: embedded; normalised log-mel frames patched ``patch`` frames per latent
        step (channels = n_mels * patch), pretrained HiFi-GAN from a PyPI wheel.
    """

    kind: Literal["audioldm_vae", "mel_patch"] = "audioldm_vae"
    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 160
    win_length: int = 1024
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float = 8000.0
    patch: int = 4  # mel frames per latent step (mel_patch only)
    latent_channels: int = 128

    @property
    def mel_rate_hz(self) -> float:
        """Mel frames per second (Hz), sample_rate / hop_length (official 100 Hz)."""
        return self.sample_rate / self.hop_length

    @property
    def latent_rate_hz(self) -> float:
        """Latent frames per second (Hz): official 25 Hz; mel_patch mel rate / patch."""
        if self.kind == "audioldm_vae":
            return self.mel_rate_hz / 4.0  # VAE downsamples time by 4: 100 Hz -> 25 Hz
        return self.mel_rate_hz / self.patch


FEATURE_RATE_HZ = 25.0  # the grid of the time-dense conditions (lips, phonemes, motion): frames per second
PHONE_PLACEMENTS = ("uniform", "lips", "lipread")
SOLVERS = ("euler", "midpoint", "heun", "dopri5")  # fixed-step ODE solvers, then the official adaptive one
PRECISIONS = ("auto", "fp32", "fp16", "bf16")  # weights precision at load; auto = fp32 on CPU, bf16/fp16 on GPU
PREDICTIONS = ("v", "x")  # what the DiT outputs: the velocity (official) or the clean latent


def is_guidance_rescale(value) -> bool:
    """Whether ``value`` is a valid guidance rescale: a real number (not a bool) from 0 to 1."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build a VSSFlow model. Serialised as JSON into checkpoint metadata."""

    name: str
    dit: DiTConfig
    codec: CodecConfig
    conditions: tuple[ConditionSpec, ...]
    duration_s: float = 10.0  # length of one generation window (seconds)
    guidance_scale: float = 3.0
    solver: str = "dopri5"
    steps: int = 10
    frontend: str = "official"  # which feature front-end produces the raw conditions
    # how a transcript's phonemes are placed over the speech window: "uniform" stretch (official,
    # what official checkpoints were trained with), "lips" (DTW against the mouth's opening and width,
    # features.phone_timing.place_phonemes_by_lips) or "lipread" (forced alignment to a small lip
    # reader, place_phonemes_by_lipreading); the training data must be placed the same way
    phone_placement: str = "uniform"
    # what the DiT outputs: "v" the velocity x1 - x0 (official) or "x" the clean latent x1, turned
    # into the velocity (x1_hat - x_t) / (1 - t). "x" suits a DiT narrower than its latent (the
    # embedded model: width 256, 320 channels): noise needs every channel, clean latents do not
    prediction: str = "v"
    # guidance when no transcript is given (video-to-sound only); None = guidance_scale for all
    sound_guidance_scale: float | None = None
    # step times of the fixed-step solvers (flow.time_grid): 1 = equal steps (official), > 1 = more
    # of them near the noise
    time_shift: float = 1.0
    # time_shift when no transcript is given (video-to-sound only); None = time_shift for all
    sound_time_shift: float | None = None
    # standard deviation of the starting noise x0: 1 = N(0, I) (official); < 1 samples at a lower
    # temperature (as Matcha-TTS's 0.667), which makes speech clearer
    noise_scale: float = 1.0
    # noise_scale when no transcript is given (video-to-sound only); None = noise_scale for all
    sound_noise_scale: float | None = None
    # guidance rescale (Lin et al. 2024, "Common diffusion noise schedules and sample steps are
    # flawed", sec. 3.4): the guided prediction's standard deviation over each clip is pulled towards
    # the conditional prediction's by this fraction, 0..1; 0 = plain guidance (official)
    guidance_rescale: float = 0.0
    # guidance_rescale when no transcript is given (video-to-sound only); None = guidance_rescale for all
    sound_guidance_rescale: float | None = None

    def _for_task(self, name: str, with_text: bool) -> float:
        """``name`` with a transcript, ``sound_<name>`` (when set) without one."""
        sound = getattr(self, f"sound_{name}")
        return getattr(self, name) if with_text or sound is None else sound

    def guidance_for(self, with_text: bool) -> float:
        """The default guidance scale of a generation with (True) or without (False) a transcript."""
        return self._for_task("guidance_scale", with_text)

    def time_shift_for(self, with_text: bool) -> float:
        """The default time shift of a generation with (True) or without (False) a transcript."""
        return self._for_task("time_shift", with_text)

    def noise_scale_for(self, with_text: bool) -> float:
        """The standard deviation of the starting noise with (True) or without (False) a transcript."""
        return self._for_task("noise_scale", with_text)

    def guidance_rescale_for(self, with_text: bool) -> float:
        """The default guidance rescale (0..1) of a generation with (True) or without (False) a transcript."""
        return self._for_task("guidance_rescale", with_text)

    def __post_init__(self):
        names = [c.name for c in self.conditions]
        keys = [c.feature_key for c in self.conditions]
        modules = [c.module_name for c in self.conditions]
        for what, values in (("name", names), ("feature_key", keys), ("module_name", modules)):
            if len(set(values)) != len(values):
                raise ValueError(f"model config {self.name!r}: condition {what}s must be unique, got {values}")
        for c in self.conditions:
            if c.route == "cross" and c.out_dim != self.dit.cross_dim:
                raise ValueError(f"model config {self.name!r}: cross condition {c.name!r} has out_dim {c.out_dim}, "
                                 f"the DiT's cross_dim is {self.dit.cross_dim}")
        if self.duration_s <= 0:
            raise ValueError(f"model config {self.name!r}: duration_s must be > 0, got {self.duration_s}")
        if self.phone_placement not in PHONE_PLACEMENTS:
            raise ValueError(f"model config {self.name!r}: phone_placement must be one of {PHONE_PLACEMENTS}, "
                             f"got {self.phone_placement!r}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"model config {self.name!r}: prediction must be one of {PREDICTIONS}, "
                             f"got {self.prediction!r}")
        for name in ("time_shift", "sound_time_shift", "noise_scale", "sound_noise_scale"):
            value = getattr(self, name)
            if value is None and not name.startswith("sound_"):
                raise ValueError(f"model config {self.name!r}: {name} must be a number > 0, got None")
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"model config {self.name!r}: {name} must be > 0 and finite, got {value}")
        for name in ("guidance_rescale", "sound_guidance_rescale"):
            value = getattr(self, name)
            if (value is not None or not name.startswith("sound_")) and not is_guidance_rescale(value):
                raise ValueError(f"model config {self.name!r}: {name} must be a number from 0 to 1, got {value}")

    @property
    def audio_channels(self) -> int:
        """Channels Ca of the audio latent [B, Ca, L] the flow runs on."""
        return self.codec.latent_channels

    @property
    def latent_rate_hz(self) -> float:
        """Latent frames per second (Hz) of the codec."""
        return self.codec.latent_rate_hz

    @property
    def latent_length(self) -> int:
        """Latent frames per window, e.g. 250 for 10 s at 25 Hz."""
        return int(round(self.duration_s * self.latent_rate_hz))

    @property
    def concat_conditions(self) -> tuple[ConditionSpec, ...]:
        """Conditions channel-concatenated with the noisy latent, in table order."""
        return tuple(c for c in self.conditions if c.route == "concat")

    @property
    def cross_conditions(self) -> tuple[ConditionSpec, ...]:
        """Cross-attention conditions, global (one-token) ones first."""
        cross = [c for c in self.conditions if c.route == "cross"]
        return tuple(sorted(cross, key=lambda c: c.rate_hz is not None))

    @property
    def in_channels(self) -> int:
        """DiT input channels: audio channels + every concat condition's out_dim (official 1952)."""
        return self.audio_channels + sum(c.out_dim for c in self.concat_conditions)

    def condition(self, name: str) -> ConditionSpec:
        """The condition spec called ``name`` (KeyError listing the names if absent)."""
        for c in self.conditions:
            if c.name == name:
                return c
        raise KeyError(f"model {self.name!r} has no condition {name!r}; it has {[c.name for c in self.conditions]}")

    def to_json(self) -> str:
        """The config as a JSON string (stored in model-file metadata)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> "ModelConfig":
        """Inverse of :meth:`to_json`; a damaged or foreign config raises VSSFlowError."""
        from vssflow_core.errors import VSSFlowError

        try:
            d = json.loads(text)
            return ModelConfig(
                name=d["name"],
                dit=DiTConfig(**d["dit"]),
                codec=CodecConfig(**d["codec"]),
                conditions=tuple(ConditionSpec(**c) for c in d["conditions"]),
                **{k: d[k] for k in ("duration_s", "guidance_scale", "solver", "steps", "frontend",
                                     "phone_placement", "prediction", "sound_guidance_scale", "time_shift",
                                     "sound_time_shift", "noise_scale", "sound_noise_scale", "guidance_rescale",
                                     "sound_guidance_rescale") if k in d},
            )
        except (ValueError, TypeError, KeyError) as e:  # JSONDecodeError is a ValueError
            if isinstance(e, VSSFlowError):
                raise
            raise VSSFlowError(f"model config JSON is not a valid VSSFlow config ({type(e).__name__}: {e}); "
                               "the model file was written by an incompatible version or is damaged") from None


def official_conditions(lip_dim: int = 1024, phone_dim: int = 32, synch_dim: int = 768, cond_dim: int = 768) -> tuple[ConditionSpec, ...]:
    """The official condition table. Concat channel order is [lip | phone | synch]; the
    cross-attention context is [speaker token | CLIP tokens]. Input widths of the projections are
    fixed by the official code (lip 1024, synch 768, CLIP 768, speaker 256, 200 phone rows)."""
    return (
        ConditionSpec("lip", "lip_proj", 1024, lip_dim, "concat", FEATURE_RATE_HZ, "pad", "mlp2", 2 * lip_dim, feature_key="lip_feat"),
        ConditionSpec("phone", "phone_embedding", 200, phone_dim, "concat", FEATURE_RATE_HZ, "pad", "embedding", feature_key="phone_id"),
        ConditionSpec("synch", "synch_proj", 768, synch_dim, "concat", 24.0, "nearest-exact", "mlp2", 2 * synch_dim,
                      fold_segments=True, feature_key="synch_feat"),
        ConditionSpec("ref", "ref_proj", 256, cond_dim, "cross", None, "nearest", "mlp2", 2 * cond_dim, feature_key="ref_audio_ebd"),
        ConditionSpec("video", "cond_proj", 768, cond_dim, "cross", 10.0, "nearest", "mlp2", 2 * cond_dim, feature_key="video_feat"),
    )


def official(num_layers: int = 10) -> ModelConfig:
    """The official VSSFlow layout (464 M parameters at 10 layers; 5 and 15 were ablations)."""
    return ModelConfig(
        name=f"official-{num_layers}l",
        dit=DiTConfig(num_layers=num_layers),
        codec=CodecConfig(),
        conditions=official_conditions(),
        frontend="official",
    )


def tiny() -> ModelConfig:
    """A few-thousand-parameter model with the official condition routing, for unit tests."""
    return ModelConfig(
        name="tiny",
        dit=DiTConfig(num_layers=2, num_heads=2, head_dim=16, num_kv_heads=1, cross_dim=32, ff_inner_dim=64),
        codec=CodecConfig(),
        conditions=official_conditions(lip_dim=8, phone_dim=4, synch_dim=8, cond_dim=32),
        frontend="official",
    )


def embedded() -> ModelConfig:
    """The embedded default model's config, defined by ``vssflow_core/embedded.py`` (imported lazily)."""
    from vssflow_core.embedded import embedded_config

    return embedded_config()


PRESETS = {"official": official, "tiny": tiny, "embedded": embedded}


def preset(name: str) -> ModelConfig:
    """Look up a preset by name (``official``, ``tiny``, ``embedded``)."""
    try:
        factory = PRESETS[name]
    except KeyError:
        from vssflow_core.errors import VSSFlowError

        raise VSSFlowError(f"unknown model preset {name!r}; known presets: {sorted(PRESETS)}") from None
    return factory()
