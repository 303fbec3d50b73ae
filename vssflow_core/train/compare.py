"""``python -m vssflow_core eval-compare A.json [B.json]``: how sure are eval's numbers?

Eval scores a few dozen clips, so its metrics move by several points between noise seeds and
clip sets. This command reads the per-clip records that ``eval --json`` writes (``clips``) and
resamples the clips (a bootstrap, stratified by kind so that every resample keeps the set's
speech / sound / mixed counts):

* one file: each metric with its 95 % percentile interval;
* two files scored on the same clips (same ``--seed`` and ``--n``): each metric of both, B's
  change relative to A, ``(B - A) / |A|``, with its 95 % interval from the *paired* bootstrap (the
  same resampled clips for both), and a verdict: ``better`` or ``worse`` when the interval
  excludes 0, ``same within X %`` when it lies inside +-X % (``--margin``, default 2 %, the
  solver target of issue 6), ``no worse than X %`` when only its end on the worse side is inside
  (B may be better, but is not more than X % worse: non-inferiority), else ``not resolved`` (more
  clips needed).

An eval run in chunks (``eval --start S --n E`` for consecutive ranges, so that a long run can stop
and resume) is read as one: ``eval-compare a_000.json,a_040.json b_000.json,b_040.json``.

Metrics and their direction: ``wer``, ``cer``, ``fd`` (lower is better); ``lip_offset_ok_frac``,
``onset_f1``, ``class_acc``, ``speaker_sim``, ``speaker_id_acc`` (higher is better). FD resamples the real clips with the generated ones.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from vssflow_core.errors import VSSFlowError
from vssflow_core.train import metrics as M
from vssflow_core.train.report import check_json_target, write_json_report

LOWER_IS_BETTER = {"wer": True, "cer": True, "lip_offset_ok_frac": False, "onset_f1": False, "class_acc": False,
                   "fd": True, "speaker_sim": False, "speaker_id_acc": False}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Register the ``eval-compare`` options on ``p``."""
    p.add_argument("files", nargs="+", metavar="EVAL_JSON",
                   help="one or two `eval --json` files; an eval run in chunks (`eval --start`) is given as "
                        "its files joined by commas, A1.json,A2.json")
    p.add_argument("--resamples", type=int, default=400,
                   help="bootstrap resamples (each FD costs about 0.2 s on 512-d embeddings)")
    p.add_argument("--margin", type=float, default=2.0, help="percent: 'same within' when the interval is inside +-this")
    p.add_argument("--seed", type=int, default=0, help="seed of the resampling")
    p.add_argument("--json", default=None, help="write the table here (JSON)")


def metrics_of(records: list[dict]) -> dict[str, float]:
    """Every metric that ``records`` (eval's per-clip ``clips``) allow, computed as eval computes it."""
    out = {}
    wer = [r["wer_counts"] for r in records if "wer_counts" in r]
    if wer:
        out["wer"] = M.rate_from_counts(wer)
        out["cer"] = M.rate_from_counts([r["cer_counts"] for r in records if "cer_counts" in r])
    lips = [abs(r["lip_offset"]) <= 1 for r in records if "lip_offset" in r]
    if lips:
        out["lip_offset_ok_frac"] = float(np.mean(lips))
    onsets = [r["onset_counts"] for r in records if "onset_counts" in r]
    if onsets:
        out["onset_f1"] = M.f1_from_counts(*np.sum(onsets, axis=0).tolist())
    classes = [r["class_ok"] for r in records if "class_ok" in r]
    if classes:
        out["class_acc"] = float(np.mean(classes))
    speaker = [r["speaker_sim"] for r in records if "speaker_sim" in r]
    if speaker:
        out["speaker_sim"] = float(np.mean(speaker))
    speaker_ids = [r["speaker_id_ok"] for r in records if "speaker_id_ok" in r]
    if speaker_ids:
        out["speaker_id_acc"] = float(np.mean(speaker_ids))
    emb = [r for r in records if "emb" in r]
    if len(emb) > 1:
        out["fd"] = M.frechet_distance(np.array([r["emb"] for r in emb]), np.array([r["real_emb"] for r in emb]))
    return out


def load_records(paths: str) -> list[dict]:
    """The per-clip records of an ``eval --json`` file, or of several joined by commas (the chunks of
    one eval run with ``--start``); clear errors for a wrong or old file or a clip scored twice."""
    records, seen = [], {}
    for path in [x for x in paths.split(",") if x]:
        for r in _file_records(path):
            if r["id"] in seen:
                raise VSSFlowError(f"eval-compare: clip {r['id']} is in both {seen[r['id']]} and {path}; join the "
                                   "chunks of one run only (eval --start N splits a run without overlap)")
            seen[r["id"]] = path
            records.append(r)
    return records


def _file_records(path: str) -> list[dict]:
    p = Path(path)
    if not p.is_file():
        raise VSSFlowError(f"eval-compare: {p} does not exist; write it with `python -m vssflow_core eval ... --json {p}`")
    try:
        data = json.loads(p.read_text())
    except ValueError as e:
        raise VSSFlowError(f"eval-compare: {p} is not JSON ({e}); pass a file written by `eval --json`") from None
    if not isinstance(data, dict) or not data.get("clips"):
        raise VSSFlowError(f"eval-compare: {p} has no per-clip records ('clips'); it was written by an older eval, "
                           "run the eval again to write them")
    return data["clips"]


def _resample_indices(kinds: list[str], rng: np.random.Generator) -> np.ndarray:
    """Indices of one stratified bootstrap resample: each kind's clips drawn with replacement, as many as it has."""
    kinds = np.asarray(kinds)
    return np.concatenate([rng.choice(np.flatnonzero(kinds == k), size=int((kinds == k).sum()))
                           for k in sorted(set(kinds.tolist()))])


def _interval(values: list[float]) -> tuple[float, float]:
    v = np.asarray([x for x in values if math.isfinite(x)])
    return (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) if len(v) else (float("nan"), float("nan"))


def verdict(lo: float, hi: float, lower_is_better: bool, margin_pct: float) -> str:
    """B's verdict from the 95 % interval [lo, hi] of its relative change (fractions, e.g. -0.03)."""
    margin = margin_pct / 100.0
    better, worse = (hi < 0, lo > 0) if lower_is_better else (lo > 0, hi < 0)
    worst = hi if lower_is_better else -lo  # the interval's end on the worse side
    if better or worse:
        return "better" if better else "worse"
    if -margin <= lo and hi <= margin:
        return f"same within {margin_pct:g} %"
    return f"no worse than {margin_pct:g} %" if worst <= margin else "not resolved"


def compare(a: list[dict], b: list[dict] | None = None, resamples: int = 400, margin_pct: float = 2.0,
            seed: int = 0) -> dict[str, dict]:
    """Per metric: ``a`` (value), ``a_ci`` (95 % interval); with ``b`` also ``b``, ``rel_change``
    ((b - a) / |a|), ``rel_ci`` (paired 95 % interval of it) and ``verdict``.

    ``a`` and ``b`` are eval's per-clip records; ``b`` must hold the same clips (ids) as ``a``.
    """
    if b is not None:
        by_id = {r["id"]: r for r in b}
        if set(by_id) != {r["id"] for r in a}:
            raise VSSFlowError("eval-compare: the two files scored different clips; run both evals with the same "
                               "--seed, --n and --kinds")
        b = [by_id[r["id"]] for r in a]
    rng = np.random.default_rng(seed)
    base_a = metrics_of(a)
    base_b = metrics_of(b) if b is not None else {}
    names = [m for m in LOWER_IS_BETTER if m in base_a and (b is None or m in base_b)]
    draws = {m: [] for m in names}
    kinds = [r["kind"] for r in a]
    for _ in range(resamples):
        idx = _resample_indices(kinds, rng)
        ma = metrics_of([a[i] for i in idx])
        mb = metrics_of([b[i] for i in idx]) if b is not None else {}
        for m in names:
            if b is None:
                draws[m].append(ma.get(m, float("nan")))
            else:
                va, vb = ma.get(m, float("nan")), mb.get(m, float("nan"))
                draws[m].append((vb - va) / abs(va) if va else float("nan"))
    table = {}
    for m in names:
        # resamples where the metric is undefined (e.g. A's value 0 for a relative change) are left out
        row = {"a": base_a[m], "finite_draws": int(np.isfinite(draws[m]).sum())}
        if b is None:
            row["a_ci"] = _interval(draws[m])
        else:
            lo, hi = _interval(draws[m])
            change = (base_b[m] - base_a[m]) / abs(base_a[m]) if base_a[m] else float("nan")
            row.update(b=base_b[m], rel_change=change, rel_ci=(lo, hi),
                       verdict=verdict(lo, hi, LOWER_IS_BETTER[m], margin_pct))
        table[m] = row
    return table


def run(args) -> int:
    """Print the table (and write ``--json``)."""
    if len(args.files) > 2:
        raise VSSFlowError("eval-compare: give one eval JSON (intervals) or two (A vs B)")
    if args.resamples < 20:
        raise VSSFlowError(f"--resamples {args.resamples}: use at least 20 (a 95 % interval needs many)")
    if not (args.margin >= 0):
        raise VSSFlowError(f"--margin {args.margin}: give a percentage >= 0 (e.g. 2 for +-2 %)")
    if args.json:
        check_json_target(args.json, replace=True)  # a rerun updates its report
    records = [load_records(f) for f in args.files]
    table = compare(records[0], records[1] if len(records) == 2 else None, args.resamples, args.margin, args.seed)
    thin = [m for m, row in table.items() if row["finite_draws"] < 0.9 * args.resamples]
    if thin:
        print(f"note: {', '.join(thin)}: the metric was undefined in more than 10 % of the resamples (too few "
              "clips of that kind); their intervals rest on the rest", file=sys.stderr)
    if len(records) == 1:
        print(f"{'metric':20}{'value':>10}{'95 % interval':>22}   ({len(records[0])} clips, {args.resamples} resamples)")
        for m, row in table.items():
            interval = f"[{row['a_ci'][0]:.3f}, {row['a_ci'][1]:.3f}]"
            print(f"{m:20}{row['a']:>10.3f}{interval:>22}")
    else:
        print(f"{'metric':20}{'A':>10}{'B':>10}{'B vs A':>10}{'95 % interval':>22}   verdict for B "
              f"({len(records[0])} clips, {args.resamples} paired resamples)")
        for m, row in table.items():
            interval = f"[{100 * row['rel_ci'][0]:+.1f}%, {100 * row['rel_ci'][1]:+.1f}%]"
            print(f"{m:20}{row['a']:>10.3f}{row['b']:>10.3f}{100 * row['rel_change']:>+9.1f}%{interval:>22}   {row['verdict']}")
    if args.json:
        write_json_report(args.json, {"files": args.files, "resamples": args.resamples, "table": table}, replace=True)
    return 0
