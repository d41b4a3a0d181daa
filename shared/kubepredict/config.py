"""One frozen ``Settings`` read from the environment (and secret files) once per process."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

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


def _parse(name: str, kind: str, raw: str):
    """Turn one non-empty variable into its field's type; a bad value is a ConfigError naming it."""
    if kind in ("int", "float"):
        try:
            return int(raw) if kind == "int" else float(raw)
        except ValueError:
            what = "an integer" if kind == "int" else "a number"
            raise ConfigError(f"{name} must be {what}, got {raw!r}") from None
    if kind == "bool":
        if raw.lower() in _BOOLS:
            return _BOOLS[raw.lower()]
        raise ConfigError(f"{name} must be true or false, got {raw!r}")
    if kind == "list":  # comma-separated, spaces ignored
        return tuple(p.strip() for p in raw.split(",") if p.strip())
    if kind == "path":
        return Path(raw)
    return raw


# How a variable is read, by the field's annotation (a field of another type fails at import: see below)
_KINDS = {
    "str": "str",
    "str | None": "str",
    "int": "int",
    "float": "float",
    "bool": "bool",
    "tuple[str, ...]": "list",
    "Path": "path",
    "Path | None": "path",
}
_BOOLS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def secret(default=None):
    """A field also read from a mounted secret file (``read_secret``): the file wins over the environment."""
    return field(default=default, metadata={"secret": True})


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with defaults that run on a laptop with nothing installed.

    Each field is set by the variable ``KUBEPREDICT_<FIELD NAME>`` (``from_env``) and its default is written
    once, here; fields made with ``secret()`` are also read from mounted secret files. Checked on creation.
    """

    data_dir: Path = Path("./data")
    database_url: str = secret("")
    storage_url: str = ""
    runner: str = "local"
    kafka_bootstrap_servers: str | None = None
    api_token: str | None = secret()
    # The embedded gateway's edge (runtimes/edge.py, runtimes/protocol.py): a token that may only read
    # and predict online; Host names answered in open mode (empty: loopback names and the bound host;
    # "*": any); browser origins allowed by CORS (empty: none; "*": any); connection bounds.
    read_token: str | None = secret()
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
    # One row group of the dataset's Parquet copy (services/ingest_stream.ROW_GROUP_ROWS): each batch is a
    # whole decoded row group. 50,000 split every group into 50,000 + 15,536 rows, and the extra batch's
    # scoring and insert cost a 1M-row forest job 5-6 % (3.33 -> 3.13 s; two shards 1.98 -> 1.89 s).
    predict_chunk_rows: int = 65_536
    # Sharded batch prediction: rows per shard when a request names no "shards" (0: one worker), the
    # most shards a request may ask for, and pods at once per Indexed Job (0: every shard at once)
    shard_rows: int = 0
    max_shards: int = 64
    shard_parallelism: int = 0
    # Local runner: a predict job's model is loaded once in the fork server, before it forks the job's
    # workers, which inherit it (runner/warm_models.py); models larger than this load in each worker.
    # 0: off.
    warm_model_max_bytes: int = 256 * 1024 * 1024
    namespace: str = "kubepredict"
    # S3
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = secret()
    s3_secret_access_key: str | None = secret()
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
    kafka_options: str | None = secret()  # extra librdkafka properties, "k=v,k=v" (TLS, SASL, timeouts)
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
    # Drift (ml/drift.py): a batch prediction whose worst feature PSI passes this emits model.drift_detected;
    # explanations ("explain": true, ml/explain.py): the most rows one online or batch request may explain
    drift_psi_threshold: float = 0.25
    explain_max_rows: int = 100

    def __post_init__(self) -> None:
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{(Path(self.data_dir) / 'kubepredict.db').resolve()}")
        if not self.storage_url:
            object.__setattr__(self, "storage_url", (Path(self.data_dir) / "objects").resolve().as_uri())
        _check(self)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> Settings:
        """Build settings from ``KUBEPREDICT_<FIELD>`` variables (unset or empty: the field's default);
        keyword overrides win (CLI flags; None means "not given")."""
        env = os.environ if environ is None else environ
        kw: dict = {}
        for f in fields(cls):
            name = env_name(f.name)
            raw = read_secret(name, env) if f.metadata.get("secret") else (env.get(name) or "").strip()
            if raw:
                kw[f.name] = _parse(name, _KINDS[str(f.type)], raw)
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kw)


_unreadable = [f.name for f in fields(Settings) if str(f.type) not in _KINDS]
if _unreadable:
    raise TypeError(f"Settings fields of a type from_env cannot read (add it to _KINDS): {_unreadable}")


def env_name(field_name: str) -> str:
    """The environment variable that sets a ``Settings`` field."""
    return "KUBEPREDICT_" + field_name.upper()


def _check(s: Settings) -> None:
    if s.read_token and not s.api_token:
        raise ConfigError("KUBEPREDICT_READ_TOKEN needs KUBEPREDICT_API_TOKEN too (without it every route is open)")
    if s.read_token and s.read_token == s.api_token:
        raise ConfigError("KUBEPREDICT_READ_TOKEN must differ from KUBEPREDICT_API_TOKEN")
    if s.async_queue_max < 1 or s.async_workers < 1:
        raise ConfigError("KUBEPREDICT_ASYNC_QUEUE_MAX and KUBEPREDICT_ASYNC_WORKERS must be at least 1")
    if s.drift_psi_threshold <= 0:
        raise ConfigError("KUBEPREDICT_DRIFT_PSI_THRESHOLD must be positive")
    if s.explain_max_rows < 1:
        raise ConfigError("KUBEPREDICT_EXPLAIN_MAX_ROWS must be at least 1")
    if s.runner not in ("local", "kubernetes"):
        raise ConfigError(f"KUBEPREDICT_RUNNER must be 'local' or 'kubernetes', got {s.runner!r}")
    _check_job_bounds(s)


def _check_job_bounds(s: Settings) -> None:
    from .runner.resources import parse_quantity

    for key in ("job_memory_limit", "job_max_memory", "job_cpu_limit"):
        value = getattr(s, key)
        if value is None:
            continue
        try:
            if parse_quantity(value) <= 0:
                raise InvalidInput("not positive")
        except InvalidInput:
            raise ConfigError(
                f"{env_name(key)} must be a positive Kubernetes quantity (e.g. '4Gi', '2'), got {value!r}"
            ) from None
    if s.job_deadline_seconds <= 0:
        raise ConfigError("KUBEPREDICT_JOB_DEADLINE_SECONDS must be positive")
