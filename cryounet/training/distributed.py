"""Data-parallel training with ``torch.distributed``: one process per device, launched by torchrun.

``cryounet train --devices 0,1`` starts ``torchrun --standalone --nproc-per-node 2`` on its own
command line (:func:`launch_command`); a cluster job may also start torchrun itself (any number of
nodes), and each process finds its rank in torchrun's environment (:func:`from_environment`).

What is equivalent to one process, and what is not:

- Every process draws the same global batch of ``train.batch_size`` patches from the same random
  streams (the sampling and augmentation of one process, unchanged) and trains on its own contiguous
  share (:meth:`Distributed.shard`); DDP averages the gradients. The data, the initial weights, the
  optimiser and the schedule are those of one process.
- Each process normalises its loss over its own patches and its BatchNorm layers see only its own
  patches (BatchNorm buffers are rank 0's, broadcast by DDP). Results therefore match one process
  closely but not bit for bit; ``tests/test_training_distributed.py`` states the tolerance.
- Only rank 0 validates and writes the model folder, checkpoint and history (atomically); the
  others follow its decision to keep going or stop, so a run stops at the same epoch everywhere.
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import os
import sys
from dataclasses import dataclass
from typing import Sequence, TypeVar

import torch
from torch import distributed as dist
from torch import nn

from cryounet.errors import CryoUNetError

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: Environment variables torchrun sets in each process it starts.
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
#: Set by ``cryounet train --devices`` in the processes it launches: the output folder it claimed
#: (the processes then write into it without claiming it again).
CLAIMED_OUTPUT_VARIABLE = "CRYOUNET_CLAIMED_OUTPUT"
#: How long a process waits for the others at a collective before the run fails.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=20)


@dataclass(frozen=True)
class Distributed:
    """This process's place in a data-parallel run (``world_size`` 1: a single process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that validates, logs and writes."""
        return self.rank == 0

    def shard(self, batch: Sequence[T]) -> list[T]:
        """This rank's contiguous share of a global batch (all of it in a single process)."""
        if not self.enabled:
            return list(batch)
        per_rank = len(batch) // self.world_size
        return list(batch[self.rank * per_rank:(self.rank + 1) * per_rank])

    def wrap(self, network: nn.Module, device: torch.device) -> nn.Module:
        """The network to train: DistributedDataParallel around ``network`` in a run of several
        processes, else ``network`` itself."""
        if not self.enabled:
            return network
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)

    def mean(self, value: float, device: torch.device) -> float:
        """The mean of ``value`` over all processes."""
        if not self.enabled:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world_size

    def decision(self, value: bool, device: torch.device) -> bool:
        """Rank 0's ``value``, on every process (the others' are ignored)."""
        return value if not self.enabled else bool(self.number(int(value), device))

    def number(self, value: int, device: torch.device) -> int:
        """Rank 0's integer ``value``, on every process (the others' are ignored)."""
        if not self.enabled:
            return value
        tensor = torch.tensor([int(value)], dtype=torch.int64, device=device)
        dist.broadcast(tensor, src=0)
        return int(tensor.item())

    def sync_buffers(self, network: nn.Module) -> None:
        """Give every process rank 0's buffers (BatchNorm statistics), so that all hold the same
        network after an epoch: the one rank 0 validates and saves."""
        if not self.enabled:
            return
        for buffer in network.buffers():
            dist.broadcast(buffer, src=0)

    def finish(self) -> None:
        """Wait until every process has finished its work (rank 0 validates and writes last), so
        that none tears the process group down while another still uses it: gloo aborts a process
        whose peer destroys the group under it ("terminate called without an active exception")."""
        if self.enabled and dist.is_initialized():
            dist.barrier()

    def close(self) -> None:
        """Leave the process group (after :meth:`finish` on success; directly after a failure,
        when a peer may never arrive)."""
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def parse_devices(spec: str) -> list[str]:
    """The devices of ``--devices``: GPU indices (``0,1`` or ``"0 1"``, as Scipion's ``%(GPU)s``
    gives) or ``cpu`` entries (``cpu,cpu``: two processes on the CPU), never a mix."""
    parts = spec.replace(",", " ").split()
    if not parts:
        raise CryoUNetError("--devices is empty: give GPU indices (0,1) or cpu entries (cpu,cpu)")
    devices = []
    for part in parts:
        part = part.strip().lower()
        if part.startswith("cuda:"):
            part = part[5:]
        if part != "cpu" and not part.isdigit():
            raise CryoUNetError(f"--devices {spec!r}: {part!r} is neither a GPU index nor cpu")
        devices.append(part)
    kinds = {d == "cpu" for d in devices}
    if len(kinds) > 1:
        raise CryoUNetError(f"--devices {spec!r} mixes the CPU and GPUs; give one kind")
    gpus = [d for d in devices if d != "cpu"]
    if len(set(gpus)) != len(gpus):
        raise CryoUNetError(f"--devices {spec!r} names a GPU twice (one process per GPU)")
    return devices


def check_devices(devices: Sequence[str]) -> None:
    """Fail before anything starts when a GPU of ``--devices`` is not visible to this process."""
    gpus = [int(d) for d in devices if d != "cpu"]
    if not gpus:
        return
    if not torch.cuda.is_available():
        raise CryoUNetError(f"--devices {','.join(devices)} asks for GPUs but no CUDA GPU is available to "
                            f"this process (torch {torch.__version__}, CUDA build: "
                            f"{torch.version.cuda or 'none'}); use --devices cpu,cpu or --device cpu")
    visible = torch.cuda.device_count()
    if max(gpus) >= visible:
        raise CryoUNetError(f"--devices {','.join(devices)}: GPU {max(gpus)} was requested but only "
                            f"{visible} GPU(s) are visible")


def in_torchrun() -> bool:
    """True in a process started by torchrun (its rank variables are set)."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def environment_ranks() -> tuple[int, int, int] | None:
    """``(rank, world size, local rank)`` from torchrun's variables; None outside a torchrun."""
    if not in_torchrun():
        return None
    try:
        rank, world, local = (int(os.environ[name]) for name in TORCHRUN_VARIABLES)
    except ValueError:
        raise CryoUNetError("torchrun's RANK, WORLD_SIZE and LOCAL_RANK are not whole numbers: "
                            + ", ".join(f"{n}={os.environ[n]!r}" for n in TORCHRUN_VARIABLES)) from None
    return rank, world, local


def from_environment(device: torch.device) -> Distributed:
    """This process's :class:`Distributed` from torchrun's variables (a single process without
    them); joins the process group (NCCL on a GPU, gloo on the CPU) when there are several."""
    ranks = environment_ranks()
    if ranks is None:
        return Distributed()
    rank, world, local = ranks
    state = Distributed(rank, world, local)
    if state.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT, **kwargs)
        logger.info("process %d of %d (local rank %d) on %s, %s backend", rank + 1, world, local, device,
                    backend)
    return state


def process_device(devices: Sequence[str] | None, requested: str, local_rank: int) -> str:
    """The ``--device`` value of one torchrun process: its entry of ``--devices`` by local rank,
    else the GPU of its local rank (``cuda``/GPU requests and ``auto`` with a GPU), else the CPU."""
    if devices:
        if local_rank >= len(devices):
            raise CryoUNetError(f"local rank {local_rank} has no device in --devices {','.join(devices)} "
                                f"({len(devices)} given): start as many processes per node as devices")
        return devices[local_rank]
    spec = (requested or "auto").strip().lower()
    if spec == "cpu" or (spec == "auto" and not torch.cuda.is_available()):
        return "cpu"
    return str(local_rank)


def launch_command(argv: Sequence[str], processes: int) -> list[str]:
    """The torchrun command line that runs ``cryounet`` with ``argv`` in ``processes`` processes on
    this node (a free rendezvous port: several runs may share a node)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
            "-m", "cryounet", *argv]


def run_launcher(command: Sequence[str], env: dict[str, str], grace: float = 120.0) -> int:
    """Run the torchrun ``command`` and return its exit code. When this process is interrupted
    (Ctrl-C, SIGTERM, SIGHUP: a :class:`KeyboardInterrupt`), the same signal goes to torchrun,
    which passes it to the training processes; they end as this one does (the checkpoint kept)
    and are waited for, ``grace`` seconds at most, before the interruption goes on."""
    import signal
    import subprocess

    proc = subprocess.Popen(list(command), env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt as exc:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(getattr(exc, "signum", signal.SIGINT))
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise


def process_threads(threads: int, processes: int) -> int:
    """CPU threads per process: ``--threads`` when given, else the CPUs this process may use
    (affinity and cgroup quota) shared out (at least 1)."""
    from cryounet.limits import usable_cpus

    if threads > 0:
        return threads
    return max(1, usable_cpus() // processes)
