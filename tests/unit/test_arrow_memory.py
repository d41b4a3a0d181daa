"""Kubepredict's processes allocate Arrow's memory from jemalloc, unless ARROW_DEFAULT_MEMORY_POOL names a pool.

Each case runs in a fresh interpreter: the pool is a process's global state, and Arrow reads the variable when
pyarrow is first imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"


def _run(code: str, tmp_path: Path, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "PYTHONPATH": str(SHARED), "KUBEPREDICT_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


SWITCH = (
    "from kubepredict import arrow_memory; import pyarrow as pa; before = pa.default_memory_pool().backend_name; "
    "named = arrow_memory.use_jemalloc(); print(before, named, pa.default_memory_pool().backend_name)"
)


def test_a_process_moves_from_pyarrows_default_to_jemalloc(tmp_path):
    before, named, after = _run(SWITCH, tmp_path).split()
    assert before == "mimalloc"  # pyarrow's own default on Linux: the change is ours
    assert named == after == "jemalloc"


@pytest.mark.parametrize("chosen", ["system", "mimalloc", "jemalloc"])
def test_a_pool_named_in_the_environment_is_kept(tmp_path, chosen):
    assert _run(SWITCH, tmp_path, ARROW_DEFAULT_MEMORY_POOL=chosen).split() == [chosen] * 3


def test_a_function_pods_app_uses_jemalloc(tmp_path):
    code = (
        "import pyarrow as pa; from kubepredict.bootstrap import default_app; "
        "app = default_app(); print(pa.default_memory_pool().backend_name)"
    )
    assert _run(code, tmp_path) == "jemalloc"


def test_a_job_worker_uses_jemalloc(tmp_path):
    """A worker (forked from the fork server, which imported pyarrow with its default) switches on start."""
    code = (
        "import pyarrow as pa; from kubepredict.bootstrap import bootstrap; bootstrap(); "
        "from kubepredict.runner.worker import worker_main; before = pa.default_memory_pool().backend_name; "
        "worker_main('no-such-job'); print(before, pa.default_memory_pool().backend_name)"
    )
    assert _run(code, tmp_path).splitlines()[-1].split() == ["mimalloc", "jemalloc"]
