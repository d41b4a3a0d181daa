"""The job runner port: hand a queued job to something that will run ``kubepredict worker JOB_ID``.

The database is the single source of truth for job state. A runner only starts workers and
reports what the database cannot know by itself (a process killed, a pod OOMKilled).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

#: Called by a runner when a worker vanished without recording an outcome:
#: ``on_lost(job_id, attempt, code, message[, shard])``; the composition root wires it to the
#: catalogue, which requeues the job or the shard (attempts left) or marks it failed.
LostCallback = Callable[..., None]


@dataclass(frozen=True)
class JobSpec:
    job_id: str
    kind: str  # "train" | "predict"
    attempt: int = 1
    resources: dict = field(default_factory=dict)  # {"requests": {...}, "limits": {...}} (Kubernetes)
    shard: int | None = None  # one shard of a sharded predict job (local runner: one process per shard)
    shards: int | None = None  # a whole sharded job in one go (Kubernetes: one Indexed Job, completions = shards)
    parallelism: int | None = None  # pods at once for ``shards`` (None: all)
    retries: int = 0  # retries of each shard after its first failure (Kubernetes backoffLimitPerIndex)
    share: int = 1  # local shards: how many workers split the job's rows at once (each gets its share of cores)
    #: The model a predict job loads, ``{"model_id", "key", "sha256"}``, for a runner that loads it ahead
    #: (``warms_models``); None otherwise.
    model: dict | None = None


class JobRunner(ABC):
    """Starts workers for claimed jobs.

    ``submit`` is called by the dispatcher after it claimed a job (status ``running``,
    ``attempt`` incremented) and must not block on the job's completion.

    Raises:
        BackendUnavailable: the runner's backend (process table, Kubernetes API) failed.
    """

    on_lost: LostCallback | None = None
    #: Called, with the same arguments as ``on_lost``, when the runner stopped a worker for breaking a
    #: bound of its job (its memory limit): the job (or shard) fails for good, without a retry.
    on_failed: LostCallback | None = None
    #: The wall-clock time a job (or a shard) may run, enforced by the dispatcher from the catalogue
    #: (which then stops the worker); None when the backend enforces its own (activeDeadlineSeconds).
    deadline_seconds: float | None = None
    #: True when the runner starts a sharded job as one unit (``JobSpec.shards``) whose workers claim
    #: their own shards (Kubernetes Indexed Job); False: the dispatcher claims shards one by one.
    runs_shards_as_one_job: bool = False
    #: How often the dispatcher calls ``poll()``: 0 = every round. A runner that learns about its
    #: workers from events (Kubernetes watches) only needs an occasional full resync.
    poll_interval_seconds: float = 0.0
    #: True when the runner loads a predict job's model ahead for its workers (the local runner's fork
    #: server, runner/warm_models.py): the dispatcher then fills ``JobSpec.model``.
    warms_models: bool = False

    def start(self) -> None:  # noqa: B027 - an optional hook: by default there is nothing to do
        """Begin background observation of workers, if the runner has any (called by the dispatcher)."""

    @abstractmethod
    def submit(self, spec: JobSpec) -> None:
        """Start a worker for the job."""

    @abstractmethod
    def cancel(self, job_id: str) -> None:
        """Stop the job's worker if it runs here; a missing worker is not an error."""

    def poll(self) -> None:  # noqa: B027 - an optional hook: by default there is nothing to do
        """Look at running workers and report lost ones through ``on_lost`` (called periodically)."""

    def running(self) -> int:
        """How many workers this runner has in flight (for the concurrency limit)."""
        return 0

    def running_ids(self) -> list[str]:
        """Job ids with a worker in flight here (the dispatcher stops those the catalogue no longer runs)."""
        return []

    def running_shards(self) -> list[tuple[str, int, int]]:
        """``(job_id, shard, attempt)`` of shard workers in flight here (the dispatcher stops stale ones)."""
        return []

    def cancel_shard(self, job_id: str, shard: int) -> None:  # noqa: B027 - an optional hook: by default there is nothing to do
        """Stop one shard's worker if it runs here (its shard was requeued or finished without it)."""

    def close(self) -> None:  # noqa: B027 - an optional hook: by default there is nothing to do
        """Release resources (stop watching, terminate nothing that should survive)."""
