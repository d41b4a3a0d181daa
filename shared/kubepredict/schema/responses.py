"""Response shapes, for the OpenAPI document (the catalogue builds the dicts; these describe them).

Objects allow more fields than listed (``extra="allow"``): additions to a view are not a breaking change.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Obj = dict[str, Any]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorDetail(BaseModel):
    code: str = Field(description="a stable, machine-readable reason, e.g. dataset_not_found")
    message: str
    details: Obj = Field(description="context: the field, the limit, the allowed values…")


class Error(BaseModel):
    """Every error of the native API (``runtimes/responses.error_response``)."""

    error: ErrorDetail


class ProtocolError(BaseModel):
    """Open Inference Protocol (V2) and KServe V1 errors."""

    error: str


class MLflowError(BaseModel):
    """MLflow scoring server errors."""

    error_code: str
    message: str


class ColumnInfo(Open):
    name: str
    dtype: str
    missing: int
    unique: int | None = None


class Dataset(Open):
    dataset_id: str
    name: str
    rows: int
    size_bytes: int
    sha256: str
    columns: list[ColumnInfo]
    created_at: str
    preview: list[Obj] | None = Field(None, description="first 20 rows (GET of one dataset)")


class Page(Open):
    total: int
    limit: int
    offset: int


class DatasetList(Page):
    datasets: list[Dataset]


class Model(Open):
    model_id: str
    name: str
    version: int | None = None
    status: Literal["training", "ready", "failed"]
    task: str | None = None
    algorithm: str
    estimator: str | None = None
    params: Obj | None = None
    features: list[str] | None = None
    target: str | None = None
    dataset_id: str | None = None
    metrics: Obj | None = None
    classes: list[Any] | None = None
    job_id: str | None = None
    sha256: str | None = None
    created_at: str
    aliases: list[str] = Field(default_factory=list, description="this version's aliases (champion…)")


class ModelList(Page):
    models: list[Model]


class Alias(Open):
    alias: str
    name: str
    model_id: str
    version: int
    updated_at: str | None = None
    previous_model_id: str | None = None


class AliasList(Open):
    name: str
    aliases: list[Alias]


class Algorithm(Open):
    name: str
    task: str
    estimator: str | None = None
    default_params: Obj


class AlgorithmList(Open):
    algorithms: list[Algorithm]


class InferredTask(Open):
    """The task ``POST /function/train`` infers when the body names ``target`` and no ``task``."""

    dataset_id: str
    target: str
    task: Literal["classification", "regression"]


class Accepted(Open):
    """A queued job (202); ``Location`` names its result."""

    job_id: str
    status: JobStatus
    model_id: str | None = Field(None, description="the model a train job fits")


class PredictionRow(Open):
    row: int
    prediction: Any
    probabilities: list[float] | None = None


class PredictionPage(Open):
    total: int | None = None
    offset: int
    limit: int
    rows: list[PredictionRow]


class Job(Open):
    job_id: str
    kind: Literal["train", "predict"]
    status: JobStatus
    progress: float
    stage: str | None = None
    model_id: str | None = None
    dataset_id: str | None = None
    attempt: int
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    error: Obj | None = None
    metrics: Obj | None = None
    summary: Obj | None = None
    predictions: PredictionPage | None = Field(None, description="a finished prediction job's rows, paginated")


class JobList(Page):
    jobs: list[Job]


class Explanations(Open):
    """Per-row contributions: for each row and output, ``base + sum(contributions) == output``."""

    method: str = Field(description="linear or tree (exact), or permutation (approximate)")
    scale: str = Field(description="value, probability, log-odds (binary) or logit (multinomial)")
    outputs: list[Any] = Field(description="what each position of base/output/contribution lists is: classes or value")
    base: list[float]
    columns: list[str]
    rows: list[dict[str, Any]] = Field(description="per row: output (list) and contributions {column: list}")


class OnlinePrediction(Open):
    model_id: str
    predictions: list[Any]
    probabilities: list[list[float]] | None = None
    classes: list[Any] | None = None
    explanations: Explanations | None = None


class ForecastRow(Open):
    """One future step of one series (plus the series columns by name)."""

    timestamp: str
    prediction: float | None
    lower: float | None
    upper: float | None


class Forecast(Open):
    model_id: str
    horizon: int
    interval_level: float
    forecast: list[ForecastRow]


class FunctionStatus(Open):
    """An OpenFaaS function status."""

    name: str
    image: str
    namespace: str
    invocationCount: int
    replicas: int
    availableReplicas: int
    labels: dict[str, str]
    annotations: dict[str, str]


# ---- inference protocols ---------------------------------------------------------------------
class V2Server(Open):
    name: str
    version: str
    extensions: list[str]


class V2Live(Open):
    live: bool


class V2Ready(Open):
    ready: bool


class V2ModelReady(Open):
    name: str
    ready: bool


class V2TensorMeta(Open):
    name: str
    datatype: str
    shape: list[int]


class V2Metadata(Open):
    name: str
    versions: list[str] | None = None
    platform: str
    inputs: list[V2TensorMeta]
    outputs: list[V2TensorMeta]


class V2OutputTensor(Open):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]
    parameters: Obj | None = None


class V2InferResponse(Open):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[V2OutputTensor]


class V1Model(Open):
    name: str
    ready: bool


class Predictions(Open):
    """KServe V1 and MLflow answers."""

    predictions: list[Any]
