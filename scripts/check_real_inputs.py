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
  within +-2 frames of each cut than its median frame (dB, ``cut_loudness_db``; a track that hears a
  cut as an impact scores high); the same figures for the real soundtrack.
* Speech (when a face is found and the soundtrack has words): the transcript comes from Whisper on
  the real soundtrack, as a user would get it; the speech window is found from the lips. Reports the
  lip offset (frames; audio later than mouth is positive) and the correlation of mouth opening and
  loudness, for the generated and the real speech, and the WER of the generated speech against the
  real transcript.

The metrics are those of ``vssflow_core.train.metrics`` (``lagged_correlation``, ``motion_energy``,
``motion_peaks``, ``frame_loudness``, ``detect_onsets``, ``onset_counts``).

Writes a JSON report and, with ``--out-dir``, the videos with generated sound (never overwriting).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vssflow_core.train import metrics as M  # noqa: E402

RATE = 25.0  # analysis grid (Hz), the lip front-end's rate
MAX_LAG = 10  # frames


CUT_REACH = 2  # frames either side of a cut where its sound is looked for


def sound_report(wave: np.ndarray, sr: int, energy: np.ndarray, cuts: np.ndarray) -> dict:
    """Motion-following figures of one waveform [S] against the motion energy [F] (zero at the
    frames ``cuts`` [K] where a new shot starts)."""
    loud = M.frame_loudness(wave, sr, len(energy), RATE)
    near_cut = [loud[max(0, k - CUT_REACH): k + CUT_REACH + 1].max() - np.median(loud) for k in cuts]
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
