"""Kubernetes manifests: schema-valid (kubernetes-validate, strict), Kubeless objects valid against triggers/crds/,
RBAC equal to what the runner uses, DNS-1123 names."""

from __future__ import annotations

import copy
import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

kv = pytest.importorskip("kubernetes_validate")
jsonschema = pytest.importorskip("jsonschema")

from kubepredict.runner.base import JobSpec
from kubepredict.runner.k8s_manifest import JobTemplate, build_job

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.34.0"  # the newest minor kube-apiserver SERVICES.md builds; schemas ship up to 1.37
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _renderer():
    spec = importlib.util.spec_from_file_location("render_manifests", ROOT / "scripts" / "render_manifests.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _key(obj: dict) -> tuple:
    meta = obj.get("metadata") or {}
    return obj["apiVersion"], obj["kind"], meta.get("namespace") or "", meta["name"]


def _load_all(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.fixture(scope="module", params=["infra", "infra/openfaas"])
def rendered(request) -> list[dict]:
    return _renderer().load_kustomization(ROOT / request.param)


def _all_infra_objects() -> list[tuple[str, dict]]:
    objects = [(f"infra/openfaas:{_key(o)}", o) for o in _renderer().load_kustomization(ROOT / "infra/openfaas")]
    for path in sorted((ROOT / "infra" / "secrets").glob("*.yaml")):
        objects += [(f"{path.relative_to(ROOT)}:{_key(o)}", o) for o in _load_all(path)]
    return objects


def _trigger_files() -> list[Path]:
    return sorted(p for p in (ROOT / "triggers").rglob("*.yaml") if "crds" not in p.parts)


def _kubeless_objects() -> list[tuple[str, dict]]:
    out = []
    for path in _trigger_files():
        out += [
            (f"{path.relative_to(ROOT)}:{o['metadata']['name']}", o)
            for o in _load_all(path)
            if o.get("apiVersion", "").startswith("kubeless.io/")
        ]
    return out


def _generated_jobs() -> list[tuple[str, dict]]:
    template = JobTemplate(image="ghcr.io/kubepredict/job:0.1.0")
    specs = [
        JobSpec("job_01HZX8V3K6TQ", "train"),
        JobSpec("job_01HZX8V3K6TQ", "predict", attempt=3),
        JobSpec("job_" + "x" * 120, "train", resources={"limits": {"cpu": "3", "memory": "6Gi"}}),
    ]
    return [(f"runner:{s.kind}:{s.attempt}", build_job(s, template)) for s in specs]


@pytest.mark.parametrize(
    "label,obj", _all_infra_objects() + _generated_jobs(), ids=lambda x: x if isinstance(x, str) else ""
)
def test_kubernetes_objects_validate_strictly(label, obj):
    try:
        kv.validate(obj, K8S_VERSION, strict=True)
    except kv.ValidationError as exc:
        pytest.fail(f"{label}: {exc}")


def test_trigger_dir_has_only_kubeless_objects_besides_crds():
    for path in _trigger_files():
        for obj in _load_all(path):
            assert obj["apiVersion"] == "kubeless.io/v1beta1", f"{path}: {obj['kind']} is not a Kubeless object"


def test_crds_are_valid_v1_crds():
    for path in sorted((ROOT / "triggers" / "crds").glob("*.yaml")):
        (crd,) = _load_all(path)
        kv.validate(crd, K8S_VERSION, strict=True)
        assert crd["metadata"]["name"] == f"{crd['spec']['names']['plural']}.{crd['spec']['group']}"


def _strict(schema: dict) -> dict:
    """Mimic the API server's strict field validation: unknown fields are errors unless preserved."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if not isinstance(node, dict):
            return
        if node.get("x-kubernetes-int-or-string"):
            node.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
        if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node.setdefault("additionalProperties", False)
        for child in list(node.get("properties", {}).values()) + [node.get("items"), node.get("additionalProperties")]:
            walk(child)

    walk(schema)
    return schema


def _crd_schemas() -> dict[str, dict]:
    schemas = {}
    for path in sorted((ROOT / "triggers" / "crds").glob("*.yaml")):
        (crd,) = _load_all(path)
        (version,) = crd["spec"]["versions"]
        schemas[f"{crd['spec']['group']}/{version['name']}/{crd['spec']['names']['kind']}"] = _strict(
            version["schema"]["openAPIV3Schema"]
        )
    return schemas


@pytest.mark.parametrize("label,obj", _kubeless_objects(), ids=lambda x: x if isinstance(x, str) else "")
def test_kubeless_objects_validate_against_crds(label, obj):
    schema = _crd_schemas().get(f"{obj['apiVersion']}/{obj['kind']}")
    assert schema is not None, f"{label}: no CRD for {obj['apiVersion']} {obj['kind']} in triggers/crds/"
    jsonschema.Draft7Validator(schema).validate(obj)
    assert DNS_LABEL.match(obj["metadata"]["name"]), label


def test_crd_schema_rejects_bad_objects():
    schemas = _crd_schemas()
    bad = {
        "apiVersion": "kubeless.io/v1beta1",
        "kind": "Function",
        "metadata": {"name": "x"},
        "spec": {"handler": "handler.handler.extra", "runtime": "python3.11"},
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schemas["kubeless.io/v1beta1/Function"])
    typo = {
        "apiVersion": "kubeless.io/v1beta1",
        "kind": "KafkaTrigger",
        "metadata": {"name": "x"},
        "spec": {"topic": "t", "functionSelector": {"matchLabels": {"function": "train"}}, "topics": "t"},
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(typo, schemas["kubeless.io/v1beta1/KafkaTrigger"])


def test_kubeless_functions_embedded_objects_validate():
    """The Function's deployment (a Deployment patch) and HPA are Kubernetes objects too."""
    for _label, obj in _kubeless_objects():
        if obj["kind"] != "Function":
            continue
        spec = obj["spec"]
        assert spec["handler"] == "handler.handler"
        hpa = spec.get("horizontalPodAutoscaler")
        if hpa:
            kv.validate(hpa, K8S_VERSION, strict=True)
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": obj["metadata"]["name"]},
            "spec": {
                "selector": {"matchLabels": {"function": obj["metadata"]["name"]}},
                **copy.deepcopy(spec["deployment"]["spec"]),
            },
        }
        deployment["spec"]["template"]["spec"]["containers"][0].setdefault("image", "kubeless/runtime")
        kv.validate(deployment, K8S_VERSION, strict=True)
    names = {o["metadata"]["name"] for _, o in _kubeless_objects() if o["kind"] == "Function"}
    hpas = {
        o["metadata"]["name"]
        for _, o in _kubeless_objects()
        if o["kind"] == "Function" and o["spec"].get("horizontalPodAutoscaler")
    }
    assert names == {"upload", "train", "predict", "result"} and hpas == {"upload", "predict"}


def test_role_grants_exactly_what_the_runner_uses(rendered):
    from kubepredict.runner.kubernetes import REQUIRED_PERMISSIONS

    (role,) = [o for o in rendered if o["kind"] == "Role" and o["metadata"]["name"] == "kubepredict-runner"]
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == set(REQUIRED_PERMISSIONS)
    assert not any("*" in part for triple in granted for part in triple)
    (binding,) = [o for o in rendered if o["kind"] == "RoleBinding"]
    assert binding["roleRef"]["name"] == "kubepredict-runner"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kubepredict-runner", "namespace": "kubepredict"}]
    # Only the dispatcher runs as that account; every other workload has no API token at all.
    users = {}
    for o in rendered:
        if o["kind"] in ("Deployment", "StatefulSet"):
            spec = o["spec"]["template"]["spec"]
            users[o["metadata"]["name"]] = (spec.get("serviceAccountName"), spec.get("automountServiceAccountToken"))
    assert users.pop("kubepredict-dispatcher") == ("kubepredict-runner", True)
    assert all(sa is None and automount is False for sa, automount in users.values()), users


def test_names_are_dns_1123_and_unique(rendered):
    seen = set()
    for obj in rendered:
        name = obj["metadata"]["name"]
        assert (
            len(name) <= 63
            and DNS_LABEL.match(name)
            or obj["kind"] in ("Role", "RoleBinding")
            and DNS_SUBDOMAIN.match(name)
        ), name
        assert _key(obj) not in seen
        seen.add(_key(obj))
    for _, job in _generated_jobs():
        assert len(job["metadata"]["name"]) <= 63 and DNS_LABEL.match(job["metadata"]["name"])


def test_base_contents(rendered):
    kinds = {(o["kind"], o["metadata"]["name"]) for o in rendered}
    for expected in [
        ("Namespace", "kubepredict"),
        ("ServiceAccount", "kubepredict-runner"),
        ("ConfigMap", "kubepredict-config"),
        ("StatefulSet", "postgres"),
        ("StatefulSet", "kafka"),
        ("Deployment", "minio"),
        ("Deployment", "kubepredict-relay"),
        ("Deployment", "kubepredict-connector"),
        ("HorizontalPodAutoscaler", "kubepredict-connector"),
        ("NetworkPolicy", "default-deny-ingress"),
    ]:
        assert expected in kinds
    commands = {
        o["metadata"]["name"]: o["spec"]["template"]["spec"]["containers"][0].get("command")
        for o in rendered
        if o["kind"] == "Deployment"
    }
    assert commands["kubepredict-relay"] == ["kubepredict", "relay"]
    assert commands["kubepredict-connector"] == ["kubepredict", "connector"]
    for obj in rendered:  # no literal secrets in env
        for container in ((obj.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers", []):
            for env in container.get("env", []):
                assert not (re.search(r"PASSWORD|SECRET|TOKEN|DATABASE_URL", env["name"]) and "value" in env), env


def test_secret_templates_are_placeholders_only():
    for obj in _load_all(ROOT / "infra" / "secrets" / "secrets.example.yaml"):
        assert obj["kind"] == "Secret"
        assert all("REPLACE_ME" in v for v in obj["stringData"].values()), obj["metadata"]["name"]


def test_python_renderer_matches_kubectl_kustomize():
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl not installed: the Python renderer is the only one here")
    for target in ("infra", "infra/openfaas"):
        out = subprocess.run([kubectl, "kustomize", str(ROOT / target)], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        ours = sorted(_renderer().load_kustomization(ROOT / target), key=_key)
        theirs = sorted((d for d in yaml.safe_load_all(out.stdout) if d), key=_key)
        assert ours == theirs


def _pod_templates(objects: list[dict]) -> list[tuple[str, dict]]:
    return [
        (o["metadata"]["name"], o["spec"]["template"]["spec"])
        for o in objects
        if o["kind"] in ("Deployment", "StatefulSet", "Job") and "template" in o.get("spec", {})
    ]


def _test_node_objects() -> list[dict]:
    """infra/test-node as kubectl renders it (patches and images: beyond the Python renderer)."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl not installed: infra/test-node needs kustomize patches")
    out = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "infra/test-node")], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_non_root_pods_can_read_their_mounted_secrets(rendered):
    """Projected secrets are 0440, owned by root and the pod's fsGroup: a non-root pod without fsGroup =
    its group cannot read them (the dispatcher failed so on a real kubelet: PermissionError)."""
    for name, spec in _pod_templates(rendered):
        pod_sc = spec.get("securityContext") or {}
        for vol in spec.get("volumes") or []:
            mode = (vol.get("projected") or vol.get("secret") or {}).get("defaultMode")
            if mode is None or mode & 0o004 or not pod_sc.get("runAsNonRoot"):
                continue
            assert pod_sc.get("fsGroup") == pod_sc.get("runAsGroup"), (name, vol["name"], oct(mode), pod_sc)


def test_test_node_overlay_validates_and_uses_only_local_images():
    objects = _test_node_objects()
    for obj in objects:
        try:
            kv.validate(obj, K8S_VERSION, strict=True)
        except kv.ValidationError as exc:
            pytest.fail(f"infra/test-node {_key(obj)}: {exc}")
    deployments = {n for n, _ in _pod_templates(objects)}
    assert deployments == {"kubepredict-dispatcher", "upload", "train", "predict", "result"}
    for name, spec in _pod_templates(objects):
        for c in spec["containers"]:
            assert c["image"].startswith("localhost/kubepredict/") and c["image"].endswith(":local"), (name, c)
            assert c["imagePullPolicy"] == "Never", (name, c)
        assert spec["securityContext"]["fsGroup"] == 10001, name
    (config,) = [o for o in objects if o["kind"] == "ConfigMap"]
    assert config["data"]["KUBEPREDICT_JOB_IMAGE"] == "localhost/kubepredict/job:local"


def test_test_node_functions_follow_stack_yml():
    """infra/test-node/functions.yaml is what faas-cli would deploy from stack.yml, minus the watchdog."""
    stack = yaml.safe_load((ROOT / "stack.yml").read_text())["functions"]
    deployments = {
        o["metadata"]["name"]: o
        for o in _load_all(ROOT / "infra/test-node/functions.yaml")
        if o["kind"] == "Deployment"
    }
    assert set(deployments) == set(stack)
    for fn, spec in stack.items():
        pod = deployments[fn]["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        assert c["image"] == f"ghcr.io/kubepredict/{fn}:0.1.0"
        assert c["securityContext"]["readOnlyRootFilesystem"] is spec["readonly_root_filesystem"] is True
        assert c["resources"] == {"requests": spec["requests"], "limits": spec["limits"]}
        env = {e["name"]: e["value"] for e in c["env"]}
        own = {k: str(v) for k, v in spec["environment"].items() if k.startswith("KUBEPREDICT_")}
        own.pop("KUBEPREDICT_JOB_IMAGE", None)  # the ConfigMap's (the overlay sets the local image there)
        assert own.items() <= env.items(), (fn, own, env)
        sources = next(v for v in pod["volumes"] if v["name"] == "secrets")["projected"]["sources"]
        assert [s["secret"]["name"] for s in sources] == spec["secrets"]
        mount = next(m for m in c["volumeMounts"] if m["name"] == "secrets")
        assert mount["mountPath"] == env["KUBEPREDICT_SECRETS_DIR"] == "/var/openfaas/secrets"
