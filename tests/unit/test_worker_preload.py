"""The fork server preloads what a job would otherwise import for itself: every listed module imports (the
fork server skips one that does not, silently), and a train and a predict job import almost nothing more."""

from __future__ import annotations

import importlib
import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

from kubepredict.runner.local import PRELOAD

ROOT = Path(__file__).resolve().parents[2]
HEAVY = {"sqlalchemy", "psycopg", "sqlite3", "pyarrow", "sklearn"}
#: pyarrow's dataset reader (what a train job reads its Parquet copy with) and what it pulls in: left out of
#: the preload on purpose (runner/local.py says why), so a train job imports these itself.
NOT_PRELOADED = (
    "pyarrow.dataset",
    "pyarrow._dataset",
    "pyarrow._acero",
    "pyarrow._json",
    "pyarrow._parquet_encryption",
    "pyarrow._substrait",
    "pyarrow.substrait",
    "pyarrow.vendored",
)


def test_every_preloaded_module_imports():
    for name in PRELOAD:
        importlib.import_module(name)


def _run(job_id: str, data_dir: str, out) -> None:
    import os

    os.environ["KUBEPREDICT_DATA_DIR"] = data_dir
    before = set(sys.modules)
    from kubepredict.runner.worker import worker_main

    code = worker_main(job_id)
    out.put((code, sorted(set(sys.modules) - before)))


def imports_in_jobs(data_dir: str) -> dict[str, list[str]]:
    """Queue an iris train job, then a predict job, run each in a child of a fork server preloaded as the
    local runner's, and return the modules each child imported. Runs in a fresh interpreter (the test
    below starts one): a process has one fork server, and another test may have started it already."""
    import os

    os.environ["KUBEPREDICT_DATA_DIR"] = data_dir
    from kubepredict.api import FUNCTIONS
    from kubepredict.api.http import Request
    from kubepredict.bootstrap import bootstrap
    from kubepredict.config import Settings

    svc = bootstrap(Settings.from_env())

    def call(fn, body, query=None, ctype="application/json"):
        req = Request.build("POST", "/", query=query or {}, headers={"Content-Type": ctype}, body=body)
        return json.loads(FUNCTIONS[fn](req, svc).body)

    csv = (ROOT / "shared" / "kubepredict" / "data" / "iris.csv").read_bytes()
    ds = call("upload", csv, {"name": "iris"}, "text/csv")
    train = call("train", json.dumps({"dataset_id": ds["dataset_id"], "target": "species"}).encode())
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    out = ctx.Queue()

    def imports_of(job_id: str) -> list[str]:
        proc = ctx.Process(target=_run, args=(job_id, data_dir, out))
        proc.start()
        code, modules = out.get(timeout=120)
        proc.join()
        assert code == 0, job_id
        return modules

    imported = {"train": imports_of(train["job_id"])}
    body = {"model_id": train["model_id"], "dataset_id": ds["dataset_id"]}
    imported["predict"] = imports_of(call("predict", json.dumps(body).encode())["job_id"])
    svc.catalog.dispose()
    return imported


def test_jobs_forked_from_the_preloaded_server_import_little(tmp_path):
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from tests.unit.test_worker_preload import imports_in_jobs\n"
        f"print(json.dumps(imports_in_jobs({str(tmp_path)!r})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    imported = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(imported) == {"train", "predict"}
    for kind, modules in imported.items():
        heavy = [m for m in modules if m.split(".")[0] in HEAVY and not m.startswith(NOT_PRELOADED)]
        assert heavy == [], (kind, heavy)
        ours = [m for m in modules if m.startswith("kubepredict.") or m.startswith("encodings.")]
        assert ours == [], (kind, ours)  # storage, the model cache, skops' zip codec: each a few ms per job


def test_the_fork_server_and_exec_workers_get_the_worker_environment(tmp_path):
    """OpenBLAS reads OPENBLAS_THREAD_TIMEOUT when it loads, in the fork server: it must be in the fork
    server's own environment (and in an exec worker's), not set later in a worker."""
    code = (
        "import os, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "os.environ.pop('OPENBLAS_THREAD_TIMEOUT', None)\n"
        "from multiprocessing import forkserver\n"
        "from kubepredict.config import Settings\n"
        "from kubepredict.runner.local import LocalProcessRunner, WORKER_ENV\n"
        f"runner = LocalProcessRunner(Settings(data_dir={str(tmp_path)!r}))\n"
        "import multiprocessing\n"
        "child = multiprocessing.get_context('forkserver').Process(target=os.getpid)\n"
        "child.start()\n"  # the fork server is up (exec'd, preloaded) once it forked this
        "child.join()\n"
        "pid = forkserver._forkserver._forkserver_pid\n"
        "env = dict(l.split('=', 1) for l in open(f'/proc/{pid}/environ').read().split('\\0') if '=' in l)\n"
        "assert all(env.get(k) == v for k, v in WORKER_ENV.items()), env\n"
        "assert all(runner.env[k] == v for k, v in WORKER_ENV.items())\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
