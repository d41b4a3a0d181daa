"""The `predict` function: the neutral callable adapted once per runtime."""

from kubepredict.api import predict
from kubepredict.runtimes import kubeless, openfaas

handle = openfaas.adapt(predict)  # OpenFaaS python3-http: handle(event, context)
handler = kubeless.adapt(predict)  # Kubeless: spec.handler "handler.handler"
