"""A training run's resumable state (model, EMA copy, optimiser, counters) and its exchange with
model files: ``--init`` copies a model file's weights in, ``--export`` writes the EMA weights out."""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import torch

from vssflow_core.train.run_folder import atomic_save, load_state_file, read_args


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


def train_only(model: torch.nn.Module, prefixes: str) -> int:
    """Freeze every parameter whose name starts with none of the comma-separated ``prefixes``
    (``--train-only``); returns the number of parameters left to train. A prefix that names no
    parameter is refused with the model's top-level module names."""
    from vssflow_core.errors import VSSFlowError

    wanted = [p.strip() for p in prefixes.split(",") if p.strip()]
    names = [name for name, _ in model.named_parameters()]
    for prefix in wanted:
        if not any(name.startswith(prefix) for name in names):
            modules = sorted({name.split(".")[0] for name in names})
            raise VSSFlowError(f"--train-only {prefix!r} names no weight of this model; its modules are {modules}")
    trainable = 0
    for name, p in model.named_parameters():
        keep = any(name.startswith(prefix) for prefix in wanted)
        p.requires_grad_(keep)
        trainable += p.numel() if keep else 0
    return trainable


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


def export_weights(run_dir: Path, out_path: str | os.PathLike, best: bool = False) -> Path:
    """Write the EMA weights of ``run_dir/last.pt`` (``best``: of ``best_ema.pt``, the lowest validation
    loss) as a new model file (fp16; an existing ``out_path`` is refused) with training metadata."""
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
    ema = run.ema.to(torch.float16)
    args = read_args(Path(run_dir))
    meta = {"training": {"run": Path(run_dir).name, "steps": steps, "examples": run.examples * steps // max(1, run.step),
                         "train_hours": round(run.train_seconds * steps / max(1, run.step) / 3600, 3),
                         "task": args.get("task"), "device": args.get("device", "cpu"), "val_loss": val,
                         "command": args.get("command"), "init": run.init or None}}
    path = save_model_file(out_path, ema, metadata=meta)
    os.chmod(path, 0o644)  # the temp-file route creates 0600; a shipped model file is world-readable
    return path
