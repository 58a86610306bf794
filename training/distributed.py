"""Distributed training (Lightning DDP, docs/scaling.md): which process is rank zero, and the data end they share.

Every process reads the same minutes and trains; only global rank zero takes the lock, records
the run, exports, judges and writes the registry (:mod:`training.pipeline`).
"""

from __future__ import annotations

import datetime as dt
import os

from telemetry.health import floor_minute
from training.data import newest_sample_time

#: The end (exclusive, UTC) of the data a distributed run trains on, so that every process reads the same
#: minutes. Rank zero sets it for the processes Lightning's launcher starts (they inherit the environment);
#: a torchrun or SLURM job exports it once for all of them (docs/scaling.md).
DATA_END_ENV = "PYCEMAKER_TRAIN_DATA_END"
#: Rank variables of the launchers: torchrun (RANK, LOCAL_RANK, GROUP_RANK), SLURM (SLURM_PROCID), and
#: Lightning's own launcher in the processes it starts or on another machine (LOCAL_RANK, NODE_RANK).
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")


class DistributedSetupError(RuntimeError):
    """A distributed run cannot start as asked (its processes would not read the same data)."""


def _int_env(name: str, default: int = 0) -> int:
    try:
        return int(os.environ.get(name, "") or default)
    except ValueError:
        return default


def process_is_rank_zero() -> bool:
    """Whether this process is global rank zero of a distributed run (or not part of one)."""
    return all(_int_env(name) == 0 for name in RANK_VARIABLES)


def launched_from_outside() -> bool:
    """Whether a launcher started this process as one of several (torchrun, srun, Lightning's children)."""
    started = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "WORLD_SIZE")
    return any(name in os.environ for name in started) or _int_env("SLURM_NTASKS", 1) > 1


def pinned_data_end() -> dt.datetime | None:
    """``$PYCEMAKER_TRAIN_DATA_END`` as a whole UTC minute (None when unset)."""
    raw = os.environ.get(DATA_END_ENV, "").strip()
    if not raw:
        return None
    try:
        end = dt.datetime.fromisoformat(raw)
    except ValueError as exc:
        raise DistributedSetupError(f"{DATA_END_ENV}={raw!r} is not an ISO-8601 time") from exc
    if end.tzinfo is None:
        raise DistributedSetupError(f"{DATA_END_ENV}={raw!r} has no time zone: add Z or an offset")
    return floor_minute(end)


def pin_data_end(db) -> bool:
    """Rank zero fixes the end of the data before Lightning starts the other processes (they inherit it)."""
    try:
        newest = newest_sample_time(db)
    except Exception:  # the database: the run reads it again, fails, and is recorded as usual
        return False
    if newest is None:
        return False  # no data: likewise
    os.environ[DATA_END_ENV] = floor_minute(newest).isoformat()
    return True
