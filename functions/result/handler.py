"""The `result` function: the neutral callable adapted once per runtime."""

from kubepredict.api import result
from kubepredict.runtimes import kubeless, openfaas

handle = openfaas.adapt(result)  # OpenFaaS python3-http: handle(event, context)
handler = kubeless.adapt(result)  # Kubeless: spec.handler "handler.handler"
