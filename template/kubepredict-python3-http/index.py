#!/usr/bin/env python
"""Kubepredict's python3-http compatible entry point: Flask on waitress, calling function.handler.handle."""

import os
import site
from urllib.parse import urlsplit

# Dependencies installed with `pip install --target /home/app/python` stay importable when the
# platform runs the container as an arbitrary uid (no $HOME-based user site).
site.addsitedir("/home/app/python")

from flask import Flask, jsonify, request  # noqa: E402
from waitress import serve  # noqa: E402

from function import handler  # noqa: E402

app = Flask(__name__)
METHODS = ["GET", "PUT", "POST", "PATCH", "DELETE"]


class Event:
    """The request as python3-http hands it over: body bytes, headers, method, query, path."""

    def __init__(self):
        self.body = request.get_data()
        self.headers = request.headers
        self.method = request.method
        self.query = request.args
        self.path = request.path


class Context:
    """Only the hostname, as in python3-http."""

    def __init__(self):
        self.hostname = os.getenv("HOSTNAME", "localhost")


def format_status_code(res):
    """statusCode from a dict answer, 200 when absent."""
    return res["statusCode"] if "statusCode" in res else 200


def format_body(res):
    """A dict body is JSON; any other body is str()-ed (python3-http behaviour, bytes included)."""
    if "body" not in res:
        return ""
    if type(res["body"]) is dict:
        return jsonify(res["body"])
    return str(res["body"])


def format_headers(res):
    """Headers as (name, value) pairs; a list is passed through."""
    if "headers" not in res:
        return []
    if type(res["headers"]) is dict:
        return [(key, value) for key, value in res["headers"].items()]
    return res["headers"]


def format_response(res):
    """Turn the handler's return value into what Flask accepts (None, dict, or passed through)."""
    if res is None:
        return ("", 200)
    if type(res) is dict:
        return (format_body(res), format_status_code(res), format_headers(res))
    return res


@app.route("/", defaults={"path": ""}, methods=METHODS)
@app.route("/<path:path>", methods=METHODS)
def call_handler(path):
    """Every path and method goes to the one handler."""
    return format_response(handler.handle(Event(), Context()))


if __name__ == "__main__":
    # The port of-watchdog forwards to: its upstream_url (the Dockerfile sets http://127.0.0.1:5000).
    serve(app, host="0.0.0.0", port=urlsplit(os.getenv("upstream_url", "")).port or 5000)
