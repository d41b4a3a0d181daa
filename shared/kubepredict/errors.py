"""One error hierarchy for the whole package.

The core raises these; only ``runtimes/responses.py`` maps them to HTTP status codes.

    KubepredictError
    ├── InvalidInput (ValueError)            400  bad request body, params, CSV
    │   └── CallbackRefused                       X-Callback-Url outside the allow-list / unsafe
    ├── Unauthorized                         401  missing / wrong bearer token
    ├── Forbidden                            403  a read-only token asked to write; Host or Origin refused
    ├── NotFound (LookupError)               404
    │   ├── DatasetNotFound
    │   ├── ModelNotFound
    │   ├── JobNotFound
    │   └── RouteNotFound
    ├── MethodNotAllowed                     405
    ├── Conflict                             409  e.g. deleting a dataset a job uses
    ├── PayloadTooLarge                      413
    ├── UnsupportedMediaType                 415
    ├── Unprocessable                        422  valid JSON but unusable (one-class target)
    │   └── BundleRejected                        an imported bundle failed its digest or allow-list checks
    ├── TooManyJobs                          429
    │   └── AsyncQueueFull                        the /async-function queue is full (calls or bytes)
    ├── BackendUnavailable                   503  database / storage / broker down
    ├── InsufficientStorage                  507  the disk (object store, catalogue, staging) is full
    ├── ArtifactRejected                     500-class for the server, but never loaded:
    │                                            tampered or untrusted model artifact
    ├── JobCancelled                         internal: a worker noticed its job was cancelled
    └── ConfigError                          bad settings at start-up
"""

from __future__ import annotations

from typing import Any


class KubepredictError(Exception):
    """Root of every error Kubepredict raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details or {}


class InvalidInput(KubepredictError, ValueError):
    code = "invalid_input"


class CallbackRefused(InvalidInput):
    """An ``X-Callback-Url`` the gateway will not call: not http(s), not allow-listed, or a metadata address."""

    code = "callback_refused"


class Unauthorized(KubepredictError):
    code = "unauthorized"


class Forbidden(KubepredictError):
    code = "forbidden"


class NotFound(KubepredictError, LookupError):
    code = "not_found"


class DatasetNotFound(NotFound):
    code = "dataset_not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class JobNotFound(NotFound):
    code = "job_not_found"


class RouteNotFound(NotFound):
    code = "route_not_found"


class MethodNotAllowed(KubepredictError):
    code = "method_not_allowed"


class Conflict(KubepredictError):
    code = "conflict"


class PayloadTooLarge(KubepredictError):
    code = "payload_too_large"


class UnsupportedMediaType(KubepredictError):
    code = "unsupported_media_type"


class Unprocessable(KubepredictError):
    code = "unprocessable"


class BundleRejected(Unprocessable):
    """A model bundle sent for import is malformed, tampered with (digest) or holds refused types."""

    code = "bundle_rejected"


class TooManyJobs(KubepredictError):
    code = "too_many_jobs"


class AsyncQueueFull(TooManyJobs):
    code = "async_queue_full"


class BackendUnavailable(KubepredictError):
    code = "backend_unavailable"


class InsufficientStorage(KubepredictError):
    """A write met a full disk (ENOSPC/EDQUOT, SQLite or PostgreSQL 'disk full'); nothing was kept."""

    code = "insufficient_storage"


class ArtifactRejected(KubepredictError):
    """A model artifact failed its SHA-256 check or holds a type outside the allow-list."""

    code = "artifact_rejected"


class JobCancelled(KubepredictError):
    code = "job_cancelled"


class ConfigError(KubepredictError):
    code = "config_error"
