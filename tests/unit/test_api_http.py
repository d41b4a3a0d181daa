"""The neutral request/response layer every runtime speaks (api/http.py): headers, bodies, routing."""

from __future__ import annotations

import io

import pytest
from pydantic import BaseModel, ConfigDict

from kubepredict.api.http import (
    Function,
    Headers,
    Request,
    Response,
    idempotency_key,
    normalize_path,
    unwrap_cloudevent,
)
from kubepredict.errors import InvalidInput, MethodNotAllowed, PayloadTooLarge, RouteNotFound, UnsupportedMediaType


def test_headers_are_case_insensitive_from_pairs_or_mappings():
    for h in (Headers({"Content-Type": "text/csv"}), Headers([("CONTENT-TYPE", "text/csv")])):
        assert h["content-type"] == h.get("Content-Type") == "text/csv"
        assert "Content-type" in h and h.get("missing", "d") == "d"


@pytest.mark.parametrize("raw, expected", [("", "/"), ("//a//b/", "/a/b"), ("a", "/a"), ("/", "/")])
def test_paths_are_normalized(raw, expected):
    assert normalize_path(raw) == expected
    assert Request.build("get", raw).path == expected


def test_content_type_drops_parameters_and_case():
    r = Request.build("POST", headers={"Content-Type": "Application/JSON; charset=utf-8"})
    assert r.content_type == "application/json" and r.method == "POST"


def test_read_refuses_a_body_over_the_limit_without_reading_all_of_it():
    stream = io.BytesIO(b"x" * 100)
    r = Request.build("POST", body=stream)
    with pytest.raises(PayloadTooLarge) as err:
        r.read(10)
    assert err.value.details == {"limit_bytes": 10}
    assert stream.tell() == 11  # limit + 1 bytes, never the rest


def test_json_bodies_strict_and_clear():
    assert Request.build("POST", headers={"Content-Type": "application/json"}, body=b'{"a": [1, 2.5]}').json() == {
        "a": [1, 2.5]
    }
    cases = [
        (b"", "empty_body"),
        (b"  \n", "empty_body"),
        (b"{not json", "invalid_json"),
        (b'{"a": NaN}', "invalid_json"),
        (b'{"a": 1e999}', "invalid_json"),
        (b"[" * 2000 + b"]" * 2000, "invalid_json"),
        (b'"\xff"', "invalid_json"),
    ]
    for body, code in cases:
        with pytest.raises(InvalidInput) as err:
            Request.build("POST", headers={"Content-Type": "application/json"}, body=body).json()
        assert err.value.code == code, body[:20]


def test_json_types_lenient_for_clients_strict_for_a_browser_on_the_embedded_gateway():
    body = b'{"a": 1}'
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "", "application/octet-stream"):
        r = Request.build("POST", headers={"Content-Type": ctype} if ctype else {}, body=body)
        r.strict = True  # the embedded gateway: a client that is not a page keeps its default type
        assert r.json() == {"a": 1}, ctype
        for browser in ({"Origin": "http://127.0.0.1:8080"}, {"Sec-Fetch-Mode": "cors"}):
            page = Request.build("POST", headers={**browser, **({"Content-Type": ctype} if ctype else {})}, body=body)
            assert page.json() == {"a": 1}  # adapters (strict unset) read it whatever the type
            page.strict = True
            with pytest.raises(UnsupportedMediaType):
                page.json()
    for ctype in ("application/json", "application/cloudevents+json", "application/vnd.x+json"):
        page = Request.build("POST", headers={"Content-Type": ctype, "Origin": "x"}, body=body)
        page.strict = True
        assert page.json() == {"a": 1}
    with pytest.raises(UnsupportedMediaType):
        Request.build("POST", headers={"Content-Type": "text/csv"}, body=body).json()


def test_response_json_falls_back_for_types_orjson_refuses():
    assert Response.json({"a": 1}, 201, {"X": "y"}).headers == {"Content-Type": "application/json", "X": "y"}
    assert Response.json({1: "int key"}).content() == b'{"1":"int key"}'
    assert Response(200, iter([b"a", b"b"])).content() == b"ab"


class Page(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = 10


def _fn() -> Function:
    fn = Function("demo")

    @fn.route("GET", "/", query=Page)
    def list_(request, svc):
        return Response.json({"limit": request.params.limit, "svc": svc})

    @fn.route("GET", "/{item}")
    def show(request, svc, item):
        return Response.json({"item": item})

    @fn.route("DELETE", "/{item}")
    def delete(request, svc, item):
        return Response(204)

    return fn


def test_routing_matches_segments_passes_the_app_and_parses_declared_queries():
    fn = _fn()
    assert fn(Request.build("GET", "/", query={"limit": "5"}), "app").content() == b'{"limit":5,"svc":"app"}'
    assert fn(Request.build("GET", "/abc"), None).content() == b'{"item":"abc"}'
    assert fn(Request.build("HEAD", "/abc"), None).status == 200  # HEAD is a GET; the server drops the body
    assert fn(Request.build("DELETE", "/abc"), None).status == 204
    with pytest.raises(InvalidInput) as err:
        fn(Request.build("GET", "/", query={"limit": "x"}), None)
    assert err.value.code == "invalid_query"
    with pytest.raises(InvalidInput) as err:
        fn(Request.build("GET", "/", query={"nope": "1"}), None)
    assert err.value.code == "invalid_query"


def test_routing_errors_say_what_is_allowed():
    fn = _fn()
    with pytest.raises(MethodNotAllowed) as err:
        fn(Request.build("POST", "/abc"), None)
    assert err.value.details == {"allowed": ["DELETE", "GET"]}
    with pytest.raises(RouteNotFound) as err:
        fn(Request.build("GET", "/a/b"), None)
    assert err.value.details == {"path": "/a/b"}


def test_idempotency_key_from_header_cloudevent_or_event_id():
    assert idempotency_key(Request.build("POST", headers={"Idempotency-Key": "k" * 300})) == "k" * 200
    assert idempotency_key(Request.build("POST"), {"specversion": "1.0", "id": "ce-1", "data": {}}) == "ce-1"
    assert idempotency_key(Request.build("POST", headers={"ce-id": "h"})) == "h"
    assert idempotency_key(Request.build("POST", headers={"event-id": "kubeless"})) == "kubeless"
    assert idempotency_key(Request.build("POST")) is None


def test_cloudevents_are_unwrapped_strictly():
    assert unwrap_cloudevent({"specversion": "1.0", "data": {"a": 1}}) == {"a": 1}
    assert unwrap_cloudevent({"specversion": "1.0", "data": '{"a": 1}'}) == {"a": 1}
    assert unwrap_cloudevent({"a": 1}) == {"a": 1}
    for data in ("{not json", "[" * 5000 + "]" * 5000, '{"a": Infinity}'):
        with pytest.raises(InvalidInput) as err:
            unwrap_cloudevent({"specversion": "1.0", "data": data})
        assert err.value.code == "invalid_json"
