"""Online serving: resolve a model reference to a loaded, cached model, and score a Table with it.

Every wire format (the native ``/function/predict`` bodies, Open Inference Protocol V2, KServe V1,
MLflow's scoring server, Kafka stream scoring) decodes to a ``codecs.table.Table`` and comes here.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .. import ml
from ..catalog.aliases import ALIAS, check_alias
from ..codecs.table import Table
from ..errors import Conflict, InvalidInput, ModelNotFound, PayloadTooLarge
from ..ml.compiled import CompiledScorer, compile_pipeline, probe_frame, verify

logger = logging.getLogger(__name__)

_VERSIONED = re.compile(r"^(?P<name>[^/]+)/versions/(?P<version>\d{1,9})$")


@dataclass(frozen=True)
class ServedModel:
    """A ready model as the serving path needs it: metadata plus the loaded scorer."""

    model_id: str
    name: str
    version: int
    task: str
    algorithm: str
    features: list[str]
    kinds: dict[str, str]
    classes: list | None
    target: str | None
    sha256: str
    scorer: Any = field(repr=False, compare=False)
    compiled: CompiledScorer | None = field(default=None, repr=False, compare=False)


class Ref(NamedTuple):
    """A parsed model reference: exactly one of ``model_id`` / ``name`` set; ``version`` or ``alias`` with a name."""

    model_id: str | None
    name: str | None
    version: int | None
    alias: str | None = None


def parse_ref(ref: str, version: str | int | None = None) -> Ref:
    """A ``Ref`` from ``mdl_…``, ``name``, ``name/versions/N``, ``name@alias`` (or name + version)."""
    if not isinstance(ref, str) or not ref or len(ref) > 200:
        raise InvalidInput(
            "a model reference must be a model id, a name, name@alias or name/versions/N", code="invalid_model"
        )
    m = _VERSIONED.match(ref)
    if m:
        ref, version = m["name"], m["version"]
    if version is not None and version != "":
        try:
            version = int(version)
        except (TypeError, ValueError):
            raise InvalidInput(f"model version must be a whole number, not {version!r}", code="invalid_model") from None
        return Ref(None, ref, version)
    if ref.startswith("mdl_"):
        return Ref(ref, None, None)
    name, at, alias = ref.rpartition("@")
    if at and name:
        return Ref(None, name, None, alias)
    return Ref(None, ref, None)


def _head(heads, ref: Ref):
    if ref.model_id is not None:
        # A name may look like an id; fall back to it before saying no.
        return heads.by_id(ref.model_id) or heads.by_name(ref.model_id)
    if ref.alias is None:
        return heads.by_name(ref.name, ref.version)
    if ALIAS.match(ref.alias):
        head = heads.by_alias(ref.name, ref.alias)
        if head is not None:
            return head
    whole = heads.by_name(f"{ref.name}@{ref.alias}")  # a model literally named "a@b" (names may hold '@')
    if whole is None:
        check_alias(ref.alias)  # 400 for a malformed alias, else the 404 below
        raise ModelNotFound(
            f"model {ref.name!r} has no alias {ref.alias!r}",
            code="alias_not_found",
            details={"model": ref.name, "alias": ref.alias},
        )
    return whole


def resolve_head(svc, ref: str, version: str | int | None = None):
    """The catalogue head (id, status, digest) a reference names: 404 when unknown, 409 while not ready."""
    parsed = parse_ref(ref, version)
    head = _head(svc.catalog.heads, parsed)
    if head is None:
        ver = parsed.version
        what = f"{parsed.name!r} version {ver}" if ver is not None else repr(parsed.name or parsed.model_id)
        raise ModelNotFound(f"no model {what}", details={"model": ref, "version": ver})
    if head.status != "ready":
        raise Conflict(
            f"model {head.model_id} is {head.status}, not ready; wait for its training job {head.job_id}",
            code="model_not_ready",
            details={"status": head.status, "job_id": head.job_id},
        )
    return head


def resolve(svc, ref: str, version: str | int | None = None) -> ServedModel:
    """A ready model for ``ref``: 404 when unknown, 409 while it is still training or failed.

    One small indexed read per call (no write) decides which model answers, so a deleted model is a
    404 at once, and a new version of a name, or an alias moved to another version, takes over at
    once; the loaded, compiled model is cached per process by id and artifact digest.
    """
    head = resolve_head(svc, ref, version)
    return svc.models.get(head.model_id, head.sha256, lambda: _load(svc, head.model_id))


def _load(svc, model_id: str) -> ServedModel:
    row = svc.catalog.get_model_row(model_id)
    if row.task == "forecasting":
        raise InvalidInput(
            f"model {model_id} forecasts; ask it with POST /function/predict/forecast",
            code="not_a_row_model",
            details={"model_id": model_id},
        )
    pipeline = ml.load_model(svc.storage.get(row.artifact_key), row.artifact_sha256)
    features, kinds = row.features, row.kinds
    compiled = compiled_scorer(pipeline, features=features, kinds=kinds, task=row.task)
    return ServedModel(
        model_id=row.model_id,
        name=row.name,
        version=row.version,
        task=row.task,
        algorithm=row.algorithm,
        features=features,
        kinds=kinds,
        classes=row.classes,
        target=row.target,
        sha256=row.artifact_sha256,
        scorer=pipeline,
        compiled=compiled,
    )


def compiled_scorer(pipeline, *, features, kinds, task) -> CompiledScorer | None:
    """The numpy scorer when it gives the pipeline's answers on a probe, else None (the pipeline serves)."""
    try:
        compiled = compile_pipeline(pipeline, features=features, kinds=kinds, task=task)
        if compiled is None:
            return None
        check = verify(compiled, pipeline, probe_frame(compiled), task=task)
    except Exception:  # any surprise means: serve with scikit-learn, which is always right
        logger.warning("model could not be compiled for serving; using the pipeline", exc_info=True)
        return None
    if not check["equal"]:
        logger.warning("compiled scorer disagrees with the pipeline (%s); using the pipeline", check)
        return None
    return compiled


def score(svc, model: ServedModel, table: Table) -> ml.ScoreResult:
    """Predict every row of ``table`` (extra columns ignored; missing features are a 400)."""
    if table.n_rows > svc.settings.max_online_rows:
        raise PayloadTooLarge(
            f"{table.n_rows} rows is more than the online limit of {svc.settings.max_online_rows}; "
            "upload a dataset and run a batch prediction",
            details={"limit": svc.settings.max_online_rows},
        )
    if model.compiled is not None:
        return model.compiled.score(table.columns, table.n_rows)
    return ml.score(model.scorer, table.frame(), features=model.features, kinds=model.kinds, task=model.task)
