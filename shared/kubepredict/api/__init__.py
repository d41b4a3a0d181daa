"""The four functions as neutral callables: ``fn(Request, svc) -> Response`` (``svc``: the ``bootstrap.App``)."""

from .http import Function, Request, Response
from .predict import predict
from .result import result
from .train import train
from .upload import upload

FUNCTIONS: dict[str, Function] = {f.name: f for f in (upload, train, predict, result)}

__all__ = ["FUNCTIONS", "Function", "Request", "Response", "predict", "result", "train", "upload"]
