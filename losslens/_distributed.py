"""The processes that share one piece of work (a grid, a report, runs to train): ``torch.distributed``
when torchrun started several, else one. Every layer that runs under torchrun uses it.

A surface grid is embarrassingly parallel: each point is an independent evaluation. Under
``torchrun --nproc_per_node=W`` every process builds the same evaluator, directions and grid; the
points not yet done are dealt out in rounds (round ``r``: rank ``k`` takes chunk ``r * W + k``), and
each round's results travel to rank 0, which alone writes the HDF5 file. At the end rank 0
broadcasts the finished surface, so every rank returns the same object.

An error on one rank (out of memory, Ctrl-C) ends the whole group: torchrun stops every worker
when one fails. Rank 0 has flushed every finished round to the file by then, so running the same
command again resumes the grid. A rank that stops responding (hung, or stopped by the debugger)
must not leave the others waiting forever: the process group has an explicit timeout, and before
each round ``monitored_barrier`` (on a gloo group, whatever the main backend) names the ranks that
did not arrive in time, which ends the run with that message.

Collectives go through ``all_gather_object`` / ``broadcast_object_list``, which work on gloo (CPU)
and on NCCL (GPU, objects staged on ``torch.cuda.current_device()``, which
``init_distributed_from_env`` sets from ``LOCAL_RANK``). The payloads are small (a chunk's indices
and values), so pickling costs nothing next to the evaluations.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from typing import Any, Iterator

import torch

from losslens.errors import ConfigError, LosslensError


class DistributedTimeout(LosslensError, RuntimeError):
    """A process of the group did not reach a collective within the group's timeout."""


DEFAULT_TIMEOUT_S = 300
_timeout = datetime.timedelta(seconds=DEFAULT_TIMEOUT_S)  # of the group this module initialized


def init_distributed_from_env(timeout: float = DEFAULT_TIMEOUT_S) -> bool:
    """Join the process group torchrun describes in the environment, if there is one.

    When ``WORLD_SIZE > 1`` (torchrun also sets ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``,
    ``MASTER_PORT``) and no process group exists yet, this selects the GPU ``LOCAL_RANK`` (when CUDA
    is available) and calls ``torch.distributed.init_process_group("nccl" if cuda else "gloo")``.
    The CLI calls it before computing a surface, so that ``torchrun --nproc_per_node=W losslens
    surface ...`` shares the grid among ``W`` processes; library users call it themselves (or
    initialize the group their own way) before ``surface_1d`` / ``surface_2d``.

    Args:
        timeout: seconds any collective may wait for another process before the run stops.

    Returns:
        ``True`` when a process group of more than one process is active after the call.

    Raises:
        ConfigError: ``WORLD_SIZE > 1`` but this build of torch has no ``torch.distributed``
            (every process would otherwise compute, and write, the whole grid).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return is_distributed()
    if not torch.distributed.is_available():
        raise ConfigError(
            f"WORLD_SIZE={world} asks for {world} processes but this torch build has no torch.distributed"
        )
    if not torch.distributed.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        global _timeout
        _timeout = datetime.timedelta(seconds=float(timeout))
        torch.distributed.init_process_group("nccl" if cuda else "gloo", timeout=_timeout)
    return is_distributed()


@contextlib.contextmanager
def process_group(timeout: float = DEFAULT_TIMEOUT_S) -> Iterator[bool]:
    """Join torchrun's process group for a command (see ``init_distributed_from_env``); at the end,
    when this block made the group, wait for every rank and leave it together (a rank that left early
    could break the others' last collective); after an error, leave at once.

    Yields:
        Whether a group of more than one process is active.
    """
    made = not (torch.distributed.is_available() and torch.distributed.is_initialized())
    active = init_distributed_from_env(timeout)
    made = made and torch.distributed.is_available() and torch.distributed.is_initialized()
    try:
        yield active
    except BaseException:
        if made:  # no barrier: another rank may be the one that failed
            _destroy()
        raise
    if made:
        torch.distributed.barrier()
        _destroy()


def _destroy() -> None:
    """Leave the process group and drop the reference to the control group with it."""
    global _control
    _control = None
    torch.distributed.destroy_process_group()


def is_distributed() -> bool:
    """Whether an initialized process group of more than one process is active."""
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class Group:
    """Rank, world size and the three collectives a grid needs; trivial for a single process."""

    def __init__(self) -> None:
        self.active = is_distributed()
        self.rank = torch.distributed.get_rank() if self.active else 0
        self.size = torch.distributed.get_world_size() if self.active else 1
        self._timeout = _timeout

    @property
    def _control(self):
        """The gloo group of the collectives, looked up at each use: a ``Group`` that outlived
        ``destroy_process_group`` must not keep a process group alive into the interpreter's finalization,
        where gloo's threads abort the process ("terminate called without an active exception")."""
        return _control_group() if self.active else None

    def _check_alive(self) -> None:
        """Wait for every rank, or raise naming the ranks that did not arrive within the timeout."""
        try:
            torch.distributed.monitored_barrier(group=self._control, timeout=self._timeout, wait_all_ranks=True)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise DistributedTimeout(
                f"a process of the torchrun group stopped responding (timeout {self._timeout.total_seconds():g} s, "
                f"--dist-timeout): {first}"
            ) from None

    @property
    def is_main(self) -> bool:
        """Whether this process is rank 0, the one that writes files and shows progress."""
        return self.rank == 0

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.active:
            return [obj]
        self._check_alive()
        out: list[Any] = [None] * self.size
        torch.distributed.all_gather_object(out, obj, group=self._control)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (the others pass anything, usually ``None``)."""
        if not self.active:
            return obj
        self._check_alive()
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0, group=self._control)
        return box[0]

    def check_same(self, fingerprint: dict[str, str]) -> None:
        """Raise on every rank when some rank's grid setup differs from rank 0's.

        Args:
            fingerprint: ``{what: digest}`` of the inputs every rank must share (origin, directions,
                coordinates, evaluator settings).

        Raises:
            ValueError: naming the ranks and the inputs that differ; raised on all ranks together,
                so none is left waiting in a collective.
        """
        prints = self.all_gather(fingerprint)
        diffs = [
            f"rank {r}: {', '.join(k for k in prints[0] if p.get(k) != prints[0][k])}"
            for r, p in enumerate(prints)
            if p != prints[0]
        ]
        if diffs:
            raise ValueError(
                "every process must compute the same grid, but these inputs differ from rank 0's "
                f"({'; '.join(diffs)}): build the model, directions and coordinates identically on every rank"
            )



_control = None


def _control_group():
    """A gloo group of all ranks (the world itself when it is gloo), made once: ``monitored_barrier``
    and the object collectives run on it whatever the main backend (NCCL has no monitored barrier)."""
    global _control
    dist = torch.distributed
    if dist.get_backend() == "gloo":
        return dist.group.WORLD
    if _control is None:
        _control = dist.new_group(backend="gloo", timeout=_timeout)
    return _control
