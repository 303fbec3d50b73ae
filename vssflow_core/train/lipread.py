"""``python -m vssflow_core train-lipread``: train the lip reader (``features.lipread``) on make-data clips.

Every speaking clip of make-data records the phones its TTS spoke and their times; aligned to the
transcript (``placement.true_index_track``) they label each 25 Hz frame of the speech window with
the transcript phoneme being spoken (silence where nothing is). The reader learns those labels
from the clip's lip track (cross-entropy, AdamW, cosine learning rate, batches of 512 frames). With
one thread and the same data and seed the weights come out bit for bit the same.
"""
from __future__ import annotations

import argparse
import math

import numpy as np

from vssflow_core.errors import VSSFlowError


def frame_examples(folders: list[str], window: int, flag: str = "--data") -> tuple[np.ndarray, np.ndarray, int]:
    """Lip windows and phoneme classes of every speech-window frame of the speaking clips.

    Args:
        folders: make-data output folders (``manifest.jsonl`` + ``clips/``), read in order.
        window: frames each side (``features.lipread.lip_windows``).
        flag: the option that named the folders, for error messages.
    Returns:
        (float32 [N, (2 * window + 1) * 6], int64 [N] class indices into ``lipread.CLASSES``,
        number of clips used). The frames run from the speech start's frame to the speech end's,
        both included, at ``FEATURE_RATE_HZ``.
    """
    from vssflow_core.config import FEATURE_RATE_HZ
    from vssflow_core.features.lip_space import normalise_lip_track
    from vssflow_core.features.lipread import lip_windows, phoneme_class
    from vssflow_core.features.text import BLANK, text_to_phonemes
    from vssflow_core.train.placement import check_data_folder, speaking_clips, true_index_track

    xs, ys, clips = [], [], 0
    for folder in folders:
        check_data_folder(folder, flag)
        for row, lips in speaking_clips(folder):
            truth = true_index_track(row, len(lips))
            transcript = [BLANK] + text_to_phonemes(row["transcript"]) + [BLANK]
            labels = np.array([phoneme_class(transcript[k]) if k >= 0 else 0 for k in truth], dtype=np.int64)
            start = int(float(row["speech_start_s"]) * FEATURE_RATE_HZ + 1e-6)
            end = min(len(lips), int(float(row["speech_end_s"]) * FEATURE_RATE_HZ + 1e-6) + 1)
            xs.append(lip_windows(normalise_lip_track(lips.astype(np.float32)), window)[start:end])
            ys.append(labels[start:end])
            clips += 1
    if not clips:
        raise VSSFlowError(f"{flag} {','.join(folders)}: no speaking clip with a face and phone timings; "
                           "make some with make-data --kind speech")
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys), clips


def train_reader(x: np.ndarray, y: np.ndarray, window: int, hidden: int, epochs: int, seed: int,
                 lr: float = 2e-3, batch: int = 512, log=print):
    """Train a reader on frames ``x`` float32 [N, (2 * window + 1) * 6] with classes ``y`` int64 [N]
    (batches of ``batch`` frames, peak learning rate ``lr``); returns the network in eval mode. Torch's
    global random state is the same afterwards as before."""
    import torch

    n = len(x)
    if n < batch:
        raise VSSFlowError(f"train-lipread: {n} frames, fewer than one batch of {batch}; give more speaking clips")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _train(torch.from_numpy(x), torch.from_numpy(y), window, hidden, epochs, lr, batch, log)


def _train(xt, yt, window: int, hidden: int, epochs: int, lr: float, batch: int, log):
    import torch
    from torch import nn

    from vssflow_core.features.lipread import build_reader

    net = build_reader(window, hidden)
    opt = torch.optim.AdamW(net.parameters(), lr, weight_decay=1e-4)
    n = len(xt)
    total, step = epochs * (n // batch), 0
    for epoch in range(epochs):
        order = torch.randperm(n)
        for b in range(0, n - batch + 1, batch):
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
            step += 1
            idx = order[b:b + batch]
            loss = nn.functional.cross_entropy(net(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        log(f"epoch {epoch + 1}/{epochs}: loss {loss.item():.4f}")
    return net.eval()


def frame_accuracy(net, x: np.ndarray, y: np.ndarray) -> float:
    """Share of the frames ``x`` [N, D] whose most likely class is the true one, ``y`` [N]."""
    import torch

    with torch.no_grad():
        return float((net(torch.from_numpy(x)).argmax(-1).numpy() == y).mean())


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Register the ``train-lipread`` options on ``p``."""
    p.add_argument("--data", required=True, help="make-data folder(s) with speaking clips, comma-separated")
    p.add_argument("--val", default=None, help="a make-data folder of other seeds: frame accuracy printed")
    p.add_argument("--out", required=True, help="new *.safetensors file for the reader")
    p.add_argument("--window", type=int, default=8, help="frames read each side of a frame (default 8)")
    p.add_argument("--hidden", type=int, default=128, help="hidden width (default 128)")
    p.add_argument("--epochs", type=int, default=12, help="passes over the frames (default 12)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the batch order")


def run(args) -> int:
    """Build the frames, train, report accuracy and write ``--out``."""
    import torch

    from vssflow_core.features.netfile import check_training_command
    from vssflow_core.features.lipread import save_reader

    out = check_training_command(args, "reader", ("window", "hidden", "epochs"))
    folders = [f for f in args.data.split(",") if f]
    from vssflow_core.train.placement import check_data_folder

    for folder in folders:
        check_data_folder(folder, "--data")
    if args.val:
        check_data_folder(args.val, "--val")
    x, y, clips = frame_examples(folders, args.window)
    print(f"{clips} speaking clips, {len(x)} frames")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same weights on any machine with the same data and seed
    try:
        net = train_reader(x, y, args.window, args.hidden, args.epochs, args.seed)
    finally:
        torch.set_num_threads(threads)
    summary = f"train {frame_accuracy(net, x, y):.3f}"
    if args.val:
        vx, vy, vclips = frame_examples([args.val], args.window, "--val")
        summary += f", {args.val} ({vclips} clips) {frame_accuracy(net, vx, vy):.3f}"
    print(f"frame accuracy: {summary}")
    save_reader(net, args.window, out, training=f"train-lipread --data {args.data} --epochs {args.epochs} "
                                                 f"--seed {args.seed}; frame accuracy {summary}")
    print(f"wrote {out}")
    return 0
