"""The ``upload`` function: CSV data in, datasets listed, shown and deleted."""

from __future__ import annotations

from .. import metrics
from ..errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from ..schema import requests as q
from ..schema import responses as out
from ..services import datasets
from ..storage.base import disk_full_is_507
from .docs import Content
from .http import Function, Request, Response

upload = Function("upload")
CSV_TYPES = {"text/csv", "application/csv", "application/octet-stream", "text/plain", ""}


def _multipart(request: Request, limit: int):
    from werkzeug.exceptions import RequestEntityTooLarge
    from werkzeug.formparser import parse_form_data

    environ = {
        "REQUEST_METHOD": "POST",
        "wsgi.input": request.stream,
        "CONTENT_TYPE": request.headers.get("content-type", ""),
        "CONTENT_LENGTH": request.headers.get("content-length", ""),
    }
    try:
        with disk_full_is_507("the server's temp folder"):  # the form parser spools the file there
            _, form, files = parse_form_data(environ, max_content_length=limit + 1024 * 1024, silent=False)
    except RequestEntityTooLarge as exc:
        raise PayloadTooLarge(
            f"body is larger than the limit of {limit} bytes", details={"limit_bytes": limit}
        ) from exc
    except ValueError as exc:
        raise InvalidInput(f"malformed multipart body: {exc}", code="invalid_multipart") from exc
    if "file" not in files:
        raise InvalidInput(
            "multipart upload needs a field named 'file'", code="missing_field", details={"field": "file"}
        )
    f = files["file"]
    return f.stream, form.get("name") or (f.filename or "").rsplit(".", 1)[0] or None


EXAMPLE_CSV = "x1,x2,label\n" + "".join(f"{i},{(i * 7) % 10},{'ab'[i % 2]}\n" for i in range(20))
CSV_BODY = Content(
    {
        "text/csv": {"type": "string", "description": "a CSV file with a header row", "examples": [EXAMPLE_CSV]},
        "multipart/form-data": {
            "type": "object",
            "required": ["file"],
            "properties": {
                "file": {"type": "string", "format": "binary", "description": "the CSV file"},
                "name": {"type": "string", "description": "the dataset's name"},
            },
        },
    }
)


@upload.route(
    "POST",
    "/",
    summary="Upload a CSV file as a dataset",
    query=q.UploadQuery,
    body=CSV_BODY,
    responses={
        201: Content({"application/json": out.Dataset}, "the stored dataset", {"Location": "the dataset's URL"}),
        400: "not parseable CSV, no rows, duplicate or empty column names",
        413: "larger than KUBEPREDICT_MAX_UPLOAD_BYTES",
        415: "not CSV or multipart",
        507: "no space left to store it",
    },
    links={
        "GetDataset": ("upload_show", {"path.dataset_id": "$response.body#/dataset_id"}, None),
        "TrainOnDataset": ("train_create", None, {"dataset_id": "$response.body#/dataset_id"}),
        "DeleteDataset": ("upload_delete", {"path.dataset_id": "$response.body#/dataset_id"}, None),
    },
)
def create(request: Request, svc) -> Response:
    ctype = request.content_type
    name = request.params.name
    if ctype == "multipart/form-data":
        stream, form_name = _multipart(request, svc.settings.max_upload_bytes)
        name = name or form_name
    elif ctype in CSV_TYPES:
        stream = request.stream
    else:
        raise UnsupportedMediaType(
            f"upload a CSV file (text/csv or multipart/form-data), not {ctype}",
            details={"content_type": ctype, "accepted": sorted(CSV_TYPES - {""})},
        )
    view = datasets.upload_dataset(svc, stream, name=name)
    metrics.UPLOAD_BYTES.inc(view["size_bytes"])
    return Response.json(view, 201, {"Location": f"/function/upload/{view['dataset_id']}"})


@upload.route("GET", "/", summary="List datasets, newest first", query=q.PageQuery, responses={200: out.DatasetList})
def list_(request: Request, svc) -> Response:
    limit, offset = request.params.limit, request.params.offset
    items, total = svc.catalog.list_datasets(limit=limit, offset=offset)
    return Response.json({"datasets": items, "total": total, "limit": limit, "offset": offset})


@upload.route("GET", "/{dataset_id}", summary="A dataset with its first rows", responses={200: out.Dataset})
def show(request: Request, svc, dataset_id: str) -> Response:
    return Response.json(svc.catalog.get_dataset(dataset_id, preview=True))


@upload.route(
    "DELETE",
    "/{dataset_id}",
    summary="Delete a dataset",
    responses={204: "deleted", 409: "a queued or running job uses it"},
)
def delete(request: Request, svc, dataset_id: str) -> Response:
    datasets.delete_dataset(svc, dataset_id)
    return Response(204)
