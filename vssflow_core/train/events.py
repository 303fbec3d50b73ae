"""``python -m vssflow_core train-events``: train the visual event detector (``features.events``).

make-data's manifest gives the 25 Hz frame of every visible sound event of a clip (``events``).
The clip's video is drawn again from its seed and index (``data.clips.build_clip``, deterministic)
at ``data.clips.EVENT_RENDER_SIZE`` px, turned into :func:`features.events.change_grids`, and every event frame
becomes a positive example; the frames up to ``NEAR`` either side of an event and ``RANDOM_FRAMES``
random frames of each clip are negatives (the mixed scenes' talking faces among them: a moving mouth
is not an event; ``--kinds`` can add the speech clips, which cost a TTS run each to draw again).
A share of the clips (``--low-fps``) is drawn a second time at a lower frame rate (one of
``data.clips.LOW_FRAME_RATES``, chosen per clip from the seed) and read onto the 25 fps grid with its pictures
repeated, as a video generator's 16 fps output or animation reaches the front-end; the labels stay on
the true event frames, so the detector learns to place an event that such a video shows up to a
source frame late. ``--val`` prints the event F1 at 25 fps and at ``VAL_LOW_FPS``.
Binary cross-entropy, AdamW, one-cycle learning rate, batches of 128 frames. With one thread and
the same data and seed the weights come out bit for bit the same.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from vssflow_core.config import FEATURE_RATE_HZ
from vssflow_core.errors import VSSFlowError

NEAR = 3  # frames either side of an event taken as (hard) negatives
RANDOM_FRAMES = 20  # random frames per clip
MATCH_FRAMES = 1  # a detection within one frame (40 ms) of an event finds it
POS_WEIGHT = 2.0
VAL_LOW_FPS = 16.0  # the frame rate of common open video generators (Wan 2.x)


def clip_rows(folder: str, flag: str) -> list[dict]:
    """The manifest rows of a make-data folder, in file order."""
    path = Path(folder) / "manifest.jsonl"
    if not path.is_file():
        raise VSSFlowError(f"{flag} {folder}: no manifest.jsonl; point it at a make-data output folder")
    from vssflow_core.data.generate import read_manifest

    return sorted(read_manifest(folder), key=lambda r: r["file"])


def render_change(row: dict, source_fps: float = FEATURE_RATE_HZ) -> np.ndarray:
    """A manifest row's video drawn again, made at ``source_fps`` and held on the 25 fps grid
    (``clips.render_frames_held``) -> :func:`features.events.change_grids` float32 [F25, 32, 32]."""
    from vssflow_core.data import clips
    from vssflow_core.features.events import change_grids

    voices = (row["voice"],) if row.get("voice") else ("joe",)
    want = [(int(e["frame"]), e["class"]) for e in row.get("events", [])]
    for real_sounds in (True, False):  # make-data --no-real-sounds draws some scenes differently
        spec = clips.build_clip(int(row["seed"]), int(row["index"]), row["kind"], float(row["duration_s"]),
                                use_real_sounds=real_sounds, voices=voices)
        if [(int(e["frame"]), e["class"]) for e in clips.manifest_row(spec)["events"]] == want:
            return change_grids(clips.render_frames_held(spec, clips.EVENT_RENDER_SIZE, source_fps))
    raise VSSFlowError(f"clip {row['id']} (seed {row['seed']}, index {row['index']}): drawing it again does not give "
                       "the events its manifest lists; it was made by another version of make-data. Make the data "
                       "folder again with this version")


def event_labels(row: dict, frames: int) -> tuple[np.ndarray, list[str]]:
    """float32 [frames] with 1 at each event's frame, and each frame's event class ('' = none)."""
    y = np.zeros(frames, dtype=np.float32)
    classes = [""] * frames
    for e in row.get("events", []):
        k = int(e["frame"])
        if 0 <= k < frames:
            y[k] = 1.0
            classes[k] = e["class"]
    return y, classes


def draw_list(rows: list[dict], low_fps_share: float, seed: int) -> list[tuple[dict, float]]:
    """Every row at 25 fps, then a ``low_fps_share`` of them (chosen by ``seed``) again at one of
    ``data.clips.LOW_FRAME_RATES``: ``[(row, source fps)]``."""
    from vssflow_core.data.clips import LOW_FRAME_RATES

    rng = np.random.default_rng([seed, 25])
    again = rng.random(len(rows)) < low_fps_share
    rates = rng.choice(LOW_FRAME_RATES, len(rows))
    return [(r, FEATURE_RATE_HZ) for r in rows] + [(r, float(f)) for r, f, a in zip(rows, rates, again) if a]


def _render_all(jobs: list[tuple[dict, float]], workers: int) -> list[np.ndarray]:
    """:func:`render_change` of each ``(row, source fps)``, in order."""
    if workers <= 1:
        return [render_change(*job) for job in jobs]
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(workers) as pool:
        return pool.starmap(render_change, jobs, chunksize=8)


def training_frames(changes: list[np.ndarray], rows: list[dict], window: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The training examples: float32 [N, 2w+1, G, G] windows and float32 [N] labels (see the module doc)."""
    from vssflow_core.features.netfile import frame_windows

    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for change, row in zip(changes, rows):
        y, _ = event_labels(row, len(change))
        pos = np.nonzero(y)[0]
        pick = set(int(k) for k in rng.choice(len(y), min(RANDOM_FRAMES, len(y)), replace=False))
        pick |= {int(k + d) for k in pos for d in range(-NEAR, NEAR + 1) if 0 <= k + d < len(y)}
        idx = np.array(sorted(pick), dtype=np.int64)
        xs.append(frame_windows(change, window)[idx])
        ys.append(y[idx])
    return np.concatenate(xs), np.concatenate(ys)


def train_detector(x: np.ndarray, y: np.ndarray, window: int, width: int, epochs: int, seed: int,
                   lr: float = 2e-3, batch: int = 128, log=print):
    """Train a detector on windows ``x`` [N, 2w+1, G, G] with labels ``y`` [N]; returns it in eval mode.
    Torch's global random state is the same afterwards as before."""
    import torch
    from torch import nn

    from vssflow_core.features.events import build_detector

    if len(x) < batch:
        raise VSSFlowError(f"train-events: {len(x)} frames, fewer than one batch of {batch}; give more clips")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_detector(window, width)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        opt = torch.optim.AdamW(net.parameters(), lr, weight_decay=0.01)
        steps = epochs * -(-len(xt) // batch)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
        loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(POS_WEIGHT))
        for epoch in range(epochs):
            order, total = torch.randperm(len(xt)), 0.0
            for b in range(0, len(xt), batch):
                idx = order[b:b + batch]
                loss = loss_fn(net(xt[idx])[:, 0], yt[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
            log(f"epoch {epoch + 1}/{epochs}: loss {total / len(xt):.4f}")
    return net.eval()


def peak_frames(prob: np.ndarray, threshold: float) -> np.ndarray:
    """Frames of ``prob`` [F] that reach ``threshold`` and are the largest within +-2 frames."""
    f = len(prob)
    keep = [k for k in range(f) if prob[k] >= threshold and prob[k] >= prob[max(0, k - 2): k + 3].max()]
    return np.asarray(keep, dtype=np.int64)


def detection_scores(probs: list[np.ndarray], rows: list[dict], threshold: float = 0.5) -> dict:
    """Event F1 of peak-picked detections (one-to-one, within ``MATCH_FRAMES``) over clips, with
    precision, recall and the recall per event class. ``probs``: float [F] per clip."""
    hits = n_ref = n_est = 0
    by_class: dict[str, list[int]] = {}
    for prob, row in zip(probs, rows):
        y, classes = event_labels(row, len(prob))
        est = list(peak_frames(prob, threshold))
        n_est += len(est)
        for k in np.nonzero(y)[0]:
            near = [e for e in est if abs(e - k) <= MATCH_FRAMES]
            found = bool(near)
            if found:
                est.remove(min(near, key=lambda e: abs(e - k)))
                hits += 1
            counts = by_class.setdefault(classes[k], [0, 0])
            counts[0] += found
            counts[1] += 1
        n_ref += int(y.sum())
    return {"f1": 2 * hits / max(1, n_ref + n_est), "precision": hits / max(1, n_est), "recall": hits / max(1, n_ref),
            "events": n_ref, "recall_by_class": {c: round(h / n, 3) for c, (h, n) in sorted(by_class.items())}}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Register the ``train-events`` options on ``p``."""
    p.add_argument("--data", required=True, help="make-data folder(s), comma-separated (sound scenes give the events)")
    p.add_argument("--val", default=None, help="a make-data folder of other seeds: event F1 printed")
    p.add_argument("--out", required=True, help="new *.safetensors file for the detector")
    p.add_argument("--window", type=int, default=3, help="frames read each side of a frame (default 3)")
    p.add_argument("--width", type=int, default=32, help="channels of the first convolution (default 32)")
    p.add_argument("--epochs", type=int, default=8, help="passes over the frames (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the frame choice, the initial weights and the batch order")
    p.add_argument("--kinds", default="sfx,mixed", help="clip kinds to train on, comma-separated (default sfx,mixed)")
    p.add_argument("--workers", type=int, default=2, help="processes that draw the videos (default 2)")
    p.add_argument("--low-fps", type=float, default=0.5, metavar="SHARE",
                   help="share of the clips drawn again at a frame rate below 25 fps (8-24), held on the 25 fps grid "
                        "(default 0.5; 0 = 25 fps only, as stage 8's detector was trained)")


def run(args) -> int:
    """Draw the videos, train, report event F1 and write ``--out``."""
    import torch

    from vssflow_core.features.netfile import check_training_command
    from vssflow_core.features.events import probabilities_from_change, save_detector

    out = check_training_command(args, "detector", ("window", "width", "epochs", "workers"))
    kinds = {k for k in args.kinds.split(",") if k}
    if not kinds or kinds - {"speech", "sfx", "mixed"}:
        raise VSSFlowError(f"--kinds {args.kinds!r}: choose from speech, sfx, mixed (comma-separated)")
    rows = [r for folder in args.data.split(",") if folder for r in clip_rows(folder, "--data") if r["kind"] in kinds]
    val_rows = clip_rows(args.val, "--val") if args.val else []
    if not any(r.get("events") for r in rows):
        raise VSSFlowError(f"--data {args.data}: no clip has visible events; make sound scenes with make-data --kind sfx")
    if not 0.0 <= args.low_fps <= 1.0:
        raise VSSFlowError(f"--low-fps {args.low_fps}: give a share between 0 and 1")
    jobs = draw_list(rows, args.low_fps, args.seed)
    print(f"drawing {len(rows)} clips, {len(jobs) - len(rows)} of them again below 25 fps ...", flush=True)
    changes = _render_all(jobs, args.workers)
    x, y = training_frames(changes, [row for row, _ in jobs], args.window, args.seed)
    print(f"{len(jobs)} drawings, {len(x)} frames, {int(y.sum())} events")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same weights on any machine with the same data and seed
    try:
        net = train_detector(x, y, args.window, args.width, args.epochs, args.seed)
    finally:
        torch.set_num_threads(threads)
    summary = ""
    if val_rows:
        from tempfile import TemporaryDirectory

        scores = []
        with TemporaryDirectory() as tmp:  # score the network in memory through the file code path
            path = Path(tmp) / "detector.safetensors"
            save_detector(net, args.window, path)
            for fps in (FEATURE_RATE_HZ, VAL_LOW_FPS):
                changes = _render_all([(r, fps) for r in val_rows], args.workers)
                s = detection_scores([probabilities_from_change(c, path)[:, 0] for c in changes], val_rows)
                scores.append(f"at {fps:g} fps F1 {s['f1']:.3f} (P {s['precision']:.3f} / R {s['recall']:.3f}), "
                              f"recall by class {json.dumps(s['recall_by_class'])}")
        summary = f"{args.val} ({len(val_rows)} clips, {s['events']} events): " + "; ".join(scores)
        print(f"event detection: {summary}")
    save_detector(net, args.window, out, training=f"train-events --data {args.data} --kinds {args.kinds} "
                                                  f"--epochs {args.epochs} --seed {args.seed} --low-fps {args.low_fps:g}"
                                                  + (f"; {summary}" if summary else ""))
    print(f"wrote {out}")
    return 0
