"""The neutral request/response every function speaks, and a tiny per-function router."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from ..errors import InvalidInput, MethodNotAllowed, PayloadTooLarge, RouteNotFound, UnsupportedMediaType
from ..schema import parse
from .docs import RouteDoc

# What a JSON body may be labelled: leniently for clients that are not web pages (Kubeless triggers send
# form types, ``faas-cli invoke`` and the OpenFaaS Kafka connector ``text/plain``, ``curl -d`` a form type),
# strictly for a request a browser sent (it carries ``Origin`` or ``Sec-Fetch-Mode``) to the embedded
# gateway: a page must not be able to send a JSON body to another site without asking first (text/plain,
# form types and no type at all are "simple" requests there). Any ``+json`` suffix counts as JSON in both.
JSON_TYPES = {
    "",
    "application/json",
    "application/cloudevents+json",
    "text/plain",
    "application/octet-stream",
    "application/x-www-form-urlencoded",
}
STRICT_JSON_TYPES = frozenset({"application/json", "application/cloudevents+json"})
DEFAULT_MAX_JSON = 64 * 1024 * 1024


class Headers(dict):
    """Case-insensitive header map (keys stored lower-case)."""

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()):
        super().__init__()
        for k, v in items.items() if isinstance(items, Mapping) else items:
            self[k] = v

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key.lower(), value)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def get(self, key: str, default=None):
        return super().get(key.lower(), default)

    def __contains__(self, key) -> bool:
        return super().__contains__(str(key).lower())


@dataclass
class Request:
    """What a function sees, whatever runtime delivered the call. ``path`` is relative to the function."""

    method: str
    path: str = "/"
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Headers = field(default_factory=Headers)
    stream: IO[bytes] = field(default_factory=io.BytesIO)
    #: set by the embedded gateway: a browser's request takes only JSON content types for JSON bodies
    #: (``STRICT_JSON_TYPES``)
    strict: bool = False
    #: False for a read-only token: the function may answer reads and online predictions only
    can_write: bool = True
    #: the query string parsed by the route's ``query`` model (``api/docs.py``), when it declares one
    params: Any = None

    @classmethod
    def build(
        cls, method: str, path: str = "/", *, query=None, headers=None, body: bytes | bytearray | IO[bytes] = b""
    ) -> Request:
        stream = io.BytesIO(body) if isinstance(body, (bytes, bytearray)) else body
        return cls(method.upper(), normalize_path(path), dict(query or {}), Headers(headers or {}), stream)

    @property
    def content_type(self) -> str:
        return (self.headers.get("content-type") or "").split(";")[0].strip().lower()

    def read(self, limit: int) -> bytes:
        data = self.stream.read(limit + 1)
        if len(data) > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes", details={"limit_bytes": limit})
        return data

    def is_json(self) -> bool:
        """Whether the content type may label a JSON body here (see ``JSON_TYPES``)."""
        ctype = self.content_type
        return ctype.endswith("+json") or ctype in (
            STRICT_JSON_TYPES if self.strict and self.from_browser else JSON_TYPES
        )

    @property
    def from_browser(self) -> bool:
        """Sent by a web page: browsers add ``Origin`` to cross-origin and POST requests and
        ``Sec-Fetch-Mode`` to every request; curl, SDKs and faas-cli send neither."""
        return "origin" in self.headers or "sec-fetch-mode" in self.headers

    def require_json(self) -> None:
        if not self.is_json():
            what = self.content_type or "a body without a Content-Type"
            raise UnsupportedMediaType(
                f"send JSON with Content-Type: application/json, not {what}",
                details={
                    "content_type": self.content_type,
                    "accepted": ["application/json", "application/cloudevents+json"],
                },
            )

    def json(self, limit: int = DEFAULT_MAX_JSON) -> Any:
        """Parse a JSON body (the adapters accept the types Kubeless triggers send; see ``JSON_TYPES``)."""
        self.require_json()
        raw = self.read(limit)
        if not raw.strip():
            raise InvalidInput("the request body is empty; send a JSON object", code="empty_body")
        try:
            # orjson: strict JSON (no NaN/Infinity literals), numbers beyond float range and nesting
            # deeper than 1024 are errors, never a RecursionError.
            return orjson.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"the request body is not valid JSON: {exc}", code="invalid_json") from exc


@dataclass
class Response:
    status: int = 200
    body: bytes | Iterable[bytes] = b""
    headers: dict = field(default_factory=dict)

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: dict | None = None) -> Response:
        try:
            body = orjson.dumps(data)
        except TypeError:  # a type orjson does not know (e.g. non-str keys): the standard library says why
            body = json.dumps(data, separators=(",", ":"), allow_nan=False).encode()
        return cls(status, body, {"Content-Type": "application/json", **(headers or {})})

    def content(self) -> bytes:
        """The whole body as bytes (runtimes that cannot stream)."""
        return self.body if isinstance(self.body, (bytes, bytearray)) else b"".join(self.body)


def normalize_path(path: str) -> str:
    path = "/" + "/".join(p for p in (path or "/").split("/") if p)
    return path


Handler = Callable[..., Response]


@dataclass(frozen=True)
class Route:
    method: str
    parts: list[str]
    handler: Handler
    doc: RouteDoc

    @property
    def pattern(self) -> str:
        return "/" + "/".join(self.parts)


class Function:
    """A named function with its own routes: ``(method, pattern)`` where ``{x}`` matches one segment."""

    def __init__(self, name: str):
        self.name = name
        self.routes: list[Route] = []
        self.__name__ = name
        #: ``quick(method, path, body) -> bool``: whether a call is cheap, CPU-only work (an online
        #: prediction) that a server may run on its event loop instead of handing it to a thread.
        self.quick: Callable[[str, str, bytes], bool] | None = None

    def is_quick(self, method: str, path: str, body: bytes) -> bool:
        return self.quick is not None and self.quick(method, path, body)

    def route(self, method: str, pattern: str, **doc):
        """Register ``fn`` for ``method pattern``; ``doc`` is a RouteDoc's fields (query model, body, responses…)."""

        def register(fn: Handler) -> Handler:
            self.routes.append(Route(method, [p for p in pattern.split("/") if p], fn, RouteDoc(**doc)))
            return fn

        return register

    def __call__(self, request: Request, svc) -> Response:
        parts = [p for p in request.path.split("/") if p]
        wanted = "GET" if request.method == "HEAD" else request.method  # HEAD: a GET whose body is dropped
        allowed = []
        for r in self.routes:
            args = _match(r.parts, parts)
            if args is None:
                continue
            if r.method != wanted:
                allowed.append(r.method)
                continue
            if r.doc.query is not None:
                request.params = parse.query(r.doc.query, request.query)
            return r.handler(request, svc, *args)
        if allowed:
            raise MethodNotAllowed(
                f"{request.method} is not allowed on /function/{self.name}{request.path}",
                details={"allowed": sorted(set(allowed))},
            )
        raise RouteNotFound(f"no route /function/{self.name}{request.path}", details={"path": request.path})


def _match(pattern: list[str], parts: list[str]) -> list[str] | None:
    if len(pattern) != len(parts):
        return None
    args = []
    for p, s in zip(pattern, parts, strict=True):
        if p.startswith("{"):
            args.append(s)
        elif p != s:
            return None
    return args


def idempotency_key(request: Request, body: Any = None) -> str | None:
    """Idempotency-Key header, else the CloudEvent id (structured body or ``ce-id``), else ``event-id``."""
    if request.headers.get("idempotency-key"):
        return request.headers["idempotency-key"][:200]
    if isinstance(body, dict) and "specversion" in body and body.get("id"):
        return str(body["id"])[:200]
    return request.headers.get("ce-id") or request.headers.get("event-id") or None


def unwrap_cloudevent(body: Any) -> Any:
    """A CloudEvent in structured mode carries the request in ``data`` (a JSON string is read as strictly as a body)."""
    if isinstance(body, dict) and "specversion" in body and "data" in body:
        data = body["data"]
        if isinstance(data, str):
            from ..codecs.base import loads

            data = loads(data, "the CloudEvent's data")
        return data
    return body
