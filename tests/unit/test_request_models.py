"""Request validation at the edge: pydantic models, errors mapped to the API's codes with the field named."""

from __future__ import annotations

import pytest

from kubepredict.errors import InvalidInput
from kubepredict.schema import parse
from kubepredict.schema import requests as q


def error(model, body) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        parse.body(model, body)
    return info.value


@pytest.mark.parametrize(
    "body, code, field",
    [
        ({"target": "y"}, "missing_field", "dataset_id"),
        ({"dataset_id": "ds_1", "test_size": 1.5}, "invalid_field", "test_size"),
        ({"dataset_id": "ds_1", "test_size": True}, "invalid_field", "test_size"),
        ({"dataset_id": "ds_1", "test_size": "0.3"}, "invalid_field", "test_size"),
        ({"dataset_id": "ds_1", "random_state": -1}, "invalid_field", "random_state"),
        ({"dataset_id": "ds_1", "random_state": 2**32}, "invalid_field", "random_state"),
        ({"dataset_id": "ds_1", "task": "ranking"}, "invalid_field", "task"),
        ({"dataset_id": "ds_1", "features": []}, "invalid_field", "features"),
        ({"dataset_id": "ds_1", "features": ["a", "a"]}, "invalid_field", "features"),
        ({"dataset_id": "ds_1", "features": ["a", 3]}, "invalid_field", "features.1"),
        ({"dataset_id": "ds_1", "target": "   "}, "invalid_field", "target"),
        ({"dataset_id": "x" * 41}, "invalid_field", "dataset_id"),
        ({"dataset_id": "ds_1", "params": [1]}, "invalid_params", "params"),
        ({"dataset_id": "ds_1", "resources": "big"}, "invalid_field", "resources"),
    ],
)
def test_train_request_errors_name_the_field(body, code, field):
    err = error(q.TrainRequest, body)
    assert err.code == code and err.details["field"] == field and field.split(".")[0] in err.message
    assert err.details["errors"][0]["field"] == field


def test_unknown_fields_are_listed_with_the_allowed_ones():
    err = error(q.TrainRequest, {"dataset_id": "ds_1", "targte": "y", "algo": "x"})
    assert err.code == "unknown_fields" and err.details["unknown"] == ["targte", "algo"]
    assert "target" in err.details["allowed"]


def test_not_an_object_is_invalid_body():
    assert error(q.TrainRequest, [1, 2]).code == "invalid_body"
    assert error(q.BatchPredictRequest, "x").code == "invalid_body"


def test_valid_train_request_keeps_defaults_and_free_params():
    req = parse.body(
        q.TrainRequest, {"dataset_id": "ds_1", "target": "y", "params": {"n_estimators": 5, "nested": {"a": [1]}}}
    )
    assert req.test_size == 0.2 and req.random_state == 0 and req.algorithm is None
    assert req.params == {"n_estimators": 5, "nested": {"a": [1]}}
    assert parse.body(q.TrainRequest, {"dataset_id": "d", "random_state": None}).random_state is None


def test_batch_predict_request():
    assert error(q.BatchPredictRequest, {"model_id": "m"}).details["field"] == "dataset_id"
    assert error(q.BatchPredictRequest, {"model_id": "m", "dataset_id": "d", "shards": 0}).details["field"] == "shards"
    assert error(q.BatchPredictRequest, {"model_id": "m", "dataset_id": "d", "rows": 1}).code == "unknown_fields"


@pytest.mark.parametrize(
    "query, param",
    [
        ({"limit": "many"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"format": "xml"}, "format"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_query_errors_are_invalid_query(query, param):
    with pytest.raises(InvalidInput) as info:
        parse.query(q.ResultQuery, query)
    assert info.value.code == "invalid_query" and info.value.details["param"] == param


def test_query_converts_text_and_treats_empty_as_absent():
    assert parse.query(q.JobsQuery, {"limit": "5", "offset": "", "kind": "train"}).model_dump() == {
        "limit": 5,
        "offset": 0,
        "kind": "train",
        "status": None,
    }


def test_bad_resources_value_type_is_a_400_at_submit(tmp_path):
    """Issue 15: a body that is not the documented shape is refused before anything is looked up or queued."""
    from kubepredict.bootstrap import bootstrap
    from kubepredict.config import Settings
    from kubepredict.services.training import submit_train

    svc = bootstrap(Settings(data_dir=tmp_path))
    with pytest.raises(InvalidInput) as info:
        submit_train(svc, {"dataset_id": "ds_missing", "target": "y", "resources": ["cpu"]})
    assert info.value.code == "invalid_field" and info.value.details["field"] == "resources"
