"""The model registry's verbs beyond training: aliases (promote, roll back)."""

from __future__ import annotations

from typing import Any

from ..catalog.aliases import check_alias
from ..errors import InvalidInput
from ..schema import parse
from ..schema.requests import AliasRequest


def set_alias(svc, name: str, alias: str, body: Any) -> dict[str, Any]:
    """``PUT …/{name}/aliases/{alias}``: point the alias at ``version`` (or ``model_id``) of ``name``."""
    check_alias(alias)  # 400 before anything else is read
    req = parse.body(AliasRequest, body)
    if (req.version is None) == (req.model_id is None):
        raise InvalidInput(
            "send exactly one of 'version' (a version of this name) and 'model_id'",
            code="invalid_field",
            details={"fields": ["version", "model_id"]},
        )
    return svc.catalog.aliases.set_alias(name, alias, version=req.version, model_id=req.model_id)
