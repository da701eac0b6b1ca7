"""Data parallelism for one training run over several processes (``torchrun``): where this
process stands (:class:`DataParallel`), joining the process group, the device of a rank, and
the run folder as ranks > 0 see it. One process (``WORLD_SIZE`` unset or 1) never touches
torch.distributed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..errors import LossnetError
from ..utils.jsonio import clean_json
from .config import TrainingError
from .rundir import RunDir

# How long the ranks of a data-parallel run wait in a collective (rank 0 evaluates meanwhile).
DDP_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class DataParallel:
    """Where this process stands in a data-parallel run: ``rank`` of ``world_size`` processes,
    ``local_rank`` on its machine. ``world_size == 1`` is the ordinary single-process run (no
    process group, no collective is ever called).

    Example:
        >>> DataParallel.from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
        DataParallel(rank=1, world_size=2, local_rank=1)
        >>> DataParallel.from_env({}).is_main
        True
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "DataParallel":
        """From the ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` variables that ``torchrun`` sets."""
        env = os.environ if env is None else env
        try:
            world = int(env.get("WORLD_SIZE", "1"))
            rank = int(env.get("RANK", "0"))
            local = int(env.get("LOCAL_RANK", str(rank)))
        except ValueError as exc:
            raise LossnetError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers ({exc}): launch the run with "
                               "torchrun, which sets them.") from None
        if world < 1 or not 0 <= rank < world or local < 0:
            raise LossnetError(f"inconsistent torch.distributed environment: RANK={rank}, WORLD_SIZE={world}, "
                               f"LOCAL_RANK={local}; launch the run with torchrun.")
        return cls(rank, world, local)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def local_batch(self, global_batch: int) -> int:
        """This rank's share of every global batch (a clear error when it does not divide)."""
        if global_batch % self.world_size:
            w = self.world_size
            near = global_batch - global_batch % w or w
            raise LossnetError(f"batch_size {global_batch} (the GLOBAL batch) does not divide among {w} processes: "
                               f"use a multiple of {w} (e.g. --set batch_size={near}) or another number of processes.")
        return global_batch // self.world_size

    def shard(self, keys: Sequence, global_batch: int, drop_last: bool) -> list[list]:
        """The global batches of ``keys`` (consecutive runs of ``global_batch``), each cut to this rank's
        contiguous share: rank ``r`` takes items ``r * b .. (r + 1) * b - 1`` of every batch.

        Example:
            >>> DataParallel(1, 2).shard(list(range(10)), 4, drop_last=True)
            [[2, 3], [6, 7]]
        """
        b = self.local_batch(global_batch)
        end = len(keys) - len(keys) % global_batch if drop_last else len(keys)
        return [list(keys[i + self.rank * b:i + (self.rank + 1) * b]) for i in range(0, end, global_batch)]

    # -- collectives (no-ops for one process) ------------------------------------------------
    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list | None:
        """Every rank's ``obj`` on rank 0 (None on the others)."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size if self.is_main else None
        torch.distributed.gather_object(obj, out, dst=0)
        return out

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The element-wise mean of ``values`` over the ranks (``values`` itself for one process)."""
        if not self.enabled:
            return values
        values = values.clone()
        torch.distributed.all_reduce(values)
        return values / self.world_size

    def main_first(self, fn: Any) -> Any:
        """Run ``fn()`` on rank 0 only and return its result on every rank; an error it raises is
        raised on every rank (so the other ranks never wait for a rank 0 that has failed)."""
        if not self.enabled:
            return fn()
        error: BaseException | None = None
        outcome: tuple[bool, Any] = (True, None)
        if self.is_main:
            try:
                outcome = (True, fn())
            except Exception as exc:  # noqa: BLE001 - re-raised below, on every rank
                error, outcome = exc, (False, f"{type(exc).__name__}: {exc}")
        ok, value = self.broadcast(outcome)
        if error is not None:
            raise error
        if not ok:
            raise TrainingError(f"rank 0 failed: {value}")
        return value


def start_data_parallel(dp: DataParallel, device: torch.device) -> bool:
    """Join the process group of a ``torchrun`` launch (NCCL on CUDA, gloo on the CPU); returns whether
    this call created it (and so must destroy it). A group that already exists (e.g. made by an
    executor) is used as it is."""
    dist = torch.distributed
    if not dp.enabled:
        return False
    if not dist.is_available():
        raise LossnetError("WORLD_SIZE > 1 but this torch build has no torch.distributed: run one process.")
    if dist.is_initialized():
        if dist.get_world_size() != dp.world_size or dist.get_rank() != dp.rank:
            raise LossnetError(f"the existing process group (rank {dist.get_rank()} of {dist.get_world_size()}) "
                               f"disagrees with RANK={dp.rank}, WORLD_SIZE={dp.world_size}.")
        return False
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    # an evaluation runs on rank 0 while the other ranks wait in the next step's collective
    dist.init_process_group(backend=backend, timeout=DDP_TIMEOUT,
                            **({"device_id": device} if device.type == "cuda" else {}))
    return True


def data_parallel_device(dp: DataParallel, device: torch.device, asked: str) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` for a CUDA run of several processes."""
    if not dp.enabled or device.type != "cuda":
        if dp.enabled and device.type == "mps":
            raise LossnetError("data parallel needs CUDA (NCCL) or the CPU (gloo), not MPS: pass --device cpu.")
        return device
    if ":" in str(asked):
        raise LossnetError(f"--device {asked} with {dp.world_size} processes: each process uses cuda:LOCAL_RANK; "
                           "pass --device cuda (or auto) and choose the GPUs with CUDA_VISIBLE_DEVICES.")
    if dp.local_rank >= torch.cuda.device_count():
        raise LossnetError(f"LOCAL_RANK {dp.local_rank} but only {torch.cuda.device_count()} CUDA device(s) here: "
                           "start at most one process per GPU (torchrun --nproc_per_node).")
    return torch.device("cuda", dp.local_rank)


class FollowerRunDir(RunDir):
    """The run folder as ranks > 0 see it: they read the checkpoint rank 0 wrote and write nothing."""

    def __init__(self, path: str | os.PathLike, run_config: Mapping[str, Any]) -> None:  # noqa: D107
        self.path = Path(path)
        self.config = clean_json(run_config)

    def save_checkpoint(self, state: Mapping[str, Any]) -> None:
        raise TrainingError("only rank 0 writes the checkpoint of a data-parallel run.")

    def write_metrics(self, metrics: Mapping[str, Any]) -> None:
        raise TrainingError("only rank 0 writes the metrics of a data-parallel run.")


__all__ = ["DDP_TIMEOUT", "DataParallel", "FollowerRunDir", "data_parallel_device", "start_data_parallel"]
