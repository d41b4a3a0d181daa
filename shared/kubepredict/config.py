"""One frozen ``Settings`` read from the environment (and secret files) once per process."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from .errors import ConfigError, InvalidInput

SECRET_DIRS = ("/var/openfaas/secrets", "/run/secrets/kubepredict")


def read_secret(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """Return a secret from a mounted file (OpenFaaS / Kubernetes), else the environment, else None."""
    environ = os.environ if environ is None else environ
    dirs = [environ.get("KUBEPREDICT_SECRETS_DIR", "")] + list(SECRET_DIRS)
    for d in dirs:
        if not d:
            continue
        for fname in (name, name.lower(), name.lower().replace("_", "-")):
            p = Path(d) / fname
            if p.is_file():
                return p.read_text().strip()
    value = environ.get(name)
    return value if value else None


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def _float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc


def _list(environ: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list (spaces ignored); empty or unset: ()."""
    return tuple(p.strip() for p in (environ.get(name) or "").split(",") if p.strip())


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with defaults that run on a laptop with nothing installed."""

    data_dir: Path = Path("./data")
    database_url: str = ""
    storage_url: str = ""
    runner: str = "local"
    kafka_bootstrap_servers: str | None = None
    api_token: str | None = None
    # The embedded gateway's edge (runtimes/edge.py, runtimes/protocol.py): a token that may only read
    # and predict online; Host names answered in open mode (empty: loopback names and the bound host;
    # "*": any); browser origins allowed by CORS (empty: none; "*": any); connection bounds.
    read_token: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    max_connections: int = 1000
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    keep_alive_seconds: float = 5.0
    host: str = "127.0.0.1"
    port: int = 8080
    threads: int = 16
    max_upload_bytes: int = 512 * 1024 * 1024
    max_online_rows: int = 10_000
    max_concurrent_jobs: int = field(default_factory=lambda: os.cpu_count() or 2)
    max_queued_jobs: int = 1000
    job_max_attempts: int = 2
    # Bounds of each local job (runner/limits.py): memory a worker may use (a request's
    # resources.limits.memory may lower it, or raise it up to job_max_memory), its CPU allowance (empty:
    # every core; it caps n_jobs and BLAS/OpenMP threads), and the wall-clock time a job may run.
    job_memory_limit: str = "4Gi"
    job_max_memory: str = "16Gi"
    job_cpu_limit: str | None = None
    job_deadline_seconds: float = 3600.0
    heartbeat_seconds: float = 2.0
    heartbeat_timeout_seconds: float = 30.0
    dispatch_interval_seconds: float = 0.5
    predict_chunk_rows: int = 50_000
    # Sharded batch prediction: rows per shard when a request names no "shards" (0: one worker), the
    # most shards a request may ask for, and pods at once per Indexed Job (0: every shard at once)
    shard_rows: int = 0
    max_shards: int = 64
    shard_parallelism: int = 0
    namespace: str = "kubepredict"
    # S3
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_addressing_style: str = "auto"
    # Kafka topics
    topic_train_requests: str = "kubepredict.train.requests"
    topic_predict_requests: str = "kubepredict.predict.requests"
    topic_events: str = "kubepredict.events"
    topic_dead_letter: str = "kubepredict.dead-letter"
    topic_predict_stream: str = "kubepredict.predict.stream"
    topic_predictions: str = "kubepredict.predictions"
    stream_group: str = "kubepredict-stream"
    connector_group: str = "kubepredict-connector"
    kafka_options: str | None = None  # extra librdkafka properties, "k=v,k=v" (TLS, SASL, timeouts)
    gateway_url: str = "http://127.0.0.1:8080"
    # Kubernetes runner
    job_image: str = "kubepredict/job:0.1.0"
    web_dir: Path | None = None
    # The model plain MLflow ``POST /invocations`` scores (id, name or name/versions/N); unset = 404 there
    default_model: str | None = None
    # Disk: /healthz reports unhealthy below this much free space in the folder object store; objects no
    # catalogue row names are removed by `kubepredict gc` (and a sweep at start) once older than the grace
    min_free_bytes: int = 64 * 1024 * 1024
    orphan_grace_seconds: float = 3600.0
    gc_on_start: bool = True
    # /async-function: calls queued or running at once, their spooled body bytes (on disk under
    # data_dir/async), threads running them; X-Callback-Url allow-list ("" refuses every callback) and timeout
    async_queue_max: int = 64
    async_queue_max_bytes: int = 2 * 1024 * 1024 * 1024
    async_workers: int = 4
    callback_hosts: str = ""
    callback_timeout_seconds: float = 5.0

    def __post_init__(self) -> None:
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{(Path(self.data_dir) / 'kubepredict.db').resolve()}")
        if not self.storage_url:
            object.__setattr__(self, "storage_url", (Path(self.data_dir) / "objects").resolve().as_uri())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> "Settings":
        """Build settings from ``KUBEPREDICT_*`` variables; keyword overrides win (CLI flags)."""
        env = os.environ if environ is None else environ
        kw: dict = dict(
            data_dir=Path(env.get("KUBEPREDICT_DATA_DIR", "./data")),
            database_url=read_secret("KUBEPREDICT_DATABASE_URL", env) or "",
            storage_url=env.get("KUBEPREDICT_STORAGE_URL", ""),
            runner=env.get("KUBEPREDICT_RUNNER", "local"),
            kafka_bootstrap_servers=env.get("KUBEPREDICT_KAFKA_BOOTSTRAP_SERVERS") or None,
            api_token=read_secret("KUBEPREDICT_API_TOKEN", env),
            read_token=read_secret("KUBEPREDICT_READ_TOKEN", env),
            allowed_hosts=_list(env, "KUBEPREDICT_ALLOWED_HOSTS"),
            cors_origins=_list(env, "KUBEPREDICT_CORS_ORIGINS"),
            max_connections=_int(env, "KUBEPREDICT_MAX_CONNECTIONS", 1000),
            header_timeout_seconds=_float(env, "KUBEPREDICT_HEADER_TIMEOUT_SECONDS", 10.0),
            body_timeout_seconds=_float(env, "KUBEPREDICT_BODY_TIMEOUT_SECONDS", 30.0),
            keep_alive_seconds=_float(env, "KUBEPREDICT_KEEP_ALIVE_SECONDS", 5.0),
            host=env.get("KUBEPREDICT_HOST", "127.0.0.1"),
            port=_int(env, "KUBEPREDICT_PORT", 8080),
            threads=_int(env, "KUBEPREDICT_THREADS", 16),
            max_upload_bytes=_int(env, "KUBEPREDICT_MAX_UPLOAD_BYTES", 512 * 1024 * 1024),
            max_online_rows=_int(env, "KUBEPREDICT_MAX_ONLINE_ROWS", 10_000),
            max_concurrent_jobs=_int(env, "KUBEPREDICT_MAX_CONCURRENT_JOBS", os.cpu_count() or 2),
            max_queued_jobs=_int(env, "KUBEPREDICT_MAX_QUEUED_JOBS", 1000),
            job_max_attempts=_int(env, "KUBEPREDICT_JOB_MAX_ATTEMPTS", 2),
            job_memory_limit=env.get("KUBEPREDICT_JOB_MEMORY_LIMIT") or "4Gi",
            job_max_memory=env.get("KUBEPREDICT_JOB_MAX_MEMORY") or "16Gi",
            job_cpu_limit=env.get("KUBEPREDICT_JOB_CPU_LIMIT") or None,
            job_deadline_seconds=_float(env, "KUBEPREDICT_JOB_DEADLINE_SECONDS", 3600.0),
            heartbeat_seconds=_float(env, "KUBEPREDICT_HEARTBEAT_SECONDS", 2.0),
            heartbeat_timeout_seconds=_float(env, "KUBEPREDICT_HEARTBEAT_TIMEOUT_SECONDS", 30.0),
            dispatch_interval_seconds=_float(env, "KUBEPREDICT_DISPATCH_INTERVAL_SECONDS", 0.5),
            predict_chunk_rows=_int(env, "KUBEPREDICT_PREDICT_CHUNK_ROWS", 50_000),
            shard_rows=_int(env, "KUBEPREDICT_SHARD_ROWS", 0),
            max_shards=_int(env, "KUBEPREDICT_MAX_SHARDS", 64),
            shard_parallelism=_int(env, "KUBEPREDICT_SHARD_PARALLELISM", 0),
            namespace=env.get("KUBEPREDICT_NAMESPACE", "kubepredict"),
            s3_endpoint_url=env.get("KUBEPREDICT_S3_ENDPOINT_URL") or None,
            s3_region=env.get("KUBEPREDICT_S3_REGION") or None,
            s3_access_key_id=read_secret("KUBEPREDICT_S3_ACCESS_KEY_ID", env),
            s3_secret_access_key=read_secret("KUBEPREDICT_S3_SECRET_ACCESS_KEY", env),
            s3_addressing_style=env.get("KUBEPREDICT_S3_ADDRESSING_STYLE", "auto"),
            topic_train_requests=env.get("KUBEPREDICT_TOPIC_TRAIN_REQUESTS", "kubepredict.train.requests"),
            topic_predict_requests=env.get("KUBEPREDICT_TOPIC_PREDICT_REQUESTS", "kubepredict.predict.requests"),
            topic_events=env.get("KUBEPREDICT_TOPIC_EVENTS", "kubepredict.events"),
            topic_dead_letter=env.get("KUBEPREDICT_TOPIC_DEAD_LETTER", "kubepredict.dead-letter"),
            topic_predict_stream=env.get("KUBEPREDICT_TOPIC_PREDICT_STREAM", "kubepredict.predict.stream"),
            topic_predictions=env.get("KUBEPREDICT_TOPIC_PREDICTIONS", "kubepredict.predictions"),
            stream_group=env.get("KUBEPREDICT_STREAM_GROUP") or "kubepredict-stream",
            connector_group=env.get("KUBEPREDICT_CONNECTOR_GROUP") or "kubepredict-connector",
            kafka_options=read_secret("KUBEPREDICT_KAFKA_OPTIONS", env),
            gateway_url=env.get("KUBEPREDICT_GATEWAY_URL", "http://127.0.0.1:8080"),
            job_image=env.get("KUBEPREDICT_JOB_IMAGE", "kubepredict/job:0.1.0"),
            web_dir=Path(env["KUBEPREDICT_WEB_DIR"]) if env.get("KUBEPREDICT_WEB_DIR") else None,
            default_model=env.get("KUBEPREDICT_DEFAULT_MODEL", "").strip() or None,
            min_free_bytes=_int(env, "KUBEPREDICT_MIN_FREE_BYTES", 64 * 1024 * 1024),
            orphan_grace_seconds=_float(env, "KUBEPREDICT_ORPHAN_GRACE_SECONDS", 3600.0),
            gc_on_start=env.get("KUBEPREDICT_GC_ON_START", "true").strip().lower() not in ("0", "false", "no", "off"),
            async_queue_max=_int(env, "KUBEPREDICT_ASYNC_QUEUE_MAX", 64),
            async_queue_max_bytes=_int(env, "KUBEPREDICT_ASYNC_QUEUE_MAX_BYTES", 2 * 1024 * 1024 * 1024),
            async_workers=_int(env, "KUBEPREDICT_ASYNC_WORKERS", 4),
            callback_hosts=env.get("KUBEPREDICT_CALLBACK_HOSTS", ""),
            callback_timeout_seconds=_float(env, "KUBEPREDICT_CALLBACK_TIMEOUT_SECONDS", 5.0),
        )
        kw.update({k: v for k, v in overrides.items() if v is not None})
        if kw["read_token"] and not kw["api_token"]:
            raise ConfigError("KUBEPREDICT_READ_TOKEN needs KUBEPREDICT_API_TOKEN too (without it every route is open)")
        if kw["read_token"] and kw["read_token"] == kw["api_token"]:
            raise ConfigError("KUBEPREDICT_READ_TOKEN must differ from KUBEPREDICT_API_TOKEN")
        if kw["async_queue_max"] < 1 or kw["async_workers"] < 1:
            raise ConfigError("KUBEPREDICT_ASYNC_QUEUE_MAX and KUBEPREDICT_ASYNC_WORKERS must be at least 1")
        if kw["runner"] not in ("local", "kubernetes"):
            raise ConfigError(f"KUBEPREDICT_RUNNER must be 'local' or 'kubernetes', got {kw['runner']!r}")
        _check_job_bounds(kw)
        return cls(**kw)


def _check_job_bounds(kw: dict) -> None:
    from .runner.resources import parse_quantity

    for key, name in (("job_memory_limit", "KUBEPREDICT_JOB_MEMORY_LIMIT"),
                      ("job_max_memory", "KUBEPREDICT_JOB_MAX_MEMORY"), ("job_cpu_limit", "KUBEPREDICT_JOB_CPU_LIMIT")):
        if kw.get(key) is None:
            continue
        try:
            if parse_quantity(kw[key]) <= 0:
                raise InvalidInput("not positive")
        except InvalidInput:
            raise ConfigError(f"{name} must be a positive Kubernetes quantity (e.g. '4Gi', '2'), "
                              f"got {kw[key]!r}") from None
    if kw["job_deadline_seconds"] <= 0:
        raise ConfigError("KUBEPREDICT_JOB_DEADLINE_SECONDS must be positive")
