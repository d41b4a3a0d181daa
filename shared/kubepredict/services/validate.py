"""Small validators for request bodies and query strings (one clear 400 each)."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidInput

MAX_PAGE = 1000


def require_object(body: Any) -> dict:
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object", code="invalid_body")
    return body


def reject_unknown(body: dict, allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInput(f"unknown fields: {', '.join(unknown)}", code="unknown_fields",
                           details={"unknown": unknown, "allowed": sorted(allowed)})


def string(body: dict, key: str, *, required: bool = False, max_len: int = 200) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise InvalidInput(f"'{key}' is required", code="missing_field", details={"field": key})
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise InvalidInput(f"'{key}' must be a non-empty string of at most {max_len} characters",
                           code="invalid_field", details={"field": key})
    return value


def string_list(body: dict, key: str) -> list[str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise InvalidInput(f"'{key}' must be a non-empty list of column names", code="invalid_field",
                           details={"field": key})
    if len(set(value)) != len(value):
        raise InvalidInput(f"'{key}' lists a column twice", code="invalid_field", details={"field": key})
    return value


def number(body: dict, key: str, default: float, *, low: float, high: float) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low < value < high):
        raise InvalidInput(f"'{key}' must be a number between {low} and {high} (exclusive)", code="invalid_field",
                           details={"field": key})
    return float(value)


def optional_int(body: dict, key: str, default: int | None) -> int | None:
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not (0 <= value < 2**32):
        raise InvalidInput(f"'{key}' must be an integer between 0 and 2**32-1, or null", code="invalid_field",
                           details={"field": key})
    return value


def page(query: dict, *, default_limit: int = 100) -> tuple[int, int]:
    """``limit``/``offset`` from a query string, bounded."""
    def parse(name: str, default: int, high: int) -> int:
        raw = query.get(name)
        if raw in (None, ""):
            return default
        try:
            value = int(raw)
        except ValueError:
            raise InvalidInput(f"'{name}' must be an integer", code="invalid_query", details={"param": name}) from None
        if not 0 <= value <= high:
            raise InvalidInput(f"'{name}' must be between 0 and {high}", code="invalid_query",
                               details={"param": name})
        return value

    return parse("limit", default_limit, MAX_PAGE), parse("offset", 0, 2**62)
