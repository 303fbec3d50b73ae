"""The embedded default model: a small VSSFlow trained by this project on synthetic data.

Same code as the official layout (:mod:`vssflow_core.model`), different condition table and codec:

* audio: :class:`vssflow_core.audio.mel_patch.MelPatchCodec`, 80-band log-mel at 22.05 kHz for the
  pretrained HiFi-GAN "universal" vocoder, 4 mel frames per latent frame -> 320 channels at
  22050 / 256 / 4 = 21.53 Hz (172 frames per 8 s window);
* time-dense conditions, channel-concatenated (resampled 25 Hz -> 21.53 Hz by nearest-exact):
  ``lip_feat`` [B, N, 6] (features/lip_space.py, normalised per clip), ``phone_id`` [B, N]
  (official ARPAbet ids, 0 = none), ``motion_feat`` [B, N, 256] (features/visual.py), ``event_feat``
  [B, N, 1] (features/events.py: the probability of a visible sound event per frame; its projection
  reads frames k-1, k, k+1, so an event on a 25 Hz frame that the resampling skips still arrives);
* semantic conditions, cross-attention: ``ref_audio_ebd`` [B, 256] (one speaker token, first) and
  ``appearance_feat`` [B, N, 768] at 10 Hz (features/visual.py).

The weights ship in ``vssflow_core/weights/embedded.safetensors`` (fp16, config in the metadata,
see ``weights/MODEL_CARD.md``); they are produced by ``python -m vssflow_core train``.
"""
from __future__ import annotations

from pathlib import Path

from vssflow_core.config import CodecConfig, ConditionSpec, DiTConfig, FEATURE_RATE_HZ, ModelConfig

EMBEDDED_WEIGHTS = Path(__file__).resolve().parent / "weights" / "embedded.safetensors"
DURATION_S = 8.0


def embedded_codec() -> CodecConfig:
    """The mel-patch codec config: 22050 Hz, n_fft 1024, hop 256, 80 mels 0-8000 Hz, patch 4."""
    return CodecConfig(kind="mel_patch", sample_rate=22050, n_fft=1024, hop_length=256, win_length=1024, n_mels=80,
                       f_min=0.0, f_max=8000.0, patch=4, latent_channels=320)


def embedded_conditions() -> tuple[ConditionSpec, ...]:
    """Condition table of the embedded model (concat order: lip | phone | motion | event; context: ref | appearance)."""
    return (
        ConditionSpec("lip", "lip_proj", 6, 32, "concat", FEATURE_RATE_HZ, "nearest-exact", "mlp2", 64, feature_key="lip_feat"),
        ConditionSpec("phone", "phone_embedding", 200, 64, "concat", FEATURE_RATE_HZ, "nearest-exact", "embedding",
                      feature_key="phone_id"),
        # frame differences are mostly ~0 (std 0.05 on the training clips): x10 for about unit scale
        ConditionSpec("motion", "motion_proj", 256, 64, "concat", FEATURE_RATE_HZ, "nearest-exact", "mlp2", 128,
                      feature_key="motion_feat", input_scale=10.0),
        ConditionSpec("event", "event_proj", 1, 16, "concat", FEATURE_RATE_HZ, "nearest-exact", "mlp2", 32,
                      feature_key="event_feat", context_frames=1),
        ConditionSpec("ref", "ref_proj", 256, 256, "cross", None, "nearest", "mlp2", 256, feature_key="ref_audio_ebd"),
        ConditionSpec("appearance", "appearance_proj", 768, 256, "cross", 10.0, "nearest", "mlp2", 256,
                      feature_key="appearance_feat"),
    )


def embedded_config() -> ModelConfig:
    """The embedded default :class:`ModelConfig` (8 layers x 256 wide, 11.3 M parameters, 8 s window).

    8 layers since stage 14 (2026-11-30): stage 10's 6 blocks plus two zero-output copies, fine-tuned
    (docs/embedded_model_history.md, "Stage 14"); 8 x 256 is the largest that fits the 25 MB fp16 cap."""
    return ModelConfig(
        name="embedded",
        dit=DiTConfig(num_layers=8, num_heads=4, head_dim=64, num_kv_heads=2, cross_dim=256, time_proj_dim=256,
                      ff_inner_dim=1024),
        codec=embedded_codec(),
        conditions=embedded_conditions(),
        duration_s=DURATION_S,
        # sampling defaults chosen by measurement on 60 eval clips (docs/embedded_model_history.md,
        # "Sampling steps"): midpoint, 4 steps (8 evaluations) on a grid shifted towards the noise; speech
        # (a transcript given): guidance 3, shift 5 (CER 0.336 vs 0.398 on equal steps); sound
        # only: shift 3, and guidance 3 with its rescale 0.7 ("Guidance rescale for sound": onset F1
        # 0.820 -> 0.856 and 0.792 -> 0.838 on two sets of 60 clips against guidance 1.5, FD not
        # resolved; plain guidance 3 cost FD +54 % on the second set)
        guidance_scale=3.0,
        sound_guidance_scale=3.0,
        sound_guidance_rescale=0.7,
        solver="midpoint",
        steps=4,
        time_shift=5.0,
        sound_time_shift=3.0,
        # speech starts from N(0, 0.8^2 I): on 360 held-out speech clips WER -2.6 %, CER -3.1 %
        # (relative, both significant); sound-only keeps N(0, I) (0.8 made its FD 41 % worse)
        noise_scale=0.8,
        sound_noise_scale=1.0,
        frontend="embedded",
        # the DiT (width 256) is narrower than the latent (320 channels): as a velocity model it left
        # about half the noise in the latent's 32nd-128th principal directions at every t
        # (docs/embedded_model_history.md); a clean latent fits in 256 dimensions (99.97 % of its variance)
        prediction="x",
    )
