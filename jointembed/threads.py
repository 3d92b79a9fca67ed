"""Thread settings for a process that shares its cores: chosen before torch loads, never over the user's own.

Torch's defaults are one intra-op thread per core, with OpenMP threads that spin while they wait for each
other. On a machine busy with other work a spinning thread holds a core another job needs, and every parallel
op waits until all its threads have been scheduled: measured on 2 cores beside other jobs, one epoch of the
quickstart took several times as long with the defaults (``benchmarks/quickstart_load.py``). So the console
script asks OpenMP to let waiting threads sleep (``OMP_WAIT_POLICY=PASSIVE``) and uses as many intra-op threads
as cores are free: the cores this process may run on (its CPU affinity and any cgroup CPU quota) less the load
average that falls on them. Both are environment variables, which only count before the OpenMP runtime starts,
that is before torch is imported. Whatever the user set (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``,
``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT``) stands.

This module imports nothing heavy: the console script calls it before importing torch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ThreadChoice", "choose_threads", "wait_policy_chosen", "usable_cores", "apply_thread_defaults"]

# Environment variables by which the user has chosen the thread count, or how OpenMP threads wait.
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


@dataclass(frozen=True)
class ThreadChoice:
    """What :func:`choose_threads` decided.

    Attributes:
        threads: Intra-op threads to use, or ``None`` when the user's ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``
            stands.
        passive_wait: Whether to set ``OMP_WAIT_POLICY=PASSIVE`` (``False`` when the user chose a wait policy).
        cores: The cores this process may use.
        load: The part of the 1-minute load average that falls on those cores.
    """

    threads: int | None
    passive_wait: bool
    cores: int
    load: float

    def environ(self) -> dict[str, str]:
        """The environment variables that carry the choice (empty when the user's settings stand)."""
        env = {} if self.threads is None else {"OMP_NUM_THREADS": str(self.threads)}
        if self.passive_wait:
            env["OMP_WAIT_POLICY"] = "PASSIVE"
        return env

    def describe(self) -> str:
        """One line for the log, saying what was chosen, from what, and how to choose otherwise."""
        wait = ", waiting threads sleep (OMP_WAIT_POLICY=PASSIVE)" if self.passive_wait else ""
        if self.threads is None:
            return f"jointembed: intra-op threads from OMP_NUM_THREADS/MKL_NUM_THREADS{wait}"
        plural = "" if self.threads == 1 else "s"
        what = f"{self.threads} intra-op thread{plural} ({self.cores} cores, load {self.load:.1f} on them)"
        return f"jointembed: {what}{wait}; set OMP_NUM_THREADS to choose"


def choose_threads(cores: int, load: float, env: Mapping[str, str]) -> ThreadChoice:
    """Decide the intra-op threads and the OpenMP wait policy of a process that may share its cores.

    A thread is worth starting only on a core that is free: ``threads = cores - load`` rounded to the nearest
    whole number (halves up), at least 1 and at most ``cores``. Threads that wait sleep rather than spin, so a
    core that becomes busy is given up at once.

    Args:
        cores: The cores this process may use (see :func:`usable_cores`), at least 1.
        load: The load on those cores from other work (1-minute load average, scaled to them), at least 0.
        env: The environment; a thread count or wait policy set in it is the user's and is kept.

    Returns:
        The choice; ``threads`` is ``None`` where the user set ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS``.
    """
    if cores < 1 or not math.isfinite(load) or load < 0:
        raise ValueError(f"choose_threads needs cores >= 1 and a finite load >= 0, got cores={cores}, load={load}")
    user_threads = any(env.get(name, "").strip() for name in _THREAD_VARIABLES)
    threads = None if user_threads else max(1, min(cores, math.floor(cores - load + 0.5)))
    return ThreadChoice(threads=threads, passive_wait=not wait_policy_chosen(env), cores=cores, load=load)


def wait_policy_chosen(env: Mapping[str, str]) -> bool:
    """Whether ``env`` says how OpenMP threads wait (``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT``, ``KMP_BLOCKTIME``)."""
    return any(env.get(name, "").strip() for name in _WAIT_VARIABLES)


def usable_cores(cgroup_cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup v2 CPU quota where one is set
    (a container started with ``--cpus 2`` on a 64-core host may use 2 cores' time, not 64)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = cgroup_cpu_max.read_text(encoding="utf-8").split()[:2]
    except (OSError, ValueError):  # no cgroup v2 file (macOS, cgroup v1, not mounted): no quota to apply
        return cores
    if quota != "max" and int(period) > 0:
        cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    return cores


def apply_thread_defaults(env: MutableMapping[str, str] | None = None) -> ThreadChoice:
    """Choose threads for this process from its cores and the current load and write the choice into ``env``
    (``os.environ`` by default). Call it before torch is imported: OpenMP reads these variables once, at start.

    Returns:
        The choice (log :meth:`ThreadChoice.describe`).
    """
    env = os.environ if env is None else env
    cores = usable_cores()
    machine = os.cpu_count() or cores
    try:
        load = os.getloadavg()[0] * cores / machine
    except (AttributeError, OSError):  # no load average on this platform: count the cores as free
        load = 0.0
    choice = choose_threads(cores, load, env)
    env.update(choice.environ())
    return choice
