"""Concurrent promotions on SQLite and PostgreSQL: the alias ends on the best version, never on one that lost."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from kubepredict.catalog.aliases import AliasMoved, apply_decision
from kubepredict.services import promotion


def _ready_models(catalog, n: int) -> list[str]:
    ids = []
    for i in range(n):
        model = {
            "model_id": f"mdl_r{i}",
            "name": "race",
            "task": "classification",
            "algorithm": "auto",
            "params": {},
            "features": ["x"],
            "target": "y",
            "dataset_id": "ds_x",
            "job_id": f"job_r{i}",
        }
        job = {
            "job_id": f"job_r{i}",
            "kind": "train",
            "model_id": model["model_id"],
            "dataset_id": "ds_x",
            "max_attempts": 1,
            "request": {},
        }
        catalog.enqueue(job=job, model=model)
        row = catalog.claim(f"job_r{i}")
        catalog.succeed_train(f"job_r{i}", row.attempt, model_id=model["model_id"], model_fields={"metrics": {}})
        ids.append(model["model_id"])
    return ids


def test_concurrent_promotions_leave_the_alias_on_the_winner(catalog):
    ids = _ready_models(catalog, 8)
    scores = dict(zip(ids, random.Random(7).sample(range(100), len(ids)), strict=True))
    start = threading.Barrier(len(ids))

    def promote(model_id: str) -> dict:
        def decide(holder):
            time.sleep(random.random() * 0.02)  # scoring takes a while: the others move meanwhile
            old = scores[holder] if holder else None
            won = old is None or scores[model_id] - old >= 1
            champion = {"model_id": holder, "score": old} if holder else None
            return {
                "alias": "champion",
                "metric": "accuracy",
                "promoted": won,
                "challenger": {"model_id": model_id, "version": None, "score": scores[model_id]},
                "champion": champion,
            }

        def commit(decision, expected):
            with catalog.tx() as conn:
                apply_decision(conn, "race", decision, expected)

        start.wait()
        return promotion.settle(lambda: catalog.aliases.holder("race", "champion"), decide, commit)

    with ThreadPoolExecutor(len(ids)) as pool:
        decisions = list(pool.map(promote, ids))
    best = max(ids, key=scores.__getitem__)
    assert catalog.aliases.holder("race", "champion") == best
    promoted_events = [t for t, _ in catalog.events_for("race") if t == "kubepredict.model.promoted"]
    assert len(promoted_events) == sum(d["promoted"] for d in decisions)
    # every recorded decision was made against the holder at its commit: a loser never moved the alias
    for d in decisions:
        if d["champion"] is not None and d["promoted"]:
            assert scores[d["challenger"]["model_id"]] > d["champion"]["score"]


def test_a_stale_decision_changes_nothing(catalog):
    a, b, c = _ready_models(catalog, 3)
    decision = {
        "alias": "champion",
        "metric": "accuracy",
        "promoted": True,
        "challenger": {"model_id": b, "score": 1.0},
        "champion": None,
    }
    with catalog.tx() as conn:
        assert apply_decision(conn, "race", {**decision, "challenger": {"model_id": a, "score": 0.5}}, None)
    for expected in (None, c):  # made against "no holder" or a holder that is gone: refused
        with pytest.raises(AliasMoved), catalog.tx() as conn:
            apply_decision(conn, "race", decision, expected)
        with pytest.raises(AliasMoved), catalog.tx() as conn:
            apply_decision(conn, "race", {**decision, "promoted": False}, expected)
    assert catalog.aliases.holder("race", "champion") == a
