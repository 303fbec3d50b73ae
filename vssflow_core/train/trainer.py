"""Resumable flow-matching training of a VSSFlow model on a synthetic data folder.

``python -m vssflow_core train --data DIR --name NAME [--task joint|v2s|tts]`` (or
``python -m vssflow_core.train.trainer ...``). State lives in ``STATE_DIR/NAME/``: ``last.pt``
(model, EMA, optimiser, step; written atomically every ``--ckpt-minutes``), ``log.jsonl`` (one JSON
row per logged step) and ``args.json``. Re-running the same command resumes. Data parallel over
``torchrun --nproc_per_node N`` with the gloo backend (gradients averaged by all-reduce).

Recipe (official where it has one): x_t = (1 - t) x0 + t x1, MSE on the velocity, whole-batch
condition dropout (p 0.1, all conditions) for guidance plus per-key dropout of lips / motion /
speaker / appearance so the model also works without them, AdamW with linear warm-up, then
constant. Beyond the official recipe: logit-normal t, gradient clipping, EMA weights (exported).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

DEFAULT_STATE_DIR = os.environ.get("VSSFLOW_TRAIN_STATE", "/work/train_state")
P_PER_KEY = {"lip_feat": 0.3, "motion_feat": 0.2, "ref_audio_ebd": 0.3, "appearance_feat": 0.1}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Register the ``train`` options on ``p``."""
    p.add_argument("--data", required=True, help="make-data output folder (manifest.jsonl + clips/)")
    p.add_argument("--name", "--run", dest="run", required=True,
                   help="run name; state in STATE_DIR/NAME (resumes if present). Under torchrun spell it --name")
    p.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help=f"folder of runs (default {DEFAULT_STATE_DIR})")
    p.add_argument("--task", choices=("joint", "v2s", "tts"), default="joint", help="which clips to train on")
    p.add_argument("--preset", default="embedded", help="model preset for a new run (default embedded)")
    p.add_argument("--config", default=None, metavar="JSON", help="ModelConfig JSON file for a new run (overrides --preset)")
    p.add_argument("--batch-size", type=int, default=8, help="examples per step per process")
    p.add_argument("--lr", type=float, default=4e-4, help="peak learning rate")
    p.add_argument("--warmup", type=int, default=100, help="linear warm-up steps")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay (warmed up as (1+n)/(10+n))")
    p.add_argument("--p-uncond", type=float, default=0.1, help="whole-batch all-condition dropout (guidance)")
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


def lr_at(step: int, peak: float, warmup: int) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then constant (official schedule)."""
    return peak * min(1.0, (step + 1) / max(1, warmup))


class Run:
    """Model, EMA copy, optimiser and counters of one training run (the resumable state)."""

    def __init__(self, config, lr: float, weight_decay: float):
        import copy

        from vssflow_core.model import VSSFlow

        self.config = config
        self.model = VSSFlow(config).train()
        self.ema = copy.deepcopy(self.model).eval()
        for q in self.ema.parameters():
            q.requires_grad_(False)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=weight_decay)
        self.step = 0
        self.train_seconds = 0.0
        self.examples = 0

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "ema": self.ema.state_dict(), "opt": self.opt.state_dict(),
                "step": self.step, "train_seconds": self.train_seconds, "examples": self.examples,
                "config": self.config.to_json()}

    def save(self, path: Path) -> None:
        """Atomic checkpoint write (temp file + rename)."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(self.state(), tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, lr: float, weight_decay: float) -> "Run":
        from vssflow_core.config import ModelConfig

        st = torch.load(path, map_location="cpu", weights_only=True)
        run = cls(ModelConfig.from_json(st["config"]), lr, weight_decay)
        run.model.load_state_dict(st["model"])
        run.ema.load_state_dict(st["ema"])
        run.opt.load_state_dict(st["opt"])
        run.step, run.train_seconds, run.examples = int(st["step"]), float(st["train_seconds"]), int(st["examples"])
        return run

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        d = min(decay, (1 + self.step) / (10 + self.step))
        for e, p in zip(self.ema.parameters(), self.model.parameters()):
            e.lerp_(p.detach(), 1 - d)


def export_weights(run_dir: Path, out_path: str | os.PathLike, dtype=torch.float16, overwrite: bool = False) -> Path:
    """Write the EMA weights of ``run_dir/last.pt`` as a model file (fp16) with training metadata."""
    from vssflow_core.model.checkpoint import save_model_file

    run = Run.load(Path(run_dir) / "last.pt", 1e-4, 0.0)
    ema = run.ema.to(dtype)
    args = json.loads((Path(run_dir) / "args.json").read_text()) if (Path(run_dir) / "args.json").is_file() else {}
    meta = {"training": {"run": Path(run_dir).name, "steps": run.step, "examples": run.examples,
                         "train_hours": round(run.train_seconds / 3600, 3), "task": args.get("task"),
                         "command": args.get("command")}}
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


def _check_replicas(model) -> None:
    """Raise if the data-parallel replicas' weights differ (they must stay bit-identical)."""
    import torch.distributed as dist

    total = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
    lo, hi = total.clone(), total.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    if float(hi - lo) != 0.0:
        raise RuntimeError(f"data-parallel replicas diverged (weight sums {float(lo)} .. {float(hi)})")


def train_step(run: Run, codec, batch: dict, args, gen: torch.Generator, world: int) -> float:
    """One optimiser step on a collated batch; returns the (local) loss."""
    from vssflow_core import flow

    wave = batch.pop("wave")
    with torch.no_grad():
        x1 = codec.encode(wave)  # [B, Ca, L]
    length = run.config.latent_length
    x1 = x1[..., :length]
    feats = {k: v for k, v in batch.items() if v is not None}
    feats = flow.drop_conditions(feats, args.p_uncond, P_PER_KEY, gen)
    cond = run.model.encode_conditions(length, batch_size=x1.shape[0], **feats)
    t = torch.sigmoid(torch.randn((x1.shape[0],), generator=gen))  # logit-normal(0, 1)
    loss = flow.flow_matching_loss(run.model, x1, cond, generator=gen, t=t)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for p in run.model.parameters() if p.requires_grad]
    _average_gradients(params, world)
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    for group in run.opt.param_groups:
        group["lr"] = lr_at(run.step, args.lr, args.warmup)
    run.opt.step()
    run.step += 1
    run.update_ema(args.ema)
    return float(loss.detach())


def run(args) -> int:
    """Train (or export with ``--export``). Returns a process exit status."""
    from vssflow_core.audio.codec import build_codec
    from vssflow_core.config import ModelConfig, preset
    from vssflow_core.errors import VSSFlowError
    from vssflow_core.train.data import ClipSource, ExampleSampler, collate

    torch.set_num_threads(max(1, args.threads))
    run_dir = Path(args.state_dir) / args.run
    if args.export:
        if not (run_dir / "last.pt").is_file():
            raise VSSFlowError(f"--export: run {run_dir} has no last.pt yet; train first")
        print(f"exported {export_weights(run_dir, args.export)}")
        return 0
    rank, world = _setup_distributed()
    import signal

    # SIGTERM (kill, shutdown) ends the loop through the finally below, which writes the checkpoint
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    ckpt = run_dir / "last.pt"
    if ckpt.is_file():
        state = Run.load(ckpt, args.lr, args.weight_decay)
    else:
        config = ModelConfig.from_json(Path(args.config).read_text()) if args.config else preset(args.preset)
        state = Run(config, args.lr, args.weight_decay)
    cfg = state.config
    if world > 1:  # identical start on every rank
        import torch.distributed as dist

        for p in list(state.model.parameters()) + list(state.ema.parameters()):
            dist.broadcast(p.data, 0)
    codec = build_codec(cfg.codec)
    source = ClipSource(args.data, args.task, sample_rate=codec.sample_rate)
    num_samples = cfg.latent_length * codec.samples_per_latent
    sampler = ExampleSampler(source, cfg.duration_s, num_samples, p_mix=args.p_mix)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        meta = {**{k: v for k, v in vars(args).items() if k not in ("func",)}, "world_size": world,
                "command": " ".join([sys.executable, "-m", "vssflow_core.train.trainer", *sys.argv[1:]])}
        (run_dir / "args.json").write_text(json.dumps(meta, indent=1, default=str))
        print(f"run {run_dir}: step {state.step}, {state.model.num_parameters() / 1e6:.2f} M parameters, "
              f"{len(source.rows)} clips ({args.task}), world {world}", flush=True)
    log = open(run_dir / "log.jsonl", "a", encoding="utf-8") if rank == 0 else None
    started = time.time()
    last_ckpt = time.time()
    try:
        while state.step < args.max_steps:
            if args.max_minutes and time.time() - started > args.max_minutes * 60:
                break
            if args.refresh_steps and state.step % args.refresh_steps == 0:
                source.refresh()
            t0 = time.time()
            base = (args.seed, state.step, rank)
            batch = collate([sampler.example((*base, i)) for i in range(args.batch_size)])
            gen = torch.Generator().manual_seed(hash(base) & 0x7FFFFFFF)
            loss = train_step(state, codec, batch, args, gen, world)
            if not math.isfinite(loss):
                raise RuntimeError(f"loss is {loss} at step {state.step}; lower --lr")
            dt = time.time() - t0
            state.train_seconds += dt
            state.examples += args.batch_size * world
            if log is not None:
                log.write(json.dumps({"step": state.step, "loss": round(loss, 5), "lr": lr_at(state.step - 1, args.lr, args.warmup),
                                      "sec": round(dt, 3), "clips": len(source.rows), "time": round(time.time(), 1)}) + "\n")
                log.flush()
                if args.snapshot_steps and state.step % args.snapshot_steps == 0:
                    snap = run_dir / f"ema_step{state.step:07d}.pt"
                    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.ema.state_dict().items()},
                               snap.with_name(snap.name + ".tmp"))
                    os.replace(snap.with_name(snap.name + ".tmp"), snap)
                if time.time() - last_ckpt > args.ckpt_minutes * 60:
                    state.save(ckpt)
                    last_ckpt = time.time()
        if world > 1:
            _check_replicas(state.model)
    finally:
        if rank == 0 and state.step > 0:
            state.save(ckpt)
        if log is not None:
            log.close()
    if rank == 0:
        print(f"stopped at step {state.step} ({state.train_seconds / 3600:.2f} h of training)", flush=True)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vssflow_core.train.trainer", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
