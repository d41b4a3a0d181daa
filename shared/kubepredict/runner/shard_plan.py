"""How a predict job is cut into shards: how many, and which input rows each one scores."""

from __future__ import annotations

import math

from ..errors import InvalidInput


def shard_count(body: dict, rows: int, settings) -> int:
    """The shards a batch request gets: ``"shards": N`` (1..max_shards), else one per ``shard_rows`` rows.

    Never more shards than rows. Raises InvalidInput (400) for anything but an integer in range.
    """
    limit = max(1, int(settings.max_shards))
    if "shards" in body and body["shards"] is not None:
        value = body["shards"]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            raise InvalidInput(
                f"'shards' must be an integer between 1 and {limit}",
                code="invalid_field",
                details={"field": "shards", "maximum": limit},
            )
        return max(1, min(value, rows))
    if settings.shard_rows > 0:
        return max(1, min(limit, math.ceil(rows / settings.shard_rows), rows))
    return 1


def plan_ranges(rows: int, shards: int) -> list[tuple[int, int]]:
    """Contiguous row ranges ``[start, stop)`` covering ``0..rows`` in order, sizes differing by at most one."""
    shards = max(1, min(shards, rows)) if rows else 1
    base, extra = divmod(rows, shards)
    out, start = [], 0
    for i in range(shards):
        stop = start + base + (1 if i < extra else 0)
        out.append((start, stop))
        start = stop
    return out
