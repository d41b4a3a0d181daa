"""Bounds of a local job: a memory limit, a CPU allowance and a wall-clock deadline.

Resolved by the local runner from the settings and the request's ``resources.limits`` (``local_limits``),
handed to the worker process in its environment (``JobLimits.env``), and enforced three ways:

- in the kernel: the worker sets ``RLIMIT_DATA`` (its heap and private mappings) to the memory limit
  before the job runs, so an allocation beyond it raises ``MemoryError`` in the job (``apply``);
- by the runner: it reads the resident memory of each worker and its children every round and kills
  a worker above the limit (``tree_rss_bytes``), for memory the kernel limit does not see;
- by the dispatcher: a job running longer than the deadline is failed, and its worker stopped.

A breach fails the job for good (a retry would breach again), with a reason a person reads:
``memory_message`` / ``deadline_message``. The CPU allowance caps the threads a job starts:
``n_jobs`` (``clamp_parallelism``), BLAS/OpenMP pools (threadpoolctl) and joblib's CPU count.
"""

from __future__ import annotations

import math
import os
import resource
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .resources import format_bytes, parse_quantity

ENV_MEMORY = "KUBEPREDICT_WORKER_MEMORY_BYTES"
ENV_CPUS = "KUBEPREDICT_WORKER_CPUS"
#: Thread-pool sizes read by BLAS/OpenMP libraries and joblib when they start (a fresh interpreter
#: or a child process); a forked worker has them loaded already and is limited through threadpoolctl.
THREAD_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "NUMEXPR_MAX_THREADS",
    "LOKY_MAX_CPU_COUNT",
)
MEMORY_LIMIT_CODE = "memory_limit_exceeded"
DEADLINE_CODE = "deadline_exceeded"
#: Room given back to a worker that hit its memory limit, to record why it failed.
_RECORDING_HEADROOM = 256 * 2**20


@dataclass(frozen=True)
class JobLimits:
    memory_bytes: int
    cpus: int

    def env(self) -> dict[str, str]:
        """Environment handed to the worker process."""
        threads = str(self.cpus)
        return {ENV_MEMORY: str(self.memory_bytes), ENV_CPUS: threads, **{name: threads for name in THREAD_ENV}}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> JobLimits | None:
        environ = os.environ if environ is None else environ
        try:
            return cls(int(environ[ENV_MEMORY]), max(1, int(environ[ENV_CPUS])))
        except (KeyError, ValueError):
            return None


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def local_limits(settings, resources: dict | None, *, share: int = 1) -> JobLimits:
    """The memory limit and CPU allowance of a local job.

    Memory: ``resources.limits.memory`` (or a ``requests.memory`` above the default), else
    ``job_memory_limit``; never above ``job_max_memory`` (requests above it were refused at submit).
    CPUs: ``resources.limits.cpu`` (rounded up), else ``job_cpu_limit``, else every core, or for one of
    ``share`` workers splitting a job at once (the shards of a sharded job) its share of the cores, at
    least one; never more than this machine's cores. (Two shards with every core each start two BLAS
    thread pools on two cores, whose spinning threads take time from the other shard.)
    """
    limits = (resources or {}).get("limits") or {}
    requests = (resources or {}).get("requests") or {}
    memory = parse_quantity(settings.job_memory_limit)
    if "memory" in limits:
        memory = parse_quantity(limits["memory"])
    elif "memory" in requests:
        memory = max(memory, parse_quantity(requests["memory"]))  # a raised request lifts the limit with it
    memory = min(memory, parse_quantity(settings.job_max_memory))
    cpu = limits.get("cpu") or settings.job_cpu_limit
    cpus = max(1, cores() // max(1, share)) if cpu is None else math.ceil(parse_quantity(cpu))
    return JobLimits(memory_bytes=int(memory), cpus=max(1, min(cpus, cores())))


def memory_message(limit_bytes: int) -> str:
    return (
        f"the job used more than {format_bytes(limit_bytes)} of memory (limit {format_bytes(limit_bytes)}); "
        "ask for more with resources.limits.memory, or use a smaller dataset or lighter params"
    )


def deadline_message(deadline_seconds: float) -> str:
    return f"the job ran longer than {deadline_seconds:g} s (limit {deadline_seconds:g} s) and was stopped"


def apply(limits: JobLimits) -> None:
    """In the worker process, before the job runs: the kernel memory limit and the thread caps."""
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    wanted = limits.memory_bytes if hard == resource.RLIM_INFINITY else min(limits.memory_bytes, hard)
    # Only the soft limit: the worker may lift it a little to record its failure (``relax_memory``).
    resource.setrlimit(resource.RLIMIT_DATA, (wanted, hard))
    os.environ.update({name: str(limits.cpus) for name in THREAD_ENV})
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=limits.cpus)  # BLAS and OpenMP pools already loaded (a forked worker)


def relax_memory() -> None:
    """After a MemoryError: allow a little more, so the failure can be written to the catalogue."""
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if soft != resource.RLIM_INFINITY:
        raised = soft + _RECORDING_HEADROOM
        raised = raised if hard == resource.RLIM_INFINITY else min(raised, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (raised, hard))


def clamp_parallelism(params: dict, cpus: int | None) -> dict:
    """``n_jobs`` bounded by the CPU allowance (-1 and other negatives count from it, as in joblib)."""
    n_jobs = params.get("n_jobs")
    if cpus is None or isinstance(n_jobs, bool) or not isinstance(n_jobs, int):
        return params
    wanted = n_jobs if n_jobs > 0 else max(1, cpus + 1 + n_jobs)
    return {**params, "n_jobs": min(wanted, cpus)}


def clamp_model(pipeline, cpus: int | None) -> None:
    """Bound ``n_jobs`` of a loaded model's steps (it was trained under another allowance, or before one)."""
    if cpus is None:
        return
    for _name, step in getattr(pipeline, "steps", None) or [(None, pipeline)]:
        n_jobs = step.get_params(deep=False).get("n_jobs") if hasattr(step, "get_params") else None
        clamped = clamp_parallelism({"n_jobs": n_jobs}, cpus)["n_jobs"]
        if clamped != n_jobs:
            step.set_params(n_jobs=clamped)


def tree_rss_bytes(pid: int) -> int:
    """Resident anonymous memory (what a job allocated, not the files it maps) of a process and its
    descendants (Linux ``/proc``); 0 if it is gone."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    total += int(line.split()[1]) * 1024
                    break
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return total
