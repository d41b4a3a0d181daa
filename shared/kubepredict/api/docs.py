"""What a route declares about itself, for validation at the edge and for the OpenAPI document.

A route's ``query`` model is applied before its handler runs (the parsed values land in
``request.params``); its ``body`` and ``responses`` are what ``api/openapi.py`` publishes, the body
models being the same ones the services validate with (``schema/requests.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JSON = "application/json"


@dataclass(frozen=True)
class Content:
    """A response or body that is not (only) one JSON model: ``{media type: model | JSON Schema | None}``."""

    media: dict[str, Any]
    description: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # header name -> description


@dataclass(frozen=True)
class RouteDoc:
    summary: str = ""
    query: type | None = None
    #: request body: a model (JSON) or a Content with several media types
    body: Any = None
    body_required: bool = True
    #: status -> a model (JSON answer), a Content, or a string (an error, described)
    responses: dict[int, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    #: optional request headers the route reads: {name: description}
    headers: dict[str, str] = field(default_factory=dict)
    #: OpenAPI links from this route's answer: {name: (operationId, {"path.x": expr} | None, body | None)}
    links: dict[str, tuple] = field(default_factory=dict)
    #: the path as the document writes it, when the route table's pattern is coarser (V1's ``{name}:predict``)
    path: str | None = None
    public: bool = False
