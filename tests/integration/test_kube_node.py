"""A real one-node cluster (tests/services/kube_node.py): pods run on a real kubelet through containerd.

kube-apiserver + etcd (as in test_kube_apiserver.py), kube-controller-manager, kube-scheduler and the
kubelet from the same Kubernetes version, containerd 1.6 with the CRI plugin and a bridge CNI network,
the pod sandbox image and our base image built locally (scripts/images.sh). Missing pieces skip (fail
under CI=true), as for the other real services.
"""

from __future__ import annotations

import time

import pytest

from tests.services import ServiceStartError, ServiceUnavailable, in_ci
from tests.services.kube_apiserver import KubeAPIServer
from tests.services.kube_node import KubeNode, images_env

pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def node(request):
    started = []
    request.addfinalizer(lambda: [s.stop() for s in reversed(started)])
    why = None
    try:
        started.append(KubeAPIServer().start())
        started.append(KubeNode(started[0]).start())
    except ServiceUnavailable as exc:
        why = str(exc)
    except ServiceStartError as exc:
        pytest.fail(str(exc), pytrace=False)
    if why:
        if in_ci():
            pytest.fail(f"one-node cluster unavailable: {why} (CI=true)", pytrace=False)
        pytest.skip(f"one-node cluster unavailable: {why}")
    return started[1]


def test_a_pod_from_our_base_image_runs_to_completion(node):
    base = images_env()["BASE_IMAGE"]
    import_seconds = node.load_image(base)
    name = f"trivial-{int(time.time())}"
    out = node.run_pod({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
        "restartPolicy": "Never", "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001},
        "containers": [{"name": "main", "image": base, "imagePullPolicy": "Never",
                        "command": ["python", "-c", "import os; print('uid', os.getuid()); open('/tmp/x', 'w')"],
                        "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                                            "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}],
        "volumes": [{"name": "tmp", "emptyDir": {}}]}})
    print(f"\n[kube-node] base image import {import_seconds:.1f} s; pod created→finished {out['seconds']:.1f} s")
    assert out["phase"] == "Succeeded" and out["exit_code"] == 0, (out, node.kubelet_errors())
    assert out["log"].strip() == "uid 10001", out
    assert out["pod_ip"] and out["pod_ip"].startswith("10.244.0."), out
