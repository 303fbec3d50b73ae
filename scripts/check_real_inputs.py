"""Run a model on real videos that no one here made and report what it gets right and wrong.

    python scripts/check_real_inputs.py VIDEO [VIDEO ...] --json OUT.json [--model embedded] [--out-dir DIR]

Nothing here is committed media: point it at videos on this machine (for example the clips that
Debian's ``opencv-doc`` package carries: ``Megamind.avi``, an animated talking character with its
soundtrack; ``vtest.avi``, people walking; ``box.mp4``/``cup.mp4``, hand-held objects).

For each video, with the video's own soundtrack (when it has one) as the reference:

* ``duration``: generated samples vs ``ceil(duration * rate)`` of the probed video (must be equal).
* Sound (always run, no transcript): visible motion per 25 Hz frame (mean absolute grey difference
  of consecutive frames; 0 at hard cuts between shots, which are not motion) against the generated
  loudness: Pearson correlation at lag 0 and the lag (frames) of the best correlation within +-10;
  motion-peak times against generated onsets (F1 within 100 ms, since visible motion peaks are not
  sound events); at the hard cuts (``features.visual.shot_cuts``), how much louder the track is
  within +-2 frames of each cut than its loud frames, its 90th-percentile frame (dB,
  ``cut_loudness_db``; about 0 when a cut is as loud as the rest of the sound, high for a track that
  hears a cut as an impact; not the median frame, which is digital silence in a track of sparse sound
  effects and made any sound near a cut score +60 dB); the same figures for the real soundtrack.
* Speech (when a face is found and the soundtrack has words): the transcript comes from Whisper on
  the real soundtrack, as a user would get it; the speech window is found from the lips. Reports the
  lip offset (frames; audio later than mouth is positive) and the correlation of mouth opening and
  loudness, for the generated and the real speech, and the WER of the generated speech against the
  real transcript.
* Placement (with the speech): where each phoneme placement (``config.PHONE_PLACEMENTS``) puts the
  transcript's words, scored against the word times Whisper gives on the real soundtrack
  (``Transcriber.words``; tiny.en's are typically within 0.1-0.2 s). The placements are computed as
  inference does (``frontend.phoneme_track``: same lips, speech window from the lips, transcript ids);
  each placed phoneme is traced back to its word by converting the transcript word by word (refused
  when that does not give the whole transcript's phonemes). Whisper's words are matched to the
  transcript's by index (difflib on normalised words when the lists differ). Over the 25 Hz frames
  Whisper says a matched word is spoken: the share whose placed phoneme belongs to that word
  (``word_frame_acc``) and the share where it is spoken within +-2 frames (``word_frame_acc_near``);
  and the median error (ms) of each word's first placed frame against Whisper's word start; also
  the heard frames outside the speech window (no placement can get those right) and, per word,
  Whisper's times and each placement's first frame (``table``), to read by eye.

The metrics are those of ``vssflow_core.train.metrics`` (``lagged_correlation``, ``motion_energy``,
``motion_peaks``, ``frame_loudness``, ``detect_onsets``, ``onset_counts``).

Writes a JSON report and, with ``--out-dir``, the videos with generated sound (never overwriting).
"""
from __future__ import annotations

import argparse
import difflib
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vssflow_core.config import FEATURE_RATE_HZ as RATE  # noqa: E402  (the analysis grid, the lip front-end's)
from vssflow_core.train import metrics as M  # noqa: E402

MAX_LAG = 10  # frames


CUT_REACH = 2  # frames either side of a cut where its sound is looked for
LOUD_PERCENTILE = 90  # the track's "loud frame", the reference of cut_loudness_db


def sound_report(wave: np.ndarray, sr: int, energy: np.ndarray, cuts: np.ndarray) -> dict:
    """Motion-following figures of one waveform [S] against the motion energy [F] (zero at the
    frames ``cuts`` [K] where a new shot starts)."""
    loud = M.frame_loudness(wave, sr, len(energy), RATE)
    loud_frame = np.percentile(loud, LOUD_PERCENTILE)
    near_cut = [loud[max(0, k - CUT_REACH): k + CUT_REACH + 1].max() - loud_frame for k in cuts]
    c0, lag, cbest = M.lagged_correlation(energy, loud, MAX_LAG)
    peaks = M.motion_peaks(energy, RATE)
    onsets = M.detect_onsets(wave, sr)
    hits, n_ref, n_est = M.onset_counts(peaks, onsets, tolerance_s=0.1)
    return {"motion_loudness_corr": round(c0, 3), "best_lag_frames": lag, "best_corr": round(cbest, 3),
            "motion_peaks": int(n_ref), "onsets": int(n_est), "onset_f1_100ms": round(M.f1_from_counts(hits, n_ref, n_est), 3),
            "cut_loudness_db": round(float(np.mean(near_cut)), 1) if near_cut else None}


def speech_report(wave: np.ndarray, sr: int, mouth: np.ndarray, found: np.ndarray) -> dict:
    """Lip-following figures of one waveform [S] on the frames where a face was found."""
    loud = M.frame_loudness(wave, sr, len(mouth), RATE)
    keep = found[: len(loud)]
    c0, lag, cbest = M.lagged_correlation(mouth[keep], loud[keep], MAX_LAG)
    return {"lip_offset_frames": lag, "mouth_loudness_corr": round(c0, 3), "best_corr": round(cbest, 3)}


NEAR_FRAMES = 2  # tolerance of word_frame_acc_near (frames either side)


def transcript_words(transcript: str) -> tuple[list[str], list[int], list[int]]:
    """The transcript's words and, for each token id inference places, the word it belongs to.

    Words are the transcript's whitespace-separated pieces (as Whisper writes them, punctuation
    attached). Each is converted alone with ``text_to_phonemes``; the result must be the whole
    transcript's phonemes without its pause blanks, else VSSFlowError (a word spoken differently in
    context, e.g. an acronym rule that depends on the rest of the text).
    Returns: (words [W], ids [P] as ``phoneme_ids(text_to_phonemes(transcript))`` with its edge blanks,
    word index per id [P] in 0..W-1, -1 for a blank).
    """
    from vssflow_core.errors import VSSFlowError
    from vssflow_core.features.text import BLANK, phoneme_ids, text_to_phonemes

    words = transcript.split()
    whole = text_to_phonemes(transcript)
    by_word = [(p, k) for k, w in enumerate(words) for p in text_to_phonemes(w) if p != BLANK]
    spoken = [p for p in whole if p != BLANK]
    if spoken != [p for p, _ in by_word]:
        raise VSSFlowError(f"transcript {transcript[:60]!r}: its words converted one by one give other phonemes "
                           f"({len(by_word)}) than the whole text ({len(spoken)}), so phonemes cannot be traced to words")
    owners = iter(k for _, k in by_word)
    word_of = [-1] + [-1 if p == BLANK else next(owners) for p in whole] + [-1]
    return words, phoneme_ids(whole), word_of


def match_words(transcript_words: list[str], heard_words: list[str]) -> list[tuple[int, int]]:
    """Pairs (transcript word index, heard word index) of the same word, in order: by index when the
    two lists agree after ``normalise_text`` (case and punctuation ignored), else difflib's longest
    matching blocks (unmatched words on either side are left out)."""
    a = [M.normalise_text(w) for w in transcript_words]
    b = [M.normalise_text(w) for w in heard_words]
    if a == b:
        return [(i, i) for i in range(len(a))]
    blocks = difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks()
    return [(m.a + k, m.b + k) for m in blocks for k in range(m.size)]


def spoken_word_track(spans_s: list[tuple[float, float]], word_index: list[int], num_frames: int,
                      rate_hz: float = RATE) -> np.ndarray:
    """Per frame of a ``rate_hz`` grid, the word being spoken: int64 [num_frames], ``word_index[i]``
    where frame time k / rate_hz lies in ``spans_s[i]`` = [start_s, end_s), -1 elsewhere (a word too
    short to hold a grid time gets no frame)."""
    times = np.arange(num_frames) / rate_hz
    out = np.full(num_frames, -1, dtype=np.int64)
    for (start_s, end_s), k in zip(spans_s, word_index):
        out[(times >= start_s - 1e-9) & (times < end_s - 1e-9)] = k
    return out


def placed_word_track(ids: list[int], word_of: list[int], track: np.ndarray, start: int, end: int) -> np.ndarray:
    """Per frame, the word of the phoneme a placement put there: int64 [F] from the placed id track
    ``track`` [F] (frames ``start`` to ``end`` - 1 are the speech window), ``ids`` [P] and ``word_of``
    [P] of :func:`transcript_words`; -1 on blanks and outside the window. Phoneme indices are
    recovered from changes of id (``placement.placed_index_track``), so a phoneme whose neighbour has
    the same id (the S S of "bus stop") cannot be told from it: both count as the first one."""
    from vssflow_core.train.placement import placed_index_track

    index = placed_index_track(ids, np.asarray(track), start, end)
    return np.where(index >= 0, np.asarray(word_of, dtype=np.int64)[np.maximum(index, 0)], -1)


def placed_onsets_s(placed: np.ndarray, num_words: int, rate_hz: float = RATE) -> np.ndarray:
    """Time (s) of the first frame of each word in a placed word track [F]: float [num_words], NaN
    for a word placed on no frame."""
    out = np.full(num_words, np.nan)
    for k in range(num_words):
        hit = np.flatnonzero(placed == k)
        if len(hit):
            out[k] = hit[0] / rate_hz
    return out


def word_placement_scores(spoken: np.ndarray, placed: np.ndarray, word_start_s: np.ndarray,
                          rate_hz: float = RATE, near_frames: int = NEAR_FRAMES) -> dict:
    """How well a placed word track [F] follows the heard one [F] (both word indices, -1 = none).

    ``word_start_s`` [W]: each transcript word's heard start (s), NaN when not heard. "No word" (-1:
    a pause blank, or outside the speech window) is a value like any word: it is never right on a
    heard frame, and near when a heard pause lies within +-``near_frames``.
    Returns ``word_frame_acc`` (share of the heard frames whose placed word is the heard one),
    ``word_frame_acc_near`` (share whose placed word is heard within +-``near_frames``), ``frames``,
    ``onset_median_abs_ms`` / ``onset_median_ms`` (median absolute / signed error of each heard word's
    first placed frame against its heard start; positive = placed late), ``onset_words`` (words
    scored) and ``unplaced_words`` (heard words placed on no frame). Shares are None without frames.
    """
    spoken, placed = np.asarray(spoken), np.asarray(placed)
    if spoken.shape != placed.shape:
        raise ValueError(f"word tracks differ in length: heard {spoken.shape}, placed {placed.shape}")
    frames = np.flatnonzero(spoken >= 0)
    exact = [placed[j] == spoken[j] for j in frames]
    near = [placed[j] in spoken[max(0, j - near_frames): j + near_frames + 1] for j in frames]
    starts = np.asarray(word_start_s, np.float64)
    onsets = placed_onsets_s(placed, len(starts), rate_hz)
    heard = np.isfinite(starts)
    errors_ms = 1000.0 * (onsets - starts)[heard & np.isfinite(onsets)]
    share = lambda xs: round(float(np.mean(xs)), 3) if len(xs) else None
    return {"word_frame_acc": share(exact), "word_frame_acc_near": share(near), "frames": int(len(frames)),
            "onset_median_abs_ms": round(float(np.median(np.abs(errors_ms))), 1) if len(errors_ms) else None,
            "onset_median_ms": round(float(np.median(errors_ms)), 1) if len(errors_ms) else None,
            "onset_words": int(len(errors_ms)), "unplaced_words": int(np.sum(heard & ~np.isfinite(onsets)))}


def placement_report(transcript: str, heard: list[tuple[str, float, float]], lips, duration_s: float) -> dict:
    """Word-level placement figures of every placement in ``PHONE_PLACEMENTS`` for one video.

    ``heard``: Whisper's ``[(word, start_s, end_s)]`` on the real soundtrack; ``lips``: the video's
    ``LipCondition``; ``duration_s``: the video's duration (s). Each placement is computed by
    ``frontend.phoneme_track`` with the speech window from the lips, as ``pipeline.generate`` does.
    Returns a dict (see the module docstring), or ``{"skipped": reason}`` when the phonemes cannot be
    traced to words.
    """
    from vssflow_core import frontend
    from vssflow_core.config import PHONE_PLACEMENTS
    from vssflow_core.errors import VSSFlowError
    from vssflow_core.features.phone_timing import check_window
    from vssflow_core.media.probe import num_frames

    try:
        words, ids, word_of = transcript_words(transcript)
    except VSSFlowError as e:
        return {"skipped": str(e)}
    pairs = match_words(words, [w for w, _, _ in heard])
    spoken = spoken_word_track([heard[b][1:] for _, b in pairs], [a for a, _ in pairs], num_frames(duration_s, RATE))
    word_start_s = np.full(len(words), np.nan)
    for a, b in pairs:
        word_start_s[a] = heard[b][1]
    text = frontend.make_text_condition(transcript)
    out = {"words": len(words), "heard_words": len(heard), "matched_words": len(pairs)}
    table = [{"word": words[a], "heard_s": [round(heard[b][1], 2), round(heard[b][2], 2)], "placed_start_s": {}}
             for a, b in pairs]
    for name in PHONE_PLACEMENTS:
        with warnings.catch_warnings():  # "speech window found from the lips": generate said it already
            warnings.filterwarnings("ignore", message="speech window found from the lips")
            track, (start_s, end_s) = frontend.phoneme_track(text, duration_s, lips, name)
        start = int(start_s * RATE + 1e-6)
        end = min(len(track), start + check_window(len(ids), start_s, end_s, duration_s, RATE))
        placed = placed_word_track(ids, word_of, track.numpy()[: len(spoken)], start, end)
        out[name] = word_placement_scores(spoken, placed, word_start_s)
        onsets = placed_onsets_s(placed, len(words))
        for row, (a, _) in zip(table, pairs):
            row["placed_start_s"][name] = None if math.isnan(onsets[a]) else round(float(onsets[a]), 2)
    # the speech window comes from the lips, so it is the same for every placement
    out["speech_window_s"] = [round(start_s, 2), round(end_s, 2)]
    # heard frames no placement can get right: outside the window found from the lips
    out["heard_frames_outside_window"] = int(np.sum(spoken[:start] >= 0) + np.sum(spoken[end:] >= 0))
    out["table"] = table
    return out


def check_video(bundle, path: Path, asr, out_dir: Path | None, seed: int) -> dict:
    """The report of one video (see the module docstring)."""
    from vssflow_core import frontend, pipeline, video_clip
    from vssflow_core.audio.resample import resample
    from vssflow_core.features.visual import shot_cuts
    from vssflow_core.media.probe import probe_video
    from vssflow_core.media.video import read_audio, read_frames

    info = probe_video(path)
    frames = read_frames(path, RATE).frames  # [F, H, W, 3] at 25 Hz
    cuts = np.flatnonzero(shot_cuts(frames))
    energy = M.motion_energy(frames)
    energy[cuts] = 0.0  # a cut is not motion
    sr = int(bundle.codec.sample_rate)
    real = read_audio(path, 0.0, info.duration_s)
    real_wave = None
    if real is not None and float(real[0].abs().max()) > 1e-4:
        real_wave = resample(real[0].mean(0), real[1], sr).numpy()
    report = {"video": path.name, "duration_s": round(info.duration_s, 3), "fps": round(info.fps, 3),
              "size": [info.width, info.height], "has_sound": real_wave is not None,
              "cuts_s": [round(k / RATE, 2) for k in cuts]}

    t0 = time.perf_counter()
    audio, rate = pipeline.generate(bundle, path, seed=seed)
    report["sound_seconds"] = round(time.perf_counter() - t0, 2)
    wave = audio[0, 0].numpy()
    expected = int(np.ceil(info.duration_s * rate - 1e-6))
    report["duration"] = {"samples": len(wave), "expected": expected, "exact": len(wave) == expected}
    report["sound"] = {"generated": sound_report(wave, rate, energy, cuts)}
    if real_wave is not None:
        report["sound"]["real"] = sound_report(real_wave, sr, energy, cuts)
    if out_dir is not None:
        video_clip.write_with_audio(audio[0], rate, out_dir, f"{path.stem}_sound", video_path=path)

    lips = frontend.extract_lip_condition(frames, RATE)
    found = np.asarray(lips.track.found, bool)
    report["face_frames"] = f"{int(found.sum())}/{len(found)}"
    transcript = asr(real_wave, sr) if (real_wave is not None and found.mean() > 0.3) else ""
    if transcript:
        mouth = lips.features[:, 0]
        t0 = time.perf_counter()
        speech, _ = pipeline.generate(bundle, path, text=transcript, lips=lips, seed=seed)
        report["speech_seconds"] = round(time.perf_counter() - t0, 2)
        gen = speech[0, 0].numpy()
        report["speech"] = {"transcript": transcript, "generated_transcript": asr(gen, rate),
                            "generated": speech_report(gen, rate, mouth, found),
                            "real": speech_report(real_wave, sr, mouth, found)}
        report["speech"]["wer"] = round(M.word_error_rate([transcript], [report["speech"]["generated_transcript"]]), 3)
        report["speech"]["placement"] = {"model_placement": bundle.config.phone_placement,
                                         **placement_report(transcript, asr.words(real_wave, sr), lips, info.duration_s)}
        if out_dir is not None:
            video_clip.write_with_audio(speech[0], rate, out_dir, f"{path.stem}_speech", video_path=path)
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("videos", nargs="+", type=Path)
    p.add_argument("--json", required=True, type=Path, help="report file (must not exist)")
    p.add_argument("--model", default="embedded")
    p.add_argument("--out-dir", type=Path, default=None, help="also write the videos with generated sound here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    import torch

    from vssflow_core import pipeline

    from vssflow_core.errors import VSSFlowError
    from vssflow_core.train.report import check_json_target, write_json_report

    try:
        check_json_target(args.json)
    except VSSFlowError as e:
        p.error(str(e))
    torch.set_num_threads(args.threads)
    bundle = pipeline.load_bundle(args.model)
    asr = M.Transcriber(threads=args.threads)
    reports = [check_video(bundle, v, asr, args.out_dir, args.seed) for v in args.videos]
    write_json_report(args.json, {"model": args.model, "videos": reports})
    print(json.dumps(reports, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
