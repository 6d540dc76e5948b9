"""The torchrun environment, read in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def launched_rank() -> int:
    """This process's rank as torchrun set it (0 when not under torchrun), before joining the group."""
    return int(os.environ.get("RANK", "0"))


def init_distributed() -> DistInfo:
    """Join the process group when started by torchrun (NCCL for GPU tensors, gloo for CPU ones)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    backend = "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
        backend = "cpu:gloo,cuda:nccl"  # the per-epoch scalars below are CPU tensors, which NCCL refuses
    dist.init_process_group(backend)
    return info


def device_for(info: DistInfo, requested: str) -> torch.device:
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        return torch.device("cuda", info.local_rank)
    return torch.device(requested)


def all_reduce_mean(value: float, info: DistInfo) -> float:
    if not info.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(tensor)
    return float(tensor) / info.world


def broadcast_from_main(value: float, info: DistInfo) -> float:
    """The main process's ``value`` in every process."""
    if not info.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    dist.broadcast(tensor, src=0)
    return float(tensor)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled:
        dist.destroy_process_group()
