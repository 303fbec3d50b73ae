"""Data-parallel plumbing of the trainer (``torchrun --nproc_per_node N``, gloo backend).

The process group is read from torchrun's environment (``WORLD_SIZE`` etc.); with one process
(``world`` 1) the functions taking ``world`` do nothing, and ``check_replicas`` needs a group.
Gradients are averaged by one all-reduce of a flat buffer; rank 0's clock decides time budgets;
the replicas' weights are checked bit-identical at the end.
"""
from __future__ import annotations

import os

import torch


def setup_distributed() -> tuple[int, int]:
    """(rank, world size) of this process; under torchrun it joins the gloo process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size()


def teardown_distributed(world: int) -> None:
    """Wait for every process, then destroy the process group. A gloo group left to the interpreter's
    exit can end a process with SIGABRT ("terminate called without an active exception") while its
    threads are still running; the 2-process test failed that way about once in 12 runs."""
    if world <= 1:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def average_gradients(params, world: int) -> None:
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


def shared_elapsed(seconds: float, world: int) -> float:
    """Rank 0's elapsed time (s) on every rank: the stop at ``--max-minutes`` and the cooldown's
    learning rate must be the same in every replica, or they drift apart or stop at different steps."""
    if world <= 1:
        return seconds
    import torch.distributed as dist

    shared = torch.tensor([seconds], dtype=torch.float64)
    dist.broadcast(shared, 0)
    return float(shared)


def check_replicas(model) -> None:
    """Raise if the data-parallel replicas' weights differ (they must stay bit-identical)."""
    import torch.distributed as dist

    total = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
    lo, hi = total.clone(), total.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    if float(hi - lo) != 0.0:
        raise RuntimeError(f"data-parallel replicas diverged (weight sums {float(lo)} .. {float(hi)})")
