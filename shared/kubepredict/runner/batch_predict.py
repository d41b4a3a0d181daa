"""The batch predict loop: score record batches of a dataset and write their predictions in bulk.

``score_batches`` is the one scoring loop of whole jobs and of shards. It takes any iterable of Arrow
record batches and the dataset row index of the first one: ``range_batches`` gives every batch of the
Parquet copy (a whole job) or only the rows of one shard, read from the row groups overlapping them.
Predictions become Arrow arrays of their native type (no per-row Python) and the catalogue stores each
batch as one compressed Arrow IPC row under its dataset row index, so a job's predictions read back in
input order whichever worker wrote them.
"""

from __future__ import annotations

import json
import resource
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from .. import ml
from ..ahead import ahead
from ..ml.jsonsafe import json_safe
from ..ml.scoring import PROBABILITY_DECIMALS
from .batch_matrix import NumericBatches


def row_groups_for(metadata, row_start: int, row_stop: int) -> tuple[list[int], int]:
    """The row groups overlapping ``[row_start, row_stop)`` and the dataset row their first one starts at."""
    groups, first, offset = [], None, 0
    for i in range(metadata.num_row_groups):
        n = metadata.row_group(i).num_rows
        if offset < row_stop and offset + n > row_start:
            groups.append(i)
            first = offset if first is None else first
        offset += n
    return groups, (first if first is not None else row_start)


def range_batches(
    parquet, row_start: int, row_stop: int, *, columns: list[str] | None, batch_size: int
) -> Iterator[pa.RecordBatch]:
    """Rows ``[row_start, row_stop)`` of an open ``pq.ParquetFile`` as record batches of at most
    ``batch_size`` rows, decoding only the row groups they fall in."""
    groups, first = row_groups_for(parquet.metadata, row_start, row_stop)
    if not groups or row_stop <= row_start:
        return
    skip, left = row_start - first, row_stop - row_start
    # Each row group is read and decoded by a helper thread while the one before is scored.
    tables = ahead(
        (parquet.read_row_group(g, columns=columns, use_threads=False) for g in groups), name="row-group-reader"
    )
    try:
        for whole in (b for table in tables for b in table.to_batches(max_chunksize=max(1, batch_size))):
            if skip >= whole.num_rows:
                skip -= whole.num_rows
                continue
            batch = whole.slice(skip, left)
            skip, left = 0, left - batch.num_rows
            yield batch
            if left <= 0:
                return
    finally:
        tables.close()  # stop the reader now, not when the generator is collected


def prediction_array(values: np.ndarray, task: str) -> tuple[pa.Array, np.ndarray, list]:
    """Predictions as an Arrow array of their native type (null where missing or not finite), and
    ``(codes, labels)``: distinct values in order of appearance, for class counts (none for regression)."""
    values = np.asarray(values)
    if values.dtype.kind == "f":
        array = pa.array(values, mask=~np.isfinite(values))
        if task == "regression":
            return array, np.empty(0, dtype=np.intp), []
    elif values.dtype.kind in "biu":
        array = pa.array(values)
    else:
        array = None
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    labels = [json_safe(u) for u in np.asarray(uniques, dtype=object).tolist()]
    if (codes < 0).any():
        codes = np.where(codes < 0, len(labels), codes)
        labels.append(None)
    if array is None:  # objects (string labels): one Arrow value per distinct label, taken per row
        try:
            dictionary = pa.array(labels)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types: keep them as text
            dictionary = pa.array([None if v is None else str(v) for v in labels], type=pa.string())
        array = dictionary.take(pa.array(codes))
    return array, codes, labels


def probability_array(probabilities: np.ndarray | None, n: int) -> pa.Array:
    """A list of class probabilities per row, rounded like online answers (null when not finite), or nulls."""
    if probabilities is None:
        return pa.nulls(n, type=pa.list_(pa.float64()))
    probs = np.ascontiguousarray(np.asarray(probabilities, dtype=float).round(PROBABILITY_DECIMALS))
    flat = probs.reshape(-1)
    values = pa.array(flat, mask=~np.isfinite(flat))
    offsets = pa.array(np.arange(0, flat.size + 1, probs.shape[1], dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, values)


@dataclass
class BatchSummary:
    """What a job reports about its predictions, accumulated batch by batch (mergeable across shards)."""

    task: str
    rows: int = 0
    counts: dict = field(default_factory=dict)
    values: list = field(default_factory=list)  # regression: finite predictions, one array per batch

    def add(self, predictions: np.ndarray, codes: np.ndarray, labels: list) -> None:
        self.rows += len(predictions)
        if self.task == "regression":
            p = np.asarray(predictions, dtype=float)
            self.values.append(p[np.isfinite(p)])
            return
        for label, n in zip(labels, np.bincount(codes, minlength=len(labels)).tolist(), strict=True):
            if n:
                self.counts[label] = self.counts.get(label, 0) + n

    def add_stored(self, predictions: pa.ChunkedArray) -> None:
        """Regression values from stored predictions (a sharded job's summary reads them back)."""
        values = predictions.cast(pa.float64()).to_numpy()
        self.values.append(values[np.isfinite(values)])

    def partial(self) -> dict:
        """A shard's part as JSON (labels JSON-encoded so they keep their type); see ``from_partial``."""
        out: dict = {"rows": self.rows}
        if self.task != "regression":
            out["class_counts"] = {json.dumps(k): n for k, n in self.counts.items()}
        return out

    @classmethod
    def from_partial(cls, task: str, partial: dict) -> BatchSummary:
        summary = cls(task, rows=int(partial.get("rows") or 0))
        for k, n in (partial.get("class_counts") or {}).items():
            label = json.loads(k)
            summary.counts[label] = summary.counts.get(label, 0) + int(n)
        return summary

    def merge(self, other: BatchSummary) -> None:
        self.rows += other.rows
        self.values += other.values
        for k, n in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + n

    def as_dict(self) -> dict:
        summary: dict = {"rows": self.rows}
        if self.task == "regression":
            values = np.concatenate(self.values) if self.values else np.empty(0)
            if values.size:
                qs = np.quantile(values, [0.0, 0.25, 0.5, 0.75, 1.0])
                summary["quantiles"] = {
                    k: round(float(v), 6) for k, v in zip(("min", "p25", "p50", "p75", "max"), qs, strict=True)
                }
                summary["mean"] = round(float(values.mean()), 6)
                hist, edges = np.histogram(values, bins=20)
                summary["histogram"] = {"counts": hist.tolist(), "edges": [round(float(e), 6) for e in edges]}
        else:
            summary["class_counts"] = {str(k): v for k, v in sorted(self.counts.items(), key=lambda kv: -kv[1])}
        return summary


def score_batches(
    catalog,
    job_id: str,
    pipeline,
    *,
    features: list[str],
    kinds: dict,
    task: str,
    batches: Iterable[pa.RecordBatch],
    first_row: int,
    progress: Callable[[int], None] | None = None,
    drift=None,
) -> BatchSummary:
    """Score each batch and insert its predictions with their dataset row index (``first_row`` onwards).

    ``drift``: a ``ml.drift.DriftCounter`` that counts each batch's rows and predictions, or None."""
    summary = BatchSummary(task)
    row = first_row
    numeric = NumericBatches.of(pipeline, features=features, kinds=kinds, task=task)
    for batch in batches:
        if batch.num_rows == 0:
            continue
        direct = numeric.score(batch) if numeric is not None else None
        if direct is not None:
            result, columns = direct
        else:
            columns, frame = None, batch.to_pandas()
            result = ml.score(pipeline, frame, features=features, kinds=kinds, task=task)
        predictions, codes, labels = prediction_array(result.predictions, task)
        probabilities = probability_array(result.probabilities, len(predictions))
        catalog.insert_prediction_batch(job_id, row, predictions, probabilities)
        summary.add(result.predictions, codes, labels)
        if drift is not None:
            if columns is not None:
                drift.add_columns(columns, batch.num_rows, result.predictions)
            else:
                drift.add(frame, result.predictions)
        row += batch.num_rows
        if progress is not None:
            progress(row - first_row)
    return summary


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
