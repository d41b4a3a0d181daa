"""Registry aliases: name@alias everywhere, champion as the bare name's default, the promotion gate."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from kubepredict.bootstrap import bootstrap
from kubepredict.catalog.aliases import AliasNotFound
from kubepredict.codecs.table import Table
from kubepredict.config import Settings
from kubepredict.errors import Conflict, InvalidInput, ModelNotFound
from kubepredict.runner.worker import run_worker
from kubepredict.services import datasets, prediction, registry, serving, training

IRIS = (Path(__file__).resolve().parents[2] / "shared" / "kubepredict" / "data" / "iris.csv").read_bytes()
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


@pytest.fixture
def svc(tmp_path):
    return bootstrap(Settings(data_dir=tmp_path))


@pytest.fixture
def iris(svc):
    return datasets.upload_dataset(svc, io.BytesIO(IRIS), name="iris")["dataset_id"]


def _train(svc, dataset_id: str, name: str, algorithm: str = "logistic_regression", **extra) -> dict:
    job, _ = training.submit_train(
        svc, {"dataset_id": dataset_id, "target": "species", "algorithm": algorithm, "name": name, **extra}
    )
    assert run_worker(svc, job["job_id"]) == 0
    return svc.catalog.get_job(job["job_id"])


def _events(svc, key: str, kind: str) -> list[dict]:
    return [json.loads(p)["data"] for t, p in svc.catalog.events_for(key) if t == f"kubepredict.{kind}"]


def test_champion_is_the_bare_name_and_alias_moves_are_seen_at_once(svc, iris):
    v1 = _train(svc, iris, "flowers")["model_id"]
    v2 = _train(svc, iris, "flowers", "random_forest")["model_id"]
    assert serving.resolve(svc, "flowers").model_id == v2  # no champion: today's rule (newest ready)
    registry.set_alias(svc, "flowers", "champion", {"version": 1})
    assert serving.resolve(svc, "flowers").model_id == v1  # the served cache follows the alias at once
    assert serving.resolve(svc, "flowers@champion").model_id == v1
    registry.set_alias(svc, "flowers", "staging", {"model_id": v2})
    assert serving.resolve(svc, "flowers@staging").model_id == v2
    assert prediction.ready_model(svc, "flowers@staging").model_id == v2  # batch predict takes name@alias too
    assert prediction.ready_model(svc, "flowers/versions/1").model_id == v1
    registry.set_alias(svc, "flowers", "champion", {"version": 2})  # promote…
    assert serving.resolve(svc, "flowers").model_id == v2
    registry.set_alias(svc, "flowers", "champion", {"version": 1})  # …and roll back
    assert serving.resolve(svc, "flowers").model_id == v1
    result = serving.score(svc, serving.resolve(svc, "flowers"), Table.from_records([ROW]))
    assert result.predictions.tolist() == ["setosa"]
    assert svc.catalog.get_model(v1)["aliases"] == ["champion"]
    assert svc.catalog.get_model(v2)["aliases"] == ["staging"]
    listed = svc.catalog.aliases.list_aliases("flowers")
    assert [(a["alias"], a["version"]) for a in listed] == [("champion", 1), ("staging", 2)]
    svc.catalog.aliases.delete_alias("flowers", "champion")
    assert serving.resolve(svc, "flowers").model_id == v2  # back to the newest ready version
    moves = [(e["alias"], e["version"]) for e in _events(svc, "flowers", "model.alias_set")]
    assert moves == [("champion", 1), ("staging", 2), ("champion", 2), ("champion", 1)]  # in order, one key
    assert [e["alias"] for e in _events(svc, "flowers", "model.alias_deleted")] == ["champion"]


def test_bad_alias_requests_change_nothing(svc, iris):
    _train(svc, iris, "flowers")
    other = _train(svc, iris, "weeds")["model_id"]
    registry.set_alias(svc, "flowers", "champion", {"version": 1})
    before = svc.catalog.aliases.list_aliases("flowers")
    with pytest.raises(ModelNotFound):
        serving.resolve(svc, "flowers@nosuch")
    with pytest.raises(InvalidInput) as bad:
        serving.resolve(svc, "flowers@Not Valid!")
    assert bad.value.code == "invalid_alias"
    with pytest.raises(InvalidInput):
        registry.set_alias(svc, "flowers", "Bad Alias", {"version": 1})
    with pytest.raises(Conflict) as wrong:
        registry.set_alias(svc, "flowers", "champion", {"model_id": other})
    assert wrong.value.code == "alias_wrong_name"
    with pytest.raises(ModelNotFound):
        registry.set_alias(svc, "flowers", "champion", {"version": 7})
    with pytest.raises(InvalidInput):
        registry.set_alias(svc, "flowers", "champion", {"version": 1, "model_id": other})
    with pytest.raises(InvalidInput):
        registry.set_alias(svc, "flowers", "champion", {"version": "1"})
    with pytest.raises(AliasNotFound):
        svc.catalog.aliases.delete_alias("flowers", "staging")
    with pytest.raises(ModelNotFound):
        svc.catalog.aliases.list_aliases("nobody")
    assert svc.catalog.aliases.list_aliases("flowers") == before


def test_a_model_literally_named_with_an_at_sign_still_resolves(svc, iris):
    mid = _train(svc, iris, "team@2024")["model_id"]
    assert serving.resolve(svc, "team@2024").model_id == mid


def test_promotion_gate_moves_only_on_a_win_and_emits_once(svc, iris):
    gate = {"alias": "champion", "metric": "f1_macro", "min_gain": 0.01, "dataset_id": iris}
    first = _train(svc, iris, "gated", "random_forest", promote=gate)
    p1 = first["summary"]["promotion"]
    assert p1["promoted"] and p1["champion"] is None and p1["challenger"]["score"] > 0.9
    assert svc.catalog.aliases.holder("gated", "champion") == first["model_id"]
    # A deliberately weak challenger (one shallow tree) loses on the same dataset: the alias stays.
    second = _train(svc, iris, "gated", "decision_tree", params={"max_depth": 1}, promote=gate)
    p2 = second["summary"]["promotion"]
    assert not p2["promoted"] and p2["champion"]["model_id"] == first["model_id"]
    assert p2["challenger"]["score"] < p2["champion"]["score"] and p2["gain"] < 0.01
    assert svc.catalog.aliases.holder("gated", "champion") == first["model_id"]
    assert serving.resolve(svc, "gated").model_id == first["model_id"]  # the bare name is the champion
    promoted = _events(svc, "gated", "model.promoted")
    assert [e["model_id"] for e in promoted] == [first["model_id"]]  # once, and not for the loser


def test_promotion_request_is_checked_before_queueing(svc, iris):
    bad = [
        {"alias": "champion", "metric": "r2", "dataset_id": iris},  # a regression metric for a classifier
        {"alias": "Champion!", "metric": "accuracy", "dataset_id": iris},
        {"alias": "champion", "metric": "accuracy"},  # no dataset
    ]
    for promote in bad:
        with pytest.raises(InvalidInput):
            training.submit_train(svc, {"dataset_id": iris, "target": "species", "promote": promote})
    with pytest.raises(ModelNotFound.__mro__[1]):  # NotFound: unknown dataset
        training.submit_train(
            svc, {"dataset_id": iris, "target": "species", "promote": {"metric": "accuracy", "dataset_id": "ds_nope"}}
        )
    assert svc.catalog.count_jobs() == 0


def test_deleting_the_champion_drops_its_alias_and_the_name_falls_back(svc, iris):
    v1 = _train(svc, iris, "flowers")["model_id"]
    v2 = _train(svc, iris, "flowers")["model_id"]
    registry.set_alias(svc, "flowers", "champion", {"version": 1})
    training.delete_model(svc, v1)
    assert svc.catalog.aliases.list_aliases("flowers") == []
    assert serving.resolve(svc, "flowers").model_id == v2
    with pytest.raises(ModelNotFound):
        serving.resolve(svc, "flowers@champion")


def test_a_gate_whose_dataset_is_gone_keeps_the_model_and_says_why(svc, iris):
    other = datasets.upload_dataset(svc, io.BytesIO(IRIS), name="holdout")["dataset_id"]
    gate = {"alias": "champion", "metric": "accuracy", "dataset_id": other}
    job, _ = training.submit_train(svc, {"dataset_id": iris, "target": "species", "name": "g", "promote": gate})
    svc.catalog.delete_dataset(other)
    assert run_worker(svc, job["job_id"]) == 0
    done = svc.catalog.get_job(job["job_id"])
    assert done["status"] == "succeeded" and svc.catalog.get_model(job["model_id"])["status"] == "ready"
    p = done["summary"]["promotion"]
    assert not p["promoted"] and "could not be scored" in p["reason"]
    assert svc.catalog.aliases.holder("g", "champion") is None
