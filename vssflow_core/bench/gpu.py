"""GPU benchmark of the official layout (issue 6, "On a GPU, when one is lent"), random weights.

``python -m vssflow_core.bench.gpu --json OUT.json --budget-s 100`` needs only torch, numpy,
einops and torchdiffeq (no PyAV, no weights). A 10 s clip is 250 latent frames at 25 Hz; guidance
w = 3; batch 1 unless said. Timings are CUDA-synchronised: warm-up calls, then the median of
several repeats. Items, in the order they run:

* ``eval``: ms per guided velocity evaluation: the official two fp32 passes (TF32 off) against our
  batched pass in fp32 (TF32 off / on), bf16 and fp16 autocast (``VSSFlow.set_precision``);
  relative RMS deviation from the official velocity; speed-ups.
* ``sampling``: wall seconds, NFE and relative RMS error of the final latent against dopri5 at
  tight tolerance in fp32 (TF32 off), for euler / midpoint / heun with fixed steps and dopri5 at
  the official tolerance, in bf16 (plus the official fp32 dopri5).
* ``memory``: peak GPU memory of one sampling (conditions included), batch 1.
* ``decode``: the official codec (AudioLDM VAE decoder + 16 kHz HiFi-GAN), fp32 and bf16.
* ``features``: CLIP (10 fps, 224x224) and Synchformer (25 fps, 16-frame windows, stride 8), fp32
  and bf16, and RawNet3 (10 windows of 3 s) on the device; frame decoding and resizing (CPU) are
  not included.
* ``throughput``: seconds of audio per wall second for batches of 1, 4 and 16 clips.
* ``compile``: the batched bf16 evaluation with each DiT block ``torch.compile``-d (mode default);
  compile time apart.

Headline: ``total_10s_s`` = features (CLIP + Synchformer, bf16) + sampling with the fastest
solver whose error is within ``sensible_rel`` + decode, against the target (under 1 s for 10 s on
one H100) and the anchor (MMAudio-S-16k: 8 s in 1.23 s on an H100); also the total for every
solver row and estimates for 12 and 26 evaluations (random weights make a stiffer flow than
trained ones: dopri5 takes far more than the official 26 evaluations here).

Every item runs in its own try/except (an error is recorded as a string), is skipped when the time
budget is nearly spent (``"skipped: budget"``), and the JSON is rewritten after each item. On a CPU
(``run(device="cpu", quick=True)`` is the unit test) the TF32 / fp16 / bf16 / compile / memory
items are ``"skipped: cpu"`` and sampling runs in fp32.

This module holds the sizes, the run and its command line; the items are in ``bench.gpu_items``,
the timing and precision helpers in ``bench.gpu_timing`` and the headline in ``bench.gpu_headline``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import torch

from vssflow_core.bench.gpu_headline import headline
from vssflow_core.bench.gpu_items import (bench_compile, bench_decode, bench_eval, bench_features, bench_memory,
                                          bench_sampling, bench_throughput, setup_dit)
from vssflow_core.bench.gpu_timing import Budget, error_row, is_cuda
from vssflow_core.media.files import atomic_output
from vssflow_core.train.report import check_json_target


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of one run. ``Settings()`` is the official measurement; :data:`QUICK` the CPU test."""

    layers: int = 10  # DiT blocks (official 10)
    seconds: float = 10.0  # clip length (s)
    warmup: int = 2  # untimed calls before timing
    repeats: int = 10  # timed calls (median reported)
    steps: int = 10  # fixed-step solvers' steps
    dopri_tol: float = 1e-5  # official dopri5 rtol = atol
    ref_tol: float = 1e-7  # reference dopri5 rtol = atol (fp32)
    max_nfe: int = 1500  # a solve stops (recorded as an error) past this many evaluations
    batches: tuple[int, ...] = (1, 4, 16)
    extractor_layers: int | None = None  # CLIP / Synchformer depth (None = official 12)
    rawnet_channels: int = 1024  # RawNet3 width C (official 1024)
    rawnet_windows: int = 10
    sensible_rel: float = 0.05  # headline solver: fastest with rel_error <= this


QUICK = Settings(layers=2, seconds=0.4, warmup=0, repeats=1, steps=2, dopri_tol=1e-1, ref_tol=1e-2, max_nfe=80,
                 batches=(1, 2), extractor_layers=1, rawnet_channels=64, rawnet_windows=1)

# Items in running order, with the seconds (on an H200) each needs before it is started.
ITEM_NEED_S = {"eval": 5.0, "sampling": 20.0, "memory": 3.0, "decode": 5.0, "features": 8.0, "throughput": 8.0,
               "compile": 40.0}


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _print_item(name: str, result) -> None:
    """Print one item's results as ``name.key  value`` rows (nested dicts on one line)."""
    rows = result.items() if isinstance(result, dict) else [("", result)]
    for k, v in rows:
        if isinstance(v, dict):
            v = ", ".join(f"{kk}={_fmt(vv)}" for kk, vv in v.items())
        print(f"  {name + ('.' + k if k else ''):36s} {_fmt(v)}", flush=True)


def run(json_out=None, device: str | None = None, quick: bool = False, budget_s: float = 100.0,
        settings: Settings | None = None, only: list[str] | None = None) -> dict:
    """Run every item (see the module docstring) within ``budget_s`` seconds of wall time, counted
    from this call (an item is skipped when less than its ``ITEM_NEED_S`` is left, except with
    ``quick``); print a table as it goes; rewrite ``json_out`` after each item (an existing file there
    is refused at the start, before any work: ``VSSFlowError``, a ValueError). Returns the
    results (top level: ``device``, ``gpu_name``, ``torch``, ``total_10s_s``, ``headline``, one
    key per item; ``settings`` overrides the sizes that ``quick`` picks). ``only`` runs just these
    items, in the order given (names from :data:`ITEM_NEED_S`; an unknown name raises ValueError).
    Without ``device`` it runs on CUDA, or returns ``{"skipped": ...}`` at once when there is none
    (``python -m vssflow_core bench`` on a CPU-only machine)."""
    if json_out:
        check_json_target(json_out)
    if device is None and not torch.cuda.is_available():
        print("bench gpu: no CUDA device; skipped (pass device='cpu' to run it on the CPU)", flush=True)
        return {"skipped": "no CUDA device"}
    unknown = sorted(set(only or ()) - set(ITEM_NEED_S))
    if unknown:
        raise ValueError(f"bench gpu: unknown item(s) {', '.join(unknown)}; choose from {', '.join(ITEM_NEED_S)}")
    budget = Budget(budget_s)
    device = device or "cuda"
    s = settings or (QUICK if quick else Settings())
    results: dict = {"device": device, "gpu_name": torch.cuda.get_device_name(device) if is_cuda(device) else None,
                     "torch": torch.__version__, "cuda": torch.version.cuda, "quick": quick, "budget_s": budget_s,
                     "settings": dataclasses.asdict(s), "total_10s_s": None}

    def save():
        if json_out:
            with atomic_output(json_out, replace=True) as tmp:  # its own file from here on (checked at the start)
                tmp.write_text(json.dumps(results, indent=2, default=str))

    print(f"== bench gpu: {results['gpu_name'] or device}, torch {torch.__version__}, {s.layers} layers, "
          f"{s.seconds:g} s clip, budget {budget_s:g} s", flush=True)
    dit: dict | Exception
    try:
        dit = setup_dit(s, device)
        results["model"] = dit["info"]
    except Exception as e:  # noqa: BLE001
        dit, results["model"] = e, error_row(e)
    _print_item("model", results["model"])
    items = {"eval": lambda: bench_eval(dit, s, device), "sampling": lambda: bench_sampling(dit, s, budget, device, reserve),
             "memory": lambda: bench_memory(dit, s, device), "decode": lambda: bench_decode(s, device),
             "features": lambda: bench_features(s, device), "throughput": lambda: bench_throughput(dit, s, device),
             "compile": lambda: bench_compile(dit, s, device)}
    if only:
        items = {name: items[name] for name in only}
    after_sampling = list(items)[list(items).index("sampling") + 1:] if "sampling" in items else []
    reserve = 0.0 if quick else sum(ITEM_NEED_S[k] for k in after_sampling if k != "compile")  # read by the lambda
    for name, fn in items.items():
        start = time.perf_counter()
        if budget.left() < (0.0 if quick else ITEM_NEED_S[name]):
            results[name] = "skipped: budget"
        elif isinstance(dit, Exception) and name not in ("decode", "features"):
            results[name] = {"error": f"model build failed: {dit}"[:500]}
        else:
            try:
                results[name] = fn()
            except Exception as e:  # noqa: BLE001 - one failing item must not lose the others
                results[name] = error_row(e)
        if isinstance(results[name], dict):
            results[name]["item_s"] = round(time.perf_counter() - start, 2)
        if is_cuda(device):
            torch.cuda.empty_cache()
        print(f"== {name} ({time.perf_counter() - start:.1f} s, {budget.left():.0f} s of the budget left)", flush=True)
        _print_item(name, results[name])
        results.update(headline(results, s, results["gpu_name"] or device), wall_s=round(budget_s - budget.left(), 1))
        save()
    print(f"== headline\n  {results['headline']}\n  total_10s_s {results['total_10s_s']}  wall {results['wall_s']} s",
          flush=True)
    save()
    return results


def main(argv=None) -> int:
    """``python -m vssflow_core.bench.gpu``: parse the arguments and :func:`run`; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m vssflow_core.bench.gpu", description=__doc__.split("\n")[0])
    parser.add_argument("--json", default=None, help="write the results to this JSON file (rewritten after each item)")
    parser.add_argument("--budget-s", type=float, default=100.0, help="wall-clock budget in seconds (default 100)")
    parser.add_argument("--device", default=None, help="torch device (default cuda; without one nothing runs)")
    parser.add_argument("--quick", action="store_true", help="2 layers, 0.4 s clips, small extractors (a smoke test)")
    parser.add_argument("--items", default=None,
                        help=f"comma-separated items to run, in this order (default all: {','.join(ITEM_NEED_S)})")
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.items.split(",") if name.strip()] if args.items else None
    try:
        run(json_out=args.json, device=args.device, quick=args.quick, budget_s=args.budget_s, only=only)
    except ValueError as e:
        parser.error(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
