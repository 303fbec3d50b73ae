"""Measuring for ``bench.gpu``: the wall-clock budget, CUDA-synchronised timing, precision and TF32
contexts, counting (and capping) a solve's velocity evaluations, and the row an item records when it
fails. Times are in ms or s as each name says; ``device`` is a torch device or its name."""
from __future__ import annotations

import contextlib
import statistics
import time
import warnings

import torch


class Stop(RuntimeError):
    """A solve was stopped (evaluation cap or time budget)."""


class Budget:
    """Wall-clock budget (s) counted from construction."""

    def __init__(self, seconds: float):
        self.seconds, self.start = float(seconds), time.perf_counter()

    def left(self) -> float:
        """Seconds of the budget left (negative once spent)."""
        return self.seconds - (time.perf_counter() - self.start)


def is_cuda(device) -> bool:
    """Whether ``device`` (a str or torch.device) is a CUDA device."""
    return torch.device(device).type == "cuda"


def sync(device) -> None:
    """Wait for the device's queued work (CUDA only), so a wall-clock reading covers it."""
    if is_cuda(device):
        torch.cuda.synchronize(device)


def median_ms(fn, device, warmup: int, repeats: int):
    """(median wall ms over ``repeats`` synchronised calls after ``warmup`` calls, last output)."""
    for _ in range(warmup):
        fn()
    times, out = [], None
    for _ in range(max(1, repeats)):
        sync(device)
        start = time.perf_counter()
        out = fn()
        sync(device)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), out


@contextlib.contextmanager
def tf32(enabled: bool):
    """TF32 for CUDA matmuls and cuDNN convolutions inside the block (restored after)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@contextlib.contextmanager
def in_precision(model, precision: str, region: bool = True):
    """``model.set_precision(precision)`` with TF32 off (``"tf32"``: fp32 with TF32 on). With
    ``region``, inside one autocast region, as the steps of :meth:`VSSFlow.sample` run (weight
    casts cached across calls); without, each ``sample`` call casts the weights itself."""
    model.set_precision("fp32" if precision == "tf32" else precision)
    try:
        with tf32(precision == "tf32"), (model._autocast() if region else contextlib.nullcontext()):
            yield
    finally:
        model.set_precision("fp32")


@contextlib.contextmanager
def count_evaluations(model, max_nfe: int, deadline: float):
    """Count guided velocity evaluations (``box[0]``); raise :class:`Stop` past ``max_nfe`` or
    after ``deadline`` (a ``time.perf_counter()`` value)."""
    box = [0]
    velocity = model.velocity

    def counted(*args, **kwargs):
        box[0] += 1
        if box[0] > max_nfe or time.perf_counter() > deadline:
            why = f"cap {max_nfe}" if box[0] > max_nfe else "time budget"
            raise Stop(f"stopped after {box[0] - 1} evaluations ({why})")
        return velocity(*args, **kwargs)

    model.velocity = counted
    try:
        yield box
    finally:
        del model.velocity


def error_row(e: BaseException) -> dict:
    """An item's result when it failed: ``{"error": "Type: message"}`` (at most 500 characters)."""
    return {"error": f"{type(e).__name__}: {e}"[:500]}
