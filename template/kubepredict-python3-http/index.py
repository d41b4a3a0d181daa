#!/usr/bin/env python
"""Kubepredict's python3-http compatible entry point: calls function.handler.handle(event, context).

The contract is python3-http's (event.body bytes, .headers, .method, .query, .path; context.hostname;
the same return forms), served by uvicorn (uvloop + httptools) instead of Flask on waitress. Calls run
on a pool of threads, one process, state kept between calls — except calls the handler itself marks
as quick (``handle.quick(event)`` returns True: an online prediction), which run on the event loop,
where a thread hand-off would cost more than the call.
"""

import asyncio
import json
import os
import site
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qsl, urlsplit

# Dependencies installed with `pip install --target /home/app/python` stay importable when the
# platform runs the container as an arbitrary uid (no $HOME-based user site).
site.addsitedir("/home/app/python")

from function import handler

METHODS = {"GET", "PUT", "POST", "PATCH", "DELETE"}
THREADS = int(os.getenv("threads", "16"))
MAX_BODY_BYTES = int(os.getenv("max_body_bytes", str(1 << 30)))
_pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="handler")


class Headers:
    """Case-insensitive, read-only headers (what Flask's request.headers offers a handler)."""

    def __init__(self, pairs):
        self._items = list(pairs)
        self._map = {}
        for k, v in self._items:
            self._map.setdefault(k.lower(), v)

    def get(self, key, default=None):
        return self._map.get(key.lower(), default)

    def __getitem__(self, key):
        return self._map[key.lower()]

    def __contains__(self, key):
        return key.lower() in self._map

    def __iter__(self):
        return iter(self._items)

    def items(self):
        return list(self._items)

    def keys(self):
        return [k for k, _ in self._items]


class Query:
    """The query string as a multi-dict: get() gives the first value, getlist() all of them."""

    def __init__(self, pairs):
        self._pairs = pairs

    def get(self, key, default=None):
        for k, v in self._pairs:
            if k == key:
                return v
        return default

    def getlist(self, key):
        return [v for k, v in self._pairs if k == key]

    def keys(self):
        return list(dict.fromkeys(k for k, _ in self._pairs))

    def __contains__(self, key):
        return any(k == key for k, _ in self._pairs)


class Event:
    """The request as python3-http hands it over: body bytes, headers, method, query, path."""

    def __init__(self, body, headers, method, query, path):
        self.body = body
        self.headers = headers
        self.method = method
        self.query = query
        self.path = path


class Context:
    """Only the hostname, as in python3-http."""

    def __init__(self):
        self.hostname = os.getenv("HOSTNAME", "localhost")


def _jsonify(value):
    # Flask's jsonify: sorted keys, compact, a trailing newline, application/json.
    return (json.dumps(value, sort_keys=True, separators=(",", ":")) + "\n").encode(), "application/json"


def _body(value):
    """(bytes, default content type) for a body the way Flask turns a view's return value into one."""
    if value is None:
        return b"", "text/html; charset=utf-8"
    if isinstance(value, (dict, list)):
        return _jsonify(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value), "text/html; charset=utf-8"
    return str(value).encode(), "text/html; charset=utf-8"


def _header_pairs(headers):
    if not headers:
        return []
    return list(headers.items()) if isinstance(headers, dict) else list(headers)


def format_response(res):
    """(status, [(name, value)], body) from any python3-http return form."""
    if res is None:
        return 200, [("Content-Type", "text/html; charset=utf-8")], b""
    if type(res) is dict:
        # A dict body is JSON; any other body is str()-ed (python3-http behaviour, bytes included).
        raw = res.get("body", "")
        body, ctype = _jsonify(raw) if type(raw) is dict else (str(raw).encode(), "text/html; charset=utf-8")
        return res.get("statusCode", 200), _with_type(_header_pairs(res.get("headers")), ctype), body
    if isinstance(res, tuple):
        body, status, headers = (list(res) + [None, None])[:3]
        if isinstance(status, (dict, list)) and headers is None:  # (body, headers)
            status, headers = 200, status
        data, ctype = _body(body)
        return int(status or 200), _with_type(_header_pairs(headers), ctype), data
    data, ctype = _body(res)
    return 200, [("Content-Type", ctype)], data


def _with_type(pairs, ctype):
    if not any(k.lower() == "content-type" for k, _ in pairs):
        pairs = [*pairs, ("Content-Type", ctype)]
    return pairs


def _error(status, message):
    body = json.dumps(
        {"error": {"code": "internal_error" if status >= 500 else "bad_request", "message": message, "details": {}}}
    ).encode()
    return status, [("Content-Type", "application/json")], body


def call(event):
    """Run the handler once; an uncaught exception is a JSON 500 (never a traceback to the client)."""
    try:
        return format_response(handler.handle(event, Context()))
    except Exception:  # the edge
        import logging

        logging.getLogger("index").exception("handler failed")
        return _error(500, "internal error; see the function's log")


async def app(scope, receive, send):
    """The ASGI application: every path and method (GET/PUT/POST/PATCH/DELETE) goes to the one handler."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["method"] not in METHODS:
        result = _error(405, f"{scope['method']} is not allowed")
    else:
        chunks, size, too_big = [], 0, False
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                too_big = True
            elif chunk:
                chunks.append(chunk)
            if not message.get("more_body"):
                break
        if too_big:
            result = _error(413, f"request body is larger than {MAX_BODY_BYTES} bytes")
        else:
            headers = Headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])
            query = Query(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
            event = Event(b"".join(chunks), headers, scope["method"], query, scope["path"])
            quick = getattr(handler.handle, "quick", None)
            if quick is not None and quick(event):
                result = call(event)
            else:
                result = await asyncio.get_running_loop().run_in_executor(_pool, call, event)
    status, headers, body = result
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    import uvicorn

    # The port of-watchdog forwards to: its upstream_url (the Dockerfile sets http://127.0.0.1:5000).
    uvicorn.run(
        app,
        host="0.0.0.0",
        port=urlsplit(os.getenv("upstream_url", "")).port or 5000,
        loop="uvloop",
        http="httptools",
        access_log=False,
        server_header=False,
        date_header=False,
        log_level=os.getenv("log_level", "info"),
    )
