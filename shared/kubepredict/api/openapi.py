"""The OpenAPI 3.1 document of the whole HTTP API, built from the route tables and the pydantic models.

Nothing here is written beside the code it describes: each function's routes (``Function.routes``
with their ``RouteDoc``), the inference protocol routes (``protocols.ROUTES``) and the request models
that validate bodies and query strings (``schema/requests.py``) are read as they are. Only the
gateway's own routes (health, metrics, ``/system``, ``/async-function``) are listed here, and a test
walks the gateway's URL map so none can be added without being described.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .. import __version__
from ..schema import responses as out
from . import FUNCTIONS, protocols
from .docs import JSON, Content, RouteDoc

REF = "#/components/schemas/{model}"
TEXT = Content({"text/plain": {"type": "string"}})
ID = {"type": "string", "minLength": 1}


def _function_name() -> dict:
    """The ``{name}`` of ``/system/function/{name}`` and ``/async-function/{name}``."""
    return {"type": "string", "enum": sorted(FUNCTIONS)}


def _gateway_routes() -> list[tuple[str, str, RouteDoc]]:
    """The embedded gateway's own routes (``runtimes/gateway.py``)."""
    return [
        (
            "GET",
            "/healthz",
            RouteDoc(
                "Health: storage and database answer",
                public=True,
                tags=("System",),
                responses={200: TEXT, 503: Content({"text/plain": {"type": "string"}}, "a backend is down")},
            ),
        ),
        (
            "GET",
            "/metrics",
            RouteDoc("Prometheus metrics (text exposition)", public=True, tags=("System",), responses={200: TEXT}),
        ),
        (
            "GET",
            "/openapi.json",
            RouteDoc(
                "This document",
                public=True,
                tags=("System",),
                responses={200: Content({JSON: {"type": "object"}}, "OpenAPI 3.1")},
            ),
        ),
        (
            "GET",
            "/",
            RouteDoc(
                "Redirect to the web page",
                public=True,
                tags=("System",),
                responses={302: Content({}, "to /ui/", {"Location": "/ui/"})},
            ),
        ),
        (
            "GET",
            "/ui/",
            RouteDoc(
                "The web page (and the API reference at /ui/api.html)",
                public=True,
                tags=("System",),
                responses={200: Content({"text/html": {"type": "string"}}, "")},
            ),
        ),
        (
            "GET",
            "/system/functions",
            RouteDoc(
                "The functions, as OpenFaaS lists them",
                tags=("System",),
                responses={200: Content({JSON: {"type": "array", "items": out.FunctionStatus}}, "")},
            ),
        ),
        (
            "GET",
            "/system/function/{name}",
            RouteDoc(
                "One function's status", tags=("System",), responses={200: out.FunctionStatus, 404: "unknown function"}
            ),
        ),
        (
            "POST",
            "/async-function/{name}",
            RouteDoc(
                "Invoke a function in the background (any of its routes: /async-function/{name}/{path})",
                tags=("System",),
                body=Content({JSON: {}}, "passed to the function as it is (any content type)"),
                headers={"X-Callback-Url": "where to POST the function's answer", "X-Call-Id": "the call's id"},
                body_required=False,
                responses={
                    202: Content(
                        {},
                        "accepted; X-Callback-Url receives the answer",
                        {"X-Call-Id": "the call's id, also sent to the callback"},
                    ),
                    404: "unknown function",
                    413: "body over the limit",
                },
            ),
        ),
    ]


def _operations() -> Iterable[tuple[str, str, str, RouteDoc, str]]:
    """``(method, path, operationId, doc, error dialect)`` for every route of the API."""
    for method, path, doc in _gateway_routes():
        yield method, path, _op_id(method, path), doc, "native"
    for fn in FUNCTIONS.values():
        for r in fn.routes:
            path = f"/function/{fn.name}" + ("" if r.pattern == "/" else r.pattern)
            yield (
                r.method,
                path,
                f"{fn.name}_{r.handler.__name__.rstrip('_')}",
                RouteDoc(**{**r.doc.__dict__, "tags": r.doc.tags or (fn.name,)}),
                "native",
            )
    for pr in protocols.ROUTES:
        path = pr.doc.path or pr.pattern
        dialect = protocols.dialect(path)
        for prefix in ("", "/function/predict"):
            yield pr.method, prefix + path, _op_id(pr.method, prefix + path), pr.doc, dialect


def _op_id(method: str, path: str) -> str:
    return method.lower() + "_" + (re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_") or "root")


def _refs(value: Any, models: set) -> Any:
    """A JSON Schema with pydantic models in it replaced by references to components."""
    if isinstance(value, type) and issubclass(value, BaseModel):
        models.add(value)
        return {"$ref": REF.format(model=value.__name__)}
    if isinstance(value, dict):
        return {k: _refs(v, models) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_refs(v, models) for v in value]
    return value


def _media(spec: Any, models: set) -> tuple[dict, str, dict]:
    """``(content, description, headers)`` for a body or a response declaration."""
    if isinstance(spec, Content):
        content = {m: ({"schema": _refs(s, models)} if s is not None else {}) for m, s in spec.media.items()}
        headers = {h: {"description": d, "schema": {"type": "string"}} for h, d in spec.headers.items()}
        return content, spec.description, headers
    return {JSON: {"schema": _refs(spec, models)}}, "", {}


def _query_parameters(model: type[BaseModel]) -> list[dict]:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    params = []
    for name, declared_prop in schema.get("properties", {}).items():
        prop = dict(declared_prop)
        branches = [b for b in prop.pop("anyOf", []) if b.get("type") != "null"]
        if len(branches) == 1:
            prop.update(branches[0])  # a query parameter is absent, never null
        elif branches:
            prop["anyOf"] = branches
        if prop.get("default") is None:
            prop.pop("default", None)
        prop.pop("title", None)
        description = prop.pop("description", None)
        if name not in required:  # ``?name=`` (an empty value) means absent, as HTML forms send it
            prop = {"anyOf": [prop, {"type": "string", "maxLength": 0}]}
        param = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if description:
            param["description"] = description
        params.append(param)
    return params


def _responses(doc: RouteDoc, dialect: str, has_body: bool, has_query: bool, has_path: bool, models: set) -> dict:
    error = {"native": out.Error, "mlflow": out.MLflowError}.get(dialect, out.ProtocolError)
    declared = dict(doc.responses)
    defaults = {
        401: "missing or invalid bearer token (when KUBEPREDICT_API_TOKEN is set)",
        503: "database or storage unavailable",
    }
    if doc.public:
        defaults.pop(401)
    if has_body:
        defaults.update({400: "invalid body", 413: "body over the limit", 415: "unsupported content type"})
    if has_query:
        defaults[400] = "invalid query string"
    if has_path:
        defaults[404] = "not found"
        defaults.setdefault(400, "not a valid identifier or model reference")
    for status, text in defaults.items():
        declared.setdefault(status, text)
    answers = {}
    for status, given in sorted(declared.items()):
        spec = given
        if isinstance(spec, str):
            if status < 400:
                answers[str(status)] = {"description": spec}
                continue
            spec = Content({JSON: error}, spec)
        content, description, headers = _media(spec, models)
        answer: dict[str, Any] = {"description": description or _reason(status)}
        if content:
            answer["content"] = content
        if headers:
            answer["headers"] = headers
        answers[str(status)] = answer
    return answers


def _reason(status: int) -> str:
    from http import HTTPStatus

    return HTTPStatus(status).phrase


@lru_cache(maxsize=1)
def document() -> dict:
    """The OpenAPI 3.1 document (a dict; built once per process)."""
    models: set = set()
    ids: dict[str, str] = {}
    paths: dict[str, dict] = {}
    for method, path, op_id, doc, dialect in _operations():
        names = re.findall(r"{(\w+)}", path)
        op: dict[str, Any] = {"operationId": op_id, "summary": doc.summary or op_id, "tags": list(doc.tags)}
        params = [
            {
                "name": n,
                "in": "path",
                "required": True,
                "schema": _function_name() if path.startswith(("/system/", "/async-function/")) else ID,
            }
            for n in names
        ]
        if doc.query is not None:
            params += _query_parameters(doc.query)
        params += [
            {"name": h, "in": "header", "required": False, "description": d, "schema": {"type": "string"}}
            for h, d in doc.headers.items()
        ]
        if params:
            op["parameters"] = params
        if doc.body is not None:
            content, description, _ = _media(doc.body, models)
            op["requestBody"] = {
                "required": doc.body_required,
                "content": content,
                **({"description": description} if description else {}),
            }
        op["responses"] = _responses(doc, dialect, doc.body is not None, doc.query is not None, bool(names), models)
        if doc.links:
            ok = next(s for s in op["responses"] if s.startswith("2"))
            op["responses"][ok]["links"] = {
                name: {"operationId": target, **({"parameters": p} if p else {}), **({"requestBody": b} if b else {})}
                for name, (target, p, b) in doc.links.items()
            }
        op["security"] = [] if doc.public else [{"bearerAuth": []}, {}]
        if op_id in ids:
            raise ValueError(f"operationId {op_id} names both {ids[op_id]} and {path}")
        ids[op_id] = path
        paths.setdefault(path, {})[method.lower()] = op
    _, defs = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)], ref_template=REF
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Kubepredict",
            "version": __version__,
            "description": "Train and serve scikit-learn models as serverless functions (upload, train, "
            "predict, result), with the Open Inference Protocol (V2), KServe V1 and MLflow "
            "scoring routes. Errors of the native API share one shape (Error). With "
            "KUBEPREDICT_API_TOKEN set, routes not marked public need a bearer token.",
        },
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }
