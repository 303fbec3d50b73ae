"""The ``train`` command's options: their registration on a parser, the checks that refuse
options that cannot train (with the fix), the training device and a new run's model config."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from vssflow_core.train.paths import TRAIN_STATE_DIR


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Register the ``train`` options on ``p``."""
    p.add_argument("--data", required=True,
                   help="make-data output folder (manifest.jsonl + clips/), or `pack` folders (several joined by commas)")
    p.add_argument("--val", default=None, metavar="PACK",
                   help="packed held-out clips: log the EMA model's validation loss and keep the best EMA as best_ema.pt")
    p.add_argument("--val-every", type=int, default=500, help="steps between validation losses (with --val)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda); a GPU needs --data to be a pack folder")
    p.add_argument("--amp", choices=("none", "bf16"), default="none", help="bf16 autocast for the forward pass (GPU)")
    p.add_argument("--log-every", type=int, default=1, help="steps per log.jsonl row (the loss is their mean)")
    p.add_argument("--name", "--run", dest="run", required=True,
                   help="run name; state in STATE_DIR/NAME (resumes if present). Under torchrun spell it --name")
    p.add_argument("--state-dir", default=TRAIN_STATE_DIR, help=f"folder of runs (default {TRAIN_STATE_DIR}, or $VSSFLOW_TRAIN_STATE)")
    p.add_argument("--task", choices=("joint", "v2s", "tts"), default="joint", help="which clips to train on")
    p.add_argument("--preset", default="embedded", help="model preset for a new run (default embedded; only presets with the mel_patch codec train "
                        "on packs: embedded)")
    p.add_argument("--config", default=None, metavar="JSON", help="ModelConfig JSON file for a new run (overrides --preset)")
    p.add_argument("--init", default=None, metavar="MODEL",
                   help="a new run starts from this model file's weights (fine-tuning); its architecture must match "
                        "the run's config (--preset/--config), which decides everything else")
    p.add_argument("--batch-size", type=int, default=8, help="examples per step per process")
    p.add_argument("--lr", type=float, default=4e-4, help="peak learning rate")
    p.add_argument("--warmup", type=int, default=100, help="linear warm-up steps")
    p.add_argument("--cooldown", type=float, default=0.0, metavar="FRAC",
                   help="lower the lr linearly to 0 over the last FRAC of the budget: of --max-minutes (this "
                        "process's time) when set, else of --max-steps (0 = constant lr, the official schedule)")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--train-only", default="", metavar="PREFIXES",
                   help="comma list of weight-name prefixes to train (e.g. motion_proj); every other weight stays as "
                        "--init left it (per process, like --lr: a resume trains what its own --train-only names). Default: train "
                        "everything")
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay (warmed up as (1+n)/(10+n))")
    p.add_argument("--p-uncond", type=float, default=0.1, help="whole-batch all-condition dropout (guidance)")
    p.add_argument("--t-sampling", choices=("uniform", "logit-normal"), default="uniform",
                   help="distribution of the flow time t in training (uniform = official)")
    p.add_argument("--t-shift", type=float, default=1.0, metavar="S",
                   help="with uniform t: move each draw towards the noise as the sampler's time grid does "
                        "(flow.shift_time; 1 = official uniform t, 3 = a quarter of the draws below t = 0.1)")
    p.add_argument("--p-mix", type=float, default=0.2, help="joint task: chance to mix speech into a sound clip")
    p.add_argument("--max-steps", type=int, default=1_000_000, help="stop after this many steps in total")
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop after this many minutes of this process (0 = no limit)")
    p.add_argument("--ckpt-minutes", type=float, default=5.0, help="checkpoint interval in minutes")
    p.add_argument("--snapshot-steps", type=int, default=500,
                   help="also keep the EMA weights (fp16) every N steps as ema_stepNNNNNNN.pt, for equal-budget comparisons")
    p.add_argument("--refresh-steps", type=int, default=25, help="re-read the manifest every N steps (growing data)")
    p.add_argument("--seed", type=int, default=0, help="run seed (data order, noise)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    p.add_argument("--export", default=None, metavar="PATH",
                   help="write the run's EMA weights (fp16) to PATH as a model file and exit")
    p.add_argument("--export-best", action="store_true",
                   help="with --export: the EMA weights of the best validation loss (best_ema.pt) instead of the last")


def check_options(args) -> None:
    """Refuse step counts, rates and schedules that cannot train, before anything is built."""
    from vssflow_core.errors import VSSFlowError

    for flag, value in (("--batch-size", args.batch_size), ("--log-every", args.log_every),
                        ("--val-every", args.val_every), ("--max-steps", args.max_steps)):
        if value < 1:
            raise VSSFlowError(f"{flag} {value}: must be at least 1")
    if not (math.isfinite(args.lr) and args.lr > 0):
        why = "; at 0 the run would spend its time and change nothing" if args.lr == 0 else ""
        raise VSSFlowError(f"--lr {args.lr}: the peak learning rate is a number > 0 (e.g. 4e-4){why}")
    if not 0 <= args.ema < 1:
        raise VSSFlowError(f"--ema {args.ema}: a decay in [0, 1) (e.g. 0.999)")
    if not 0.0 <= args.cooldown < 1.0:
        raise VSSFlowError(f"--cooldown {args.cooldown}: a fraction of the budget in [0, 1), e.g. 0.3")
    if not (math.isfinite(args.t_shift) and args.t_shift > 0):
        raise VSSFlowError(f"--t-shift {args.t_shift}: a number > 0 (1 = uniform t, 3 = towards the noise)")
    if args.t_shift != 1.0 and args.t_sampling != "uniform":
        raise VSSFlowError(f"--t-shift {args.t_shift} shifts uniform draws; drop it or use --t-sampling uniform")


def check_device(args) -> torch.device:
    """The training device, refused with the fix when it cannot work."""
    from vssflow_core.errors import VSSFlowError
    from vssflow_core.train.pack import is_packed

    try:
        device = torch.device(args.device)
    except RuntimeError as e:
        raise VSSFlowError(f"--device {args.device!r}: {e}; use cpu or cuda") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VSSFlowError(f"--device {args.device}: this torch sees no CUDA GPU; use --device cpu")
    if device.type != "cpu" and not is_packed(args.data):
        raise VSSFlowError(f"--device {device}: train from a pack folder (`python -m vssflow_core pack --data "
                           f"{args.data} --out PACK`); a clip folder is read on the CPU")
    return device


def new_run_config(args):
    """The ModelConfig of a new run (``--config`` file or ``--preset``); only mel_patch models train here."""
    from vssflow_core.config import ModelConfig, preset
    from vssflow_core.errors import VSSFlowError

    if args.config:
        try:
            config = ModelConfig.from_json(Path(args.config).read_text())
        except OSError as e:
            raise VSSFlowError(f"--config {args.config}: cannot read it ({e.strerror}); give a ModelConfig JSON file") from None
        except (ValueError, TypeError, KeyError) as e:
            raise VSSFlowError(f"--config {args.config}: not a ModelConfig JSON ({e})") from None
    else:
        config = preset(args.preset)
    if config.codec.kind != "mel_patch":
        raise VSSFlowError(f"{'--config ' + args.config if args.config else '--preset ' + args.preset}: its codec is "
                           f"{config.codec.kind!r}; training here needs the 'mel_patch' codec (e.g. --preset embedded), as "
                           "packs hold log-mel spectrograms")
    return config


def with_data_placement(config, data):
    """``config`` with the phoneme placement of a pack folder (a new run learns the data's placement)."""
    import dataclasses

    from vssflow_core.train.pack import is_packed, pack_folders

    if not is_packed(data):
        return config
    placement = json.loads((pack_folders(data)[0] / "pack.json").read_text()).get("phone_placement", "uniform")
    return dataclasses.replace(config, phone_placement=placement)
