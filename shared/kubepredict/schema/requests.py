"""Request bodies and query strings: one pydantic model each, ``extra="forbid"``.

Bodies are validated strictly (JSON gives exact types: ``"1"`` is not a number, ``true`` is not an
integer); query strings arrive as text and are converted. ``params`` (estimator hyper-parameters)
and ``resources`` stay free JSON objects here: ``ml`` and the runner check their values.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from ..ml.algorithms import TASKS
from ..ml.forecast_features import MAX_HORIZON
from ..ml.forecasting import FORECASTING, MAX_FOLDS, MAX_LAGS

MAX_PAGE = 1000

Text = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"\S")]
Id = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"\S")]
Column = Annotated[str, StringConstraints(min_length=1)]
Task = Literal[(*TASKS, FORECASTING)]  # type: ignore[valid-type]  # the catalogue's tuple, written once
Scalar = str | float | bool | None  # int is a float in JSON Schema; pydantic keeps ints as given
JsonObject = dict[str, Any]


def _unique(values: list[str] | None) -> list[str] | None:
    if values is not None and len(set(values)) != len(values):
        raise ValueError("lists a column twice")
    return values


class Body(BaseModel):
    """A JSON request body: unknown fields refused, types exact."""

    model_config = ConfigDict(extra="forbid", strict=True)
    #: error codes for particular fields (the default is ``invalid_field``)
    field_codes: ClassVar[dict[str, str]] = {}


class Query(BaseModel):
    """A query string: unknown parameters refused, text converted to the declared types."""

    model_config = ConfigDict(extra="forbid")


# ---- function bodies -------------------------------------------------------------------------
AliasName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]


class PromoteSpec(Body):
    """After training, score the new version and ``alias``'s holder on one labelled dataset; move the alias
    to the new version only if it wins by ``min_gain`` (or when the alias points nowhere yet)."""

    alias: AliasName = "champion"
    metric: Text = Field(description="a metric of the task, e.g. f1_macro, accuracy, r2, rmse (lower is better)")
    min_gain: Annotated[float, Field(ge=0.0)] = 0.0
    dataset_id: Id = Field(description="a labelled dataset with the model's features and target")


class TrainRequest(Body):
    """``POST /function/train`` (also a ``kubepredict.train.requests`` message)."""

    field_codes: ClassVar[dict[str, str]] = {"params": "invalid_params"}

    dataset_id: Id
    target: Text | None = Field(None, description="required unless task is clustering")
    algorithm: Text | None = Field(None, description="a name from GET /function/train/algorithms, or auto")
    params: JsonObject | None = Field(None, description="estimator hyper-parameters, checked against it")
    features: (
        Annotated[list[Column], Field(min_length=1, json_schema_extra={"uniqueItems": True}), AfterValidator(_unique)]
        | None
    ) = None
    task: Task | None = Field(None, description="inferred from the target when absent")
    test_size: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2
    random_state: Annotated[int, Field(ge=0, lt=2**32)] | None = 0
    name: Text | None = Field(None, description="groups models; each training of a name is a new version")
    resources: JsonObject | None = Field(None, description="Kubernetes-style requests/limits for the job")
    promote: PromoteSpec | None = Field(None, description="champion/challenger gate run when the job finishes")
    # forecasting only (task "forecasting")
    time_column: Column | None = Field(None, description="forecasting: the timestamp column")
    series_columns: (
        Annotated[list[Column], Field(json_schema_extra={"uniqueItems": True}), AfterValidator(_unique)] | None
    ) = Field(None, description="forecasting: columns that tell series apart (store, item…)")
    horizon: Annotated[int, Field(ge=1, le=MAX_HORIZON)] | None = Field(None, description="forecasting: steps ahead")
    frequency: Text | None = Field(None, description="forecasting: pandas offset alias; inferred when absent")
    season_length: Annotated[int, Field(ge=1, le=MAX_LAGS)] | None = Field(
        None, description="forecasting: steps per season; from the frequency when absent"
    )
    lags: Annotated[int, Field(ge=1, le=MAX_LAGS)] | None = Field(
        None, description="forecasting: past values per window (default max(2 × season, 10))"
    )
    interval_level: Annotated[float, Field(ge=0.5, le=0.99)] | None = Field(
        None, description="forecasting: nominal coverage of the prediction intervals (default 0.8)"
    )
    backtest_folds: Annotated[int, Field(ge=1, le=MAX_FOLDS)] | None = Field(
        None, description="forecasting: rolling-origin backtest folds (default 3)"
    )


class AliasRequest(Body):
    """``PUT /function/train/{name}/aliases/{alias}``: the version (or model id) of that name to point at."""

    version: Annotated[int, Field(ge=1, lt=2**31)] | None = None
    model_id: Id | None = None


class ForecastRequest(Body):
    """``POST /function/predict/forecast``: a forecasting model's next steps, answered at once."""

    model_id: Text = Field(description="a model id, a model name, name@alias or name/versions/N")
    horizon: Annotated[int, Field(ge=1, le=MAX_HORIZON)] | None = Field(
        None, description="steps ahead, up to the model's trained horizon (the default)"
    )
    series: Annotated[list[Scalar | list[Scalar]], Field(min_length=1)] | None = Field(
        None, description="only these series (key values; a list per series with several series columns)"
    )
    history: Annotated[list[dict[str, Scalar]], Field(min_length=1)] | None = Field(
        None,
        description="recent rows (time, series columns, target; future rows carry exogenous features); "
        "default: the history stored with the model",
    )


class BatchPredictRequest(Body):
    """``POST /function/predict`` naming a dataset: a batch job scoring every row."""

    model_id: Text = Field(description="a model id, a model name, name@alias or name/versions/N")
    dataset_id: Id
    resources: JsonObject | None = None
    shards: Annotated[int, Field(ge=1)] | None = Field(None, description="score in N row ranges at once")
    explain: bool = Field(
        False,
        description="also explain every row (per-column contributions in summary.explanations); "
        "at most KUBEPREDICT_EXPLAIN_MAX_ROWS rows, scored by one worker",
    )


Row = dict[str, Scalar] | list[Scalar] | Scalar


class DataframeSplit(BaseModel):
    model_config = ConfigDict(extra="allow")
    columns: list[str] | None = None
    data: Annotated[list[list[Scalar]], Field(min_length=1)]


class OnlinePredictRequest(Body):
    """``POST /function/predict`` with rows: answered at once. Send exactly one of the row fields.

    Documentation only: the codec (``codecs/native.py``) validates this shape on the hot path.
    """

    model_id: Text = Field(description="a model id, a model name, name@alias or name/versions/N")
    instances: Annotated[list[Row], Field(min_length=1)] | None = None
    dataframe_records: Annotated[list[dict[str, Scalar]], Field(min_length=1)] | None = None
    dataframe_split: DataframeSplit | None = None
    inputs: Annotated[list[Row], Field(min_length=1)] | dict[str, Any] | None = None
    explain: bool = Field(False, description="add per-row explanations: each column's contribution and the base value")


# ---- inference protocols (documentation: the codecs validate) --------------------------------
class V2Tensor(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    shape: list[int]
    datatype: str = Field(description="BOOL, INT8…INT64, UINT8…UINT64, FP16/32/64 or BYTES")
    data: list[Any] | None = None
    parameters: JsonObject | None = None


class V2InferRequest(BaseModel):
    """Open Inference Protocol request (``POST /v2/models/{name}/infer``)."""

    model_config = ConfigDict(extra="allow")
    id: str | None = None
    parameters: JsonObject | None = None
    inputs: list[V2Tensor]
    outputs: list[JsonObject] | None = None


class KServeV1Request(BaseModel):
    """KServe V1 request: exactly one of ``instances`` or ``inputs``."""

    model_config = ConfigDict(extra="allow")
    instances: list[Row] | None = None
    inputs: list[Row] | dict[str, Any] | None = None


class MLflowRequest(BaseModel):
    """MLflow scoring server request: exactly one of the row fields, optional ``params`` (ignored)."""

    model_config = ConfigDict(extra="forbid")
    dataframe_split: DataframeSplit | None = None
    dataframe_records: list[dict[str, Scalar]] | None = None
    instances: list[Row] | None = None
    inputs: list[Row] | dict[str, Any] | None = None
    params: JsonObject | None = None


# ---- query strings ---------------------------------------------------------------------------
Limit = Annotated[int, Field(ge=0, le=MAX_PAGE)]
Offset = Annotated[int, Field(ge=0, le=2**62)]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class PageQuery(Query):
    limit: Limit = 100
    offset: Offset = 0


class UploadQuery(Query):
    name: str | None = Field(None, description="the dataset's name, up to 200 characters (default: the file's name)")


class ImportQuery(Query):
    name: str | None = Field(None, description="import as a version of this name (default: the bundle's name)")


class ModelsQuery(PageQuery):
    name: str | None = Field(None, description="only the versions of this model name")


class AlgorithmsQuery(Query):
    task: Task | None = None


class TaskQuery(Query):
    dataset_id: Id
    target: Column = Field(description="the column to learn")


class PredictJobsQuery(PageQuery):
    status: JobStatus | None = None


class JobsQuery(PageQuery):
    kind: Literal["train", "predict"] | None = None
    status: JobStatus | None = None


class ResultQuery(Query):
    format: Literal["json", "csv"] = Field("json", description="csv: the input rows joined with predictions")
    limit: Limit = 100
    offset: Offset = 0
