"""Running under `torchrun --nproc_per_node=N`: join the process group torchrun describes (gloo on CPU,
NCCL on GPU), and let rank 0 alone write shared files while the others wait for them.

Nothing here is home-made distribution: torchrun starts the processes, PyTorch DDP averages the gradients
(see the trainer), and these helpers only decide who writes.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist


def init_from_env() -> bool:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); returns whether distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        atexit.register(_destroy)
    return True


def _destroy() -> None:
    """Leave the process group while the interpreter is whole: exiting without this lets gloo's worker threads
    release tensors during interpreter teardown, which aborts the process (SIGABRT) now and then."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (writing caches and files); the others run it after, reading them."""
    if not is_main():
        barrier()
    try:
        yield
    finally:
        if is_main():
            barrier()
