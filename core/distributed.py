"""Several processes, one job: the rank/world helpers behind `torchrun` runs of extract and train.

Launched by `torchrun --nproc-per-node N`, every process finds its place in the environment torchrun sets
(`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`). `session(device)` joins the process
group (NCCL on CUDA, gloo on CPU) and gives each process its device (`cuda:<LOCAL_RANK>` on a multi-GPU
machine). Rank 0 is the only writer of the run directory; the others compute their share and wait.

Without torchrun (no `WORLD_SIZE`, or 1) every helper is a no-op: rank 0 of a world of one.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from .device import resolve_device
from .errors import UserError

log = logging.getLogger(__name__)

T = TypeVar("T")

# Non-main ranks wait at a barrier while rank 0 writes, merges or fits a non-neural method alone; that
# can take long on big caches, far longer than a collective between busy ranks ever should.
TIMEOUT = timedelta(minutes=float(os.environ.get("CLVQ_DIST_TIMEOUT_MIN", "120")))


def env_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) as torchrun set them; (0, 1, 0) outside torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    if "RANK" not in os.environ:
        raise UserError(f"WORLD_SIZE={world} is set but RANK is not: launch several processes with torchrun")
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def process_device(name: str, local_rank: int) -> torch.device:
    """The device of one process: the chosen one, with a bare `cuda` becoming `cuda:<local_rank>`."""
    device = resolve_device(name)
    if device.type != "cuda" or device.index is not None:
        return device
    if local_rank >= torch.cuda.device_count():
        raise UserError(
            f"process with local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible): "
            "pass --nproc-per-node at most the number of GPUs"
        )
    return torch.device("cuda", local_rank)


@contextmanager
def session(device_name: str) -> Iterator[torch.device]:
    """This process's device, inside the torchrun process group when there is one.

    Joins the group on entry and leaves it on exit only if it joined it (a stage called from another
    stage shares the caller's group). Outside torchrun: just `resolve_device(device_name)`.
    """
    rank_, world, local = env_world()
    device = process_device(device_name, local)
    if world == 1 or dist.is_initialized():
        yield device
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=rank_, world_size=world, timeout=TIMEOUT,
                            device_id=device if device.type == "cuda" else None)
    log.info("rank %d of %d on %s (%s backend)", rank_, world, device, backend)
    try:
        yield device
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over all ranks, in place (unchanged in a world of one)."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Overwrite `tensor` on every rank with rank `src`'s, in place."""
    if is_distributed():
        dist.broadcast(tensor, src)
    return tensor


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s picklable `obj` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src)
    return box[0]


class PeerFailed(RuntimeError):
    """Raised on the other ranks when rank 0 failed inside `on_main`; rank 0 shows the real traceback."""


def on_main(fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0 only and hand its result to every rank.

    A failure on rank 0 reaches every rank, so none waits forever: a `UserError` is raised again with
    the same message everywhere, anything else is re-raised on rank 0 and reported as `PeerFailed` on
    the others.
    """
    if not is_distributed():
        return fn()
    outcome: tuple[str, Any] = ("ok", None)
    failure: BaseException | None = None
    if is_main():
        try:
            outcome = ("ok", fn())
        except UserError as exc:
            outcome, failure = ("user", str(exc)), exc
        except BaseException as exc:  # broadcast the failure first, then re-raise it untouched below
            outcome, failure = ("bug", f"{type(exc).__name__}: {exc}"), exc
    kind, value = broadcast_object(outcome)
    if failure is not None:
        raise failure
    if kind == "user":
        raise UserError(value)
    if kind == "bug":
        raise PeerFailed(f"rank 0 failed: {value}")
    return value


def shard(items: Sequence[T], rank_: int | None = None, world: int | None = None) -> list[T]:
    """This rank's share of `items`: every `world`-th one, starting at `rank`."""
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    return list(items[rank_::world])


def state_digest(tensors: dict[str, torch.Tensor]) -> str:
    """A short hash of named tensors' exact bytes: equal digests on two ranks mean identical weights."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]
