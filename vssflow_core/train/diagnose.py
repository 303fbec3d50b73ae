"""How much does a trained model lean on each condition? (``python -m vssflow_core diagnose``)

For packed held-out clips, at a few flow times t, the model's estimate of the clean latent
``x1_hat = x_t + (1 - t) v(x_t, t, c)`` is compared with the true latent (MSE per element). The
estimate is made with all conditions, then with one condition group left out at a time, then with
none (the guidance branch). A model that uses a condition gets clearly worse without it; a model
that ignores one scores the same. ``mean_baseline`` is the MSE of predicting the batch mean, the
best that any estimate ignoring the clip can do; at t = 0 (pure noise) only the conditions can beat it.

    python -m vssflow_core diagnose --model M.safetensors --val VALPACK [--times 0 0.05 0.3] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

DROPS = {  # name: feature keys left out (None = the all-zero guidance input)
    "all": (),
    "no_phones": ("phone_id",),
    "no_lips": ("lip_feat",),
    "no_lips_phones": ("lip_feat", "phone_id"),
    "no_motion": ("motion_feat",),
    "no_appearance": ("appearance_feat",),
    "unconditional": None,
}


def condition_reliance(model, codec, clips, times=(0.0, 0.05, 0.3), chunk: int = 32, seed: int = 1234) -> dict:
    """``{kind: {"t=T": {drop_name: mse, ..., "mean_baseline": mse}}}`` over the packed ``clips``.

    ``model``: a VSSFlow with the ``embedded`` front-end keys; ``clips``: a ``PackedClips``; times in
    [0, 1) (0 = noise). Noise is fixed by ``seed``; every clip is used at every t.
    """
    from vssflow_core.train.data import FEATURE_RATES
    from vssflow_core.train.pack import KINDS

    length = model.config.latent_length
    wanted = {c.feature_key for c in model.config.conditions}
    keys = [k for k in FEATURE_RATES if k in wanted]
    x1_all = codec.mel_to_latent(clips.log_mel)[..., :length]  # [N, Ca, L]
    x0_all = torch.randn(x1_all.shape, generator=torch.Generator().manual_seed(seed))
    out = {}
    for kind_id, kind in enumerate(KINDS):
        idx = torch.nonzero(clips.kind == kind_id).flatten()
        if len(idx) == 0:
            continue
        x1, x0 = x1_all[idx], x0_all[idx]
        rows = {}
        for t in times:
            row = {"mean_baseline": float(((x1 - x1.mean(0, keepdim=True)) ** 2).mean())}
            for name, dropped in DROPS.items():
                row[name] = _estimate_mse(model, clips, idx, x0, x1, float(t), keys, dropped, chunk)
            rows[f"t={t:g}"] = {k: round(v, 4) for k, v in row.items()}
        out[kind] = {"clips": len(idx), **rows}
    return out


@torch.no_grad()
def _estimate_mse(model, clips, idx, x0, x1, t: float, keys, dropped, chunk: int) -> float:
    """Mean MSE of ``x1_hat`` against ``x1`` [n, Ca, L] with ``dropped`` keys absent (None: all)."""
    total = 0.0
    for i in range(0, len(idx), chunk):
        sl = slice(i, i + chunk)
        n = len(idx[sl])
        if dropped is None:
            cond = model.encode_conditions(model.config.latent_length, batch_size=n, unconditional=True)
        else:
            feats = {k: (None if k in dropped else getattr(clips, k)[idx[sl]]) for k in keys}
            cond = model.encode_conditions(model.config.latent_length, batch_size=n, **feats)
        tt = torch.full((n,), t)
        x_t = (1 - t) * x0[sl] + t * x1[sl]
        x1_hat = x_t + (1 - t) * model.velocity(x_t, tt, cond)
        total += float(((x1_hat - x1[sl]) ** 2).mean()) * n
    return total / len(idx)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Register the ``diagnose`` options on ``p``."""
    p.add_argument("--model", required=True, help="'embedded' or a model file")
    p.add_argument("--val", required=True, metavar="PACK", help="packed held-out clips (`python -m vssflow_core pack`)")
    p.add_argument("--times", type=float, nargs="+", default=[0.0, 0.05, 0.3], help="flow times t (0 = noise)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the table as JSON (must not exist)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")


def run(args) -> int:
    """Print (and optionally write) the condition-reliance table. Returns an exit status."""
    from vssflow_core.errors import VSSFlowError
    from vssflow_core.pipeline import load_bundle
    from vssflow_core.train.pack import PackedClips

    if args.threads:
        torch.set_num_threads(args.threads)
    if any(not 0.0 <= t < 1.0 for t in args.times):
        raise VSSFlowError(f"--times {args.times}: each t must be in [0, 1) (0 = noise, 1 = data)")
    if args.json and Path(args.json).exists():
        raise VSSFlowError(f"--json {args.json} already exists; choose another name (nothing is overwritten)")
    bundle = load_bundle(args.model, device="cpu", dtype="fp32")
    if bundle.config.codec.kind != "mel_patch":
        raise VSSFlowError(f"diagnose needs a model with the embedded mel_patch codec; {args.model} uses "
                           f"{bundle.config.codec.kind!r}")
    clips = PackedClips(args.val)
    clips.require_placement(bundle.config.phone_placement,
                            f"pack the held-out clips with --phone-placement {bundle.config.phone_placement}")
    table = condition_reliance(bundle.model, bundle.codec, clips, args.times)
    names = ["mean_baseline", *DROPS]
    print("kind     t      " + " ".join(f"{n:>15}" for n in names))
    for kind, rows in table.items():
        for t_name, row in rows.items():
            if t_name == "clips":
                continue
            print(f"{kind:8} {t_name:6} " + " ".join(f"{row[n]:15.4f}" for n in names))
    if args.json:
        tmp = Path(args.json).with_name(Path(args.json).name + ".tmp")
        tmp.write_text(json.dumps({"model": str(args.model), "val": str(args.val), "table": table}, indent=1))
        tmp.rename(args.json)
    return 0

