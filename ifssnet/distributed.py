"""Data parallelism over training cases with ``torch.distributed`` (gloo on CPU, nccl on GPUs).

``torchrun --nproc_per_node N -m ifssnet.train ...`` starts one process per rank; every rank samples
its own shard of the cases (:func:`ifssnet.train.train`). These helpers are what DDP would do, done by
hand because TBPTT calls the network once per window before one backward, which DDP's
one-forward-per-backward hooks do not expect. Each is a no-op in a single process.
"""
from __future__ import annotations


def is_distributed() -> bool:
    """Whether a process group of more than one rank is running (torchrun, or a test's own group)."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def average_gradients(optimizer) -> None:
    """Average every gradient of ``optimizer``'s parameters (the network's and alpha/beta's) across ranks,
    as DistributedDataParallel's reducer does."""
    import torch.distributed as dist

    if not is_distributed():
        return
    world = dist.get_world_size()
    for g in optimizer.param_groups:
        for q in g["params"]:
            if q.grad is not None:
                dist.all_reduce(q.grad)
                q.grad /= world


def broadcast_parameters(modules) -> None:
    """Start every rank from rank 0's weights and buffers of ``modules``."""
    import torch.distributed as dist

    if not is_distributed():
        return
    for m in modules:
        for t in list(m.parameters()) + list(m.buffers()):
            dist.broadcast(t.data, 0)


def rank0_decides(flag: bool) -> bool:
    """Rank 0's ``flag`` on every rank (a stop decision that every rank must take at the same step)."""
    return bool(agreed(int(bool(flag))))


def agreed(value: int, how: str = "rank0") -> int:
    """``value`` as every rank has it: rank 0's (``how="rank0"``) or the smallest over the ranks (``"min"``); in a
    single process ``value`` itself. For the numbers that decide how many TBPTT updates a step makes (the run's
    length, its stride, its burn-in): every update all-reduces the gradients, so ranks that made a different number
    of them paired one step's all-reduce with another's, and ended with different weights or hung."""
    if not is_distributed():
        return int(value)
    import torch
    import torch.distributed as dist

    t = torch.tensor([int(value)], dtype=torch.int64, device=_collective_device())
    if how == "min":
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
    else:
        dist.broadcast(t, 0)
    return int(t.item())


def _collective_device():
    """Where a small tensor for a collective must lie: this rank's GPU under nccl (CUDA tensors only; a CPU one
    failed at the first step of a --time-limit run on GPUs), else the CPU."""
    import torch
    import torch.distributed as dist

    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
