"""The embedded gateway's edge: what is checked on a request's line and headers, before its body is read.

One ``Edge`` per gateway, built from the settings; ``Edge.check`` takes the method, the path and the few
headers it needs and answers either a refusal (a JSON error ``Response``) or the access granted. It
runs on every request, online predictions included, so it does no parsing beyond splitting strings,
no regular expressions and no DNS. In order:

1. ``Host`` allow-list (open mode, or whenever ``KUBEPREDICT_ALLOWED_HOSTS`` is set): a DNS-rebinding
   page reaches the server under its own name → 403 ``host_not_allowed``. Health checks are exempt.
2. CORS preflight (``OPTIONS`` with ``Access-Control-Request-Method``) answered here, without a token.
3. ``Origin`` on a request that changes something: another site's page (a form post, a no-cors fetch)
   → 403 ``origin_not_allowed`` unless the origin is listed in ``KUBEPREDICT_CORS_ORIGINS``.
4. Bearer token (``KUBEPREDICT_API_TOKEN``: everything; ``KUBEPREDICT_READ_TOKEN``: reads and online
   predictions) → 401 / 403 ``read_only_token``. Open routes: ``OPEN_PATHS``, ``/ui/…`` and the
   protocols' health routes (``protocols.PUBLIC``).
5. ``Content-Length`` above the upload limit → 413 before a byte of the body is read.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable

from .. import errors
from ..api import protocols
from ..api.http import Response
from . import responses

OPEN, READ, WRITE = 0, 1, 2  # access: what a route needs, and what a token grants
GRANTED = "kubepredict.access"  # ASGI scope / WSGI environ key: the access granted, once checked

# Open without a token: liveness, the redirect to the page, the page itself, the API description.
OPEN_PATHS = frozenset({"/healthz", "/", "/ui", "/openapi.json"})
HEALTH_PATHS = frozenset({"/healthz", *(p for m, p in protocols.PUBLIC if "/health" in p or p == "/ping")})
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", "[::]", ""})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ALLOW_METHODS = "GET, HEAD, POST, DELETE"
ALLOW_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-Callback-Url, X-Call-Id, Accept"
EXPOSE_HEADERS = "Location, X-Call-Id, Content-Disposition, Retry-After"
FRAMING_BYTES = 1024 * 1024  # room for multipart framing above the upload limit


class Edge:
    """The checks before a body is read, configured once from ``settings``."""

    def __init__(self, settings):
        self.token = settings.api_token.encode() if settings.api_token else None
        self.read_token = settings.read_token.encode() if settings.read_token else None
        self.max_body = settings.max_upload_bytes + FRAMING_BYTES
        self.limit_bytes = settings.max_upload_bytes
        self.hosts = _host_set(settings.allowed_hosts, settings.host)
        self.suffixes = tuple(h.lower() for h in settings.allowed_hosts if h.startswith("."))
        self.any_host = "*" in settings.allowed_hosts or (self.token is not None and not settings.allowed_hosts)
        self.any_ip = settings.host in WILDCARD_BINDS  # bound to every interface: its addresses answer too
        self._hosts_seen: dict[str, bool] = {}
        self.origins = frozenset(o.rstrip("/").lower() for o in settings.cors_origins)
        self.any_origin = "*" in self.origins

    # ---- the one entry point ----------------------------------------------------------------------
    def check(
        self,
        method: str,
        path: str,
        host: str,
        authorization: bytes,
        origin: str,
        content_length: int | None,
        preflight: bool,
    ) -> Response | int:
        """A refusal, or the access the request was granted (OPEN, READ or WRITE)."""
        try:
            if not self.any_host and host and not self.host_allowed(host) and path not in HEALTH_PATHS:
                raise errors.Forbidden(
                    f"this server does not answer for the host name {host.rsplit(':', 1)[0]!r}; "
                    "add it to KUBEPREDICT_ALLOWED_HOSTS",
                    code="host_not_allowed",
                )
            if preflight:
                return self.preflight(origin)
            if origin and method not in SAFE_METHODS and not self.origin_allowed(origin, host):
                raise errors.Forbidden(
                    f"requests from pages at {origin} are not allowed; add the origin to KUBEPREDICT_CORS_ORIGINS",
                    code="origin_not_allowed",
                )
            granted = self.grant(authorization)
            if granted < WRITE and granted < required(method, path):
                raise denied(granted)
            if content_length is not None and content_length > self.max_body and method in BODY_METHODS:
                raise errors.PayloadTooLarge(
                    f"request body of {content_length} bytes is larger than the limit of {self.limit_bytes} bytes",
                    details={"limit_bytes": self.limit_bytes},
                )
            return granted
        except errors.KubepredictError as exc:
            resp = refusal(path, exc, unread_body=content_length != 0)
            if origin and self.origin_allowed(origin, host):
                resp.headers.update(self.cors_headers(origin))
            return resp

    # ---- parts ------------------------------------------------------------------------------------
    def grant(self, authorization: bytes) -> int:
        """WRITE without a configured token; else what the bearer token in ``authorization`` allows."""
        if self.token is None:
            return WRITE
        scheme, _, given = authorization.partition(b" ")
        if scheme.lower() != b"bearer":
            return OPEN
        given = given.strip()
        if hmac.compare_digest(given, self.token):
            return WRITE
        if self.read_token is not None and hmac.compare_digest(given, self.read_token):
            return READ
        return OPEN

    def host_allowed(self, host: str) -> bool:
        known = self._hosts_seen.get(host)
        if known is None:
            known = self._host_allowed(host)
            if len(self._hosts_seen) < 256:  # the few names a server is reached by; not grown by an attacker
                self._hosts_seen[host] = known
        return known

    def _host_allowed(self, host: str) -> bool:
        name = host.lower()
        if name.startswith("["):  # [v6]:port
            name = name[: name.find("]") + 1]
        else:
            name = name.partition(":")[0]
        if name in self.hosts or (self.suffixes and name.endswith(self.suffixes)):
            return True
        return self.any_ip and _is_ip(name)

    def origin_allowed(self, origin: str, host: str) -> bool:
        o = origin.lower()
        return self.any_origin or o in self.origins or o.partition("://")[2] == host.lower()

    def cors_headers(self, origin: str) -> dict:
        return {
            "Access-Control-Allow-Origin": origin,
            "Vary": "Origin",
            "Access-Control-Expose-Headers": EXPOSE_HEADERS,
        }

    def cors_for(self, origin: str) -> dict | None:
        """CORS headers for a response to a page at ``origin`` (cross-origin and allowed), else None."""
        if origin and (self.any_origin or origin.lower() in self.origins):
            return self.cors_headers(origin)
        return None

    def preflight(self, origin: str) -> Response:
        """The answer to a CORS preflight: 204 with the allowed methods and headers, or 403."""
        if not (self.any_origin or origin.lower() in self.origins):
            raise errors.Forbidden(
                f"pages at {origin or 'this origin'} may not call this API; add the origin to KUBEPREDICT_CORS_ORIGINS",
                code="origin_not_allowed",
            )
        return Response(
            204,
            b"",
            {
                **self.cors_headers(origin),
                "Access-Control-Allow-Methods": ALLOW_METHODS,
                "Access-Control-Allow-Headers": ALLOW_HEADERS,
                "Access-Control-Max-Age": "600",
            },
        )


def required(method: str, path: str) -> int:
    """The access a route needs: OPEN, READ or WRITE (anything not listed as open needs a token)."""
    if path in OPEN_PATHS or (path.startswith("/ui/") and "/." not in path):  # no dot segments out of /ui/
        return OPEN
    if method == "HEAD":
        method = "GET"
    if (method, path.rstrip("/")) in protocols.PUBLIC:
        return OPEN
    first, _, rest = path[1:].partition("/")
    if first == "function":
        if method in ("DELETE", "PUT") or (method == "POST" and rest.partition("/")[0].partition(".")[0] != "predict"):
            # upload, train, import, move an alias, delete, cancel; a predict naming a dataset is refused by predict
            return WRITE
        return READ
    if first == "async-function":
        return WRITE
    return READ  # /system/…, /metrics, the protocol routes (reads and online inference), unknown paths


def denied(granted: int) -> errors.KubepredictError:
    """Why a request with ``granted`` access may not go on (401 without a token, 403 for the read token)."""
    if granted == READ:
        return errors.Forbidden(
            "this token may only read and predict online; uploading, training, batch "
            "predictions, deleting and cancelling need the API token",
            code="read_only_token",
        )
    return errors.Unauthorized("missing or invalid bearer token (Authorization: Bearer <token>)")


def refusal(path: str, exc: errors.KubepredictError, *, unread_body: bool = True) -> Response:
    """The JSON error for a refused request, in the protocol's own shape on its routes."""
    resp = protocols.error_response(path, exc) if protocols.owns(path) else responses.error_response(exc)
    if unread_body:
        resp.headers["Connection"] = "close"  # the body is never read: no reading and dropping it either
    return resp


def _host_set(allowed: Iterable[str], bound: str) -> frozenset:
    names = {h.lower() for h in allowed if not h.startswith(".")} | LOOPBACK
    names |= {bound.lower(), f"[{bound.lower()}]"} if bound not in WILDCARD_BINDS else set()
    return frozenset(names)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


_FUNCTION_EDGES: dict = {}


def checked(fn):
    """``fn`` behind ``function_refusal``: what the OpenFaaS and Kubeless adapters call with the App."""

    def call(request, svc) -> Response:
        return function_refusal(fn.name, request, svc.settings) or fn(request, svc)

    return call


def function_refusal(name: str, request, settings) -> Response | None:
    """The token check for a function called through the OpenFaaS or Kubeless adapters (their own
    gateways do not check ours): the same tokens and route table as the embedded gateway, on the path
    ``/function/{name}{request.path}``. None when the call may go on (``request.can_write`` set)."""
    edge = _FUNCTION_EDGES.get(id(settings))
    if edge is None:
        edge = _FUNCTION_EDGES[id(settings)] = Edge(settings)
    if edge.token is None:
        return None
    granted = edge.grant((request.headers.get("authorization") or "").encode("utf-8", "replace"))
    public = (request.method if request.method != "HEAD" else "GET", request.path.rstrip("/")) in protocols.PUBLIC
    need = OPEN if public else required(request.method, f"/function/{name}{request.path}")
    if granted < WRITE and granted < need:
        return refusal(request.path, denied(granted), unread_body=False)
    request.can_write = granted == WRITE
    return None
