"""Processes of a run: torchrun environment, collectives, and the data sharding they share.

A run launched with ``torchrun --nproc_per_node N tools/train_net.py ...`` has N processes
(ranks); a plain ``python tools/train_net.py`` is one process (world size 1) and uses no
process group at all. NCCL is the backend on GPUs, gloo on the CPU. Only rank 0 writes
files; every collective here is a no-op at world size 1, so the loop has no rank branches
beyond "am I rank 0".
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from stal.errors import ConfigError, StalError

logger = logging.getLogger("stal")


@dataclass(frozen=True)
class DistContext:
    """rank / world_size of this process, its local rank on the machine and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def init_distributed(*, num_gpus: int) -> DistContext:
    """Join the torchrun process group (if launched by torchrun) and pick this rank's device.

    num_gpus: 0 trains on the CPU (gloo); > 0 uses ``cuda:LOCAL_RANK`` (NCCL): one GPU per
    process, launched as ``torchrun --nproc_per_node NUM_GPUS``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if num_gpus == 0:
        device = torch.device("cpu")
    else:
        if not torch.cuda.is_available():
            raise StalError(f"NUM_GPUS is {num_gpus} but no CUDA device is available; set NUM_GPUS 0")
        if local >= torch.cuda.device_count():
            raise StalError(f"LOCAL_RANK {local} has no GPU: {torch.cuda.device_count()} visible; "
                            f"launch at most that many processes per machine")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        per_machine = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        if per_machine < num_gpus and rank == 0:
            logger.warning("NUM_GPUS is %d but %d process(es) per machine use one GPU each: launch with "
                           "torchrun --nproc_per_node %d to use them all", num_gpus, per_machine, num_gpus)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        # Evaluation runs on rank 0 while the others wait in a barrier: an AVA validation pass
        # takes longer than the default collective timeout (10 min for NCCL).
        dist.init_process_group(backend, device_id=device if device.type == "cuda" else None,
                                timeout=datetime.timedelta(hours=3))
    return DistContext(rank=rank, world_size=world, local_rank=local, device=device)


def shutdown(ctx: DistContext) -> None:
    if ctx.active and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.active:
        dist.barrier()


def reduce_mean(values: dict[str, float | torch.Tensor], ctx: DistContext) -> dict[str, float]:
    """Mean over ranks of each entry (every rank must pass the same keys); one collective.

    Values go through float64, so a sum over a few ranks loses nothing the logs would show.
    """
    keys = sorted(values)
    if not keys:
        return {}
    vec = torch.stack([torch.as_tensor(values[k], dtype=torch.float64).reshape(()).to(ctx.device)
                       for k in keys])
    if ctx.active:
        dist.all_reduce(vec)
        vec /= ctx.world_size
    return dict(zip(keys, vec.tolist()))


def gather_objects(obj: object, ctx: DistContext) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank (picklable objects, e.g. RNG states)."""
    if not ctx.active:
        return [obj]
    out: list = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: object, ctx: DistContext) -> object:
    """Rank 0's ``obj`` on every rank."""
    if not ctx.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class GlobalBatchSampler:
    """Batches of dataset indices that do not depend on the number of processes.

    Epoch ``e`` shuffles all ``length`` indices with a generator seeded by (seed, e); global
    batch k is positions [k * global_batch, (k + 1) * global_batch) of that order (the
    incomplete tail is dropped). Rank r takes the r-th of ``world_size`` equal contiguous
    parts of each global batch, cut into ``accum_steps`` micro-batches: one process with
    the same global batch sees the same clips in the same optimizer steps. ``set_epoch(e,
    start=k)`` resumes in the middle of an epoch at global batch k.

    The seeding reproduces torch's ``DataLoader(shuffle=True, generator=g)`` with
    ``g.manual_seed(seed * 100_003 + epoch)`` (a first draw for the worker seed, then
    ``randperm``), the order of runs made before this sampler existed.
    """

    def __init__(self, *, length: int, global_batch: int, accum_steps: int, seed: int, ctx: DistContext):
        per_step = ctx.world_size * accum_steps
        if global_batch % per_step:
            raise ConfigError(f"TRAIN.BATCH_SIZE {global_batch} (clips per optimizer step, all processes) "
                              f"must be divisible by processes x TRAIN.GRAD_ACCUM_STEPS = "
                              f"{ctx.world_size} x {accum_steps}")
        self.length, self.global_batch, self.accum = length, global_batch, accum_steps
        self.micro = global_batch // per_step
        self.seed, self.rank = seed, ctx.rank
        self.epoch, self.start, self.stop = 0, 0, self.steps_per_epoch

    @property
    def steps_per_epoch(self) -> int:
        return self.length // self.global_batch

    def set_epoch(self, epoch: int, *, start: int = 0, stop: int | None = None) -> None:
        """Yield global batches [start, stop) of ``epoch`` (stop None: to the end of the epoch)."""
        self.epoch, self.start = epoch, start
        self.stop = self.steps_per_epoch if stop is None else min(stop, self.steps_per_epoch)

    def _order(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        torch.empty((), dtype=torch.int64).random_(generator=g)  # the DataLoader's worker-seed draw
        return torch.randperm(self.length, generator=g)

    def __iter__(self):
        order = self._order()
        for step in range(self.start, self.stop):
            first = step * self.global_batch + self.rank * self.accum * self.micro
            for j in range(self.accum):
                yield order[first + j * self.micro: first + (j + 1) * self.micro].tolist()

    def __len__(self) -> int:
        """Micro-batches left in this epoch."""
        return max(0, self.stop - self.start) * self.accum
