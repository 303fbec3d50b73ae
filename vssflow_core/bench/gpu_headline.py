"""The headline of ``bench.gpu``: the time to make 10 s of audio (features + sampling + decode, s)
from the items' results, against the target and the anchor, and the solver it counts."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vssflow_core.bench.gpu import Settings


TARGET_S = 1.0  # issue 6: official layout, 10 s, one H100, feature extraction included
ANCHOR = "MMAudio-S-16k: 8 s in 1.23 s on an H100 (6.5x real time)"


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
