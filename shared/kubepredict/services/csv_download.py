"""The CSV download of a prediction job: every input row joined with its prediction and probabilities,
streamed one stored batch at a time (never the whole result in memory).

Text cells that a spreadsheet would run as a formula (CSV injection, OWASP) are neutralised: a text
cell — input value, predicted label or column name — starting with ``=``, ``+``, ``-``, ``@``, tab or
carriage return gets a leading ``'``, unless the whole cell is a plain number (``-1.5``). Numeric
columns are never touched, so numbers, negative ones included, stay numbers. Only text columns are
checked, with Arrow kernels; a file with no such cell keeps the fast path that reuses uploaded lines.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..errors import Conflict, NotFound


def csv_stream(svc, job_id: str) -> Iterator[bytes]:
    """The input rows joined with their predictions, as CSV chunks (one stored batch in memory at a time).

    Built column-wise with Arrow's CSV writer; predictions and probabilities are written as Python
    would print them (``1.0``, ``True``, ``7.9e-05``), input columns as Arrow does.
    """
    job = svc.catalog.get_job(job_id)
    if job["kind"] != "predict":
        raise Conflict("CSV results exist for prediction jobs only", code="not_a_prediction_job")
    if job["status"] != "succeeded":
        raise Conflict(
            f"job {job_id} is {job['status']}; results are available once it succeeded",
            code="job_not_finished",
            details={"status": job["status"]},
        )
    forecast = (job.get("summary") or {}).get("forecast")
    if forecast:
        return _forecast_csv(svc, job_id, forecast["columns"])
    try:
        dataset = svc.catalog.get_dataset_row(job["dataset_id"])
    except NotFound as exc:
        raise NotFound(
            f"the input dataset {job['dataset_id']} was deleted; use the paginated JSON results",
            code="dataset_not_found",
        ) from exc
    classes = svc.catalog.get_model_row(job["model_id"]).classes or []
    fobj = svc.storage.open_ranged(dataset.parquet_key)  # as the jobs read it (opened now: a 404 before any byte)
    return _generate(svc, job_id, fobj, dataset.object_key, classes)


def _generate(svc, job_id: str, fobj, raw_key: str, classes: list) -> Iterator[bytes]:
    import pyarrow.parquet as pq

    from .ingest_stream import RAW_LINES_KEY

    try:
        parquet = pq.ParquetFile(fobj, pre_buffer=True)  # coalesced reads, per row group
        names = parquet.schema_arrow.names + ["prediction"] + [f"probability_{c}" for c in classes]
        names = [_neutral_name(n) for n in names]
        if (parquet.metadata.metadata or {}).get(RAW_LINES_KEY.encode()) == b"1" and not _formula_cells(parquet):
            # The uploaded file has one plain line per row: reuse its text rather than format every value.
            with svc.storage.open(raw_key) as raw:
                yield from _raw_joined(svc.catalog, job_id, raw, names, classes, parquet.metadata.num_rows)
            return
        yield from _formatted(_joined(svc.catalog, job_id, parquet, classes), names)
    finally:
        fobj.close()


RAW_READ_BYTES = 8 * 1024 * 1024


def _raw_lines(raw) -> Iterator:
    """The raw file's rows after the header, each with the newline that comes before it (``"\\nrow"``), as
    Arrow binary arrays over the chunks read (Arrow buffers): a row's value runs from one newline to the
    next, so the chunk is the array's data as it is (no copy, no split) and only the newlines are looked
    for. A row cut by the end of a chunk is the one value copied. The file's last newline is the caller's
    to add."""
    import pyarrow as pa

    from ..storage.spool import read_dropping

    carry: bytes | None = None  # None in the header; then the newline before the row the chunk cut, and its start
    for chunk in read_dropping(raw, RAW_READ_BYTES):
        newlines = np.flatnonzero(np.frombuffer(chunk, np.uint8) == 10)
        if len(newlines) == 0:
            if carry is not None:  # a row longer than a chunk
                carry += chunk
            continue
        if carry is not None:
            yield _lines_batch(pa.array([carry + chunk[: newlines[0]]], pa.large_binary()))
        if len(newlines) > 1:
            offsets = pa.py_buffer(np.asarray(newlines, dtype=np.int64))
            yield _lines_batch(
                pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(newlines) - 1, [None, offsets, chunk])
            )
        carry = chunk[newlines[-1] :].to_pybytes()
    if carry is not None and len(carry) > 1:  # the last row, with no newline after it
        yield _lines_batch(pa.array([carry], pa.large_binary()))


def _lines_batch(lines):
    import pyarrow as pa

    return pa.RecordBatch.from_arrays([lines], ["line"])


def _raw_joined(catalog, job_id: str, raw, names: list[str], classes: list, total: int) -> Iterator[bytes]:
    import csv
    import io

    import pyarrow as pa
    import pyarrow.compute as pc

    head = io.StringIO()
    csv.writer(head, lineterminator="\n").writerow(names)
    yield head.getvalue().encode()[:-1]  # the first row brings the newline (see _raw_lines)
    lines = _RowReader(_raw_lines(raw))
    extra = 1 + len(classes)

    def body(parts: list, preds) -> bytes:
        line = pa.chunked_array([b.column(0) for b in parts], pa.large_binary()).combine_chunks()
        n = len(line)
        if preds is None:
            cols = [pa.nulls(n, pa.large_binary())] * extra
        else:
            cols = [_csv_text(_python_text(_neutralised(preds.column("prediction"))))]
            if classes:
                cols += _probability_columns(preds.column("probabilities").combine_chunks(), len(classes))
            cols = [(c if pa.types.is_string(c.type) else c.cast(pa.string())).cast(pa.large_binary()) for c in cols]
        out = pc.binary_join_element_wise(
            line, *cols, pa.scalar(b",", pa.large_binary()), null_handling="replace", null_replacement=b""
        )
        return _contiguous(out)

    yield from _in_order(lambda piece: body(*piece), _aligned(catalog, job_id, lines, total))
    yield b"\n"


def _aligned(catalog, job_id: str, inputs: _RowReader, total: int) -> Iterator[tuple[list, object]]:
    """``(input batches, their predictions)`` in input order, at most CSV_BATCH_ROWS rows each; the
    predictions are None for rows that have none stored (blank cells)."""
    row = 0
    for first_row, preds in catalog.iter_prediction_tables(job_id):
        if first_row > row:
            yield from _unscored(inputs, first_row - row)
            row = first_row
        for start in range(0, preds.num_rows, CSV_BATCH_ROWS):
            parts = inputs.take(min(CSV_BATCH_ROWS, preds.num_rows - start))
            n = sum(p.num_rows for p in parts)
            if n == 0:
                break
            yield parts, preds.slice(start, n)
            row += n
    yield from _unscored(inputs, total - row)


def _unscored(inputs: _RowReader, n: int) -> Iterator[tuple[list, None]]:
    while n > 0:
        parts = inputs.take(min(CSV_BATCH_ROWS, n))
        if not parts:
            return
        yield parts, None
        n -= sum(p.num_rows for p in parts)


def _in_order(fn, items: Iterator, workers: int = 2) -> Iterator:
    """``fn`` of each item on ``workers`` threads (Arrow's kernels release the GIL), results in input order,
    at most ``workers + 1`` in flight."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers, thread_name_prefix="csv-format") as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _contiguous(values) -> bytes:
    """All values of a (large) binary array back to back: its data buffer between the first and last offsets."""
    import numpy as np

    if len(values) == 0:
        return b""
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int64)[values.offset : values.offset + len(values) + 1]
    return values.buffers()[2][int(offsets[0]) : int(offsets[-1])].to_pybytes()


def _csv_text(array):
    """Quote text cells that need it (comma, quote, newline), as ``csv.writer`` does."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        return array
    needs = pc.match_substring_regex(array, '[",\r\n]')
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(array, '"', '""'), '"', "")
    return pc.if_else(needs, quoted, array)


def _joined(catalog, job_id: str, parquet, classes: list) -> Iterator:
    """Input rows with their prediction and probability columns, as tables of at most CSV_BATCH_ROWS rows."""
    import pyarrow as pa

    inputs = _RowReader(parquet.iter_batches(batch_size=CSV_BATCH_ROWS))
    schema, total, extra = parquet.schema_arrow, parquet.metadata.num_rows, 1 + len(classes)

    def with_predictions(batches: list, preds) -> pa.Table:
        data = pa.Table.from_batches(batches, schema=schema)
        cols = [_neutralised(c) for c in data.columns]
        if preds is None:
            cols += [pa.nulls(data.num_rows, pa.string()) for _ in range(extra)]
        else:
            cols.append(_python_text(_neutralised(preds.column("prediction"))))
            if classes:
                cols += _probability_columns(preds.column("probabilities").combine_chunks(), len(classes))
        return pa.table(cols, names=[str(i) for i in range(len(cols))])

    yield from (with_predictions(parts, preds) for parts, preds in _aligned(catalog, job_id, inputs, total))
    if total == 0:
        yield with_predictions([], None)


def _formatted(tables: Iterator, names: list[str]) -> Iterator[bytes]:
    """CSV text of each table, in order; Arrow formats two tables at once (it releases the GIL)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    def fmt(item) -> bytes:
        i, table = item
        sink = pa.BufferOutputStream()
        pacsv.write_csv(table.rename_columns(names), sink, pacsv.WriteOptions(include_header=i == 0))
        return sink.getvalue().to_pybytes()

    yield from _in_order(fmt, enumerate(tables))


CSV_BATCH_ROWS = 65_536


class _RowReader:
    """Hands out the next ``n`` rows of a record-batch stream, as record batches."""

    def __init__(self, batches):
        self._batches, self._pending = iter(batches), None

    def take(self, n: int) -> list:
        out = []
        while n > 0:
            batch = self._pending if self._pending is not None else next(self._batches, None)
            self._pending = None
            if batch is None:
                break
            if batch.num_rows > n:
                self._pending = batch.slice(n)
                batch = batch.slice(0, n)
            out.append(batch)
            n -= batch.num_rows
        return out


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


def _is_text(t) -> bool:
    import pyarrow as pa

    return (
        pa.types.is_string(t) or pa.types.is_large_string(t) or (pa.types.is_dictionary(t) and _is_text(t.value_type))
    )


def _formula_mask(array):
    """Which cells of a text array a spreadsheet would run as a formula (a numpy bool array), or None when
    none would — the usual case, found by looking at the first byte of every value in place (no copies)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    chunks = array.chunks if isinstance(array, pa.ChunkedArray) else [array]
    flagged = np.concatenate([_first_byte_flagged(c) for c in chunks]) if chunks else np.zeros(0, bool)
    if not flagged.any():
        return None
    number = pc.fill_null(pc.match_substring_regex(array, PLAIN_NUMBER), False)
    return flagged & ~np.asarray(number.to_numpy(zero_copy_only=False), dtype=bool)


_FORMULA_BYTES = np.frombuffer("".join(FORMULA_STARTS).encode(), dtype=np.uint8)


def _first_byte_flagged(chunk) -> np.ndarray:
    """Whether each value of a string array starts with a formula character, read from Arrow's buffers."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(chunk)
    _, offsets_buf, data_buf = chunk.buffers()
    if n == 0 or data_buf is None or data_buf.size == 0:
        return np.zeros(n, bool)
    width = np.dtype(np.int64 if pa.types.is_large_string(chunk.type) else np.int32)
    offsets = np.frombuffer(offsets_buf, dtype=width)[chunk.offset : chunk.offset + n + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8)
    starts = offsets[:-1]
    first = np.where(offsets[1:] > starts, data[np.minimum(starts, data.size - 1)], 0)
    flagged = np.isin(first, _FORMULA_BYTES)
    if chunk.null_count:
        flagged &= np.asarray(pc.is_valid(chunk).to_numpy(zero_copy_only=False), dtype=bool)
    return flagged


def _neutralised(array):
    """``array`` with every formula cell prefixed by ``'`` (text arrays only; numbers pass untouched)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not _is_text(array.type):
        return array
    mask = _formula_mask(array)
    if mask is None or not mask.any():
        return array
    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return pc.if_else(pa.array(mask), pc.binary_join_element_wise("'", array, ""), array)


def _neutral_name(name: str) -> str:
    import re

    return "'" + name if name.startswith(FORMULA_STARTS) and not re.match(PLAIN_NUMBER, name) else name


def _formula_cells(parquet) -> bool:
    """Whether any text column of the dataset holds a formula cell (then its raw lines cannot be reused)."""
    text = [f.name for f in parquet.schema_arrow if _is_text(f.type)]
    if not text:
        return False
    for batch in parquet.iter_batches(batch_size=CSV_BATCH_ROWS, columns=text):
        for column in batch.columns:
            mask = _formula_mask(column)
            if mask is not None and mask.any():
                return True
    return False


def _python_text(array):
    """Values as ``str()`` would print them: floats like Python's repr, booleans ``True``/``False``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    array = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    t = array.type
    if pa.types.is_boolean(t):
        return pc.if_else(array, "True", "False")
    if not pa.types.is_floating(t):
        return array
    values = array.to_numpy(zero_copy_only=False)
    text = pc.cast(array, pa.string())
    # Arrow prints integral floats without ".0" and small ones in fixed notation; Python does not.
    with np.errstate(invalid="ignore"):
        integral = np.isfinite(values) & (values == np.floor(values)) & (np.abs(values) < 1e16)
        odd = np.isfinite(values) & (np.abs(values) < 1e-4) & (values != 0)
    text = pc.if_else(pa.array(integral), pc.binary_join_element_wise(text, ".0", ""), text)
    if odd.any():  # Python prints these in exponent notation (7.9e-05): only they go through repr
        text = pc.replace_with_mask(
            text, pa.array(odd), pa.array([repr(v) for v in values[odd].tolist()], type=pa.string())
        )
    return text


def _probability_columns(probs, k: int) -> list:
    """One column per class from a list-of-floats array (nulls where a row has none)."""
    import numpy as np
    import pyarrow as pa

    n = len(probs)
    if probs.null_count == 0 and len(probs.flatten()) == n * k:
        flat = probs.flatten()
        return [_python_text(flat.take(pa.array(np.arange(j, n * k, k)))) for j in range(k)]
    rows = probs.to_pylist()
    return [_python_text(pa.array([r[j] if r else None for r in rows], type=pa.float64())) for j in range(k)]


def _forecast_csv(svc, job_id: str, columns: list[str]) -> Iterator[bytes]:
    """The forecast rows as CSV, one stored batch at a time (columns as the job's summary lists them)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    first = True
    for _, table in svc.catalog.iter_prediction_tables(job_id):
        cols = [_neutralised(table.column(c).combine_chunks()) for c in columns]
        out = pa.table(cols, names=[_neutral_name(c) for c in columns])
        sink = pa.BufferOutputStream()
        pacsv.write_csv(out, sink, pacsv.WriteOptions(include_header=first))
        first = False
        yield sink.getvalue().to_pybytes()
    if first:
        yield (",".join(_neutral_name(c) for c in columns) + "\n").encode()
