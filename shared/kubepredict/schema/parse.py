"""Validate a body or query string with its model; pydantic's errors become the API's 400s.

Codes stay those the API has always used: ``invalid_body`` (not a JSON object), ``unknown_fields``,
``missing_field``, ``invalid_field`` (or the model's ``field_codes``) for bodies, ``invalid_query``
for query strings. ``details`` names the field and lists every problem found.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ..errors import InvalidInput

M = TypeVar("M", bound=BaseModel)


def require_object(data: Any) -> dict:
    if not isinstance(data, dict):
        raise InvalidInput("the request body must be a JSON object", code="invalid_body")
    return data


def body(model: type[M], data: Any) -> M:
    """``data`` (a parsed JSON body) as ``model``, or InvalidInput naming the field."""
    try:
        return model.model_validate(require_object(data))
    except ValidationError as exc:
        raise _body_error(model, exc) from None


def query(model: type[M], params: Mapping[str, str]) -> M:
    """A query string as ``model``; empty values count as absent."""
    try:
        return model.model_validate({k: v for k, v in params.items() if v != ""})
    except ValidationError as exc:
        problems = _problems(exc)
        first = problems[0]
        unknown = [p["field"] for p in problems if p["type"] == "extra_forbidden"]
        if unknown:
            message = f"unknown query parameters: {', '.join(unknown)}"
        else:
            message = f"query parameter '{first['field']}': {first['message']}"
        raise InvalidInput(
            message,
            code="invalid_query",
            details={
                "param": first["field"],
                "errors": problems,
                **({"unknown": unknown, "allowed": sorted(model.model_fields)} if unknown else {}),
            },
        ) from None


def _body_error(model: type[BaseModel], exc: ValidationError) -> InvalidInput:
    problems = _problems(exc)
    unknown = [p["field"] for p in problems if p["type"] == "extra_forbidden"]
    if unknown:
        return InvalidInput(
            f"unknown fields: {', '.join(unknown)}",
            code="unknown_fields",
            details={"unknown": unknown, "allowed": sorted(model.model_fields), "errors": problems},
        )
    first = problems[0]
    field = first["field"]
    if first["type"] == "missing":
        return InvalidInput(
            f"'{field}' is required", code="missing_field", details={"field": field, "errors": problems}
        )
    code = getattr(model, "field_codes", {}).get(field.split(".")[0], "invalid_field")
    return InvalidInput(f"'{field}': {first['message']}", code=code, details={"field": field, "errors": problems})


def _problems(exc: ValidationError) -> list[dict]:
    """One entry per problem: the field's dotted path, pydantic's message and error type (no input echoed)."""
    out = []
    for e in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = [str(p) for p in e["loc"] if not _is_union_branch(p)]
        out.append({"field": ".".join(loc) or "body", "message": e["msg"], "type": e["type"]})
    return out


def _is_union_branch(part) -> bool:
    # pydantic names union members in ``loc`` ("int", "constrained-str", "list[str]"…): not a field
    return isinstance(part, str) and (
        part in {"int", "float", "str", "bool", "none", "dict", "list"}
        or "[" in part
        or part.startswith(("constrained-", "function-"))
    )
