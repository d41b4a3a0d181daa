"""The gateway's C allocator keeps the memory an upload frees and allocates again (kubepredict/allocator.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from kubepredict import allocator

# Rounds of 16 one-MiB blocks allocated, touched and freed: what an upload's body pieces and Parquet pages
# do. With glibc's defaults the freed top of the heap is handed back each round and faulted in again.
CHURN = """
import json, resource, sys
from kubepredict import allocator
tuned = allocator.tune_for_server({}) if sys.argv[1] == "tuned" else False
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    blocks = [bytearray(1 << 20) for _ in range(16)]
    del blocks
print(json.dumps({"tuned": tuned, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _churn(mode: str) -> dict:
    env = {**os.environ}
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    out = subprocess.run([sys.executable, "-c", CHURN, mode], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(allocator._libc() is None, reason="not glibc: nothing to tune")
def test_a_tuned_server_reuses_freed_blocks_instead_of_faulting_them_in_again():
    default, tuned = _churn("default"), _churn("tuned")
    assert tuned["tuned"] is True
    assert default["faults"] > 20 * 4096 // 2  # most rounds fault their 16 MiB in again
    assert tuned["faults"] < default["faults"] / 4


def test_glibc_s_own_variables_win():
    assert allocator.tune_for_server({"MALLOC_TRIM_THRESHOLD_": "0"}) is False
    assert allocator.tune_for_server({"MALLOC_MMAP_THRESHOLD_": "131072"}) is False
