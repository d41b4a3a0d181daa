"""The OpenAPI document: valid OpenAPI 3.1, generated from the route tables, covering every route; served open."""

from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate
from werkzeug.routing import Map
from werkzeug.test import Client

from kubepredict.api import FUNCTIONS, protocols
from kubepredict.api.openapi import document
from kubepredict.bootstrap import bootstrap
from kubepredict.config import Settings
from kubepredict.runtimes.gateway import Gateway


@pytest.fixture(scope="module")
def doc():
    return document()


def operations(doc) -> set[tuple[str, str]]:
    return {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}


def test_document_is_valid_openapi_3_1(doc):
    assert doc["openapi"].startswith("3.1")
    validate(doc)  # raises on any violation of the OpenAPI 3.1 schema


def test_every_function_route_is_documented(doc):
    ops = operations(doc)
    missing = [
        (r.method, f"/function/{name}{'' if r.pattern == '/' else r.pattern}")
        for name, fn in FUNCTIONS.items()
        for r in fn.routes
        if (r.method, f"/function/{name}{'' if r.pattern == '/' else r.pattern}") not in ops
    ]
    assert missing == []


def test_every_protocol_route_is_documented_at_the_root_and_under_predict(doc):
    ops = operations(doc)
    missing = []
    for r in protocols.ROUTES:
        path = r.doc.path or r.pattern
        missing += [(r.method, p) for p in (path, "/function/predict" + path) if (r.method, p) not in ops]
    assert missing == []


def _rule_path(rule) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)


def test_every_gateway_rule_is_documented(tmp_path, doc):
    gateway = Gateway(bootstrap(Settings(data_dir=tmp_path)))
    assert isinstance(gateway.url_map, Map)
    paths = set(doc["paths"])
    missing = []
    for rule in gateway.url_map.iter_rules():
        path = _rule_path(rule)
        prefix = path[: -len("/{rest}")] if path.endswith("/{rest}") else path
        if prefix == "/function/{name}":  # every function's own routes, below its name
            ok = all(any(p == f"/function/{n}" or p.startswith(f"/function/{n}/") for p in paths) for n in FUNCTIONS)
        else:  # the path itself, or (a protocol root, a catch-all) the routes below it
            ok = prefix in paths or any(p.startswith(prefix + "/") for p in paths)
        if not ok:
            missing.append(rule.rule)
    assert missing == []
    assert "/ui/" in paths  # the static page, served beside the URL map


def test_document_refers_only_to_defined_schemas(doc):
    import json

    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(doc)))
    assert refs and refs <= set(doc["components"]["schemas"])


def test_links_chain_upload_train_predict_result(doc):
    op_ids = {op["operationId"] for ops in doc["paths"].values() for op in ops.values()}
    links = {}
    for ops in doc["paths"].values():
        for op in ops.values():
            for answer in op["responses"].values():
                for link in answer.get("links", {}).values():
                    links.setdefault(op["operationId"], set()).add(link["operationId"])
    assert {t for targets in links.values() for t in targets} <= op_ids
    assert "train_create" in links["upload_create"]
    assert "predict_create" in links["train_create"]
    assert "result_show" in links["predict_create"]


def test_error_responses_use_the_error_schema(doc):
    op = doc["paths"]["/function/train"]["post"]
    for status in ("400", "404", "413", "415", "422", "429"):
        ref = op["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/Error")
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    v2 = doc["paths"]["/v2/models/{name}/infer"]["post"]["responses"]["400"]["content"]["application/json"]
    assert v2["schema"]["$ref"].endswith("/ProtocolError")


def test_request_schemas_come_from_the_validating_models(doc):
    train = doc["components"]["schemas"]["TrainRequest"]
    assert train["additionalProperties"] is False and train["required"] == ["dataset_id"]
    assert train["properties"]["test_size"]["exclusiveMaximum"] == 1.0
    params = {p["name"]: p for p in doc["paths"]["/function/upload"]["get"]["parameters"]}
    assert params["limit"]["schema"]["anyOf"][0]["maximum"] == 1000


def test_served_open_without_a_token(tmp_path, doc):
    svc = bootstrap(Settings(data_dir=tmp_path, api_token="s3cret"))
    client = Client(Gateway(svc))
    r = client.get("/openapi.json")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    assert r.get_json() == doc
    assert client.get("/system/functions").status_code == 401  # the token still guards the rest
    assert client.post("/openapi.json").status_code == 405


@pytest.mark.parametrize(
    "path, shape",
    [
        ("/v2/models/a%0Ab/ready", "error"),
        ("/function/predict/v2/models/a%0Ab", "error"),
        ("/models/x%0A/ping", "error_code"),
    ],
)
def test_protocol_paths_with_a_newline_answer_in_the_protocols_shape(tmp_path, path, shape):
    """Found by the fuzzer: Werkzeug's path converter did not match a newline, so the gateway's own
    404 (the native error shape) answered a protocol route whose documented errors look different."""
    client = Client(Gateway(bootstrap(Settings(data_dir=tmp_path))))
    r = client.get(path)
    assert r.status_code == 404 and isinstance(r.get_json()[shape], str)
