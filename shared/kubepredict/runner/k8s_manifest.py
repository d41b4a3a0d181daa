"""Build the batch/v1 Job that runs ``kubepredict worker JOB_ID --attempt N`` (pure functions, no API calls).

A sharded predict job is one Indexed Job instead (``completionMode: Indexed``, one completion per
shard): each pod runs ``kubepredict worker JOB_ID --sharded`` and scores shard ``JOB_COMPLETION_INDEX``;
a failed pod is retried for its index alone (``backoffLimitPerIndex``), and the first index out of
retries fails the Job (``maxFailedIndexes: 0``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from ..errors import InvalidInput
from .base import JobSpec
from .resources import K8S_MAX_RESOURCES, SECTIONS, check_resources, parse_quantity

APP_LABEL = "app.kubernetes.io/name"
APP_NAME = "kubepredict"
KIND_LABEL = "kubepredict.io/kind"
JOB_ID_LABEL = "kubepredict.io/job-id"
ATTEMPT_LABEL = "kubepredict.io/attempt"
JOB_ID_ANNOTATION = "kubepredict.io/job-id"
#: Set by the Job controller on each pod of an Indexed Job (and its failure count, with backoffLimitPerIndex).
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
INDEX_FAILURES_ANNOTATION = "batch.kubernetes.io/job-index-failure-count"
SHARD_FAILURES_ENV = "KUBEPREDICT_SHARD_FAILURES"  # read by runner.worker.shard_from_env
#: Selects every Job and Pod this runner created, and nothing else.
RUNNER_SELECTOR = f"{APP_LABEL}={APP_NAME},{KIND_LABEL},{JOB_ID_LABEL}"

CONFIG_MAP = "kubepredict-config"
#: Secrets projected as files into ``SECRETS_DIR``; ``config.read_secret`` finds them by key name.
SECRETS = (
    ("kubepredict-database-url", False),  # key kubepredict-database-url (required)
    ("kubepredict-s3-credentials", True),  # keys kubepredict-s3-access-key-id / -secret-access-key
)
SECRETS_DIR = "/run/secrets/kubepredict"
KINDS = ("train", "predict")

_DNS_LABEL_MAX = 63
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _default_resources() -> dict:
    return {
        "train": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
        "predict": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}},
    }


@dataclass(frozen=True)
class JobTemplate:
    """Everything about the generated Job that is not per job: image, namespace, limits, timeouts."""

    image: str
    namespace: str = "kubepredict"
    service_account: str | None = None
    image_pull_policy: str = "IfNotPresent"
    ttl_seconds_after_finished: int = 3600
    active_deadline_seconds: dict = field(default_factory=lambda: {"train": 6 * 3600, "predict": 2 * 3600})
    default_resources: dict = field(default_factory=_default_resources)
    max_resources: dict = field(default_factory=lambda: dict(K8S_MAX_RESOURCES))
    run_as_user: int = 10001


def resolve_resources(kind: str, requested: dict | None, template: JobTemplate) -> dict:
    """Merge ``spec.resources`` over the kind's defaults and enforce the configured maximums."""
    given = check_resources(requested, template.max_resources)
    defaults = template.default_resources[kind]
    merged = {section: {**defaults.get(section, {}), **given.get(section, {})} for section in SECTIONS}
    user_limits = given.get("limits") or {}
    for name, request in merged["requests"].items():
        limit = merged["limits"].get(name)
        if limit is not None and parse_quantity(request) > parse_quantity(limit) and name not in user_limits:
            merged["limits"][name] = request  # a raised request lifts the default limit with it
    return merged


def dns_label(text: str, *, max_length: int = _DNS_LABEL_MAX) -> str:
    """Turn any text into a DNS-1123 label (lower case alphanumerics and '-'), hashed when changed or too long."""
    slug = re.sub(r"[^a-z0-9-]+", "-", text.lower())
    slug = re.sub(r"-{2,}", "-", slug).strip("-") or "x"
    if len(slug) <= max_length and slug == text:
        return slug
    # A hash of the original keeps distinct ids distinct ("job_a" vs "job-a", long ids cut short).
    digest = hashlib.sha256(text.encode()).hexdigest()[:6]
    head = slug[: max_length - 7].rstrip("-") or "x"
    return f"{head}-{digest}"


def job_name(job_id: str, kind: str, attempt: int) -> str:
    """Name of the Job for one attempt: ``kp-<kind>-<job id>-<attempt>``, a DNS-1123 label of ≤ 63 chars."""
    suffix = f"-{attempt}"
    prefix = f"kp-{kind}-"
    return prefix + dns_label(job_id, max_length=_DNS_LABEL_MAX - len(prefix) - len(suffix)) + suffix


def label_value(text: str) -> str:
    """A valid label value for ``text`` (ids like ``job_01H…`` pass unchanged)."""
    if len(text) <= _DNS_LABEL_MAX and _LABEL_VALUE.match(text):
        return text
    return dns_label(text)


def job_labels(spec: JobSpec) -> dict:
    """Labels put on the Job and its Pods."""
    return {
        APP_LABEL: APP_NAME,
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/managed-by": "kubepredict-runner",
        KIND_LABEL: spec.kind,
        JOB_ID_LABEL: label_value(spec.job_id),
        ATTEMPT_LABEL: str(spec.attempt),
    }


def build_job(spec: JobSpec, template: JobTemplate) -> dict:
    """Return the batch/v1 Job manifest (a plain dict) for one attempt of a job."""
    if spec.kind not in KINDS:
        raise InvalidInput(f"unknown job kind {spec.kind!r}; expected one of {', '.join(KINDS)}")
    if not spec.job_id or spec.attempt < 1:
        raise InvalidInput("a job needs a job_id and an attempt >= 1")
    labels = job_labels(spec)
    annotations = {JOB_ID_ANNOTATION: spec.job_id, ATTEMPT_LABEL: str(spec.attempt)}
    container = {
        "name": "worker",
        "image": template.image,
        "imagePullPolicy": template.image_pull_policy,
        "command": (
            ["kubepredict", "worker", spec.job_id, "--sharded"]
            if spec.shards
            else ["kubepredict", "worker", spec.job_id, "--attempt", str(spec.attempt)]
        ),
        "envFrom": [{"configMapRef": {"name": CONFIG_MAP}}],
        "env": [
            {"name": "KUBEPREDICT_SECRETS_DIR", "value": SECRETS_DIR},
            {"name": "HOME", "value": "/tmp"},
            {"name": "TMPDIR", "value": "/tmp"},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
        ]
        + (
            [
                {
                    "name": SHARD_FAILURES_ENV,
                    "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_FAILURES_ANNOTATION}']"}},
                }
            ]
            if spec.shards
            else []
        ),
        "resources": resolve_resources(spec.kind, spec.resources, template),
        "volumeMounts": [
            {"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod_spec = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": template.run_as_user,
            "runAsGroup": template.run_as_user,
            "fsGroup": template.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}},
            {
                "name": "secrets",
                "projected": {
                    "defaultMode": 0o440,
                    "sources": [{"secret": {"name": name, "optional": optional}} for name, optional in SECRETS],
                },
            },
        ],
    }
    if template.service_account:
        pod_spec["serviceAccountName"] = template.service_account
    job_spec: dict = {"backoffLimit": 0}
    if spec.shards:
        if spec.kind != "predict" or spec.shards < 1:
            raise InvalidInput("only predict jobs are sharded, into at least one shard")
        job_spec = {
            "completionMode": "Indexed",
            "completions": spec.shards,
            "parallelism": min(spec.shards, spec.parallelism or spec.shards),
            "backoffLimitPerIndex": max(0, spec.retries),
            "maxFailedIndexes": 0,
        }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(spec.job_id, spec.kind, spec.attempt),
            "namespace": template.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {
            **job_spec,
            "ttlSecondsAfterFinished": template.ttl_seconds_after_finished,
            "activeDeadlineSeconds": int(template.active_deadline_seconds[spec.kind]),
            "template": {"metadata": {"labels": dict(labels), "annotations": dict(annotations)}, "spec": pod_spec},
        },
    }
