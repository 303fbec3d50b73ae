"""``python -m vssflow_core bench``: the speed and memory table (issue 6).

Parts, each imported only when it runs:
* ``end_to_end`` (this package): the embedded default on 720p 30 fps clips, decode -> mux;
* ``official`` (``bench.official_dit``): the official-size DiT on CPU (batched CFG, bf16, solvers);
* ``decode`` (``bench.decode``): video decoding throughput and memory;
* ``gpu`` (``bench.gpu``): the official layout on a CUDA GPU (precisions, compile, solvers, memory,
  batch throughput, front-end and codec); skipped at once without CUDA.

The JSON has each part's results under its name plus the headline keys at the top level:
``rtf_10s``, ``peak_rss_mb_10min`` (end to end), ``guided_eval_speedup``, ``official_nfe_matched``
(official DiT), ``total_10s_s`` (GPU), when those parts ran.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import json

PARTS = {"end_to_end": "vssflow_core.bench.end_to_end", "official": "vssflow_core.bench.official_dit",
         "decode": "vssflow_core.bench.decode", "gpu": "vssflow_core.bench.gpu"}
HEADLINE_KEYS = ("rtf_10s", "peak_rss_mb_10min", "guided_eval_speedup", "official_nfe_matched", "total_10s_s")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m vssflow_core bench``."""
    parser.add_argument("--json", default=None, help="write all results to this JSON file (must not exist)")
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS), help="which parts to run")
    parser.add_argument("--quick", action="store_true", help="short clips only (10 s end to end, 60 s decode)")
    parser.add_argument("--model", default="embedded", help="model for the end-to-end part")
    parser.add_argument("--durations", type=float, nargs="+", default=None,
                        help="end-to-end clip lengths in s (default 10 60 600; --quick: 10)")
    parser.add_argument("--steps", type=int, default=None, help="end-to-end solver steps (default: the model's)")
    parser.add_argument("--threads", type=int, default=0, help="end-to-end torch threads (0 = torch's default)")


def _call(run, **kwargs):
    """Call a part's ``run`` with the keyword arguments it accepts."""
    params = inspect.signature(run).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return run(**kwargs)
    return run(**{k: v for k, v in kwargs.items() if k in params})


def run(args) -> int:
    """Run the chosen parts (a part whose imports fail is skipped and says why), print the headline,
    write ``--json`` (refused before any work if it exists). Returns the exit code, 0."""
    from vssflow_core.train.report import check_json_target, write_json_report

    if args.json:
        check_json_target(args.json)  # before minutes of measuring, not after
    if "end_to_end" in args.parts:
        from vssflow_core.pipeline import resolve_model_path

        resolve_model_path(args.model)  # a missing model is bad input (exit 2), not a failed part
    results: dict = {}
    for part in args.parts:
        try:
            module = importlib.import_module(PARTS[part])
        except ImportError as e:
            print(f"bench: part '{part}' unavailable ({e}); skipped")
            results[part] = {"skipped": str(e)}
            continue
        print(f"== {part}", flush=True)
        if part == "end_to_end":
            durations = tuple(args.durations or ((10,) if args.quick else (10, 60, 600)))
            out = module.run(durations_s=durations, model=args.model, steps=args.steps, threads=args.threads)
        elif part == "decode":
            out = _call(module.run, durations_s=(60,) if args.quick else (60, 600))
        else:
            out = _call(module.run, quick=args.quick)
        results[part] = out
        results.update({k: v for k, v in (out or {}).items() if not isinstance(v, (dict, list))
                        and k in HEADLINE_KEYS})
    headline = {k: results[k] for k in HEADLINE_KEYS if k in results}
    print("== headline", json.dumps(headline))
    if args.json:
        write_json_report(args.json, results, default=str)
    return 0
