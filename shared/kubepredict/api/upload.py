"""The ``upload`` function: CSV data in, datasets listed, shown and deleted."""

from __future__ import annotations

from .. import metrics
from ..errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from ..services import datasets, validate
from ..storage.base import disk_full_is_507
from .http import Function, Request, Response

upload = Function("upload")
CSV_TYPES = {"text/csv", "application/csv", "application/octet-stream", "text/plain", ""}


def _multipart(request: Request, limit: int):
    from werkzeug.exceptions import RequestEntityTooLarge
    from werkzeug.formparser import parse_form_data

    environ = {"REQUEST_METHOD": "POST", "wsgi.input": request.stream,
               "CONTENT_TYPE": request.headers.get("content-type", ""),
               "CONTENT_LENGTH": request.headers.get("content-length", "")}
    try:
        with disk_full_is_507("the server's temp folder"):  # the form parser spools the file there
            _, form, files = parse_form_data(environ, max_content_length=limit + 1024 * 1024, silent=False)
    except RequestEntityTooLarge as exc:
        raise PayloadTooLarge(f"body is larger than the limit of {limit} bytes", details={"limit_bytes": limit}) from exc
    except ValueError as exc:
        raise InvalidInput(f"malformed multipart body: {exc}", code="invalid_multipart") from exc
    if "file" not in files:
        raise InvalidInput("multipart upload needs a field named 'file'", code="missing_field",
                           details={"field": "file"})
    f = files["file"]
    return f.stream, form.get("name") or (f.filename or "").rsplit(".", 1)[0] or None


@upload.route("POST", "/")
def create(request: Request, svc) -> Response:
    ctype = request.content_type
    name = request.query.get("name")
    if ctype == "multipart/form-data":
        stream, form_name = _multipart(request, svc.settings.max_upload_bytes)
        name = name or form_name
    elif ctype in CSV_TYPES:
        stream = request.stream
    else:
        raise UnsupportedMediaType(f"upload a CSV file (text/csv or multipart/form-data), not {ctype}",
                                   details={"content_type": ctype, "accepted": sorted(CSV_TYPES - {""})})
    view = datasets.upload_dataset(svc, stream, name=name)
    metrics.UPLOAD_BYTES.inc(view["size_bytes"])
    return Response.json(view, 201, {"Location": f"/function/upload/{view['dataset_id']}"})


@upload.route("GET", "/")
def list_(request: Request, svc) -> Response:
    limit, offset = validate.page(request.query)
    items, total = svc.catalog.list_datasets(limit=limit, offset=offset)
    return Response.json({"datasets": items, "total": total, "limit": limit, "offset": offset})


@upload.route("GET", "/{dataset_id}")
def show(request: Request, svc, dataset_id: str) -> Response:
    return Response.json(svc.catalog.get_dataset(dataset_id, preview=True))


@upload.route("DELETE", "/{dataset_id}")
def delete(request: Request, svc, dataset_id: str) -> Response:
    datasets.delete_dataset(svc, dataset_id)
    return Response(204)
