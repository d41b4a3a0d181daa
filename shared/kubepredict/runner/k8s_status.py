"""Read Job and Pod status (plain API dicts) and say why a worker was lost, if it was."""

from __future__ import annotations

from typing import NamedTuple

from .k8s_manifest import ATTEMPT_LABEL, INDEX_ANNOTATION, INDEX_FAILURES_ANNOTATION, JOB_ID_ANNOTATION

IMAGE_PULL_REASONS = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"})
CONFIG_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError"})
DISRUPTION_REASONS = frozenset(
    {"EvictionByEvictionAPI", "PreemptionByScheduler", "DeletionByTaintManager", "TerminationByKubelet"}
)
#: Reasons that never resolve on their own: the runner reports them and deletes the Job.
STUCK_CODES = frozenset({"image_pull_failed", "config_error"})


class Verdict(NamedTuple):
    """Why a worker is gone: ``code`` for ``on_lost`` and a human message."""

    code: str
    message: str


def owner_key(obj: dict) -> tuple[str, int] | None:
    """Return ``(job_id, attempt)`` from a Job's or Pod's metadata, or None if it is not ours."""
    meta = obj.get("metadata") or {}
    job_id = (meta.get("annotations") or {}).get(JOB_ID_ANNOTATION)
    attempt = (meta.get("labels") or {}).get(ATTEMPT_LABEL)
    if not job_id or not attempt:
        return None
    try:
        return job_id, int(attempt)
    except ValueError:
        return None


def is_indexed(job: dict) -> bool:
    """A sharded predict job's Indexed Job (one pod per shard index)."""
    return ((job.get("spec") or {}).get("completionMode")) == "Indexed"


def pod_shard(pod: dict) -> tuple[int, int] | None:
    """``(shard index, attempt)`` of an Indexed Job's pod: the attempt is the index's failure count + 1."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    try:
        index = int(annotations[INDEX_ANNOTATION])
    except (KeyError, ValueError):
        return None
    failures = annotations.get(INDEX_FAILURES_ANNOTATION) or "0"
    return index, (int(failures) + 1 if failures.isdigit() else 1)


def _true_conditions(obj: dict) -> list[dict]:
    return [c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("status") == "True"]


def job_finished(job: dict) -> str | None:
    """Return "succeeded" or "failed" once the Job controller decided, else None."""
    for cond in _true_conditions(job):
        if cond.get("type") in ("Complete", "SuccessCriteriaMet"):
            return "succeeded"
        if cond.get("type") in ("Failed", "FailureTarget"):
            return "failed"
    return None


def classify_job(job: dict) -> Verdict | None:
    """Verdict from the Job's own conditions (deadline, backoff), or None while it has not failed."""
    for cond in _true_conditions(job):
        if cond.get("type") not in ("Failed", "FailureTarget"):
            continue
        reason = cond.get("reason") or ""
        message = cond.get("message") or reason or "job failed"
        if reason == "DeadlineExceeded":
            return Verdict("deadline_exceeded", message)
        return Verdict("pod_failed", message)
    return None


def _container_statuses(pod: dict) -> list[dict]:
    status = pod.get("status") or {}
    return list(status.get("initContainerStatuses") or []) + list(status.get("containerStatuses") or [])


def classify_pod(pod: dict) -> Verdict | None:
    """Verdict for one worker pod: OOMKilled, image pull failure, eviction, deadline, non-zero exit; else None."""
    status = pod.get("status") or {}
    name = (pod.get("metadata") or {}).get("name", "?")
    if status.get("reason") == "Evicted":
        return Verdict("evicted", f"pod {name} evicted: {status.get('message') or 'node pressure'}")
    if status.get("reason") == "DeadlineExceeded":
        return Verdict("deadline_exceeded", f"pod {name}: {status.get('message') or 'active deadline exceeded'}")
    for cs in _container_statuses(pod):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason") or ""
        if reason in IMAGE_PULL_REASONS:
            image = cs.get("image", "?")
            return Verdict(
                "image_pull_failed",
                f"pod {name} cannot pull image {image}: {reason}: {waiting.get('message', '')}".rstrip(": "),
            )
        if reason in CONFIG_REASONS:
            return Verdict("config_error", f"pod {name}: {reason}: {waiting.get('message', '')}".rstrip(": "))
    if status.get("phase") != "Failed":
        return None
    for cond in _true_conditions(pod):
        if cond.get("type") == "DisruptionTarget" and cond.get("reason") in DISRUPTION_REASONS:
            return Verdict(
                "evicted", f"pod {name} disrupted: {cond.get('reason')}: {cond.get('message', '')}".rstrip(": ")
            )
    for cs in _container_statuses(pod):
        state = cs.get("state") or {}
        terminated = state.get("terminated") or (cs.get("lastState") or {}).get("terminated") or {}
        if terminated.get("reason") == "OOMKilled":
            return Verdict(
                "oom_killed",
                f"pod {name}: container {cs.get('name')} OOMKilled (exit code {terminated.get('exitCode', 137)})",
            )
        code = terminated.get("exitCode")
        if code not in (None, 0):
            detail = (terminated.get("message") or "").strip().splitlines()[-1:] or [
                terminated.get("reason") or "Error"
            ]
            return Verdict("pod_failed", f"pod {name}: exit code {code}: {detail[0]}"[:1000])
    return Verdict("pod_failed", f"pod {name} failed: {status.get('message') or status.get('reason') or 'unknown'}")


def verdict_for(job: dict, pods: list[dict]) -> Verdict | None:
    """Combine a Job and its pods: the deadline wins, then the most specific pod reason, then the Job's."""
    job_verdict = classify_job(job)
    if job_verdict and job_verdict.code == "deadline_exceeded":
        return job_verdict
    pod_verdicts = [v for v in (classify_pod(p) for p in pods) if v]
    for code in ("oom_killed", "evicted", "image_pull_failed", "config_error", "deadline_exceeded", "pod_failed"):
        for verdict in pod_verdicts:
            if verdict.code == code:
                return verdict
    return job_verdict
