"""The images install the versions the tests run: shared/constraints.txt is requirements.txt's runtime pins
(no test or lint tools), and both Dockerfiles install through it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==(\S+)$")
EXTRAS = ("postgres", "s3", "kafka", "kubernetes")
TOOLS = ("pytest", "ruff", "mypy", "playwright", "schemathesis", "hypothesis", "tritonclient", "kubernetes-validate")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, str]:
    out = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            m = PIN.match(line)
            assert m, f"{path.name}: not an exact pin: {line!r}"
            out[_norm(m.group(1))] = m.group(3)
    return out


def _runtime_names() -> set[str]:
    project = tomllib.loads((ROOT / "shared/pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in EXTRAS:
        specs += project["optional-dependencies"][extra]
    names = set()
    for spec in specs:
        m = re.match(r"([A-Za-z0-9_.\-]+)(\[([^\]]*)\])?", spec)
        names.add(_norm(m.group(1)))
        if m.group(3) == "binary":  # psycopg[binary] installs psycopg-binary
            names.add(_norm(m.group(1)) + "-binary")
    return names


def test_constraints_are_requirements_pins_at_the_same_versions():
    requirements, constraints = _pins(ROOT / "requirements.txt"), _pins(ROOT / "shared/constraints.txt")
    assert {k: requirements.get(k) for k in constraints} == constraints


def test_every_runtime_dependency_is_pinned_and_no_tool_is():
    constraints = _pins(ROOT / "shared/constraints.txt")
    assert _runtime_names() <= set(constraints), _runtime_names() - set(constraints)
    assert not {_norm(t) for t in TOOLS} & set(constraints)


def test_the_images_install_through_the_constraints():
    job = (ROOT / "infra/docker/job.Dockerfile").read_text()
    assert "-r requirements.txt" not in job and "COPY requirements.txt" not in job  # tools: a 1.44 GB image
    assert "pip install -r constraints.txt" in job
    assert 'pip install -c constraints.txt "./shared[postgres,s3,kafka,kubernetes]"' in job
    template = (ROOT / "template/kubepredict-python3-http/Dockerfile").read_text()
    installs = [line for line in template.splitlines() if "pip install" in line]
    assert installs and all("-c /tmp/constraints.txt" in line for line in installs), installs


def test_kubeless_functions_get_the_runtime_pins_only(tmp_path):
    """scripts/package-kubeless.sh writes the Function's ``deps`` from the same runtime pins as the images."""
    import subprocess

    import yaml

    subprocess.run(["bash", str(ROOT / "scripts" / "package-kubeless.sh"), "train"], check=True, capture_output=True)
    doc = yaml.safe_load((ROOT / "build" / "kubeless" / "train.yaml").read_text())
    deps = {}
    for line in doc["spec"]["deps"].splitlines():
        m = PIN.match(line)
        assert m, line
        deps[_norm(m.group(1))] = m.group(3)
    assert deps == _pins(ROOT / "shared" / "constraints.txt")
    assert not [d for d in deps if d.startswith(TOOLS)]
