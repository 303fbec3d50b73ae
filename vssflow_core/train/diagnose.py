"""How much does a trained model lean on each condition? (``python -m vssflow_core diagnose``)

For packed held-out clips, at a few flow times t, the model's estimate of the clean latent
``x1_hat = x_t + (1 - t) v(x_t, t, c)`` is compared with the true latent (MSE per element). The
estimate is made with all conditions, then with one condition group left out at a time, then with
none (the guidance branch). A model that uses a condition gets clearly worse without it; a model
that ignores one scores the same. ``mean_baseline`` is the MSE of predicting the batch mean, the
best that any estimate ignoring the clip can do; at t = 0 (pure noise) only the conditions can beat it.
A second table splits the error by the latent's principal components: where it exceeds the data
variance, the estimate keeps noise in those directions.

    python -m vssflow_core diagnose --model M.safetensors --val VALPACK [--times 0 0.05 0.3] [--json OUT]
"""
from __future__ import annotations

import argparse

import torch

from vssflow_core.train.report import check_json_target, write_json_report

DROPS = {  # name: feature keys left out (None = the all-zero guidance input)
    "all": (),
    "no_phones": ("phone_id",),
    "no_lips": ("lip_feat",),
    "no_lips_phones": ("lip_feat", "phone_id"),
    "no_motion": ("motion_feat",),
    "no_event": ("event_feat",),
    "no_appearance": ("appearance_feat",),
    "unconditional": None,
}


def condition_reliance(model, codec, clips, times=(0.0, 0.05, 0.3), chunk: int = 32, seed: int = 1234) -> dict:
    """``{kind: {"t=T": {drop_name: mse, ..., "mean_baseline": mse}}}`` over the packed ``clips``.

    ``model``: a VSSFlow with the ``embedded`` front-end keys; ``clips``: a ``PackedClips``; times in
    [0, 1) (0 = noise). Noise is fixed by ``seed``; every clip is used at every t.
    """
    from vssflow_core.train.pack import KINDS

    keys, x1_all, x0_all = _latents_and_noise(model, codec, clips, seed)
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
                if dropped and not set(dropped) & set(keys):
                    continue  # a condition this model does not have
                row[name] = _estimate_mse(model, clips, idx, x0, x1, float(t), keys, dropped, chunk)
            rows[f"t={t:g}"] = {k: round(v, 4) for k, v in row.items()}
        out[kind] = {"clips": len(idx), **rows}
    return out


BANDS = ((0, 32), (32, 128), (128, 256), (256, None))  # principal-component ranges of the latent


@torch.no_grad()
def error_by_component(model, codec, clips, times=(0.0, 0.05, 0.3, 0.7), bands=BANDS, chunk: int = 32,
                       seed: int = 1234) -> dict:
    """Where the clean-latent estimate goes wrong: its error in bands of the latent's principal
    components (PCA of the held-out latents' frames, largest variance first), against each band's
    data variance. ``{"t=T": {"A-B": {"error": mse, "data_var": var}}}``, per component.

    An error above the band's data variance is worse than predicting the band's mean: the estimate
    keeps noise there (a velocity model narrower than its latent cannot cancel noise in every
    direction). All conditions given; noise fixed by ``seed``.
    """
    keys, x1, x0 = _latents_and_noise(model, codec, clips, seed)
    frames = x1.transpose(1, 2).reshape(-1, x1.shape[1]).double()  # [N * L, Ca]
    variance, basis = torch.linalg.eigh(torch.cov(frames.T))
    variance, basis = variance.flip(0), basis.flip(1).float()  # largest first
    every_clip = torch.arange(len(x1))
    out = {}
    for t in times:
        sq = torch.zeros(x1.shape[1], dtype=torch.float64)
        for err in _estimate_errors(model, clips, every_clip, x0, x1, float(t), keys, (), chunk):
            sq += ((err.transpose(1, 2) @ basis) ** 2).sum((0, 1)).double()
        per_component = sq / frames.shape[0]
        out[f"t={t:g}"] = {f"{lo}-{hi or x1.shape[1]}": {"error": round(float(per_component[lo:hi].mean()), 4),
                                                           "data_var": round(float(variance[lo:hi].mean()), 4)}
                           for lo, hi in bands if lo < x1.shape[1]}
    return out


def _latents_and_noise(model, codec, clips, seed: int):
    """(feature keys the model takes, clean latents x1 [N, Ca, L], noise x0 [N, Ca, L] fixed by ``seed``)."""
    from vssflow_core.train.data import FEATURE_RATES

    keys = [k for k in FEATURE_RATES if k in {c.feature_key for c in model.config.conditions}]
    x1 = codec.mel_to_latent(clips.log_mel)[..., :model.config.latent_length]
    return keys, x1, torch.randn(x1.shape, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def _estimate_errors(model, clips, idx, x0, x1, t: float, keys, dropped, chunk: int):
    """Yield ``x1_hat - x1`` [n, Ca, L] chunk by chunk for the clips ``idx`` (``x0``, ``x1``: their
    noise and latents, in ``idx`` order), with ``dropped`` keys absent (None: all)."""
    for i in range(0, len(idx), chunk):
        sl = slice(i, i + chunk)
        n = len(idx[sl])
        if dropped is None:
            cond = model.encode_conditions(model.config.latent_length, batch_size=n, unconditional=True)
        else:
            feats = {k: (None if k in dropped or getattr(clips, k) is None else getattr(clips, k)[idx[sl]])
                     for k in keys}
            cond = model.encode_conditions(model.config.latent_length, batch_size=n, **feats)
        x_t = (1 - t) * x0[sl] + t * x1[sl]
        yield x_t + (1 - t) * model.velocity(x_t, torch.full((n,), t), cond) - x1[sl]


def _estimate_mse(model, clips, idx, x0, x1, t: float, keys, dropped, chunk: int) -> float:
    """Mean MSE of ``x1_hat`` against ``x1`` [n, Ca, L] with ``dropped`` keys absent (None: all)."""
    total = sum(float((err ** 2).mean()) * len(err)
                for err in _estimate_errors(model, clips, idx, x0, x1, t, keys, dropped, chunk))
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
    if args.json:
        check_json_target(args.json)
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
    components = error_by_component(bundle.model, bundle.codec, clips, args.times)
    print("\nerror of the estimate per principal component of the latent (error / data variance):")
    for t_name, bands in components.items():
        print(f"{t_name:6} " + "  ".join(f"{band}: {v['error']:.4f} / {v['data_var']:.4f}" for band, v in bands.items()))
    if args.json:
        write_json_report(args.json, {"model": str(args.model), "val": str(args.val), "table": table,
                                      "by_component": components})
    return 0

