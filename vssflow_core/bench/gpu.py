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
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

from vssflow_core.bench.official_dit import GUIDANCE, _official_features, _random_official, _rel, official_two_pass

TARGET_S = 1.0  # issue 6: official layout, 10 s, one H100, feature extraction included
ANCHOR = "MMAudio-S-16k: 8 s in 1.23 s on an H100 (6.5x real time)"


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


class _Stop(RuntimeError):
    """A solve was stopped (evaluation cap or time budget)."""


class Budget:
    """Wall-clock budget (s) counted from construction."""

    def __init__(self, seconds: float):
        self.seconds, self.start = float(seconds), time.perf_counter()

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)


def _is_cuda(device) -> bool:
    return torch.device(device).type == "cuda"


def _sync(device) -> None:
    if _is_cuda(device):
        torch.cuda.synchronize(device)


def _median_ms(fn, device, warmup: int, repeats: int):
    """(median wall ms over ``repeats`` synchronised calls after ``warmup`` calls, last output)."""
    for _ in range(warmup):
        fn()
    times, out = [], None
    for _ in range(max(1, repeats)):
        _sync(device)
        start = time.perf_counter()
        out = fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), out


@contextlib.contextmanager
def _tf32(enabled: bool):
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
def _precision(model, precision: str, region: bool = True):
    """``model.set_precision(precision)`` with TF32 off (``"tf32"``: fp32 with TF32 on). With
    ``region``, inside one autocast region, as the steps of :meth:`VSSFlow.sample` run (weight
    casts cached across calls); without, each ``sample`` call casts the weights itself."""
    model.set_precision("fp32" if precision == "tf32" else precision)
    try:
        with _tf32(precision == "tf32"), (model._autocast() if region else contextlib.nullcontext()):
            yield
    finally:
        model.set_precision("fp32")


@contextlib.contextmanager
def _counted(model, max_nfe: int, deadline: float):
    """Count guided velocity evaluations (``box[0]``); raise :class:`_Stop` past ``max_nfe`` or
    after ``deadline`` (a ``time.perf_counter()`` value)."""
    box = [0]
    velocity = model.velocity

    def counted(*args, **kwargs):
        box[0] += 1
        if box[0] > max_nfe or time.perf_counter() > deadline:
            why = f"cap {max_nfe}" if box[0] > max_nfe else "time budget"
            raise _Stop(f"stopped after {box[0] - 1} evaluations ({why})")
        return velocity(*args, **kwargs)

    model.velocity = counted
    try:
        yield box
    finally:
        del model.velocity


# ---------------------------------------------------------------------------------------------- DiT
def setup_dit(s: Settings, device) -> dict:
    """Official-layout DiT with ``s.layers`` blocks (random weights) on ``device``, the projected
    conditions of one random clip and a noise latent ``x`` [1, 128, L]."""
    start = time.perf_counter()
    model = _random_official(s.layers, device)
    with torch.no_grad():
        feats = _official_features(s.seconds, torch.Generator().manual_seed(1), device)
        length = round(25 * s.seconds)
        cond = model.encode_conditions(length, **feats)
    x = torch.randn(1, model.config.audio_channels, length, generator=torch.Generator().manual_seed(2)).to(device)
    _sync(device)
    return {"model": model, "cond": cond, "x": x, "feats": feats, "length": length,
            "info": {"layers": s.layers, "params_m": round(model.num_parameters() / 1e6, 1),
                     "latent_frames": length, "build_s": round(time.perf_counter() - start, 2)}}


def bench_eval(dit: dict, s: Settings, device) -> dict:
    """ms per guided evaluation (t = 0.4) of each way of computing it, deviation from the
    official two-pass fp32 velocity, and speed-ups over it."""
    model, cond, x = dit["model"], dit["cond"], dit["x"]
    out: dict = {}
    with torch.no_grad(), _precision(model, "fp32"):
        ref_ms, ref = _median_ms(lambda: official_two_pass(model, x, 0.4, cond), device, s.warmup, s.repeats)
    out["official_two_pass_fp32_ms"] = round(ref_ms, 3)
    for mode in ("fp32", "tf32", "bf16", "fp16"):
        name = f"batched_{mode}"
        if mode != "fp32" and not _is_cuda(device):
            out[name + "_ms"] = "skipped: cpu"
            continue
        try:
            with torch.no_grad(), _precision(model, mode):
                ms, v = _median_ms(lambda: model.velocity(x, 0.4, cond, GUIDANCE), device, s.warmup, s.repeats)
        except Exception as e:  # noqa: BLE001 - the other modes are still measured
            out[name + "_ms"] = _error(e)["error"]
            continue
        out[name + "_ms"] = round(ms, 3)
        out[name + "_dev"] = _rel(v.float(), ref)
        out[name + "_speedup"] = round(ref_ms / ms, 2)
    return out


def _solve(model, dit: dict, solver: str, steps: int, tol: float, precision: str, s: Settings, deadline: float, device):
    """(final latent [1, 128, L] float32, NFE, wall s) of one sampling run, stopped (:class:`_Stop`)
    past ``s.max_nfe`` evaluations or ``deadline``."""
    with _counted(model, s.max_nfe, deadline) as nfe, torch.no_grad(), _precision(model, precision, region=False):
        _sync(device)
        start = time.perf_counter()
        x1 = model.sample(dit["x"], dit["cond"], solver=solver, steps=steps, guidance_scale=GUIDANCE, rtol=tol, atol=tol)
        _sync(device)
    return x1.float(), nfe[0], time.perf_counter() - start


def solver_rows(s: Settings, device) -> list[tuple[str, str, int, float, str]]:
    """(row name, solver, steps, tolerance, precision) of the sampling table."""
    fast = "bf16" if _is_cuda(device) else "fp32"
    rows = [(f"{solver}{s.steps}", solver, s.steps, 0.0, fast) for solver in ("euler", "midpoint", "heun")]
    rows.append(("dopri5", "dopri5", s.steps, s.dopri_tol, fast))
    if fast != "fp32":
        rows.append(("dopri5_fp32", "dopri5", s.steps, s.dopri_tol, "fp32"))
    return rows


def bench_sampling(dit: dict, s: Settings, budget: Budget, device, reserve_s: float = 0.0) -> dict:
    """Each solver row: precision, NFE, wall seconds and rel_error against the tight fp32 reference
    (None when the reference did not finish). Solves stop when ``budget`` has ``reserve_s`` left;
    the reference may use 60 % of the time until then."""
    model = dit["model"]
    deadline = time.perf_counter() + budget.left() - reserve_s
    try:
        ref_deadline = time.perf_counter() + 0.6 * (budget.left() - reserve_s)
        ref, nfe, secs = _solve(model, dit, "dopri5", s.steps, s.ref_tol, "fp32", s, ref_deadline, device)
        out: dict = {"reference": {"solver": "dopri5", "tol": s.ref_tol, "precision": "fp32", "nfe": nfe,
                                   "seconds": round(secs, 3)}}
    except Exception as e:  # noqa: BLE001 - the rows are still timed
        ref, out = None, {"reference": _error(e)}
    for name, solver, steps, tol, precision in solver_rows(s, device):
        if time.perf_counter() > deadline:
            out[name] = "skipped: budget"
            continue
        try:
            x1, nfe, secs = _solve(model, dit, solver, steps, tol or s.dopri_tol, precision, s, deadline, device)
            out[name] = {"precision": precision, "steps": steps if solver != "dopri5" else None, "nfe": nfe,
                         "seconds": round(secs, 3), "rel_error": None if ref is None else _rel(x1, ref)}
        except Exception as e:  # noqa: BLE001 - recorded, the other rows go on
            out[name] = _error(e)
    return out


def bench_memory(dit: dict, s: Settings, device) -> dict:
    """Peak GPU memory (MiB) of encoding the conditions and sampling one clip (euler, bf16, batch 1)."""
    if not _is_cuda(device):
        return {"peak_mb": "skipped: cpu"}
    model = dit["model"]
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    with torch.no_grad(), _precision(model, "bf16", region=False):
        cond = model.encode_conditions(dit["length"], **dit["feats"])
        model.sample(dit["x"], cond, solver="euler", steps=s.steps, guidance_scale=GUIDANCE)
    _sync(device)
    peak = torch.cuda.max_memory_allocated(device)
    mib = 2 ** 20
    return {"peak_mb": round(peak / mib, 1), "before_mb": round(base / mib, 1),
            "peak_above_before_mb": round((peak - base) / mib, 1), "solver": f"euler{s.steps} bf16"}


def bench_throughput(dit: dict, s: Settings, device) -> dict:
    """Seconds of audio per wall second, euler with ``s.steps`` steps (bf16 on CUDA), per batch size."""
    model = dit["model"]
    precision = "bf16" if _is_cuda(device) else "fp32"
    out: dict = {"solver": f"euler{s.steps} {precision}"}
    for b in s.batches:
        noise = dit["x"].expand(b, -1, -1).contiguous()
        with torch.no_grad(), _precision(model, precision, region=False):
            ms, _ = _median_ms(lambda: model.sample(noise, dit["cond"], solver="euler", steps=s.steps,
                                                    guidance_scale=GUIDANCE), device, min(1, s.warmup), min(3, s.repeats))
        out[f"batch{b}"] = {"seconds": round(ms / 1000, 3), "audio_s_per_s": round(b * s.seconds / (ms / 1000), 1)}
    return out


def bench_compile(dit: dict, s: Settings, device) -> dict:
    """Batched bf16 evaluation with every DiT block wrapped in ``torch.compile`` (mode default).

    The blocks run with separate q/k/v projections: the fused-q|k|v path checks ``data_ptr()``,
    which dynamo cannot trace (it would run the whole self-attention eagerly)."""
    if not _is_cuda(device):
        return {"batched_bf16_compiled_ms": "skipped: cpu"}
    model, cond, x = dit["model"], dit["cond"], dit["x"]
    with torch.no_grad(), _precision(model, "fp32"):
        ref = official_two_pass(model, x, 0.4, cond)
    blocks = model.vaflow.transformer_blocks
    eager = list(blocks)
    out: dict = {}
    try:
        for i, blk in enumerate(eager):
            blk.attn1.fuse_qkv = False
            blocks[i] = torch.compile(blk)
        with torch.no_grad(), _precision(model, "bf16"):
            start = time.perf_counter()
            model.velocity(x, 0.4, cond, GUIDANCE)
            _sync(device)
            out["compile_s"] = round(time.perf_counter() - start, 1)
            ms, v = _median_ms(lambda: model.velocity(x, 0.4, cond, GUIDANCE), device, s.warmup, s.repeats)
            out["batched_bf16_compiled_ms"] = round(ms, 3)
            secs = _median_ms(lambda: model.sample(x, cond, solver="euler", steps=s.steps, guidance_scale=GUIDANCE),
                              device, 1, 3)[0] / 1000
            out[f"euler{s.steps}_compiled_s"] = round(secs, 3)
        out["batched_bf16_compiled_dev"] = _rel(v.float(), ref)
    finally:
        for i, blk in enumerate(eager):
            blocks[i] = blk
            blk.attn1.fuse_qkv = True
    return out


# ------------------------------------------------------------------------------ codec and features
def _build(ctor, device, dtype=torch.float32):
    """``ctor()`` initialised on ``device`` (fast random init), in eval mode, as ``dtype``."""
    with torch.device(device):
        module = ctor()
    return module.to(device=device, dtype=dtype).eval()


def _time_precisions(module, call, prefix: str, out: dict, s: Settings, device) -> dict:
    """Time ``call(module)`` with ``module`` in fp32 (TF32 off) and bf16 (GPU only), recording
    ``out[prefix + "fp32_ms"]`` / ``"bf16_ms"`` (or the error); returns the outputs by precision."""
    results = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        if dtype != torch.float32 and not _is_cuda(device):
            out[f"{prefix}{name}_ms"] = "skipped: cpu"
            continue
        try:
            module.to(dtype)
            with torch.no_grad(), _tf32(False):
                ms, results[name] = _median_ms(lambda: call(module), device, s.warmup, s.repeats)
            out[f"{prefix}{name}_ms"] = round(ms, 2)
        except Exception as e:  # noqa: BLE001 - the other precision is still measured
            out[f"{prefix}{name}_ms"] = _error(e)["error"]
    return results


def bench_decode(s: Settings, device) -> dict:
    """Official codec decode of a random latent [1, 128, L] -> [1, 640 L] at 16 kHz: ms in fp32
    (TF32 off) and bf16, and the bf16 waveform's relative deviation."""
    from vssflow_core.audio.audioldm import AudioLDMCodec
    from vssflow_core.audio.hifigan import HifiGan
    from vssflow_core.audio.mel import MelParams
    from vssflow_core.audio.vae import MelVAE
    from vssflow_core.config import preset

    params = MelParams.from_codec_config(preset("official").codec)
    codec = _build(lambda: AudioLDMCodec(MelVAE(), HifiGan(), params), device)
    latent = torch.randn(1, codec.latent_channels, round(25 * s.seconds), generator=torch.Generator().manual_seed(3))
    latent = latent.to(device)
    out: dict = {}
    waves = _time_precisions(codec, lambda m: m.decode(latent), "", out, s, device)
    out["samples"] = int(next(iter(waves.values())).shape[-1]) if waves else None
    if len(waves) == 2:
        out["bf16_dev"] = _rel(waves["bf16"], waves["fp32"])
    return out


def bench_features(s: Settings, device) -> dict:
    """CLIP (10 fps) and Synchformer (25 fps windows) on random pixels, fp32 (TF32 off) and bf16
    weights, and RawNet3 on 10 s of random 16 kHz audio (fp32): ms each."""
    from vssflow_core.features.official.clip import ClipImageEncoder
    from vssflow_core.features.official.rawnet3 import RawNet3, speaker_embedding
    from vssflow_core.features.official.synchformer import SynchformerVisual, encode_video

    g = torch.Generator().manual_seed(4)
    depth = s.extractor_layers
    clip_px = torch.randn(round(10 * s.seconds), 3, 224, 224, generator=g).to(device)  # [N10, 3, 224, 224]
    sync_px = torch.randn(1, max(16, round(25 * s.seconds)), 3, 224, 224, generator=g).to(device)  # [1, N25, 3, 224, 224]
    nets = {"clip": (lambda: ClipImageEncoder(layers=depth or 12), lambda m: m.encode_cls(clip_px)),
            "synchformer": (lambda: SynchformerVisual(depth=depth or 12), lambda m: encode_video(m, sync_px))}
    out: dict = {"clip_frames": clip_px.shape[0], "synchformer_frames": sync_px.shape[1]}
    for name, (ctor, call) in nets.items():
        feats = _time_precisions(_build(ctor, device), call, f"{name}_", out, s, device)
        if feats:
            out[f"{name}_shape"] = list(next(iter(feats.values())).shape)
    rawnet = _build(lambda: RawNet3(C=s.rawnet_channels), device)
    wave = torch.randn(round(16000 * s.seconds), generator=g)
    with torch.no_grad(), _tf32(False):
        ms, emb = _median_ms(lambda: speaker_embedding(rawnet, wave, n_windows=s.rawnet_windows,
                                                       n_samples=min(48000, wave.shape[0] - 1)),
                             device, s.warmup, s.repeats)
    out["rawnet3_fp32_ms"] = round(ms, 2)
    out["rawnet3_shape"] = list(emb.shape)
    return out


# --------------------------------------------------------------------------------------- headline
def pick_solver(rows: dict, sensible_rel: float) -> str:
    """The fastest row with ``rel_error <= sensible_rel``; else the most accurate row; else (no
    reference) dopri5 when it finished, else the fastest row."""
    errors = {k: v["rel_error"] for k, v in rows.items() if v.get("rel_error") is not None and math.isfinite(v["rel_error"])}
    ok = [k for k, e in errors.items() if e <= sensible_rel]
    if ok:
        return min(ok, key=lambda k: rows[k]["seconds"])
    if errors:
        return min(errors, key=errors.get)
    return "dopri5" if "dopri5" in rows else min(rows, key=lambda k: rows[k]["seconds"])


def headline(results: dict, s: Settings, where: str) -> dict:
    """``total_10s_s`` = features (CLIP + Synchformer, bf16 when both ran, else fp32) + the
    sampling row :func:`pick_solver` picks + decode (bf16 when its deviation is under 5 %, else
    fp32); and the same total for every sampling row. Incomplete (``None``) when a part is missing."""
    feats, dec, samp = (results.get(k) for k in ("features", "decode", "sampling"))

    def ms(d: dict, key: str) -> float | None:
        return d[key] if isinstance(d.get(key), float) else None

    if not all(isinstance(r, dict) for r in (feats, dec, samp)):
        return {"total_10s_s": None, "headline": "incomplete: features, decode or sampling missing"}
    prec = "bf16" if ms(feats, "clip_bf16_ms") and ms(feats, "synchformer_bf16_ms") else "fp32"
    use_bf16 = ms(dec, "bf16_ms") is not None and dec.get("bf16_dev", 1.0) < 0.05
    parts = (ms(feats, f"clip_{prec}_ms"), ms(feats, f"synchformer_{prec}_ms"), ms(dec, "bf16_ms" if use_bf16 else "fp32_ms"))
    if None in parts:
        return {"total_10s_s": None, "headline": "incomplete: a feature extractor or the decoder failed"}
    features_s, decode_s = (parts[0] + parts[1]) / 1000, parts[2] / 1000
    rows = {k: v for k, v in samp.items() if k != "reference" and isinstance(v, dict) and "seconds" in v}
    if not rows:
        return {"total_10s_s": None, "headline": "incomplete: no sampling row finished"}
    solver = pick_solver(rows, s.sensible_rel)
    total = features_s + rows[solver]["seconds"] + decode_s
    text = (f"official layout, {s.seconds:g} s, {where}: features {features_s:.3f} s ({prec}) + sampling "
            f"{rows[solver]['seconds']:.3f} s ({solver}, {rows[solver]['nfe']} NFE) + decode {decode_s:.3f} s "
            f"({'bf16' if use_bf16 else 'fp32'}) = {total:.3f} s; target < {TARGET_S:g} s on one H100; anchor {ANCHOR}")
    return {"total_10s_s": round(total, 3), "headline": text, "headline_solver": solver,
            "headline_parts_s": {"features": round(features_s, 4), "sampling": rows[solver]["seconds"],
                                 "decode": round(decode_s, 4)},
            "total_10s_by_solver_s": {k: round(features_s + v["seconds"] + decode_s, 3) for k, v in rows.items()},
            "total_10s_by_nfe_est_s": _by_nfe(results.get("eval"), features_s + decode_s),
            "realtime_factor": round(s.seconds / total, 1)}


def _by_nfe(ev, other_s: float) -> dict | None:
    """Estimated totals when sampling takes 12 (issue 6's goal) or 26 (official dopri5 on trained
    weights) evaluations of the fastest eager batched mode with a finite output: ``other_s`` + NFE x ms."""
    ev = ev if isinstance(ev, dict) else {}
    timed = {k: v for k, v in ev.items() if k.startswith("batched_") and k.endswith("_ms") and isinstance(v, float)
             and math.isfinite(ev.get(k[:-3] + "_dev", math.nan))}
    if not timed:
        return None
    best = min(timed, key=timed.get)
    return {"mode": best[len("batched_"):-len("_ms")],
            **{str(n): round(other_s + n * timed[best] / 1000, 3) for n in (12, 26)}}


# ------------------------------------------------------------------------------------------- run
def _error(e: BaseException) -> dict:
    return {"error": f"{type(e).__name__}: {e}"[:500]}


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
    ``quick``); print a table as it goes; rewrite ``json_out`` after each item. Returns the
    results (top level: ``device``, ``gpu_name``, ``torch``, ``total_10s_s``, ``headline``, one
    key per item; ``settings`` overrides the sizes that ``quick`` picks). ``only`` runs just these
    items, in the order given (names from :data:`ITEM_NEED_S`; an unknown name raises ValueError).
    Without ``device`` it runs on CUDA, or returns ``{"skipped": ...}`` at once when there is none
    (``python -m vssflow_core bench`` on a CPU-only machine)."""
    if device is None and not torch.cuda.is_available():
        print("bench gpu: no CUDA device; skipped (pass device='cpu' to run it on the CPU)", flush=True)
        return {"skipped": "no CUDA device"}
    unknown = sorted(set(only or ()) - set(ITEM_NEED_S))
    if unknown:
        raise ValueError(f"bench gpu: unknown item(s) {', '.join(unknown)}; choose from {', '.join(ITEM_NEED_S)}")
    budget = Budget(budget_s)
    device = device or "cuda"
    s = settings or (QUICK if quick else Settings())
    results: dict = {"device": device, "gpu_name": torch.cuda.get_device_name(device) if _is_cuda(device) else None,
                     "torch": torch.__version__, "cuda": torch.version.cuda, "quick": quick, "budget_s": budget_s,
                     "settings": dataclasses.asdict(s), "total_10s_s": None}

    def save():
        if json_out:
            Path(json_out).write_text(json.dumps(results, indent=2, default=str))

    print(f"== bench gpu: {results['gpu_name'] or device}, torch {torch.__version__}, {s.layers} layers, "
          f"{s.seconds:g} s clip, budget {budget_s:g} s", flush=True)
    dit: dict | Exception
    try:
        dit = setup_dit(s, device)
        results["model"] = dit["info"]
    except Exception as e:  # noqa: BLE001
        dit, results["model"] = e, _error(e)
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
                results[name] = _error(e)
        if isinstance(results[name], dict):
            results[name]["item_s"] = round(time.perf_counter() - start, 2)
        if _is_cuda(device):
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
