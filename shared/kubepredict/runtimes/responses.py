"""The one table from errors to HTTP statuses, and the call wrapper every runtime adapter uses."""

from __future__ import annotations

import logging

from .. import errors
from ..api.http import Request, Response

logger = logging.getLogger(__name__)

STATUS = (
    (errors.InvalidInput, 400),
    (errors.Unauthorized, 401),
    (errors.Forbidden, 403),
    (errors.NotFound, 404),
    (errors.MethodNotAllowed, 405),
    (errors.Conflict, 409),
    (errors.PayloadTooLarge, 413),
    (errors.UnsupportedMediaType, 415),
    (errors.Unprocessable, 422),
    (errors.TooManyJobs, 429),
    (errors.BackendUnavailable, 503),
    (errors.InsufficientStorage, 507),
    (errors.ArtifactRejected, 500),  # stored model failed its integrity check: our fault, said clearly
)


def error_response(exc: Exception) -> Response:
    """Map an exception to the API's JSON error; unknown ones become a generic 500 (logged with traceback)."""
    for cls, status in STATUS:
        if isinstance(exc, cls):
            headers = {}
            if status == 405:
                headers["Allow"] = ", ".join(exc.details.get("allowed", []))
            if status == 401:
                headers["WWW-Authenticate"] = "Bearer"
            if status in (429, 503):
                headers["Retry-After"] = "5"
            return Response.json(
                {"error": {"code": exc.code, "message": exc.message, "details": exc.details}}, status, headers
            )
    logger.error("unhandled error", exc_info=exc)
    return Response.json(
        {"error": {"code": "internal_error", "message": "internal error; see the server log", "details": {}}}, 500
    )


def call(fn, request: Request, svc) -> Response:
    """Invoke a neutral function with the App ``svc`` — or, given a callable that returns it (the function
    runtimes' ``bootstrap.default_app``), with what it returns; every failure becomes the API's JSON error."""
    try:
        return fn(request, svc() if callable(svc) else svc)
    except Exception as exc:  # noqa: BLE001 - the edge: nothing escapes as a traceback
        return error_response(exc)


def materialize(response: Response) -> Response:
    """Read a streamed body now, so errors while streaming still become JSON errors."""
    try:
        return Response(response.status, response.content(), response.headers)
    except Exception as exc:  # noqa: BLE001 - a failure while streaming is a JSON error too (logged there)
        return error_response(exc)
