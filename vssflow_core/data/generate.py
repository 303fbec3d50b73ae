"""``python -m vssflow_core make-data``: write a synthetic audio-visual dataset.

Output (``--out DIR``):

* ``DIR/clips/NNNNNN.safetensors``, one per clip, tensors: ``wave`` float32 [S] at 22050 Hz;
  ``lip_feat`` float32 [F25, 6] (``lip_space.normalise_lip_track`` of the raw track: what the
  embedded model consumes; zeros without a face); ``lip_raw`` float32 [F25, 6]; ``phone_id``
  int64 [F25] (official ids, uniform stretch over the speech window, 0 outside);
  ``motion_feat`` float32 [F25, 256]; ``event_feat`` float32 [F25, 1] (``features.events``);
  ``appearance_feat`` float32 [F10, 768]. Metadata: id, kind,
  sample_rate.
* ``DIR/manifest.jsonl``: one JSON row per clip (``clips.manifest_row``): id, kind, duration_s,
  transcript, speech_start_s, speech_end_s, events [{time_s, frame, class}], classes, seed,
  index, file, video, phones [[ARPAbet, start_s, end_s]] (TTS alignment), face, voice, sample_rate,
  fps (the 25 Hz grid), video_fps (the frame rate the video was made at).
* ``DIR/videos/NNNNNN.mp4`` with ``--render-video`` (H.264 + AAC, ``--video-size`` px square).

Clip ``i`` depends only on (``--seed``, ``i``), so a run can be stopped and resumed (clips whose
row and file exist are skipped; a half-written last manifest line is dropped) and ``--workers``
does not change the data. ``--kind all`` cycles speech, sfx, speech, sfx, mixed. ``--voices`` lists
the voices a speaking clip may use; each clip draws one from its own generator, so the default
(``joe`` alone) gives the same data as before the option existed. ``--low-fps SHARE`` makes that
share of the sound clips' video at one of ``clips.LOW_FRAME_RATES`` (8-24 fps) held on the 25 fps
grid, as a video generator's 16 fps output reaches the front-end (``clips.video_frame_rate``); the
sound and the event times stay the same. 0 (the default) gives the data of before the option.
``--low-fps-lips SHARE`` does the same for that share of the speech and mixed clips, whose lips are
then measured from the low-rate video and interpolated onto the 25 Hz grid, as the front-end reads a
16 fps talking face (``clips.lips_seen_at``); the speech and the transcript stay the same.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from vssflow_core.errors import VSSFlowError
from vssflow_core.media.files import atomic_output, lock_folder, write_failed

DEFAULT_VIDEO_SIZE = 320


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the make-data options on ``parser``."""
    parser.add_argument("--out", required=True, help="output folder (created; resumes if it has a manifest)")
    parser.add_argument("--n", type=int, required=True, help="number of clips")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (use different seeds for held-out splits)")
    parser.add_argument("--kind", choices=("speech", "sfx", "mixed", "all"), default="all",
                        help="clip kind; 'all' = 40%% speech, 40%% sfx, 20%% mixed")
    parser.add_argument("--duration-s", type=float, default=None,
                        help="clip length in seconds (default: the embedded model's window, else 8.0)")
    parser.add_argument("--render-video", action="store_true", help="also write videos/NNNNNN.mp4 per clip")
    parser.add_argument("--video-size", type=int, default=DEFAULT_VIDEO_SIZE, help="mp4 side in px (square)")
    parser.add_argument("--crf", type=int, default=None, help="H.264 quality for the mp4s (default: encoder's)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (same data for any number)")
    parser.add_argument("--no-real-sounds", action="store_true",
                        help="procedural sounds only (ignore /usr/share/sounds/freedesktop even if installed)")
    parser.add_argument("--start", type=int, default=0, help="first clip index (default 0)")
    parser.add_argument("--low-fps", type=float, default=0.0, metavar="SHARE",
                        help="share of the sound clips whose video is made at 8-24 fps and held on the 25 fps grid "
                             "(as from a 16 fps video generator); 0-1, default 0")
    parser.add_argument("--low-fps-lips", type=float, default=0.0, metavar="SHARE",
                        help="share of the speech and mixed clips whose video is made at 8-24 fps, their lips "
                             "measured from it (as from a 16 fps talking face); 0-1, default 0")
    parser.add_argument("--voices", default="joe", metavar="LIST",
                        help="comma-separated voices for the speaking clips, one drawn per clip: joe (piper, the "
                             "default), slt (festival, female), flite-slt, awb, rms (flite); the CMU voices need "
                             "`apt-get install flite festival festvox-us-slt-hts`")


def default_duration_s() -> float:
    """The embedded model's window length (s): clips are made as long as one window."""
    from vssflow_core.embedded import embedded_config

    return float(embedded_config().duration_s)


def read_manifest(out_dir: str | os.PathLike) -> list[dict]:
    """Rows of ``out_dir/manifest.jsonl`` (a truncated last line is ignored)."""
    path = Path(out_dir) / "manifest.jsonl"
    rows = []
    if not path.exists():
        return rows
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # interrupted write: drop it (and anything after)
    return rows


def _save_tensors(path: Path, tensors: dict, metadata: dict) -> None:
    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    with atomic_output(path, replace=True) as tmp:
        try:
            save_file(dict(tensors), str(tmp), metadata={k: str(v) for k, v in metadata.items()})
        except SafetensorError as e:  # its I/O errors (a full disk) carry no errno
            raise write_failed(path, e) from None


def make_one(job: tuple) -> dict:
    """``_make_one`` that returns ``{"id", "error"}`` instead of raising (the run reports it)."""
    try:
        return _make_one(job)
    except Exception as exc:  # noqa: BLE001
        import traceback

        return {"id": f"{job[2]:06d}", "error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"}


def _make_one(job: tuple) -> dict:
    """Build, render and write clip ``index``; returns its manifest row. ``job`` = (out, seed, index,
    kind, duration_s, render_video, video_size, crf, use_real_sounds, voices, low_fps_share,
    low_fps_lips_share)."""
    out, seed, index, kind, duration_s, render_video, video_size, crf, use_real, voices, low_fps, low_fps_lips = job
    from vssflow_core.data import clips

    spec = clips.build_clip(seed, index, kind, duration_s, use_real_sounds=use_real, voices=voices)
    video_fps = clips.video_frame_rate(seed, index, kind, low_fps, low_fps_lips)
    tensors = clips.clip_tensors(spec, video_fps=video_fps)
    out = Path(out)
    video_rel = None
    if render_video:
        from vssflow_core.media.encode import write_video

        video_rel = f"videos/{spec.clip_id}.mp4"
        vpath = out / video_rel
        if not vpath.exists():
            frames = clips.render_frames_held(spec, video_size, video_fps)
            write_video(vpath, frames, clips.FPS, audio=spec.wave[None], sample_rate=clips.SAMPLE_RATE, crf=crf)
    _save_tensors(out / "clips" / f"{spec.clip_id}.safetensors", tensors,
                  {"id": spec.clip_id, "kind": spec.kind, "sample_rate": clips.SAMPLE_RATE, "format": "vssflow-data-1"})
    return clips.manifest_row(spec, video_rel, video_fps)


def parse_voices(text: str) -> tuple[str, ...]:
    """``--voices`` ("joe,slt,...") -> the voice names, each checked against ``speech.voice_ids()``."""
    from vssflow_core.data.speech import voice_ids

    names = tuple(v.strip() for v in str(text).split(",") if v.strip())
    unknown = [v for v in names if v not in voice_ids()]
    if not names or unknown:
        raise VSSFlowError(f"--voices {text!r}: unknown or no voice {unknown}; choose from {', '.join(voice_ids())}")
    return names


MAX_FAILURES_IN_A_ROW = 5


OPTIONS_FILE = "make_data.json"
OPTIONS_ADDED_LATER = {"low_fps": 0.0, "low_fps_lips": 0.0}  # option -> the value of the folders made before it existed


def _check_same_options(out: Path, rows: list[dict], options: dict) -> None:
    """Refuse to add clips to a folder made with other generation ``options`` (a resume with other
    options would mix two data sets, e.g. training clips into a validation folder): compared with the
    folder's ``make_data.json``, or for a folder made before that file existed, with its manifest rows
    (seed, kind, length); the file is then written."""
    path = out / OPTIONS_FILE
    if not path.is_file():
        _check_same_set(out, rows, options["seed"], options["kind"], options["duration_s"])
        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps(options, indent=1))
        return
    try:
        made = json.loads(path.read_text())
    except ValueError as e:
        raise VSSFlowError(f"{path} is damaged ({e}); delete it (the manifest's rows are checked instead)") from None
    made = {**OPTIONS_ADDED_LATER, **made}  # a folder made before an option existed was made without it
    wrong = [f"--{k.replace('_', '-')} {made[k]}" for k, v in options.items() if k in made and made[k] != v]
    if wrong:
        raise VSSFlowError(f"--out {out} was made with {', '.join(wrong)} ({path.name}); resume it with the options "
                           "it was made with, or give a new --out folder")


def _check_same_set(out: Path, rows: list[dict], seed: int, kind: str, duration_s: float) -> None:
    """Refuse to add clips to a folder that holds clips of another seed, kind or length."""
    from vssflow_core.data.clips import kind_for_index

    for r in rows:
        wrong = []
        if int(r.get("seed", seed)) != seed:
            wrong.append(f"--seed {r['seed']}")
        if abs(float(r.get("duration_s", duration_s)) - duration_s) > 1e-6:
            wrong.append(f"--duration-s {r['duration_s']}")
        if "index" in r and r.get("kind") != kind_for_index(kind, int(r["index"])):
            wrong.append(f"another --kind (clip {r['index']} is a {r.get('kind')} clip)")
        if wrong:
            raise VSSFlowError(f"--out {out} holds clips made with {', '.join(wrong)}; resume it with the options it "
                               "was made with, or give a new --out folder")


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _low_fps_share(args: argparse.Namespace, name: str, clips_meant: str) -> float:
    """The share option ``name`` of ``args`` (0 when absent), checked to lie in 0-1."""
    share = float(getattr(args, name, 0.0) or 0.0)
    if not 0.0 <= share <= 1.0:
        raise VSSFlowError(f"--{name.replace('_', '-')} {share}: the share of {clips_meant} made at a low frame rate, "
                           "from 0 to 1")
    return share


def run(args: argparse.Namespace) -> int:
    """Generate (or resume) the dataset described by ``args``; prints progress and clips/s."""
    voices = parse_voices(getattr(args, "voices", "joe"))
    _init_worker()
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise VSSFlowError(f"--out {out} is a file; give a folder (new, or one make-data wrote, to resume it)")
    if args.duration_s is not None and not args.duration_s > 0:
        raise VSSFlowError(f"--duration-s {args.duration_s}: clip length in seconds, > 0 (default {default_duration_s()})")
    duration_s = float(args.duration_s) if args.duration_s else default_duration_s()
    low_fps = _low_fps_share(args, "low_fps", "sound clips")
    low_fps_lips = _low_fps_share(args, "low_fps_lips", "speech and mixed clips")
    use_real = not getattr(args, "no_real_sounds", False)
    # one make-data per folder: a second one (another eval filling the same cache) waits for the first
    lock = lock_folder(out, f"make-data: {out} is being written by another make-data", wait=True)
    try:
        return _generate(args, out, duration_s, use_real, voices, (low_fps, low_fps_lips))
    finally:
        lock.close()


def _generate(args: argparse.Namespace, out: Path, duration_s: float, use_real: bool, voices: list[str],
              low_fps: tuple[float, float]) -> int:
    """The body of :func:`run`, with the folder locked. ``low_fps``: the shares of sound and of
    speaking clips made at a low frame rate."""
    from vssflow_core.data.clips import kind_for_index

    (out / "clips").mkdir(parents=True, exist_ok=True)
    if args.render_video:
        (out / "videos").mkdir(exist_ok=True)
    rows = read_manifest(out)
    _check_same_options(out, rows, {"seed": int(args.seed), "kind": args.kind, "duration_s": duration_s,
                                    "voices": ",".join(voices), "no_real_sounds": not use_real, "low_fps": low_fps[0],
                                    "low_fps_lips": low_fps[1]})
    done = {r["id"] for r in rows if (out / r["file"]).exists() and (not args.render_video or r.get("video"))}
    manifest = out / "manifest.jsonl"
    with atomic_output(manifest, replace=True) as tmp:  # rewrite: drops a truncated tail / missing files
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows if r["id"] in done), encoding="utf-8")
    start = int(getattr(args, "start", 0) or 0)
    jobs = [(str(out), int(args.seed), i, kind_for_index(args.kind, i), duration_s, bool(args.render_video),
             int(args.video_size), args.crf, use_real, voices, *low_fps)
            for i in range(start, start + int(args.n)) if f"{i:06d}" not in done]
    print(f"make-data: {len(done)} clips present, {len(jobs)} to generate into {out} "
          f"(seed {args.seed}, kind {args.kind}, {duration_s} s)", flush=True)
    t0 = time.time()
    workers = max(1, int(args.workers))
    if workers == 1:
        results = map(make_one, jobs)
    else:
        import multiprocessing as mp

        pool = mp.get_context("spawn").Pool(workers, initializer=_init_worker)
        results = pool.imap(make_one, jobs)
    count = failed = in_a_row = 0
    with open(manifest, "a", encoding="utf-8") as fh:
        for row in results:
            if "error" in row:  # one clip's bug must not stop a long run: report and go on...
                failed += 1
                in_a_row += 1
                message = row["error"] if failed == 1 else row["error"].splitlines()[0]  # one traceback is enough
                print(f"make-data: clip {row['id']} FAILED: {message}", file=sys.stderr, flush=True)
                if in_a_row >= MAX_FAILURES_IN_A_ROW:  # ...but a broken set-up (full disk) fails every clip
                    if workers > 1:
                        pool.terminate()
                    raise VSSFlowError(f"make-data: {in_a_row} clips in a row failed, the last with "
                                       f"{row['error'].splitlines()[0]}; fix that (disk space? see the first "
                                       "traceback above), then rerun the same command to continue")
                continue
            in_a_row = 0
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            count += 1
            if count % 25 == 0 or count == len(jobs):
                rate = count / max(time.time() - t0, 1e-9)
                print(f"make-data: {len(done) + count}/{len(done) + len(jobs)} clips, {rate:.3f} clips/s", flush=True)
    if workers > 1:
        pool.close()
        pool.join()
    if failed:
        print(f"make-data: {failed} clips failed (see above); rerun the same command to retry them", file=sys.stderr)
        return 1
    return 0
