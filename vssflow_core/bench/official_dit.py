"""Benchmark of the official-size DiT on CPU (random weights, 10 s = 250 latent frames, batch 1).

Part 1, ms per guided velocity evaluation (w = 3):
* ``official_two_pass_fp32``: the official way: two separate passes (conditional, unconditional),
  float32, nothing cached (cross-attention keys/values and the zero context recomputed, full
  1952-channel output, separate q/k/v projections);
* ``batched_fp32``: ours, both branches in one batched pass, context keys/values cached, fused q|k|v,
  cross-attention skipped for the all-zero context (exactly zero), audio output channels only;
* ``batched_fp32_fused``, ``batched_int8``, ``batched_bf16``: the other precision modes
  (bf16 is skipped on CPUs without bf16 units, where it is several times slower).
Deviations are relative RMS differences from the float32 guided velocity.
The compute ceiling: matrix-multiply GFLOP of the official and the batched evaluation (torch's
flop counter; attention scores, under 1 %, are not counted), the rate each reached, this machine's
float32 GEMM rate (``sgemm_gflops_per_s``, [2048, 2048] products) and ``fp32_speedup_ceiling``:
the official time over the batched GFLOP run at that GEMM rate, the most any float32 evaluation
doing the same multiplies could gain here.

Part 2, solvers: total time, function evaluations (NFE) and the error of the final latent against
dopri5 at tight tolerance (1e-7), for euler-10, midpoint-10, heun-10 and dopri5 (1e-5, official).
Run on the reduced official fixture model when the fixtures are present (seconds instead of an
hour on a 2-core CPU), else on the official-size model; official-size totals are also given as
NFE x measured ms per evaluation. ``official_nfe_matched`` = fewest evaluations of a fixed-step
solver whose final latent is within ``match_rel`` (relative RMS, default 0.1 %) of the tight
reference (dopri5 at 1e-5 lands at ~1e-4). A latent-space proxy on random weights: the metric-based
choice for a trained model belongs to the evaluation (issue 6, embedded default).
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch

from vssflow_core.bench.decode import peak_rss_mb
from vssflow_core.config import FEATURE_RATE_HZ

GUIDANCE = 3.0
BENCH_THREADS = 2  # the torch threads `bench --parts official` runs on (this project's 2-core machines)


def _has_bf16_units() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _random_official(layers: int, device="cpu"):
    """Official layout with random weights, N(0, 1/fan_in) (fast to build, sane activations),
    initialised on ``device`` (the values depend on the device's random generator)."""
    import dataclasses

    from vssflow_core.config import preset
    from vssflow_core.model import VSSFlow

    cfg = preset("official")
    cfg = dataclasses.replace(cfg, dit=dataclasses.replace(cfg.dit, num_layers=layers))
    with torch.device("meta"):
        model = VSSFlow(cfg)
    model = model.to_empty(device=device)
    g = torch.Generator(device).manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("time_proj.weight"):
                p.normal_(0, 16.0, generator=g)  # SAO's Fourier frequencies have std 16
            elif p.dim() == 1:
                p.fill_(1.0 if "norm" in name and name.endswith("weight") else 0.0)
            else:
                p.normal_(0, 1.0 / math.sqrt(p[0].numel()), generator=g)
    return model.eval()


def _official_features(seconds: float, g: torch.Generator, device="cpu") -> dict:
    """Random official raw features of one ``seconds`` clip (batch 1), drawn on the CPU by ``g``
    and moved to ``device``."""
    n25, n10, segs = round(FEATURE_RATE_HZ * seconds), round(10 * seconds), round(24 * seconds) // 8
    feats = dict(video_feat=torch.randn(1, n10, 768, generator=g), synch_feat=torch.randn(1, segs, 8, 768, generator=g),
                 lip_feat=torch.randn(1, n25, 1024, generator=g), phone_id=torch.randint(1, 71, (1, n25), generator=g),
                 ref_audio_ebd=torch.randn(1, 256, generator=g))
    return {k: v.to(device) for k, v in feats.items()}


def official_two_pass(model, x, t, cond, w=GUIDANCE) -> torch.Tensor:
    """The official guided velocity: two separate float32 passes of the full DiT input, nothing
    cached, zero context computed (the reference the speed-up is measured against)."""
    dit = model.vaflow
    attns = [blk.attn1 for blk in dit.transformer_blocks]
    for a in attns:
        a.fuse_qkv = False
    try:
        tt = torch.as_tensor(t, device=x.device).expand(x.shape[0])
        zeros = torch.zeros_like(cond.concat)
        ctx = cond.context if cond.context is not None else None
        v_c = dit(torch.cat([x, cond.concat], 1), tt, ctx)
        v_u = dit(torch.cat([x, zeros], 1), tt, torch.zeros_like(ctx) if ctx is not None else None)
        v = v_u + w * (v_c - v_u)
        return v[:, : x.shape[1]]
    finally:
        for a in attns:
            a.fuse_qkv = True


def _time_interleaved(fns: dict, rounds: int) -> tuple[dict, dict]:
    """Best wall time in ms of each function over ``rounds`` rounds, the functions interleaved
    within a round (so a busy machine slows all of them alike); returns (ms, last outputs)."""
    best, outs = {}, {}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            outs[name] = fn()
            ms = (time.perf_counter() - start) * 1000
            best[name] = min(best.get(name, ms), ms)
    return best, outs


def sgemm_gflops(n: int = 2048, rounds: int = 3) -> float:
    """This machine's float32 matrix-multiply rate in GFLOP/s (torch's current threads): the best of
    ``rounds`` products of two [n, n] matrices."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    torch.mm(a, b)  # warm-up
    best = math.inf
    for _ in range(rounds):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def matmul_gflop(fn) -> float:
    """GFLOP of the matrix multiplies (mm, addmm, bmm, convolutions) that one call of ``fn`` runs."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt())


def bench_eval(layers: int = 10, seconds: float = 10.0, rounds: int = 2, include_bf16: bool | None = None) -> dict:
    """Part 1: ms per guided velocity evaluation for each way of computing it (best of ``rounds``
    interleaved rounds; the first round also builds the caches)."""
    g = torch.Generator().manual_seed(1)
    build = time.perf_counter()
    model = _random_official(layers)
    out = {"layers": layers, "seconds_audio": seconds, "params_m": round(model.num_parameters() / 1e6, 1),
           "build_s": round(time.perf_counter() - build, 1)}
    with torch.no_grad():
        cond = model.encode_conditions(**_official_features(seconds, g))
        x = torch.randn(1, model.config.audio_channels, cond.latent_length, generator=g)
        modes = ["fp32", "fp32-fused", "int8"]
        if include_bf16 if include_bf16 is not None else _has_bf16_units():
            modes.append("bf16")
        else:
            out["batched_bf16_ms"] = "skipped: no bf16 units on this CPU (AVX2 only), bf16 runs several times slower"
        quantize = time.perf_counter()
        blocks8 = model.set_precision("int8").__dict__["_int8_blocks"]  # built once, reused every round
        out["int8_quantize_s"] = round(time.perf_counter() - quantize, 1)

        def ours(mode):
            def call():
                model.set_precision("fp32-fused" if mode == "int8" else mode)
                if mode == "int8":
                    model.__dict__["_int8_blocks"], model.precision = blocks8, "int8"
                with model._autocast():
                    return model.velocity(x, 0.4, cond, GUIDANCE)
            return call

        fns = {"official_two_pass_fp32": lambda: official_two_pass(model, x, 0.4, cond)}
        fns.update({"batched_" + m.replace("-", "_"): ours(m) for m in modes})
        best, outs = _time_interleaved(fns, rounds)
        model.set_precision("fp32")
        gflop = {name: matmul_gflop(fns[name]) for name in ("official_two_pass_fp32", "batched_fp32")}
        ref = outs["official_two_pass_fp32"]
        for name, ms in best.items():
            out[name + "_ms"] = round(ms, 1)
            if name != "official_two_pass_fp32":
                out[name + "_dev"] = _rel(outs[name], ref)
    timed = {k: v for k, v in out.items() if k.endswith("_ms") and isinstance(v, float) and k != "official_two_pass_fp32_ms"}
    best = min(timed, key=timed.get)
    out["guided_eval_speedup_fp32"] = round(out["official_two_pass_fp32_ms"] / out["batched_fp32_ms"], 2)
    out["guided_eval_speedup"] = round(out["official_two_pass_fp32_ms"] / timed[best], 2)
    out["guided_eval_best_mode"] = best[len("batched_"):-len("_ms")]
    gemm = sgemm_gflops()
    for name, value in gflop.items():
        out[name + "_gflop"] = round(value, 1)
        out[name + "_gflops_per_s"] = round(value / out[name + "_ms"] * 1000, 1)
    out["sgemm_gflops_per_s"] = round(gemm, 1)
    out["fp32_speedup_ceiling"] = round(out["official_two_pass_fp32_ms"] / (gflop["batched_fp32"] / gemm * 1000), 2)
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return out


def _fixture_model():
    """The reduced official fixture model (official weights layout, random values) and its inputs."""
    from vssflow_core.official import load_official

    root = Path(os.environ.get("VSSFLOW_FIXTURES", Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "official"))
    path = root / "vaflow_condition.safetensors"
    if not path.is_file():
        return None
    from safetensors.torch import load_file

    t = load_file(str(path))
    model = load_official({k[len("weights."):]: v for k, v in t.items() if k.startswith("weights.")}, attention_head_dim=32)
    feats = {k: t[f"input.{k}"] for k in ("video_feat", "synch_feat", "lip_feat", "phone_id", "ref_audio_ebd")}
    return model, feats


def bench_solvers(eval_ms: float | None = None, layers: int = 10, match_rel: float = 1e-3) -> dict:
    """Part 2: time, NFE and error against tight dopri5 for each solver."""
    fixture = _fixture_model()
    if fixture is not None:
        model, feats = fixture
        where = "reduced official fixture model (2 layers, width 128), batch 2"
    else:
        model = _random_official(layers)
        feats = _official_features(10.0, torch.Generator().manual_seed(1))
        where = f"official-size model, {layers} layers, random weights"
    with torch.no_grad():
        cond = model.encode_conditions(**feats)
    noise = torch.randn(cond.batch_size, model.config.audio_channels, cond.latent_length, generator=torch.Generator().manual_seed(2))
    calls = [0]
    velocity = model.velocity

    def counted(*a, **k):
        calls[0] += 1
        return velocity(*a, **k)

    model.velocity = counted

    def solve(solver, steps=10, tol=1e-5):
        calls[0] = 0
        start = time.perf_counter()
        x = model.sample(noise, cond, solver=solver, steps=steps, guidance_scale=GUIDANCE, rtol=tol, atol=tol)
        return x, calls[0], time.perf_counter() - start

    try:
        ref, ref_nfe, _ = solve("dopri5", tol=1e-7)
        out = {"model": where, "reference": f"dopri5 rtol=atol=1e-7 ({ref_nfe} NFE)"}
        for name, solver, steps, tol in (("euler10", "euler", 10, 0), ("midpoint10", "midpoint", 10, 0),
                                         ("heun10", "heun", 10, 0), ("dopri5", "dopri5", 10, 1e-5)):
            x, nfe, secs = solve(solver, steps, tol or 1e-5)
            row = {"nfe": nfe, "seconds": round(secs, 2), "rel_error": _rel(x, ref)}
            if eval_ms:
                row["official_size_seconds_est"] = round(nfe * eval_ms / 1000, 1)
            out[name] = row
        threshold = max(match_rel, out["dopri5"]["rel_error"])
        matched = None
        for nfe in range(2, 13):
            for solver, per_step in (("euler", 1), ("midpoint", 2), ("heun", 2)):
                if nfe % per_step:
                    continue
                x, used, _ = solve(solver, nfe // per_step)
                if _rel(x, ref) <= threshold and matched is None:
                    matched = {"solver": solver, "steps": nfe // per_step, "nfe": used, "rel_error": _rel(x, ref)}
            if matched:
                break
        out["nfe_matched"] = matched
        out["official_nfe_matched"] = matched["nfe"] if matched else None
        out["match_threshold_rel"] = threshold
    finally:
        del model.velocity
    return out


def run(quick: bool = False) -> dict:
    """Run both parts on ``BENCH_THREADS`` threads; print a table; return the results (``bench``
    writes them into its JSON). ``quick``: 2 layers of the official width (per-layer cost is the
    same; the ms figures are then not the full model's)."""
    before = torch.get_num_threads()
    torch.set_num_threads(BENCH_THREADS)
    try:
        layers = 2 if quick else 10
        evals = bench_eval(layers=layers, rounds=2)
        per_layer = evals["batched_fp32_ms"] / layers
        solvers = bench_solvers(eval_ms=evals["batched_fp32_ms"] * 10 / layers)
    finally:
        torch.set_num_threads(before)
    result = {"threads": BENCH_THREADS, "cpu_capability": torch.backends.cpu.get_cpu_capability(), "eval": evals,
              "solvers": solvers, "guided_eval_speedup": evals["guided_eval_speedup"],
              "official_nfe_matched": solvers.get("official_nfe_matched"), "batched_fp32_ms_per_layer": round(per_layer, 1)}
    for k, v in evals.items():
        print(f"{k:32s} {v}")
    for k, v in solvers.items():
        print(f"{k:32s} {v}")
    return result
