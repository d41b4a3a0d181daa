"""The allocator behind Arrow's memory in Kubepredict's processes (the gateway, function pods, job workers): jemalloc.

pyarrow allocates from mimalloc by default. Under mimalloc, a fresh gateway's first upload of the bench's 1M-row
file kept moving to pages the process had never touched: the kernel zeroing new pages took ~0.24 s of that
upload's CPU (perf: ``clear_page_erms``, 481 samples at 999 Hz over two such uploads), against ~0.03 s under
jemalloc (54), which reuses the pages it freed a block ago. New pages are what a process pays most for on a VM
that hands free memory back to its host (``storage/spool.py``). Measured side by side (8 fresh gateways each,
alternating): the first upload at a median 261 MB/s (247-269) under jemalloc against 245 (233-256), 7 % less
CPU; the next upload, the CSV download and the gateway's memory after an upload the same.

Job workers too: two shard workers start at once, each needing new memory. ``bench.shards``, 8 runs each way:
the 2-shard forest job 2.16 s against 2.22 (median of the runs' medians), the 1-shard job 3.89 against 3.84,
so 2 shards 1.77-1.84x one shard against 1.66-1.82x (two runs under 1.7x); the 1M-row training and predict jobs
the same within their noise. A process started with ``ARROW_DEFAULT_MEMORY_POOL`` set keeps the pool that
names (``mimalloc``, ``jemalloc``, ``system``).
"""

from __future__ import annotations

import os

#: Pages Arrow freed stay with jemalloc this long before going back to the kernel: an upload's blocks reuse
#: them instead of faulting pages in again (against Arrow's default for jemalloc: a fifth fewer page faults
#: per upload, ~4 % less CPU, 258 against 252 MB/s for a first upload), and an idle gateway still hands them
#: back within seconds.
DECAY_MS = 5000


def use_jemalloc() -> str:
    """Make jemalloc Arrow's default pool in this process (unless ``ARROW_DEFAULT_MEMORY_POOL`` chose one, or
    this pyarrow has no jemalloc); the name of the pool in use."""
    import pyarrow as pa

    if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        try:
            pa.set_memory_pool(pa.jemalloc_memory_pool())
            pa.jemalloc_set_decay_ms(DECAY_MS)
        except NotImplementedError:  # a pyarrow built without jemalloc (its Windows wheels): keep the default
            pass
    return pa.default_memory_pool().backend_name
