"""Resumable flow-matching training of a VSSFlow model on a synthetic data folder.

``python -m vssflow_core train --data DIR --name NAME [--task joint|v2s|tts]``. State lives in
``STATE_DIR/NAME/``: ``last.pt`` (model, EMA, optimiser, step; written atomically every
``--ckpt-minutes``), ``log.jsonl`` (one JSON row per logged step) and ``args.json``. Re-running the
same command resumes. Data parallel over ``torchrun --nproc_per_node N -m vssflow_core train ...``
with the gloo backend (gradients averaged by all-reduce).

Recipe (official where it has one): x_t = (1 - t) x0 + t x1, t ~ U(0, 1), MSE on the velocity,
whole-batch condition dropout (p 0.1, all conditions) for guidance plus per-key dropout of lips /
motion / speaker / appearance so the model also works without them, AdamW with linear warm-up,
then constant. Beyond the official recipe: gradient clipping, EMA weights (exported), and
``--t-sampling logit-normal`` as an option. Uniform t is the default because the sampler starts
at t = 0: a model trained with logit-normal t (1.4 % of draws below t = 0.1) predicted x1 worse
from pure noise than the batch mean did (MSE 1.01 vs 0.85 at t = 0, 0.37 at t = 0.02).
``--t-shift S`` goes the other way: uniform draws moved towards the noise by the sampler's own
time shift (``flow.shift_time``), where the shipped sampler spends most of its evaluations.

This module is the loop and its schedule; the options and their checks are in ``train.options``,
the resumable state (``Run``, ``--init``, ``--export``) in ``train.run_state`` and the
data-parallel plumbing in ``train.distributed``.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch

from vssflow_core.train.distributed import (average_gradients, check_replicas, setup_distributed, shared_elapsed,
                                            teardown_distributed)
from vssflow_core.train.options import add_arguments  # noqa: F401  (the CLI's "train" command reads it here)
from vssflow_core.train.options import check_device, check_options, new_run_config, with_data_placement
from vssflow_core.train.run_folder import atomic_save, check_resume, kept_best_loss, lock_run, write_args
from vssflow_core.train.run_state import Run, export_weights, init_weights, train_only

P_PER_KEY = {"lip_feat": 0.3, "motion_feat": 0.2, "event_feat": 0.2, "ref_audio_ebd": 0.3, "appearance_feat": 0.1}


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
    if loss.requires_grad:  # with --train-only, a batch whose trained conditions were all dropped reaches no weight
        loss.backward()
    params = [p for p in run.model.parameters() if p.requires_grad]
    average_gradients(params, world)
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    for group in run.opt.param_groups:
        group["lr"] = lr
    run.opt.step()
    run.step += 1
    run.update_ema(args.ema)
    return loss.detach()


def _command(args) -> str:
    """The command that started this run, as a shell line: ``python -m vssflow_core train ...`` with the
    words ``cli.main`` received (``args.command_line``); ``run(args)`` called directly from Python
    records no arguments (they are in ``args.json`` all the same)."""
    import shlex

    words = getattr(args, "command_line", None) or ["train", "(run from Python)"]
    return shlex.join([sys.executable, "-m", "vssflow_core", *words])


def _check_pack_fits(clips, cfg, flag: str) -> None:
    """Refuse a pack (``--data`` or ``--val``) whose phoneme placement or window differs from the model's,
    or that lacks event features the model reads."""
    from vssflow_core.errors import VSSFlowError

    clips.require_placement(cfg.phone_placement, f"pack {flag}'s clips with --phone-placement {cfg.phone_placement}, "
                                                 "or train a new run (--name) for that placement")
    if abs(float(clips.meta["duration_s"]) - cfg.duration_s) > 1e-6:
        raise VSSFlowError(f"{flag} {clips.root}: packed for {clips.meta['duration_s']} s windows, the model's is "
                           f"{cfg.duration_s} s; `pack` makes windows of the embedded model's length, so train "
                           "that model (--preset embedded)")
    wants_events = any(c.feature_key == "event_feat" for c in cfg.conditions)
    if wants_events and clips.event_feat is None:
        raise VSSFlowError(f"{flag} {clips.root}: the pack has no event features and the model reads them (its "
                           "'event' condition); make the clips with this version's make-data and pack them again")


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
                                               **{k: getattr(clips, k)[idx[sl]] for k in keys
                                                  if getattr(clips, k) is not None})
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
    check_options(args)
    rank, world = setup_distributed()
    device = check_device(args)
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
        config = new_run_config(args)
        config = with_data_placement(config, args.data)
        torch.manual_seed(args.seed)  # a fresh run's initial weights follow --seed
        state = Run(config, args.lr, args.weight_decay, device)
        if args.init:
            init_weights(state, args.init)
    trained = train_only(state.model, args.train_only) if args.train_only else None
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
        write_args(run_dir, {**{k: v for k, v in vars(args).items() if k not in ("func", "command_line")}, "world_size": world,
                             "command": _command(args)}, resumed)
        print(f"run {run_dir}: step {state.step}, {sum(p.numel() for p in state.model.parameters()) / 1e6:.2f} M parameters, "
              f"{describe()} ({args.task}), world {world}, device {device}", flush=True)
        if trained is not None:
            print(f"training only {args.train_only}: {trained / 1e6:.3f} M parameters; the rest stays frozen", flush=True)
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
            elapsed = shared_elapsed(t0 - started, world)
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
            check_replicas(state.model)
    finally:
        stop.restore()
        if rank == 0 and state.step > 0 and not diverged:
            state.save(ckpt)
        if log is not None:
            log.close()
    teardown_distributed(world)
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
