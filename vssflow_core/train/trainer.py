"""Resumable flow-matching training of a VSSFlow model on a synthetic data folder.

``python -m vssflow_core train --data DIR --name NAME [--task joint|v2s|tts]`` (or
``python -m vssflow_core.train.trainer ...``). State lives in ``STATE_DIR/NAME/``: ``last.pt``
(model, EMA, optimiser, step; written atomically every ``--ckpt-minutes``), ``log.jsonl`` (one JSON
row per logged step) and ``args.json``. Re-running the same command resumes. Data parallel over
``torchrun --nproc_per_node N`` with the gloo backend (gradients averaged by all-reduce).

Recipe (official where it has one): x_t = (1 - t) x0 + t x1, t ~ U(0, 1), MSE on the velocity,
whole-batch condition dropout (p 0.1, all conditions) for guidance plus per-key dropout of lips /
motion / speaker / appearance so the model also works without them, AdamW with linear warm-up,
then constant. Beyond the official recipe: gradient clipping, EMA weights (exported), and
``--t-sampling logit-normal`` as an option. Uniform t is the default because the sampler starts
at t = 0: a model trained with logit-normal t (1.4 % of draws below t = 0.1) predicted x1 worse
from pure noise than the batch mean did (MSE 1.01 vs 0.85 at t = 0, 0.37 at t = 0.02).
``--t-shift S`` goes the other way: uniform draws moved towards the noise by the sampler's own
time shift (``flow.shift_time``), where the shipped sampler spends most of its evaluations.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

from vssflow_core.train.paths import TRAIN_STATE_DIR
from vssflow_core.train.run_folder import (atomic_save, check_resume, kept_best_loss, load_state_file, lock_run,
                                           read_args, write_args)

P_PER_KEY = {"lip_feat": 0.3, "motion_feat": 0.2, "ref_audio_ebd": 0.3, "appearance_feat": 0.1}


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


def lr_at(step: int, peak: float, warmup: int, left: float = 1.0, cooldown: float = 0.0) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then constant (official schedule); with
    ``cooldown`` > 0, a linear fall to 0 once the fraction ``left`` of the budget still to run
    (time or steps, 1 at the start, 0 at the end) is below ``cooldown``."""
    fall = min(1.0, max(0.0, left) / cooldown) if cooldown > 0 else 1.0
    return peak * min(1.0, (step + 1) / max(1, warmup)) * fall


def budget_left(step: int, elapsed_s: float, max_steps: int, max_minutes: float) -> float:
    """Fraction of the run's budget still to run: of ``max_minutes`` (seconds ``elapsed_s`` of this
    process) when it is set, else of ``max_steps`` (steps in total)."""
    if max_minutes:
        return 1.0 - elapsed_s / (max_minutes * 60)
    return 1.0 - step / max(1, max_steps)


class Run:
    """Model, EMA copy, optimiser and counters of one training run (the resumable state)."""

    def __init__(self, config, lr: float, weight_decay: float, device="cpu"):
        import copy

        from vssflow_core.model import VSSFlow

        self.config = config
        self.model = VSSFlow(config).to(device).train()
        self.ema = copy.deepcopy(self.model).eval()
        for q in self.ema.parameters():
            q.requires_grad_(False)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=weight_decay,
                                     fused=torch.device(device).type == "cuda")
        self.step = 0
        self.train_seconds = 0.0
        self.examples = 0
        self.init = ""  # where the weights started (``--init``: file name and sha256), "" = random

    def state(self) -> dict:
        """Everything a resume needs: weights, EMA, optimiser, counters, config and the --init file."""
        return {"model": self.model.state_dict(), "ema": self.ema.state_dict(), "opt": self.opt.state_dict(),
                "step": self.step, "train_seconds": self.train_seconds, "examples": self.examples,
                "config": self.config.to_json(), "init": self.init}

    def save(self, path: Path) -> None:
        """Atomic checkpoint write (temp file + rename)."""
        atomic_save(self.state(), path)

    @classmethod
    def load(cls, path: Path, lr: float, weight_decay: float, device="cpu") -> "Run":
        """Resume from a checkpoint of :meth:`state`; this run's ``weight_decay`` replaces the saved one
        (``lr`` is set every step by the schedule)."""
        from vssflow_core.config import ModelConfig

        st = load_state_file(path, device)
        run = cls(ModelConfig.from_json(st["config"]), lr, weight_decay, device)
        run.model.load_state_dict(st["model"])
        run.ema.load_state_dict(st["ema"])
        run.opt.load_state_dict(st["opt"])
        for group in run.opt.param_groups:
            group["weight_decay"] = weight_decay
        run.step, run.train_seconds, run.examples = int(st["step"]), float(st["train_seconds"]), int(st["examples"])
        run.init = str(st.get("init", ""))
        return run

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        """EMA of the weights with ``decay``, warmed up as min(decay, (1 + step) / (10 + step))."""
        d = min(decay, (1 + self.step) / (10 + self.step))
        torch._foreach_lerp_(list(self.ema.parameters()), [p.detach() for p in self.model.parameters()], 1 - d)


def init_weights(run: Run, model_path: str | os.PathLike) -> None:
    """Copy a model file's weights into a new run's model and EMA (fine-tuning start).

    When the file and the run predict different things (``ModelConfig.prediction``), ``proj_out``
    is zeroed. Raises ``VSSFlowError`` naming the weights whose shapes differ from the run's config."""
    from vssflow_core.errors import VSSFlowError
    from vssflow_core.model.checkpoint import load_model_file

    if not str(model_path).endswith(".safetensors"):
        raise VSSFlowError(f"--init {model_path}: give a model file (*.safetensors). A training run's last.pt becomes one "
                           "with `python -m vssflow_core train --name RUN --export FILE.safetensors`; an official "
                           ".ckpt with `python -m vssflow_core convert`")
    source, _, _ = load_model_file(model_path)
    theirs, ours = source.state_dict(), run.model.state_dict()
    bad = [f"{k}: file {list(theirs[k].shape) if k in theirs else 'missing'} vs run {list(v.shape)}"
           for k, v in ours.items() if k not in theirs or theirs[k].shape != v.shape]
    extra = sorted(k for k in theirs if k not in ours)
    bad += [f"{k}: in the file, not in the run" for k in extra]
    if bad:
        raise VSSFlowError(f"--init {model_path}: {len(bad)} weight(s) do not fit the run's config "
                           f"({'; '.join(bad[:3])}); pick the preset or --config the file was trained with")
    with torch.no_grad():
        for name, tensor in ours.items():
            tensor.copy_(theirs[name])
        if source.config.prediction != run.config.prediction:
            # the output layer's meaning changes (velocity <-> clean latent): it restarts at zero, as
            # a new DiT's final layer does, and the rest of the network keeps what it learned
            run.model.vaflow.proj_out.weight.zero_()
            print(f"train: --init {Path(model_path).name} predicts {source.config.prediction!r}, this run "
                  f"{run.config.prediction!r}: proj_out starts at zero", file=sys.stderr)
    run.ema.load_state_dict(run.model.state_dict())
    digest = hashlib.sha256(Path(model_path).read_bytes()).hexdigest()
    run.init = f"{Path(model_path).name} (sha256 {digest[:16]})"


def export_weights(run_dir: Path, out_path: str | os.PathLike, dtype=torch.float16, overwrite: bool = False,
                   best: bool = False) -> Path:
    """Write the EMA weights of ``run_dir/last.pt`` (``best``: of ``best_ema.pt``, the lowest validation
    loss) as a model file (fp16) with training metadata."""
    from vssflow_core.errors import VSSFlowError
    from vssflow_core.model.checkpoint import save_model_file

    run = Run.load(Path(run_dir) / "last.pt", 1e-4, 0.0)
    steps, val = run.step, None
    if best:
        if not (Path(run_dir) / "best_ema.pt").is_file():
            raise VSSFlowError(f"--export-best: {run_dir} has no best_ema.pt; train with --val PACK first")
        st = load_state_file(Path(run_dir) / "best_ema.pt")
        run.ema.load_state_dict(st["ema"])
        steps, val = int(st["step"]), float(st["val_loss"])
    ema = run.ema.to(dtype)
    args = read_args(Path(run_dir))
    meta = {"training": {"run": Path(run_dir).name, "steps": steps, "examples": run.examples * steps // max(1, run.step),
                         "train_hours": round(run.train_seconds * steps / max(1, run.step) / 3600, 3),
                         "task": args.get("task"), "device": args.get("device", "cpu"), "val_loss": val,
                         "command": args.get("command"), "init": run.init or None}}
    path = save_model_file(out_path, ema, metadata=meta, overwrite=overwrite)
    os.chmod(path, 0o644)  # the temp-file route creates 0600; a shipped model file is world-readable
    return path


def _setup_distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size()


def _teardown_distributed(world: int) -> None:
    """Wait for every process, then destroy the process group. A gloo group left to the interpreter's
    exit can end a process with SIGABRT ("terminate called without an active exception") while its
    threads are still running; the 2-process test failed that way about once in 12 runs."""
    if world <= 1:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _average_gradients(params, world: int) -> None:
    """All-reduce (mean) the gradients of ``params`` over the process group in one flat buffer."""
    if world <= 1:
        return
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    i = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[i: i + n].view_as(p).clone()
        i += n


def _shared_elapsed(seconds: float, world: int) -> float:
    """Rank 0's elapsed time (s) on every rank: the stop at ``--max-minutes`` and the cooldown's
    learning rate must be the same in every replica, or they drift apart or stop at different steps."""
    if world <= 1:
        return seconds
    import torch.distributed as dist

    shared = torch.tensor([seconds], dtype=torch.float64)
    dist.broadcast(shared, 0)
    return float(shared)


def _check_replicas(model) -> None:
    """Raise if the data-parallel replicas' weights differ (they must stay bit-identical)."""
    import torch.distributed as dist

    total = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
    lo, hi = total.clone(), total.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    if float(hi - lo) != 0.0:
        raise RuntimeError(f"data-parallel replicas diverged (weight sums {float(lo)} .. {float(hi)})")


def train_step(run: Run, codec, batch: dict, args, gen: torch.Generator, world: int,
               noise_gen: torch.Generator | None, lr: float) -> torch.Tensor:
    """One optimiser step on a collated batch (``wave`` [B, S] or ready ``latent`` [B, Ca, L]).

    ``gen`` (CPU) draws the condition dropout and the times, ``noise_gen`` (on the model's device,
    default ``gen``) the noise; ``lr`` is this step's learning rate (:func:`lr_at`). Returns the
    (local) loss as a 0-d tensor on the device.
    """
    from vssflow_core import flow

    device = next(run.model.parameters()).device
    length = run.config.latent_length
    if "latent" in batch:
        x1 = batch.pop("latent")
    else:
        with torch.no_grad():
            x1 = codec.encode(batch.pop("wave"))  # [B, Ca, L]
    x1 = x1[..., :length].to(device)
    feats = {k: v.to(device) for k, v in batch.items() if v is not None}
    feats = flow.drop_conditions(feats, args.p_uncond, P_PER_KEY, gen)
    if args.t_sampling == "logit-normal":
        t = torch.sigmoid(torch.randn((x1.shape[0],), generator=gen)).to(device)
    else:
        t = flow.shift_time(torch.rand((x1.shape[0],), generator=gen), args.t_shift).to(device)
    x0 = torch.randn(x1.shape, generator=noise_gen or gen, device=device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=getattr(args, "amp", "none") == "bf16"):
        cond = run.model.encode_conditions(length, batch_size=x1.shape[0], **feats)
        loss = flow.flow_matching_loss(run.model, x1, cond, x0=x0, t=t)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for p in run.model.parameters() if p.requires_grad]
    _average_gradients(params, world)
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    for group in run.opt.param_groups:
        group["lr"] = lr
    run.opt.step()
    run.step += 1
    run.update_ema(args.ema)
    return loss.detach()


def _command_tail() -> list[str]:
    """This process's command line after ``python -m`` (``vssflow_core train ...`` or the module's)."""
    if sys.argv[1:2] == ["train"]:
        return ["vssflow_core", *sys.argv[1:]]
    return ["vssflow_core.train.trainer", *sys.argv[1:]]


def _with_data_placement(config, data):
    """``config`` with the phoneme placement of a pack folder (a new run learns the data's placement)."""
    import dataclasses

    from vssflow_core.train.pack import is_packed, pack_folders

    if not is_packed(data):
        return config
    placement = json.loads((pack_folders(data)[0] / "pack.json").read_text()).get("phone_placement", "uniform")
    return dataclasses.replace(config, phone_placement=placement)


def _check_device(args) -> torch.device:
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


def _check_pack_fits(clips, cfg, flag: str) -> None:
    """Refuse a pack (``--data`` or ``--val``) whose phoneme placement or window differs from the model's."""
    from vssflow_core.errors import VSSFlowError

    clips.require_placement(cfg.phone_placement, f"pack {flag}'s clips with --phone-placement {cfg.phone_placement}, "
                                                 "or train a new run (--name) for that placement")
    if abs(float(clips.meta["duration_s"]) - cfg.duration_s) > 1e-6:
        raise VSSFlowError(f"{flag} {clips.root}: packed for {clips.meta['duration_s']} s windows, the model's is "
                           f"{cfg.duration_s} s; `pack` makes windows of the embedded model's length, so train "
                           "that model (--preset embedded)")


def _check_options(args) -> None:
    """Refuse step counts, rates and schedules that cannot train, before anything is built."""
    from vssflow_core.errors import VSSFlowError

    for flag, value in (("--batch-size", args.batch_size), ("--log-every", args.log_every),
                        ("--val-every", args.val_every), ("--max-steps", args.max_steps)):
        if value < 1:
            raise VSSFlowError(f"{flag} {value}: must be at least 1")
    if not (math.isfinite(args.lr) and args.lr >= 0):
        raise VSSFlowError(f"--lr {args.lr}: the peak learning rate is a number >= 0 (e.g. 4e-4)")
    if not 0 <= args.ema < 1:
        raise VSSFlowError(f"--ema {args.ema}: a decay in [0, 1) (e.g. 0.999)")
    if not 0.0 <= args.cooldown < 1.0:
        raise VSSFlowError(f"--cooldown {args.cooldown}: a fraction of the budget in [0, 1), e.g. 0.3")
    if not (math.isfinite(args.t_shift) and args.t_shift > 0):
        raise VSSFlowError(f"--t-shift {args.t_shift}: a number > 0 (1 = uniform t, 3 = towards the noise)")
    if args.t_shift != 1.0 and args.t_sampling != "uniform":
        raise VSSFlowError(f"--t-shift {args.t_shift} shifts uniform draws; drop it or use --t-sampling uniform")


def _new_run_config(args):
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


def _batch_source(args, cfg, codec, rank: int, device):
    """``(draw(base, gen) -> batch, describe() -> str)`` for a make-data folder or a pack folder."""
    from vssflow_core.train.data import ClipSource, ExampleSampler, collate
    from vssflow_core.train.pack import PackedClips, PackedSampler, is_packed

    if is_packed(args.data):
        clips = PackedClips(args.data, device)
        _check_pack_fits(clips, cfg, "--data")
        sampler = PackedSampler(clips, args.task, codec, cfg.latent_length, p_mix=args.p_mix)
        return (lambda base, gen: sampler.batch(args.batch_size, gen)), (lambda: f"{len(sampler.pool)} packed clips")
    source = ClipSource(args.data, args.task, sample_rate=codec.sample_rate)
    sampler = ExampleSampler(source, cfg.duration_s, cfg.latent_length * codec.samples_per_latent, p_mix=args.p_mix)

    def draw(base, gen):
        if args.refresh_steps and base[1] % args.refresh_steps == 0:
            source.refresh()
        return collate([sampler.example((*base, i)) for i in range(args.batch_size)])

    return draw, (lambda: f"{len(source.rows)} clips")


def _validator(args, cfg, codec, device, times: int = 8, chunk: int = 64):
    """``validate(model) -> float``: mean flow-matching loss of ``model`` on the packed held-out clips
    of the task (no mixing), every clip at ``times`` fixed t in [0.1, 0.9] with fixed noise, all conditions."""
    from vssflow_core import flow
    from vssflow_core.train.data import FEATURE_RATES
    from vssflow_core.train.pack import PackedClips, PackedSampler

    clips = PackedClips(args.val, device)
    _check_pack_fits(clips, cfg, "--val")
    pool = PackedSampler(clips, args.task, codec, cfg.latent_length).pool.to(clips.log_mel.device)
    keys = tuple(FEATURE_RATES)
    idx = pool.repeat_interleave(times)
    t_all = torch.linspace(0.1, 0.9, times, device=device).repeat(len(pool))
    g = torch.Generator().manual_seed(1234)
    x1_all = codec.mel_to_latent(clips.log_mel[idx])[..., : cfg.latent_length]
    x0_all = torch.randn(x1_all.shape, generator=g).to(device)

    @torch.no_grad()
    def validate(model) -> float:
        total = 0.0
        for i in range(0, len(idx), chunk):
            sl = slice(i, i + chunk)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp == "bf16"):
                ref = None if clips.ref_audio_ebd is None else clips.ref_audio_ebd[idx[sl]]
                cond = model.encode_conditions(cfg.latent_length, batch_size=len(idx[sl]), ref_audio_ebd=ref,
                                               **{k: getattr(clips, k)[idx[sl]] for k in keys})
                total += float(flow.flow_matching_loss(model, x1_all[sl], cond, x0=x0_all[sl], t=t_all[sl])) * len(idx[sl])
        return total / len(idx)

    return validate


def run(args) -> int:
    """Train (or export with ``--export``). Returns a process exit status."""
    from vssflow_core.errors import VSSFlowError
    torch.set_num_threads(max(1, args.threads))
    run_dir = Path(args.state_dir) / args.run
    if args.export:
        if not (run_dir / "last.pt").is_file():
            raise VSSFlowError(f"--export: run {run_dir} has no last.pt yet; train first")
        if not str(args.export).endswith(".safetensors"):
            raise VSSFlowError(f"--export {args.export}: name the model file *.safetensors (the ComfyUI loader and "
                               "--model list only those)")
        if Path(args.export).exists():
            raise VSSFlowError(f"--export {args.export} exists; choose another file name (nothing is overwritten)")
        print(f"exported {export_weights(run_dir, args.export, best=args.export_best)}")
        return 0
    _check_options(args)
    rank, world = _setup_distributed()
    device = _check_device(args)
    lock = lock_run(run_dir) if rank == 0 else None
    try:
        return _train(args, run_dir, rank, world, device)
    finally:
        if lock is not None:  # released however training ends
            lock.close()


def _train(args, run_dir: Path, rank: int, world: int, device: torch.device) -> int:
    """The training loop of :func:`run`, with the run folder locked; returns the exit status."""
    from vssflow_core.audio.codec import build_codec
    from vssflow_core.errors import VSSFlowError

    ckpt = run_dir / "last.pt"
    resumed = ckpt.is_file()
    if resumed:
        state = Run.load(ckpt, args.lr, args.weight_decay, device)
        check_resume(args, run_dir, state.step)
    else:
        config = _new_run_config(args)
        config = _with_data_placement(config, args.data)
        torch.manual_seed(args.seed)  # a fresh run's initial weights follow --seed
        state = Run(config, args.lr, args.weight_decay, device)
        if args.init:
            init_weights(state, args.init)
    best_val = kept_best_loss(run_dir, state.step) if rank == 0 else math.inf  # only rank 0 validates
    cfg = state.config
    if world > 1:  # identical start on every rank
        import torch.distributed as dist

        for p in list(state.model.parameters()) + list(state.ema.parameters()):
            dist.broadcast(p.data, 0)
    codec = build_codec(cfg.codec).to(device)
    draw_batch, describe = _batch_source(args, cfg, codec, rank, device)
    validate = _validator(args, cfg, codec, device) if args.val else None
    if rank == 0:
        write_args(run_dir, {**{k: v for k, v in vars(args).items() if k not in ("func",)}, "world_size": world,
                             "command": " ".join([sys.executable, "-m", *_command_tail()])}, resumed)
        print(f"run {run_dir}: step {state.step}, {state.model.num_parameters() / 1e6:.2f} M parameters, "
              f"{describe()} ({args.task}), world {world}, device {device}", flush=True)
    log = open(run_dir / "log.jsonl", "a", encoding="utf-8") if rank == 0 else None
    started = time.time()
    last_ckpt = time.time()
    noise_gen = torch.Generator(device) if device.type != "cpu" else None  # reseeded every step, below
    losses, step_seconds = [], 0.0
    validated = [state.step]  # the step of the last validation (a resumed run has its own best already)

    def validation_row() -> dict:
        """Validate the EMA weights, keep them as best_ema.pt if they beat the best; the log fields."""
        nonlocal best_val
        val = validate(state.ema)
        validated[0] = state.step
        if val < best_val:
            best_val = val
            atomic_save({"ema": state.ema.state_dict(), "step": state.step, "val_loss": val}, run_dir / "best_ema.pt")
        return {"step": state.step, "val_loss": round(val, 5)}

    diverged = False
    stop = _StopAtStepEnd()  # SIGTERM / Ctrl-C: finish the step in progress, then checkpoint and stop
    try:
        while state.step < args.max_steps and not stop.signum:
            t0 = time.time()
            elapsed = _shared_elapsed(t0 - started, world)
            if args.max_minutes and elapsed > args.max_minutes * 60:
                break
            base = (args.seed, state.step, rank)
            gen = torch.Generator().manual_seed(hash(base) & 0x7FFFFFFF)
            if noise_gen is not None:  # the GPU's noise of step N depends on (seed, N, rank) only, as on the CPU
                noise_gen.manual_seed(hash((*base, 1)) & 0x7FFFFFFF)
            batch = draw_batch(base, gen)
            lr = lr_at(state.step, args.lr, args.warmup, cooldown=args.cooldown,
                       left=budget_left(state.step, elapsed, args.max_steps, args.max_minutes))
            losses.append(train_step(state, codec, batch, args, gen, world, noise_gen, lr=lr))
            dt = time.time() - t0
            step_seconds += dt
            state.train_seconds += dt
            state.examples += args.batch_size * world
            if log is None:
                continue
            row = {}
            if state.step % args.log_every == 0:
                loss = float(torch.stack(losses).float().mean())  # one device sync per logged row
                if not math.isfinite(loss):
                    diverged = True  # keep the last good checkpoint: resuming from it is the fix
                    raise VSSFlowError(f"loss is {loss} at step {state.step}; {ckpt} keeps the last good state "
                                       "(written before this): resume with a lower --lr")
                row = {"step": state.step, "loss": round(loss, 5), "lr": round(lr, 8),
                       "sec": round(step_seconds / len(losses), 4), "clips": describe(), "time": round(time.time(), 1)}
                losses, step_seconds = [], 0.0
            if validate and state.step % args.val_every == 0:
                row = {**row, **validation_row()}
            if row:
                log.write(json.dumps(row) + "\n")
                log.flush()
            if args.snapshot_steps and state.step % args.snapshot_steps == 0:
                atomic_save({k: v.half() if v.is_floating_point() else v for k, v in state.ema.state_dict().items()},
                             run_dir / f"ema_step{state.step:07d}.pt")
            if time.time() - last_ckpt > args.ckpt_minutes * 60:
                state.save(ckpt)
                last_ckpt = time.time()
        if validate and log is not None and validated[0] != state.step:  # the last steps count too
            log.write(json.dumps(validation_row()) + "\n")
        if world > 1:
            _check_replicas(state.model)
    finally:
        stop.restore()
        if rank == 0 and state.step > 0 and not diverged:
            state.save(ckpt)
        if log is not None:
            log.close()
    _teardown_distributed(world)
    if rank == 0:
        print(f"stopped at step {state.step} ({state.train_seconds / 3600:.2f} h of training)", flush=True)
    return 128 + stop.signum if stop.signum else 0


class _StopAtStepEnd:
    """Turns SIGTERM and a first Ctrl-C into a request that the training loop sees between steps, so
    the checkpoint written on the way out never holds an optimiser step whose step counter was not
    yet advanced (a resume would apply it twice). A second Ctrl-C stops at once."""

    def __init__(self):
        import signal
        import threading

        self.signum = 0
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._request)

    def _request(self, signum, frame):
        import signal

        if self.signum and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        print("stopping after the step in progress (checkpoint follows; Ctrl-C again to stop at once)",
              file=sys.stderr, flush=True)

    def restore(self) -> None:
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vssflow_core.train.trainer", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
