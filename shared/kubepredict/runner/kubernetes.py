"""Job runner that starts each attempt as a Kubernetes batch/v1 Job and reports lost pods."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from .. import errors
from .base import JobRunner, JobSpec, LostCallback
from .k8s_manifest import (
    APP_LABEL,
    APP_NAME,
    JOB_ID_LABEL,
    KIND_LABEL,
    RUNNER_SELECTOR,
    JobTemplate,
    build_job,
    job_name,
    label_value,
)
from .k8s_status import STUCK_CODES, Verdict, classify_pod, is_indexed, job_finished, owner_key, pod_shard, verdict_for

logger = logging.getLogger(__name__)

#: Every (apiGroup, resource, verb) this runner calls; infra/rbac.yaml grants exactly these.
REQUIRED_PERMISSIONS: frozenset[tuple[str, str, str]] = frozenset(
    {
        ("batch", "jobs", "create"),
        ("batch", "jobs", "get"),  # submit(): tell a re-submission of the same attempt from a name clash
        ("batch", "jobs", "list"),
        ("batch", "jobs", "watch"),
        ("batch", "jobs", "delete"),
        ("", "pods", "list"),
        ("", "pods", "watch"),
        ("", "pods/log", "get"),  # the tail of a failed worker's log goes into the lost message
    }
)


def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """Build an ApiClient from the in-cluster service account, else from a kubeconfig file."""
    from kubernetes import client, config

    cfg = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=cfg)
        logger.info("kubernetes runner: using in-cluster configuration")
    except config.ConfigException:
        try:
            config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
        except (config.ConfigException, OSError) as exc:
            raise errors.BackendUnavailable(f"no Kubernetes configuration (in-cluster or kubeconfig): {exc}") from exc
        logger.info("kubernetes runner: using kubeconfig %s", kubeconfig or "~/.kube/config")
    return client.ApiClient(cfg)


def translate_api_error(exc: BaseException, action: str) -> errors.KubepredictError:
    """Map an ApiException or a transport error to the package's error hierarchy."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        detail = _api_message(exc)
        if exc.status == 404:
            return errors.NotFound(f"Kubernetes {action}: not found: {detail}")
        if exc.status == 409:
            return errors.Conflict(f"Kubernetes {action}: already exists: {detail}")
        if exc.status in (401, 403):
            return errors.BackendUnavailable(
                f"Kubernetes API refused {action} ({exc.status} {exc.reason}): {detail}; the runner's service "
                "account needs the Role in infra/rbac.yaml (batch jobs create/get/list/watch/delete, "
                "pods list/watch, pods/log get)",
                code="kubernetes_forbidden",
            )
        if exc.status in (400, 422):
            return errors.InvalidInput(f"Kubernetes rejected {action}: {detail}")
        return errors.BackendUnavailable(f"Kubernetes API error during {action} ({exc.status} {exc.reason}): {detail}")
    return errors.BackendUnavailable(f"Kubernetes API unreachable during {action}: {exc}")


def _api_message(exc: Any) -> str:
    try:
        return json.loads(exc.body).get("message") or str(exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(exc.body or exc.reason)


def _transport_errors() -> tuple[type[BaseException], ...]:
    import urllib3
    from kubernetes.client.exceptions import ApiException

    return (ApiException, urllib3.exceptions.HTTPError, OSError)


class KubernetesJobRunner(JobRunner):
    """Runs ``kubepredict worker`` as one batch/v1 Job per attempt (backoffLimit 0: retries are the catalogue's).

    Failures are learnt from watches on Jobs and Pods (``start()``); ``poll()``, a full list of both,
    is only a periodic resync for anything a dropped watch missed.
    """

    poll_interval_seconds = 30.0
    runs_shards_as_one_job = True  # a sharded predict job is one Indexed Job; its pods claim their shards

    def __init__(
        self,
        template: JobTemplate,
        *,
        api_client: Any = None,
        on_lost: LostCallback | None = None,
        kubeconfig: str | None = None,
        context: str | None = None,
        log_tail_lines: int = 20,
    ):
        self.template = template
        self.on_lost = on_lost
        self._api_client = api_client
        self._kubeconfig, self._context = kubeconfig, context
        self._log_tail_lines = log_tail_lines
        self._lock = threading.Lock()
        self._inflight: dict[tuple[str, int], str] = {}  # (job_id, attempt) -> Job name
        self._reported: set[tuple[str, int]] = set()
        self._reported_shards: set[tuple[str, int, int]] = set()  # (job_id, shard, attempt)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> KubernetesJobRunner:
        """Build the runner from ``Settings`` (job image and namespace); kwargs go to JobTemplate or the runner."""
        runner_keys = {"api_client", "on_lost", "kubeconfig", "context", "log_tail_lines"}
        runner_kw = {k: kwargs.pop(k) for k in list(kwargs) if k in runner_keys}
        template = JobTemplate(image=settings.job_image, namespace=settings.namespace, **kwargs)
        return cls(template, **runner_kw)

    # -- clients ---------------------------------------------------------------------------
    def _client(self) -> Any:
        if self._api_client is None:
            self._api_client = load_api_client(self._kubeconfig, self._context)
        return self._api_client

    def _batch(self) -> Any:
        from kubernetes import client

        return client.BatchV1Api(self._client())

    def _core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self._client())

    def _call(self, action: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _transport_errors() as exc:
            raise translate_api_error(exc, action) from exc

    def _list(self, action: str, fn: Callable[..., Any], **kwargs: Any) -> list[dict]:
        resp = self._call(
            action,
            fn,
            self.template.namespace,
            label_selector=kwargs.pop("label_selector", RUNNER_SELECTOR),
            _preload_content=False,
            **kwargs,
        )
        return json.loads(resp.data).get("items") or []

    # -- port ------------------------------------------------------------------------------
    def submit(self, spec: JobSpec) -> None:
        """Create the Job for ``spec``; a re-submission of the same attempt is a no-op."""
        body = build_job(spec, self.template)
        name = body["metadata"]["name"]
        try:
            self._call(f"create job {name}", self._batch().create_namespaced_job, self.template.namespace, body)
        except errors.Conflict:
            existing = self._call(
                f"get job {name}",
                self._batch().read_namespaced_job,
                name,
                self.template.namespace,
                _preload_content=False,
            )
            if owner_key(json.loads(existing.data)) != (spec.job_id, spec.attempt):
                raise
            logger.info(
                "job %s attempt %s: Job %s already exists, not creating it again", spec.job_id, spec.attempt, name
            )
        with self._lock:
            self._inflight[(spec.job_id, spec.attempt)] = name
        logger.info("job %s attempt %s: created Job %s/%s", spec.job_id, spec.attempt, self.template.namespace, name)

    def cancel(self, job_id: str) -> None:
        """Delete every Job of ``job_id`` (all attempts) with background propagation; none left is fine."""
        selector = f"{APP_LABEL}={APP_NAME},{JOB_ID_LABEL}={label_value(job_id)}"
        jobs = self._list(f"list jobs of {job_id}", self._batch().list_namespaced_job, label_selector=selector)
        for job in jobs:
            if (owner_key(job) or ("",))[0] != job_id:
                continue
            name = job["metadata"]["name"]
            try:
                self._delete_job(name)
            except errors.NotFound:
                continue
            logger.info("job %s: deleted Job %s", job_id, name)
        with self._lock:
            self._inflight = {k: v for k, v in self._inflight.items() if k[0] != job_id}

    def running(self) -> int:
        """Number of attempts submitted here and not yet seen finished."""
        with self._lock:
            return len(self._inflight)

    def running_ids(self) -> list[str]:
        """Job ids with an attempt in flight here: the dispatcher cancels those the catalogue no longer runs."""
        with self._lock:
            return sorted({job_id for job_id, _attempt in self._inflight})

    def poll(self) -> None:
        """List this runner's Jobs and Pods once and report lost workers through ``on_lost``."""
        with self._lock:
            before = dict(self._inflight)
        jobs = self._list("list jobs", self._batch().list_namespaced_job)
        pods = self._list("list pods", self._core().list_namespaced_pod)
        by_owner: dict[tuple[str, int], list[dict]] = {}
        for pod in pods:
            key = owner_key(pod)
            if key:
                by_owner.setdefault(key, []).append(pod)
        seen = set()
        for job in jobs:
            key = owner_key(job)
            if key:
                seen.add(key)
                self._check(key, job, by_owner.get(key, []))
        for key in sorted(set(before) - seen):  # submitted here, unfinished, and now gone: deleted by someone
            self._report(key, Verdict("job_deleted", f"Job {before[key]} disappeared before it finished"))

    def _check(self, key: tuple[str, int], job: dict, pods: list[dict]) -> None:
        with self._lock:
            if key in self._reported:
                return
        indexed = is_indexed(job) or any(pod_shard(p) for p in pods)
        if indexed:
            self._check_shard_pods(key[0], pods)
        outcome = job_finished(job)
        if outcome == "succeeded":
            with self._lock:
                self._inflight.pop(key, None)
            return
        verdict = verdict_for(job, pods)
        if verdict is None:
            return
        if (
            outcome != "failed"
            and verdict.code not in STUCK_CODES
            and (indexed or not any((p.get("status") or {}).get("phase") == "Failed" for p in pods))
        ):
            return  # a failed pod of an Indexed Job lost one shard attempt; only the Job's failure is the job's
        if verdict.code == "pod_failed":
            verdict = Verdict(verdict.code, self._with_log_tail(verdict.message, pods))
        self._report(key, verdict)
        if verdict.code in STUCK_CODES:
            self._delete_quietly(job["metadata"]["name"])

    def _check_shard_pods(self, job_id: str, pods: list[dict]) -> None:
        """Each failed pod of an Indexed Job loses its shard's attempt (the catalogue requeues that shard
        alone; the Job controller starts the index's next pod, which claims the next attempt)."""
        for pod in pods:
            if (pod.get("status") or {}).get("phase") != "Failed":
                continue
            shard = pod_shard(pod)
            verdict = classify_pod(pod)
            if shard is None or verdict is None:
                continue
            key = (job_id, *shard)
            with self._lock:
                if key in self._reported_shards:
                    continue
                self._reported_shards.add(key)
            if verdict.code == "pod_failed":
                verdict = Verdict(verdict.code, self._with_log_tail(verdict.message, [pod]))
            logger.warning(
                "job %s shard %s attempt %s lost: %s: %s", job_id, shard[0], shard[1], verdict.code, verdict.message
            )
            if self.on_lost is not None:
                self.on_lost(job_id, shard[1], verdict.code, verdict.message, shard[0])

    def _with_log_tail(self, message: str, pods: list[dict]) -> str:
        if not self._log_tail_lines or not pods:
            return message
        name = pods[-1]["metadata"]["name"]
        try:
            # raw bytes: the client's own decoding hands back "b'line\\nline'" (the repr of the bytes)
            resp = self._core().read_namespaced_pod_log(
                name, self.template.namespace, tail_lines=self._log_tail_lines, _preload_content=False
            )
        except _transport_errors() as exc:
            logger.debug("no log for pod %s: %s", name, exc)
            return message
        tail = resp.data.decode("utf-8", "replace").strip()
        return f"{message}\n--- last log lines ---\n{tail}"[:4000] if tail else message

    def _delete_job(self, name: str) -> None:
        """Delete a Job and, in the background, its pods (errors translated; a missing Job is NotFound)."""
        self._call(
            f"delete job {name}",
            self._batch().delete_namespaced_job,
            name,
            self.template.namespace,
            propagation_policy="Background",
        )

    def _delete_quietly(self, name: str) -> None:
        try:
            self._delete_job(name)
        except errors.KubepredictError as exc:
            logger.warning("could not delete stuck Job %s: %s", name, exc)

    def _report(self, key: tuple[str, int], verdict: Verdict) -> None:
        with self._lock:
            if key in self._reported:
                return
            self._reported.add(key)
            self._inflight.pop(key, None)
        job_id, attempt = key
        logger.warning("job %s attempt %s lost: %s: %s", job_id, attempt, verdict.code, verdict.message)
        if self.on_lost is not None:
            self.on_lost(job_id, attempt, verdict.code, verdict.message)

    # -- watch -----------------------------------------------------------------------------
    def watch_once(self, resource: str, timeout_seconds: int = 60) -> int:
        """Stream Job or Pod events once (until the server ends the watch) and check each; return the count."""
        from kubernetes import watch

        lister = self._batch().list_namespaced_job if resource == "jobs" else self._core().list_namespaced_pod
        count = 0
        stream: Iterable[dict] = watch.Watch().stream(
            lister, self.template.namespace, label_selector=RUNNER_SELECTOR, timeout_seconds=timeout_seconds
        )
        try:
            for event in stream:
                count += 1
                obj = event.get("raw_object") or {}
                key = owner_key(obj)
                if key is None or event.get("type") not in ("ADDED", "MODIFIED"):
                    continue
                if resource == "jobs":
                    self._check_job_event(key, obj)
                else:
                    self._check_pod_event(key, obj)
                if self._stop.is_set():
                    break
        except _transport_errors() as exc:
            raise translate_api_error(exc, f"watch {resource}") from exc
        return count

    def _check_job_event(self, key: tuple[str, int], job: dict) -> None:
        if job_finished(job) is None:
            return
        selector = f"{RUNNER_SELECTOR},kubepredict.io/attempt={key[1]}"
        pods = [
            p
            for p in self._list("list pods", self._core().list_namespaced_pod, label_selector=selector)
            if owner_key(p) == key
        ]
        self._check(key, job, pods)

    def _check_pod_event(self, key: tuple[str, int], pod: dict) -> None:
        labels = pod["metadata"].get("labels") or {}
        name = (
            labels.get("batch.kubernetes.io/job-name")
            or labels.get("job-name")
            or job_name(key[0], labels.get(KIND_LABEL, "train"), key[1])
        )
        stub = {"metadata": {"name": name}}
        self._check(key, stub, [pod])

    def start(self) -> None:
        """Watch Jobs and Pods in two daemon threads until ``close()`` (reconnecting after each timeout)."""
        if self._threads:
            return
        self._stop.clear()
        for resource in ("jobs", "pods"):
            thread = threading.Thread(
                target=self._watch_loop, args=(resource,), name=f"k8s-watch-{resource}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _watch_loop(self, resource: str) -> None:
        while not self._stop.is_set():
            try:
                self.watch_once(resource, timeout_seconds=60)
            except errors.KubepredictError as exc:
                logger.warning("watching %s failed: %s; retrying in 5 s", resource, exc)
                self._stop.wait(5)

    def close(self) -> None:
        """Stop the watch threads; Jobs keep running (the database stays the source of truth)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        self._threads.clear()
