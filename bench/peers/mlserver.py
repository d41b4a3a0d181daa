"""MLServer, the peer: its own pinned virtualenv under the cache, a model repository, V2 requests.

Never a product dependency: it lives in ``~/.cache/kubepredict/mlserver-venv`` (``KUBEPREDICT_CACHE``
or ``XDG_CACHE_HOME`` move it) and is reused while the pins are unchanged. ``uvloop<0.22``: MLServer
1.7.1 with uvloop >= 0.22 kills its inference workers at start (MLServer #2286).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import joblib
import pandas as pd

from .procs import ServerProcess, free_port, wait_until

VERSION = "1.7.1"
REPO = Path(__file__).resolve().parents[2]
# The fitted pipelines are pickled by joblib here and unpickled there: same versions on both sides.
SHARED_PINS = ("scikit-learn", "numpy", "scipy", "pandas", "joblib", "threadpoolctl")


def cache_dir() -> Path:
    if os.environ.get("KUBEPREDICT_CACHE"):
        return Path(os.environ["KUBEPREDICT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kubepredict"


def requirements(requirements_txt: Path = REPO / "requirements.txt") -> list[str]:
    """MLServer's pins plus our own exact versions of the libraries the pickled pipeline needs."""
    ours = {}
    for line in requirements_txt.read_text().splitlines():
        m = re.match(r"^\s*([A-Za-z0-9_.-]+)==([^\s#;]+)", line)
        if m:
            ours[m.group(1).lower()] = m.group(2)
    missing = [p for p in SHARED_PINS if p not in ours]
    if missing:
        raise RuntimeError(f"requirements.txt pins none of {missing}")
    return [f"mlserver=={VERSION}", f"mlserver-sklearn=={VERSION}", "uvloop<0.22"] + [
        f"{p}=={ours[p]}" for p in SHARED_PINS
    ]


def ensure_venv(log=print) -> Path:
    """Create or reuse the MLServer virtualenv; returns its ``bin/`` folder."""
    venv = cache_dir() / "mlserver-venv"
    python = venv / "bin" / "python"
    reqs = requirements()
    marker = venv / ".kubepredict-pins"
    if python.exists() and marker.exists() and marker.read_text() == "\n".join(reqs):
        return venv / "bin"
    log(f"installing MLServer {VERSION} into {venv} (once; pins: {' '.join(reqs)})")
    if not python.exists():
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run(pip + ["-U", "pip"], check=True, timeout=600)
    subprocess.run(pip + reqs, check=True, timeout=1800)
    marker.write_text("\n".join(reqs))
    return venv / "bin"


def write_repository(root: Path, pipelines: dict[str, object], http_port: int, parallel_workers: str | None) -> Path:
    """An MLServer model repository: ``settings.json`` (ports only, unless told otherwise) and one folder
    per model with ``model.joblib`` and ``model-settings.json``."""
    root.mkdir(parents=True, exist_ok=True)
    settings: dict = {
        "http_port": http_port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "host": "127.0.0.1",
    }
    if parallel_workers not in (None, ""):
        settings["parallel_workers"] = int(parallel_workers)
    (root / "settings.json").write_text(json.dumps(settings, indent=2))
    for name, pipeline in pipelines.items():
        folder = root / name
        folder.mkdir(exist_ok=True)
        joblib.dump(pipeline, folder / "model.joblib")
        (folder / "model-settings.json").write_text(
            json.dumps(
                {
                    "name": name,
                    "implementation": "mlserver_sklearn.SKLearnModel",
                    "parameters": {"uri": "./model.joblib", "version": "v1"},
                },
                indent=2,
            )
        )
    return root


def start(bin_dir: Path, root: Path, http_port: int, models: list[str], log: Path) -> ServerProcess:
    """``mlserver start ROOT``; ready once every model answers ``/v2/models/{name}/ready``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLSERVER_", "VIRTUAL_ENV", "PYTHON"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    server = ServerProcess("MLServer", [str(bin_dir / "mlserver"), "start", str(root)], cwd=root, env=env, log=log)
    url = f"http://127.0.0.1:{http_port}"
    server.start(f"{url}/v2/health/ready", timeout=180)
    try:
        for name in models:
            wait_until(
                lambda name=name: httpx.get(f"{url}/v2/models/{name}/ready", timeout=2).status_code == 200,
                timeout=60,
                what=f"MLServer model {name}",
            )
    except BaseException:
        server.stop()
        raise
    return server


def v2_body(frame: pd.DataFrame) -> dict:
    """A V2 request MLServer decodes into this very DataFrame: one input per column, ``content_type: pd``."""
    inputs = []
    for name in frame.columns:
        col = frame[name]
        if pd.api.types.is_float_dtype(col):
            inputs.append({"name": name, "datatype": "FP64", "shape": [len(col)], "data": col.astype(float).tolist()})
        elif pd.api.types.is_integer_dtype(col):
            inputs.append({"name": name, "datatype": "INT64", "shape": [len(col)], "data": col.astype(int).tolist()})
        else:
            inputs.append(
                {
                    "name": name,
                    "datatype": "BYTES",
                    "shape": [len(col)],
                    "parameters": {"content_type": "str"},
                    "data": col.astype(str).tolist(),
                }
            )
    return {"parameters": {"content_type": "pd"}, "inputs": inputs}


def bare_estimators(features: pd.DataFrame, labels: list) -> dict[str, object]:
    """The peer's best case: the same algorithms fitted on raw numpy features, no preprocessing."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    X = features.to_numpy(dtype=float)
    return {
        "iris-lr-bare": LogisticRegression(max_iter=1000).fit(X, labels),
        "iris-rf-bare": RandomForestClassifier(n_estimators=100, random_state=0).fit(X, labels),
    }


def v2_tensor_body(frame: pd.DataFrame) -> dict:
    """One 2-D FP64 tensor in column order: what MLServer's default numpy codec scores directly."""
    values = frame.to_numpy(dtype=float)
    return {
        "inputs": [
            {"name": "input-0", "datatype": "FP64", "shape": list(values.shape), "data": values.ravel().tolist()}
        ]
    }


def v2_labels(answer: dict) -> list:
    """Predicted labels from a V2 response: the ``predict`` output (else the first output)."""
    outputs = answer.get("outputs") or []
    chosen = next((o for o in outputs if o.get("name") == "predict"), outputs[0] if outputs else None)
    if chosen is None:
        raise ValueError(f"no outputs in V2 answer: {str(answer)[:300]}")
    data = chosen.get("data")
    if data and isinstance(data[0], list):  # nested row-major
        data = [v for row in data for v in row]
    return list(data or [])
