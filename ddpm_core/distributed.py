"""Data-parallel training over several processes: ``torch.distributed``, launched by ``torchrun``.

``torchrun --nproc-per-node N -m ddpm_core.cli.train …`` starts N copies of the training command and tells
each its place through the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``).
Every process loads the same images and builds the same seeded model; each takes its own share of every
global batch (:class:`torch.utils.data.DistributedSampler`), and
:class:`~torch.nn.parallel.DistributedDataParallel` averages the gradients during the backward pass. So all
ranks hold the same weights, EMA and AdamW moments after every step, and rank 0 alone writes checkpoints,
logs and progress. The backend follows the device: gloo on the CPU, NCCL on CUDA.

A :class:`World` says which process this is. Without ``torchrun`` it is :data:`SINGLE`, one process of one,
and nothing here touches ``torch.distributed``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def backend_for(device: torch.device) -> str:
    """The process-group backend for ``device``: NCCL for CUDA, gloo for everything else."""
    return "nccl" if device.type == "cuda" else "gloo"


@dataclass(frozen=True)
class World:
    """This process's place among the training processes: its rank, their number, its rank on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> World:
        """The world ``torchrun`` described in the environment, or :data:`SINGLE` without ``torchrun``."""
        if not dist.is_torchelastic_launched():
            return SINGLE
        return cls(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]))

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, logs and progress."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        """More than one process: gradients must be averaged and decisions agreed."""
        return self.size > 1

    def describe(self) -> str:
        return "1 process" if not self.parallel else f"{self.size} processes (rank {self.rank})"

    def check_batch(self, batch: int) -> None:
        """ValueError unless the global batch splits evenly over the processes."""
        if batch % self.size:
            raise ValueError(
                f"a batch of {batch} images does not split evenly over {self.size} processes; choose a batch size "
                f"that is a multiple of {self.size} (it is the global batch: each process takes batch ÷ processes)"
            )

    def place(self, device: torch.device) -> torch.device:
        """``device``, on this process's own GPU when it is a CUDA device without an index."""
        if device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_rank)
        return device

    @contextlib.contextmanager
    def joined(self, device: torch.device) -> Iterator[World]:
        """Join the process group ``torchrun`` set up (backend by ``device``) for the block; nothing for one
        process, which has no one to talk to (every collective here returns at once when not parallel)."""
        if not self.parallel:
            yield self
            return
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend_for(device))
        try:
            yield self
        finally:
            dist.destroy_process_group()

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``model`` under DistributedDataParallel when there are several processes (which also makes every
        rank start from rank 0's weights); ``model`` itself otherwise."""
        if not self.parallel:
            return model
        if not dist.is_initialized():
            raise RuntimeError("several processes train together only inside World.joined(), which joins their group")
        return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)

    def from_main(self, value: int, device: torch.device) -> int:
        """Rank 0's ``value`` on every rank (e.g. the precision rank 0 timed)."""
        if not self.parallel:
            return value
        box = torch.tensor([value], dtype=torch.int64, device=device)
        dist.broadcast(box, src=0)
        return int(box.item())

    def agree(self, elapsed_s: float, loss: float, stop: bool, device: torch.device) -> tuple[float, float, bool]:
        """One collective per step: rank 0's clock, the loss averaged over the ranks, and whether any rank
        wants to stop, so every rank takes the same learning rate and ends on the same step."""
        if not self.parallel:
            return elapsed_s, loss, stop
        box = torch.tensor([elapsed_s if self.is_main else 0.0, loss, float(stop)], dtype=torch.float64)
        box = box.to(device)
        dist.all_reduce(box)
        clock, total, stops = box.tolist()
        return clock, total / self.size, stops > 0


SINGLE = World()
