"""The `train` function: the neutral callable adapted once per runtime."""

from kubepredict.api import train
from kubepredict.runtimes import kubeless, openfaas

handle = openfaas.adapt(train)  # OpenFaaS python3-http: handle(event, context)
handler = kubeless.adapt(train)  # Kubeless: spec.handler "handler.handler"
