"""The champion/challenger gate a train request asks for with ``"promote"``.

When the job has fitted its model, the new version and the alias's current holder are scored on the
same labelled dataset; the alias moves to the new version only if it wins by ``min_gain`` (or when
the alias points nowhere yet). The decision, the model's readiness, the alias move and the
``model.promoted`` event commit in one transaction (``JobsRepo.succeed_train``) that re-checks the
holder it compared against: if another promotion moved the alias meanwhile (``AliasMoved``), the gate
decides again against the new holder, so an alias never ends on a version that lost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..catalog.aliases import AliasMoved, check_alias
from ..errors import InvalidInput, KubepredictError
from ..ml import gate
from .datasets import load_frame

ATTEMPTS = 20


def validate(svc, spec: Any, *, task: str, features: list[str], target: str | None) -> dict[str, Any]:
    """The ``promote`` part of a train request, checked at submit time (400/404 before anything is queued)."""
    check_alias(spec.alias)
    if target is None or task == "clustering":
        raise InvalidInput(
            "promotion needs a labelled task (classification or regression)",
            code="invalid_promote",
            details={"field": "promote"},
        )
    gate.check_metric(task, spec.metric)
    dataset = svc.catalog.get_dataset_row(spec.dataset_id)
    missing = [c for c in [*features, target] if c not in dataset.column_names]
    if missing:
        raise InvalidInput(
            f"the promotion dataset lacks columns: {', '.join(missing)}",
            code="unknown_columns",
            details={"field": "promote.dataset_id", "missing": missing},
        )
    return {"alias": spec.alias, "metric": spec.metric, "min_gain": spec.min_gain, "dataset_id": spec.dataset_id}


def settle(
    holder: Callable[[], str | None],
    decide: Callable[[str | None], dict[str, Any]],
    commit: Callable[[dict[str, Any], str | None], None],
) -> dict[str, Any]:
    """Decide against the alias's holder and commit; decide again whenever a concurrent move wins first."""
    for _ in range(ATTEMPTS):
        expected = holder()
        decision = decide(expected)
        try:
            commit(decision, expected)
            return decision
        except AliasMoved:
            continue
    raise AliasMoved("the alias kept moving while this promotion decided; it was left alone")


def decider(svc, model, pipeline, spec: dict[str, Any], *, load_pipeline) -> Callable[[str | None], dict[str, Any]]:
    """``decide(holder_model_id)`` for the new ``model`` with fitted ``pipeline``: a decision dict.

    ``load_pipeline(svc, row)``: the holder's fitted pipeline (the batch path's cache).
    """
    task, metric, target = model.task, spec["metric"], model.target
    base = {k: spec[k] for k in ("alias", "metric", "min_gain", "dataset_id")}
    frames: dict[tuple[str, ...], Any] = {}

    def scored(pipe, features: list[str], kinds: dict) -> float | None:
        cols = tuple(dict.fromkeys([*features, target]))
        if cols not in frames:
            dataset = svc.catalog.get_dataset_row(spec["dataset_id"])
            frames[cols] = load_frame(svc, dataset, columns=list(cols))
        return gate.score(pipe, frames[cols], features=features, kinds=kinds, target=target, task=task, metric=metric)

    try:
        new_score, why_not = scored(pipeline, model.features, model.kinds), None
    except (KubepredictError, KeyError, ValueError) as exc:  # e.g. the dataset was deleted since the request
        new_score, why_not = None, f"the new version could not be scored: {exc}"

    def decide(holder: str | None) -> dict[str, Any]:
        challenger = {"model_id": model.model_id, "version": model.version, "score": new_score}
        out = {**base, "challenger": challenger, "champion": None, "gain": None}
        if new_score is None:
            why = why_not or f"{metric} is undefined for the new version on this dataset"
            return {**out, "promoted": False, "reason": why}
        if holder is None:
            return {**out, "promoted": True, "reason": f"{spec['alias']} pointed at no version"}
        try:
            row = svc.catalog.get_model_row(holder)
            old = scored(load_pipeline(svc, row), row.features, row.kinds)
        except (KubepredictError, KeyError, ValueError) as exc:  # the holder cannot be scored on this dataset
            old, row, why = None, None, str(exc)
        else:
            why = f"{metric} is undefined for the current holder on this dataset"
        champion = {"model_id": holder, "version": row.version if row else None, "score": old}
        if old is None:
            return {**out, "champion": champion, "promoted": False, "reason": why}
        won = gate.gain(task, metric, new_score, old)
        promoted = won > 0 and won >= spec["min_gain"]
        reason = (
            f"won by {won} (at least {spec['min_gain']} needed)"
            if promoted
            else f"gain {won} is below the {spec['min_gain']} margin"
        )
        return {**out, "champion": champion, "gain": won, "promoted": promoted, "reason": reason}

    return decide
