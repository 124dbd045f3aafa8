"""Process-group set-up for one entry point that runs single-process, under torchrun, or under srun.

* torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``.
* ``srun`` (one task per GPU) sets Slurm's variables; submitit's job environment turns them into the
  same ``env://`` variables (master = first node of the allocation, port derived from the job id).
* Otherwise the run is a single process and no process group is created.

The backend is NCCL on CUDA and gloo on the CPU.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits: global rank, world size, local rank, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _from_slurm() -> bool:
    """Export the ``env://`` variables from a multi-task Slurm step (srun); True when it did."""
    if (
        "RANK" in os.environ
        or int(os.environ.get("SLURM_NTASKS", "1")) <= 1
        or "SLURM_PROCID" not in os.environ
    ):
        return False
    from submitit.helpers import TorchDistributedEnvironment

    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    return True


def setup(device: str | None = None) -> DistEnv:
    """Read the launcher's variables, pick the device and join the process group when there is one.

    Args:
        device: ``"cpu"`` forces the CPU; ``None`` uses ``cuda:<local_rank>`` when CUDA is present.
    """
    if _from_slurm():
        log.info("distributed environment from Slurm (srun)")
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    use_cuda = torch.cuda.is_available() and device != "cpu"
    dev = torch.device(f"cuda:{local}") if use_cuda else torch.device(device or "cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        log.info("rank %d of %d joined the process group on %s", rank, world, dev)
    return DistEnv(rank=rank, world_size=world, local_rank=local, device=dev)


def teardown() -> None:
    """Leave the process group (no-op for a single process)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce_sum(values: np.ndarray, env: DistEnv) -> np.ndarray:
    """Element-wise sum of a float64 vector over all processes."""
    if not env.distributed:
        return values
    tensor = torch.as_tensor(values, dtype=torch.float64, device=env.device)
    dist.all_reduce(tensor)
    return tensor.cpu().numpy()


def gather_rows(index: torch.Tensor, rows: torch.Tensor, total: int, env: DistEnv) -> np.ndarray:
    """Assemble a ``(total, D)`` array from the rows each process computed for its ``index``.

    Every process contributes the rows of its shard; rows are placed by index, so the result does
    not depend on how the sampler split the data (padding duplicates land on the same rows).
    """
    out = torch.zeros(total, rows.shape[1], dtype=torch.float32, device=env.device)
    out[index.to(env.device)] = rows.to(env.device, torch.float32)
    if env.distributed:
        seen = torch.zeros(total, dtype=torch.float32, device=env.device)
        seen[index.to(env.device)] = 1.0
        dist.all_reduce(out)
        dist.all_reduce(seen)
        out = out / seen.clamp(min=1.0)[:, None]
    return out.cpu().numpy()
