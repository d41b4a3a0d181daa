"""The `upload` function: the neutral callable adapted once per runtime."""

from kubepredict.api import upload
from kubepredict.runtimes import kubeless, openfaas

handle = openfaas.adapt(upload)  # OpenFaaS python3-http: handle(event, context)
handler = kubeless.adapt(upload)  # Kubeless: spec.handler "handler.handler"
