"""Kubeless python runtime adapter: ``handler(event, context)``.

Kubeless hands ``event["data"]`` as bytes, or as parsed JSON only when Content-Type is exactly
``application/json``; method, path, query and headers come from ``event["extensions"]["request"]``
(a picklable bottle request). A returned dict becomes a 200, so every other status or header needs
a ``bottle.HTTPResponse``; a list or an exception would become a 500, so neither ever escapes.
Each call runs in a fresh child process: nothing here keeps state between calls, so each call is
counted durably in the catalogue (``metrics.record_call``) rather than in a counter that dies with it.
"""

from __future__ import annotations

import json
import time

from .. import metrics
from ..api.http import Headers, Request
from ..bootstrap import default_app
from . import responses
from .edge import checked


def _headers(req) -> Headers:
    raw = getattr(req, "headers", None)
    if raw is not None:
        try:
            return Headers(dict(raw.items()))
        except AttributeError:
            pass
    environ = getattr(req, "environ", {}) or {}
    items = {k[5:].replace("_", "-"): v for k, v in environ.items() if k.startswith("HTTP_")}
    for k in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(k):
            items[k.replace("_", "-")] = environ[k]
    return Headers(items)


def to_request(event: dict) -> Request:
    req = (event.get("extensions") or {}).get("request")
    data = event.get("data")
    if isinstance(data, (dict, list)):
        body = json.dumps(data).encode()
    elif isinstance(data, str):
        body = data.encode()
    else:
        body = data or b""
    headers = _headers(req) if req is not None else Headers()
    for name in ("event-id", "event-type", "event-time", "event-namespace"):
        if event.get(name) and name not in headers:
            headers[name] = event[name]
    method = getattr(req, "method", "POST" if body else "GET")
    path = getattr(req, "path", "/") or "/"
    query = dict(getattr(req, "query", {}) or {})
    return Request.build(method, path, query=query, headers=headers, body=body)


def _built_app():
    try:
        return default_app()
    except Exception:  # noqa: BLE001 - already answered as the call's error
        return None


def adapt(fn):
    """Wrap a neutral function for the Kubeless python runtime."""

    def handler(event, context):
        import bottle  # the runtime's own web framework; only needed inside Kubeless

        started = time.perf_counter()
        # Kubeless hands the handler no App: the process's own, built on first use (an error building it,
        # e.g. the catalogue unreachable, is the call's JSON error; the call then goes uncounted).
        response = responses.materialize(responses.call(checked(fn), to_request(event), default_app))
        app = _built_app()
        if app is not None:
            metrics.record_call(fn.__name__, response.status, time.perf_counter() - started, app)
        return bottle.HTTPResponse(body=response.content(), status=response.status, headers=dict(response.headers))

    handler.__name__ = f"handler_{fn.__name__}"
    return handler
