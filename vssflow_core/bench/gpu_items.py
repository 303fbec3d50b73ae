"""The measured items of ``bench.gpu`` (see its module docstring): the DiT items (``eval``,
``sampling``, ``memory``, ``throughput``, ``compile``) on the random official-layout model built by
:func:`setup_dit`, and the codec and feature-extractor items (``decode``, ``features``). Each takes
the run's ``Settings`` ``s`` and the device and returns its results as a dict (ms, s, MiB, relative
RMS deviations)."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch

from vssflow_core.bench.gpu_timing import (Budget, count_evaluations, error_row, in_precision, is_cuda, median_ms,
                                           sync, tf32)
from vssflow_core.bench.official_dit import GUIDANCE, _official_features, _random_official, _rel, official_two_pass

if TYPE_CHECKING:
    from vssflow_core.bench.gpu import Settings


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
    sync(device)
    return {"model": model, "cond": cond, "x": x, "feats": feats, "length": length,
            "info": {"layers": s.layers, "params_m": round(model.num_parameters() / 1e6, 1),
                     "latent_frames": length, "build_s": round(time.perf_counter() - start, 2)}}


def bench_eval(dit: dict, s: Settings, device) -> dict:
    """ms per guided evaluation (t = 0.4) of each way of computing it, deviation from the
    official two-pass fp32 velocity, and speed-ups over it."""
    model, cond, x = dit["model"], dit["cond"], dit["x"]
    out: dict = {}
    with torch.no_grad(), in_precision(model, "fp32"):
        ref_ms, ref = median_ms(lambda: official_two_pass(model, x, 0.4, cond), device, s.warmup, s.repeats)
    out["official_two_pass_fp32_ms"] = round(ref_ms, 3)
    for mode in ("fp32", "tf32", "bf16", "fp16"):
        name = f"batched_{mode}"
        if mode != "fp32" and not is_cuda(device):
            out[name + "_ms"] = "skipped: cpu"
            continue
        try:
            with torch.no_grad(), in_precision(model, mode):
                ms, v = median_ms(lambda: model.velocity(x, 0.4, cond, GUIDANCE), device, s.warmup, s.repeats)
        except Exception as e:  # noqa: BLE001 - the other modes are still measured
            out[name + "_ms"] = error_row(e)["error"]
            continue
        out[name + "_ms"] = round(ms, 3)
        out[name + "_dev"] = _rel(v.float(), ref)
        out[name + "_speedup"] = round(ref_ms / ms, 2)
    return out


def _solve(model, dit: dict, solver: str, steps: int, tol: float, precision: str, s: Settings, deadline: float, device):
    """(final latent [1, 128, L] float32, NFE, wall s) of one sampling run, stopped (:class:`Stop`)
    past ``s.max_nfe`` evaluations or ``deadline``."""
    with count_evaluations(model, s.max_nfe, deadline) as nfe, torch.no_grad(), in_precision(model, precision, region=False):
        sync(device)
        start = time.perf_counter()
        x1 = model.sample(dit["x"], dit["cond"], solver=solver, steps=steps, guidance_scale=GUIDANCE, rtol=tol, atol=tol)
        sync(device)
    return x1.float(), nfe[0], time.perf_counter() - start


def solver_rows(s: Settings, device) -> list[tuple[str, str, int, float, str]]:
    """(row name, solver, steps, tolerance, precision) of the sampling table."""
    fast = "bf16" if is_cuda(device) else "fp32"
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
        ref, out = None, {"reference": error_row(e)}
    for name, solver, steps, tol, precision in solver_rows(s, device):
        if time.perf_counter() > deadline:
            out[name] = "skipped: budget"
            continue
        try:
            x1, nfe, secs = _solve(model, dit, solver, steps, tol or s.dopri_tol, precision, s, deadline, device)
            out[name] = {"precision": precision, "steps": steps if solver != "dopri5" else None, "nfe": nfe,
                         "seconds": round(secs, 3), "rel_error": None if ref is None else _rel(x1, ref)}
        except Exception as e:  # noqa: BLE001 - recorded, the other rows go on
            out[name] = error_row(e)
    return out


def bench_memory(dit: dict, s: Settings, device) -> dict:
    """Peak GPU memory (MiB) of encoding the conditions and sampling one clip (euler, bf16, batch 1)."""
    if not is_cuda(device):
        return {"peak_mb": "skipped: cpu"}
    model = dit["model"]
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    with torch.no_grad(), in_precision(model, "bf16", region=False):
        cond = model.encode_conditions(dit["length"], **dit["feats"])
        model.sample(dit["x"], cond, solver="euler", steps=s.steps, guidance_scale=GUIDANCE)
    sync(device)
    peak = torch.cuda.max_memory_allocated(device)
    mib = 2 ** 20
    return {"peak_mb": round(peak / mib, 1), "before_mb": round(base / mib, 1),
            "peak_above_before_mb": round((peak - base) / mib, 1), "solver": f"euler{s.steps} bf16"}


def bench_throughput(dit: dict, s: Settings, device) -> dict:
    """Seconds of audio per wall second, euler with ``s.steps`` steps (bf16 on CUDA), per batch size."""
    model = dit["model"]
    precision = "bf16" if is_cuda(device) else "fp32"
    out: dict = {"solver": f"euler{s.steps} {precision}"}
    for b in s.batches:
        noise = dit["x"].expand(b, -1, -1).contiguous()
        with torch.no_grad(), in_precision(model, precision, region=False):
            ms, _ = median_ms(lambda: model.sample(noise, dit["cond"], solver="euler", steps=s.steps,
                                                    guidance_scale=GUIDANCE), device, min(1, s.warmup), min(3, s.repeats))
        out[f"batch{b}"] = {"seconds": round(ms / 1000, 3), "audio_s_per_s": round(b * s.seconds / (ms / 1000), 1)}
    return out


def bench_compile(dit: dict, s: Settings, device) -> dict:
    """Batched bf16 evaluation with every DiT block wrapped in ``torch.compile`` (mode default).

    The blocks run with separate q/k/v projections: the fused-q|k|v path checks ``data_ptr()``,
    which dynamo cannot trace (it would run the whole self-attention eagerly)."""
    if not is_cuda(device):
        return {"batched_bf16_compiled_ms": "skipped: cpu"}
    model, cond, x = dit["model"], dit["cond"], dit["x"]
    with torch.no_grad(), in_precision(model, "fp32"):
        ref = official_two_pass(model, x, 0.4, cond)
    blocks = model.vaflow.transformer_blocks
    eager = list(blocks)
    out: dict = {}
    try:
        for i, blk in enumerate(eager):
            blk.attn1.fuse_qkv = False
            blocks[i] = torch.compile(blk)
        with torch.no_grad(), in_precision(model, "bf16"):
            start = time.perf_counter()
            model.velocity(x, 0.4, cond, GUIDANCE)
            sync(device)
            out["compile_s"] = round(time.perf_counter() - start, 1)
            ms, v = median_ms(lambda: model.velocity(x, 0.4, cond, GUIDANCE), device, s.warmup, s.repeats)
            out["batched_bf16_compiled_ms"] = round(ms, 3)
            secs = median_ms(lambda: model.sample(x, cond, solver="euler", steps=s.steps, guidance_scale=GUIDANCE),
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
        if dtype != torch.float32 and not is_cuda(device):
            out[f"{prefix}{name}_ms"] = "skipped: cpu"
            continue
        try:
            module.to(dtype)
            with torch.no_grad(), tf32(False):
                ms, results[name] = median_ms(lambda: call(module), device, s.warmup, s.repeats)
            out[f"{prefix}{name}_ms"] = round(ms, 2)
        except Exception as e:  # noqa: BLE001 - the other precision is still measured
            out[f"{prefix}{name}_ms"] = error_row(e)["error"]
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
    with torch.no_grad(), tf32(False):
        ms, emb = median_ms(lambda: speaker_embedding(rawnet, wave, n_windows=s.rawnet_windows,
                                                       n_samples=min(48000, wave.shape[0] - 1)),
                             device, s.warmup, s.repeats)
    out["rawnet3_fp32_ms"] = round(ms, 2)
    out["rawnet3_shape"] = list(emb.shape)
    return out
