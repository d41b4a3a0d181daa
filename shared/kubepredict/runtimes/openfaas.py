"""OpenFaaS ``python3-http`` adapter: ``handle(event, context)`` → ``(body, status, headers)``.

The template's ``format_response`` passes a tuple to Flask unchanged, so bytes bodies (CSV) and
JSON strings both arrive intact with our own Content-Type. Calls run on the template server's
threads in one process (quick ones on its event loop): the process's App slot and model cache are thread-safe.
"""

from __future__ import annotations

from ..api.http import Headers, Request
from ..bootstrap import default_app
from . import responses
from .edge import checked


def to_request(event) -> Request:
    query = {k: event.query.get(k) for k in event.query.keys()} if getattr(event, "query", None) else {}
    body = event.body if isinstance(event.body, (bytes, bytearray)) else (event.body or "").encode()
    return Request.build(
        event.method,
        getattr(event, "path", "/") or "/",
        query=query,
        headers=Headers(dict(event.headers.items()) if event.headers else {}),
        body=body,
    )


def adapt(fn):
    """Wrap a neutral function for python3-http."""

    def handle(event, context):
        # The template hands the handler no App: the process's own, built on first use.
        response = responses.materialize(responses.call(checked(fn), to_request(event), default_app))
        return response.content(), response.status, dict(response.headers)

    def quick(event) -> bool:
        body = event.body if isinstance(event.body, (bytes, bytearray)) else (event.body or "").encode()
        return fn.is_quick((event.method or "").upper(), getattr(event, "path", "/") or "/", body)

    handle.__name__ = f"handle_{fn.__name__}"
    # the template's server runs quick calls on its event loop, others on threads (a function attribute)
    handle.quick = quick  # type: ignore[attr-defined]
    return handle
