"""Streaming CSV ingestion: one pass over the upload body, in chunks, never the whole file in memory.

The body is read in blocks by Arrow's streaming CSV reader through a tee that hashes (SHA-256), counts
(refusing more than ``max_bytes``) and spools the raw bytes to a local file; parsed record batches are
described column by column (type, missing values, distinct values) and written as Parquet row groups
of ``ROW_GROUP_ROWS`` rows. Types follow what pandas would read: int64, float64 (integers with missing
values too), bool, text; dates and anything else stay text. The reader infers types from a sample at
the start of the file; a later value that does not fit (``1.5`` in an integer column) widens that
column (int → float → text) and the spooled file is parsed again.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import queue
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..ahead import ahead
from ..errors import InvalidInput, PayloadTooLarge
from ..storage.spool import SpoolFile
from .ingest import (
    PREVIEW_ROWS,
    SNIFF_BYTES,
    Readable,
    _check_header,
    header_end,
    json_safe_records,
    read_header,
    read_into,
)

ROW_GROUP_ROWS = 65_536
#: Types are inferred from the whole rows in the first SAMPLE_BYTES; rows are parsed in blocks of about
#: BLOCK_BYTES, several at once.
SAMPLE_BYTES = 1024 * 1024
BLOCK_BYTES = 4 * 1024 * 1024
READ_BYTES = 1024 * 1024
#: Distinct values are counted exactly up to this many per column, then estimated (HyperLogLog, ~1 %).
EXACT_UNIQUE = 16_384
# pandas' default missing-value markers, so a file reads the same as with ``pandas.read_csv``.
NULLS = [
    "",
    "#N/A",
    "#N/A N/A",
    "#NA",
    "-1.#IND",
    "-1.#QNAN",
    "-NaN",
    "-nan",
    "1.#IND",
    "1.#QNAN",
    "<NA>",
    "N/A",
    "NA",
    "NULL",
    "NaN",
    "None",
    "n/a",
    "nan",
    "null",
]
# Every marker but the empty one holds an ``n`` or ``N`` (a unit test holds this): in a block with neither
# letter only empty values can be missing, and Arrow converts numbers ~10 % faster when it looks for ""
# alone (_Block.only_empty_nulls).

#: Parquet key-value metadata: the raw CSV holds one plain line per row, in order (see one_line_per_row).
RAW_LINES_KEY = "kubepredict.raw_lines"
_WIDER = {pa.null(): pa.float64(), pa.int64(): pa.float64(), pa.float64(): pa.string(), pa.bool_(): pa.string()}
_COLUMN_ERROR = re.compile(r"In CSV column #(\d+): ")
_INVALID_VALUE = re.compile(r"invalid value '(.*)'", re.S)
#: An integer literal; one beyond int64 makes its column text, as ``pandas.read_csv`` makes it ``object``
#: (Python ints): the digits are kept exactly, never rounded to a float.
INTEGER = r"^\s*[+-]?\d+\s*$"
_INTEGER = re.compile(INTEGER)


@dataclass
class Ingested:
    rows: int
    size: int
    sha256: str
    columns: list[dict]
    preview: list[dict]
    row_groups: int
    schema: pa.Schema = field(repr=False)


class _Tee(io.RawIOBase):
    """Reads the body for the CSV reader while hashing, counting and spooling it to ``spool``."""

    def __init__(self, head: bytes, stream: Readable, spool: SpoolFile, max_bytes: int | None):
        self._head, self._stream, self._spool, self._max = head, stream, spool, max_bytes
        self.digest, self.size, self.too_large = hashlib.sha256(), 0, False
        self.in_header, self.awkward = True, False
        self._keep(head, 0, len(head))

    def _keep(self, buf: bytes | bytearray, start: int, end: int) -> None:
        """Hash, count and spool ``buf[start:end]``, the body's next bytes."""
        self.size += end - start
        if self._max is not None and self.size > self._max:
            self.too_large = True
            raise PayloadTooLarge(
                f"body is larger than the limit of {self._max} bytes", details={"limit_bytes": self._max}
            )
        chunk = memoryview(buf)[start:end]
        self.digest.update(chunk)
        self._spool.write(chunk)
        body = start
        if self.in_header:  # the header line may be quoted: look after it (find: no copy, memchr)
            newline = buf.find(b"\n", start, end)
            self.in_header = newline < 0
            body = end if self.in_header else newline + 1
        if not self.awkward:
            self.awkward = buf.find(b'"', body, end) >= 0 or buf.find(b"\r", body, end) >= 0

    @property
    def plain(self) -> bool:
        """No quote or CR after a header line that ends in \n: with no blank lines (the parser tells those),
        the raw file is the header then exactly one plain line per row, which the CSV download can reuse."""
        return not self.in_header and not self.awkward

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self._head:
            chunk, self._head = self._head, b""
            return chunk
        chunk = self._stream.read(READ_BYTES if n is None or n < 0 else max(n, 1))
        if chunk:
            self._keep(chunk, 0, len(chunk))
        return chunk

    def readinto(self, b) -> int:
        chunk = self.read(len(b))
        b[: len(chunk)] = chunk
        return len(chunk)

    def fill(self, buf: bytearray, start: int, size: int) -> int:
        """Up to ``size`` bytes into ``buf[start:]`` (0 at the end): read there straight from the body and
        kept from there, with no ``bytes`` in between."""
        if self._head:
            n = min(size, len(self._head))
            buf[start : start + n] = self._head[:n]
            self._head = self._head[n:]
            return n
        n = read_into(self._stream, memoryview(buf)[start : start + size])
        if n:
            self._keep(buf, start, start + n)
        return n

    def drain(self) -> None:
        """Spool the rest of the body (after a parse failure that needs a second pass)."""
        while self.read(READ_BYTES):
            pass


class _Distinct:
    """Distinct non-null values of one column: exact while few, then a HyperLogLog estimate.

    While not ``many``, ``exact`` holds every distinct value seen; once ``many``, the registers hold a hash
    of every value seen. Registers are made only for a column with many values, and a block's few values
    are kept as (register, rank) pairs rather than a whole register array: a wide file (thousands of
    columns, a few rows per block) then costs little per column and block.
    """

    P = 14
    SPARSE = 1 << (P - 2)  # fewer values than this in a block: (register, rank) pairs, not registers

    def __init__(self):
        self.exact: pa.Array | None = None  # the distinct values, while there may be few
        self.many = False
        self.registers: np.ndarray | None = None
        self.sparse: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, column: pa.Array, *, many: bool = False) -> None:
        """``many``: the column is already known to hold too many values to count exactly."""
        if column.null_count:
            column = column.drop_null()
        if len(column) == 0:
            return
        if many or self.many:
            self._to_many()
            self._hll(column)
            return
        if len(column) > EXACT_UNIQUE:  # a big block: a cheap estimate decides whether a hash table is worth it
            probe = _Distinct()
            probe.registers = np.zeros(1 << self.P, dtype=np.uint8)
            probe._hll(column)
            if probe._estimate() > 2 * EXACT_UNIQUE:
                self._to_many()
                np.maximum(self._dense(), probe.registers, out=self.registers)
                return
        self._union(column.unique())

    def merge(self, other: _Distinct) -> None:
        """Add what ``other`` saw (another block of the same column)."""
        if other.many:
            self._to_many()
            registers = self._dense()
            if other.registers is not None:
                np.maximum(registers, other.registers, out=registers)
            for idx, rank in other.sparse:
                np.maximum.at(registers, idx, rank)
        elif other.exact is not None:
            if self.many:
                self._hll(other.exact)
            else:
                self._union(other.exact)

    def _union(self, values: pa.Array) -> None:
        seen = values if self.exact is None else pa.concat_arrays([self.exact, values]).unique()
        self.exact = seen
        if len(seen) > EXACT_UNIQUE:
            self._to_many()

    def _to_many(self) -> None:
        """From now on estimate: the exact values seen so far go into the registers."""
        if self.many:
            return
        self.many = True
        exact, self.exact = self.exact, None
        if exact is not None and len(exact):
            self._hll(exact)

    def _dense(self) -> np.ndarray:
        """The registers as one array (made now if needed, with the sparse pairs folded in)."""
        if self.registers is None:
            self.registers = np.zeros(1 << self.P, dtype=np.uint8)
        for idx, rank in self.sparse:
            np.maximum.at(self.registers, idx, rank)
        self.sparse = []
        return self.registers

    def _estimate(self) -> float:
        registers = self._dense()
        m = float(len(registers))
        estimate = 0.7213 / (1 + 1.079 / m) * m * m / np.sum(np.exp2(-registers.astype(np.float64)))
        zeros = int(np.count_nonzero(registers == 0))
        if estimate <= 2.5 * m and zeros:
            estimate = m * np.log(m / zeros)
        return float(estimate)

    def _hll(self, column: pa.Array) -> None:
        if pa.types.is_floating(column.type) or pa.types.is_integer(column.type):
            wide = (
                pa.float64()
                if pa.types.is_floating(column.type)
                else pa.uint64()
                if pa.types.is_unsigned_integer(column.type)
                else pa.int64()
            )
            h = _mix64(column.cast(wide).to_numpy(zero_copy_only=False).view(np.uint64))
        else:
            h = pd.util.hash_array(column.to_numpy(zero_copy_only=False)).astype(np.uint64, copy=False)
        idx, rank = _register_ranks(h, self.P)
        if self.registers is None and len(idx) < self.SPARSE:
            self.sparse.append((idx, rank))
            return
        if self.registers is None:
            self.registers = np.zeros(1 << self.P, dtype=np.uint8)
        np.maximum.at(self.registers, idx, rank)

    def count(self, non_null: int) -> tuple[int, bool]:
        if not self.many:
            return (0 if self.exact is None else len(self.exact)), False
        return int(min(max(round(self._estimate()), EXACT_UNIQUE + 1), non_null)), True


def _register_ranks(h: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    """HyperLogLog's register (the top ``p`` bits) and rank of each 64-bit hash (overwrites ``h``).

    The rank of the low ``64 - p`` bits w is ``64 - p + 1 - w.bit_length()``, read off the float64 exponent
    of 2w + 1 (no log2 over every value): 2w + 1 is never 0, and below 2^51 it is exact as a float64 and
    positive as an int64, whose conversion is vectorised (uint64's is not: a 393 MB upload's 20 million
    values took 0.17 s through uint64, 0.11 s this way, for the same registers)."""
    idx = (h >> np.uint64(64 - p)).view(np.intp)  # < 2^p: the same bits as a signed index
    h <<= np.uint64(p)
    h >>= np.uint64(p - 1)
    h |= np.uint64(1)
    exponent = h.view(np.int64).astype(np.float64).view(np.uint64) >> np.uint64(52)
    return idx, (np.uint64(64 - p + 1 + 1023) - exponent).astype(np.uint8)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, vectorised: a well-spread 64-bit hash of each value's bits (a new array)."""
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


def _pandas_dtype(t: pa.DataType, missing: int) -> str:
    """The dtype name pandas gives such a column (as ``pandas.read_csv`` would have)."""
    if pa.types.is_integer(t):
        return "float64" if missing else "int64"
    if pa.types.is_floating(t) or pa.types.is_null(t):
        return "float64"
    if pa.types.is_boolean(t):
        return "object" if missing else "bool"
    return _text_dtype()


@functools.cache
def _text_dtype() -> str:
    """What pandas calls a text column read from Arrow (``str`` in pandas 3, ``object`` before)."""
    return str(pa.array([], type=pa.string()).to_pandas().dtype)


def _sample_types(sample: bytes, names: list[str], terminator: bytes) -> dict[str, pa.DataType]:
    """Column types inferred from the whole rows at the head of the file, restricted to what pandas would
    give; a column with no value there yet is float64 (a later text value widens it)."""
    cut = _row_end(sample, terminator)
    table = None
    if cut > 0:
        try:
            table = pacsv.read_csv(
                io.BytesIO(sample[:cut]),
                read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=max(cut + 1, SAMPLE_BYTES)),
                parse_options=_PARSE,
                convert_options=_convert_options({}),
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            _raise_for(exc, names, {})
    types = {}
    inferred = table.schema.types if table is not None else [pa.null()] * len(names)  # one list: O(columns)
    for name, t in zip(names, inferred, strict=True):
        if t in (pa.int64(), pa.float64(), pa.bool_(), pa.string()):
            types[name] = t
        elif pa.types.is_null(t):
            types[name] = pa.float64()  # empty so far: numbers later widen nothing, text widens to string
        else:
            types[name] = pa.string()  # dates, times, binary: text, as pandas reads them
    if table is not None:
        for name in _big_integer_columns(sample[:cut], names, table):
            types[name] = pa.string()
    return types


def _beyond_int64(text: str) -> bool:
    return bool(_INTEGER.match(text)) and not -(2**63) <= int(text) < 2**63


def _big_integer_columns(sample: bytes, names: list[str], table: pa.Table) -> list[str]:
    """Columns Arrow read as floats only because an integer did not fit int64 (all values integer literals)."""
    suspects = []
    for name, col in zip(names, table.columns, strict=True):
        if col.type == pa.float64() and col.null_count < len(col):
            biggest = pc.max(pc.abs(col)).as_py()
            if biggest is not None and biggest >= 2.0**63 and pc.all(pc.equal(col, pc.floor(col))).as_py():
                suspects.append(name)
    if not suspects:
        return []
    text = pacsv.read_csv(
        io.BytesIO(sample),
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=max(len(sample) + 1, SAMPLE_BYTES)),
        parse_options=_PARSE,
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in suspects},
            include_columns=suspects,
            null_values=NULLS,
            strings_can_be_null=True,
        ),
    )
    return [n for n in suspects if pc.all(pc.match_substring_regex(text.column(n), INTEGER)).as_py()]


_PARSE = pacsv.ParseOptions(newlines_in_values=True)
#: For a block ``_blocks`` cut, read by Arrow as one block (``block_size`` beyond its size): it already ends
#: at a row's end, so Arrow need not lex it for one (what ``newlines_in_values`` pays for); a quoted value
#: holding a newline still parses as one value. 7 % faster on a numeric file. Blank lines are kept, as rows
#: of nulls: a block with no such row has no blank line, which is what the CSV download needs to know
#: (``_null_row``) without counting the body's newlines.
_BLOCK_PARSE = pacsv.ParseOptions(newlines_in_values=False, ignore_empty_lines=False)
#: A block that may hold blank lines is read again skipping them, as ``pandas.read_csv`` does.
_BLANK_PARSE = pacsv.ParseOptions(newlines_in_values=False)


def _convert_options(types: dict, nulls: list[str] = NULLS) -> pacsv.ConvertOptions:
    return pacsv.ConvertOptions(
        column_types=types,
        null_values=nulls,
        strings_can_be_null=True,
        true_values=["True", "TRUE", "true"],
        false_values=["False", "FALSE", "false"],
        check_utf8=True,
    )


def ingest_csv(
    stream: Readable, *, raw_path: Path, parquet_path: Path, max_bytes: int | None, parquet_cached: bool = True
) -> Ingested:
    """Parse ``stream`` into ``parquet_path`` (row groups), spool its raw bytes to ``raw_path``, describe it.

    ``parquet_cached``: the Parquet copy is read again at once (sent on to an object store): keep it in the
    page cache. Otherwise it is written around the cache like the raw copy, and read back the same way
    (``DirectReader``)."""
    head = read_header(stream, stream.read(SNIFF_BYTES))
    names = _check_header(head)
    with SpoolFile(str(raw_path)) as spool:
        wanted = header_end(head) + SAMPLE_BYTES  # rows to infer types from, however long the header
        while len(head) < wanted:
            more = stream.read(wanted - len(head))
            if not more:
                break
            head += more
        tee = _Tee(head, stream, spool, max_bytes)
        terminator = _terminator(head)
        types = _sample_types(head, names, terminator)
        try:
            result = _parse(tee, names, types, parquet_path, tee, terminator, cached=parquet_cached)
        except _Widen as widen:
            tee.drain()
            result = None
            types = widen.types
        except Exception as exc:
            if tee.too_large:  # raised inside the reader's read(): Arrow may have wrapped it
                raise PayloadTooLarge(
                    f"body is larger than the limit of {max_bytes} bytes", details={"limit_bytes": max_bytes}
                ) from exc
            raise
        if tee.read(1):  # the reader stopped before the end (it should not): spool the rest, parse it all again
            tee.drain()
            result = None
    while result is None:  # a later value did not fit the inferred type: parse the spooled copy again
        try:
            with open(raw_path, "rb") as f:
                result = _parse(f, names, types, parquet_path, tee, terminator, cached=parquet_cached)
        except _Widen as widen:
            types = widen.types
    rows, columns, preview, groups, schema = result
    if rows == 0:
        raise InvalidInput("the CSV file has a header but no rows", code="empty_csv")
    return Ingested(
        rows=rows,
        size=tee.size,
        sha256=tee.digest.hexdigest(),
        columns=columns,
        preview=preview,
        row_groups=groups,
        schema=schema,
    )


def _terminator(head: bytes) -> bytes:
    """What ends a row, as the header line ends: \n (or \r\n), or \r alone (classic Mac files)."""
    ends = [i for i in (head.find(b"\n"), head.find(b"\r")) if i >= 0]
    if not ends:
        return b"\n"
    at = min(ends)
    return b"\r" if head[at : at + 1] == b"\r" and head[at + 1 : at + 2] != b"\n" else b"\n"


class _Widen(Exception):
    def __init__(self, types: dict):
        super().__init__("widen")
        self.types = types


def _parse(
    source, names: list[str], types: dict, parquet_path: Path, raw: _Tee, terminator: bytes = b"\n", *, cached: bool
):
    """Parse ``source`` (header first) into ``parquet_path``: a splitter thread cuts the text into blocks of
    whole rows, ``PARSERS`` threads parse and describe blocks at once (Arrow and numpy release the GIL),
    and this thread writes them, in order, as row groups."""
    schema = pa.schema([(n, types[n]) for n in names])
    missing = [0] * len(names)
    distinct = [_Distinct() for _ in names]
    rows, groups, pending, pending_rows = 0, 0, [], 0
    preview: list[dict] = []
    text = [n for n, t in zip(schema.names, schema.types, strict=True) if pa.types.is_string(t)]
    # Dictionary pages only for text: building one for distinct floats is most of the write time, for nothing;
    # random floats do not compress either, so float columns are stored plain. No min/max statistics: the
    # copy is read whole or by row-group index, never filtered (writing 1M x 21 rows: 0.121 s against 0.146).
    compression = {
        n: "none" if pa.types.is_floating(t) else "lz4" for n, t in zip(schema.names, schema.types, strict=True)
    }
    with (
        SpoolFile(str(parquet_path), drop=not cached) as sink,
        pq.ParquetWriter(
            pa.PythonFile(sink, mode="w"),
            schema,
            compression=compression,
            use_dictionary=text or False,
            write_statistics=False,
        ) as writer,
    ):

        def write(table: pa.Table) -> None:
            nonlocal groups
            writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
            groups += 1

        many = [False] * len(names)  # read by the parser threads: no exact count once a column has many values
        blank_lines = False
        for table, stats, blank in _parsed_blocks(source, names, types, schema, terminator, many):
            blank_lines = blank_lines or blank
            if table.num_rows == 0:
                continue
            for i, (nulls, seen) in enumerate(stats):
                missing[i] += nulls
                distinct[i].merge(seen)
                many[i] = distinct[i].many
            if len(preview) < PREVIEW_ROWS:
                preview += json_safe_records(table.slice(0, PREVIEW_ROWS - len(preview)).to_pandas())
            rows += table.num_rows
            pending.append(table)
            pending_rows += table.num_rows
            while pending_rows >= ROW_GROUP_ROWS:
                joined = pa.concat_tables(pending)
                write(joined.slice(0, ROW_GROUP_ROWS))
                rest = joined.slice(ROW_GROUP_ROWS)
                pending, pending_rows = [rest], rest.num_rows
        if pending_rows:
            write(pa.concat_tables(pending))
        if rows and raw.plain and not blank_lines:
            writer.add_key_value_metadata({RAW_LINES_KEY: "1"})
    columns = []
    for i, (name, t) in enumerate(zip(names, schema.types, strict=True)):
        unique, estimated = distinct[i].count(rows - missing[i])
        col = {"name": name, "dtype": _pandas_dtype(t, missing[i]), "missing": missing[i], "unique": unique}
        if estimated:
            col["unique_estimated"] = True
        columns.append(col)
    return rows, columns, preview, groups, schema


PARSERS = max(2, min(4, os.cpu_count() or 2))


def _parsed_blocks(source, names: list[str], types: dict, schema: pa.Schema, terminator: bytes, many: list[bool]):
    """(table, per-column (nulls, distinct)) for each block of rows of ``source``, in file order; Arrow
    errors are raised here, in the caller's thread, as a widening (_Widen) or a 400."""
    from concurrent.futures import ThreadPoolExecutor

    free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()  # block buffers parsed already, to read into again
    with ThreadPoolExecutor(PARSERS, thread_name_prefix="csv-parse") as pool:
        # The splitter (a helper thread) reads and cuts the body and hands blocks to the parsers.
        parsing = ahead(
            (
                (block, pool.submit(_parse_block, block, names, schema, many))
                for block in _blocks(source, terminator, free)
            ),
            depth=PARSERS + 1,
            name="csv-split",
        )
        try:
            for block, future in parsing:
                try:
                    parsed = future.result()
                except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                    try:
                        _raise_for(exc, names, types, schema)
                    except _Widen as widen:
                        raise _widen_all(block, names, widen) from None
                if block.reusable:  # Arrow copied what it parsed: the buffer may take the next bytes
                    free.put(block.data)
                yield parsed
        finally:
            parsing.close()  # stop the splitter before the pool: nothing is submitted after shutdown
            pool.shutdown(wait=True, cancel_futures=True)


def _widen_all(block: _Block, names: list[str], widen: _Widen) -> _Widen:
    """Every widening ``block`` needs, not just its first failing column's: one more pass over the file
    for all the columns that change in this block, instead of one pass per column."""
    types = widen.types
    for _ in range(3 * len(names)):  # each round widens one column one step: a bound, never reached
        schema = pa.schema([(n, types[n]) for n in names])
        try:
            _parse_block(block, names, schema, [True] * len(names))
            break
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            try:
                _raise_for(exc, names, types, schema)
            except _Widen as more:
                types = more.types
            except InvalidInput:
                break  # malformed, not a type change: the next pass reports it
    return _Widen(types)


def _parse_block(block: _Block, names: list[str], schema: pa.Schema, many: list[bool]):
    """The block's rows, each column's (missing values, distinct values), and whether it held blank lines."""
    data = block.buffer()
    read_options = pacsv.ReadOptions(column_names=names, use_threads=False, block_size=max(data.size + 1, BLOCK_BYTES))
    convert_options = _convert_options(
        dict(zip(names, schema.types, strict=True)), [""] if block.only_empty_nulls() else NULLS
    )

    def read(parse: pacsv.ParseOptions) -> pa.Table:
        return pacsv.read_csv(
            pa.BufferReader(data), read_options=read_options, parse_options=parse, convert_options=convert_options
        )

    table = read(_BLOCK_PARSE)
    blank = _null_row(table)
    if blank:
        skipped = read(_BLANK_PARSE)
        blank, table = skipped.num_rows < table.num_rows, skipped
    stats = []
    for i, chunked in enumerate(table.columns):
        col = chunked.combine_chunks()
        seen = _Distinct()
        seen.add(col, many=many[i])
        stats.append((col.null_count, seen))
    return table, stats, blank


def _null_row(table: pa.Table) -> bool:
    """Whether some row is missing in every column (a blank line read as a row, or a row of empty values)."""
    if table.num_rows == 0 or any(column.null_count == 0 for column in table.columns):
        return False  # the common case: a column with no missing value in the block
    every = pc.is_null(table.column(0))
    for column in table.columns[1:]:
        every = pc.and_(every, pc.is_null(column))
    return bool(pc.any(every).as_py())


#: A block buffer's room for the start of a row the block before cut (longer ones get a buffer of their own).
CARRY_BYTES = 256 * 1024


@dataclass(frozen=True)
class _Block:
    """Whole rows: ``data[start:end]``. ``reusable``: ``data`` is a pooled buffer, to read into again once
    the block is parsed."""

    data: bytes | bytearray
    start: int
    end: int
    reusable: bool = False

    def buffer(self) -> pa.Buffer:
        return pa.py_buffer(self.data).slice(self.start, self.end - self.start)

    def only_empty_nulls(self) -> bool:
        """No ``n`` or ``N`` in the block, so no value in it is a missing-value marker but "" (two memchr
        scans, ~0.5 ms per 4 MiB, against ~1.2 ms of Arrow's conversion saved)."""
        return self.data.find(b"n", self.start, self.end) < 0 and self.data.find(b"N", self.start, self.end) < 0


def _blocks(source, terminator: bytes, free: queue.SimpleQueue[bytearray]):
    """The rows after the header, in blocks of about ``BLOCK_BYTES`` that each end after a complete row.

    Each block is read straight into its buffer after the rows the block before left (one copy from the
    connection's pieces; reused buffers, no fresh pages to fault in per block)."""
    carry, header, size = b"", True, BLOCK_BYTES + CARRY_BYTES
    while True:
        try:
            buf = free.get_nowait()
        except queue.Empty:
            buf = bytearray(size)
        if len(buf) < len(carry) + BLOCK_BYTES:  # a row longer than the room left for it: a buffer of its own
            buf = bytearray(len(carry) + BLOCK_BYTES)
        buf[: len(carry)] = carry
        n = _fill(source, buf, len(carry), BLOCK_BYTES)
        if not n:
            break
        start, end = 0, len(carry) + n
        if header:
            start = _row_end(buf, terminator, first=True, end=end)
            header = start == 0
        # The tee looked for quotes in what it kept: with none, the last terminator ends the last whole row.
        plain = getattr(source, "plain", False)
        cut = 0 if header else _row_end(buf, terminator, start=start, end=end, quotes=not plain)
        if cut == 0:  # no whole row yet (or not even the header): read on after it
            carry = _short_row(memoryview(buf)[start:end])
            if len(buf) == size:
                free.put(buf)
            continue
        carry = bytes(memoryview(buf)[cut:end])
        yield _Block(buf, start, cut, reusable=len(buf) == size)
    if carry.strip() and not header:
        yield _Block(carry, 0, len(carry))


def _fill(source, buf: bytearray, start: int, size: int) -> int:
    """Up to ``size`` bytes of ``source`` into ``buf[start:]``."""
    fill = getattr(source, "fill", None)
    if fill is not None:
        return fill(buf, start, size)
    return read_into(source, memoryview(buf)[start : start + size])


MAX_ROW_BYTES = 64 * 1024 * 1024


def _short_row(buf: memoryview) -> bytes:
    if len(buf) > MAX_ROW_BYTES:
        raise InvalidInput(
            f"a row of the CSV file is longer than {MAX_ROW_BYTES // (1024 * 1024)} MiB", code="invalid_csv"
        )
    return bytes(buf)


def _row_end(
    buf: bytes | bytearray,
    terminator: bytes,
    *,
    first: bool = False,
    start: int = 0,
    end: int | None = None,
    quotes: bool = True,
) -> int:
    """Offset just past the last (``first``: the first) row ending in ``buf[start:end]``, 0 if none: a
    terminator outside quotes. A row starts at ``start``, so a terminator is outside quotes when an even
    number of quote characters lie between (an escaped quote ``""`` counts two). ``quotes=False``: the
    caller knows there are none."""
    end = len(buf) if end is None else end
    if not quotes or buf.find(b'"', start, end) < 0:
        at = buf.find(terminator, start, end) if first else buf.rfind(terminator, start, end)
        return at + 1
    raw = np.frombuffer(buf, np.uint8, count=end - start, offset=start)
    ends = np.flatnonzero(raw == terminator[0])
    outside = ends[(np.searchsorted(np.flatnonzero(raw == 34), ends) & 1) == 0]
    if len(outside) == 0:
        return 0
    return start + int(outside[0 if first else -1]) + 1


def _raise_for(exc: Exception, names: list[str], types: dict, schema: pa.Schema | None = None):
    """A conversion error in one column widens it (raises _Widen); anything else is a 400."""
    message = str(exc)
    m = _COLUMN_ERROR.search(message)
    if m and "conversion error" in message and "UTF8" not in message:
        i = int(m.group(1))
        name = names[i]
        current = types.get(name) or (schema.types[i] if schema is not None else pa.string())
        wider = _WIDER.get(current)
        value = _INVALID_VALUE.search(message)
        if current == pa.int64() and value and _beyond_int64(value.group(1)):
            wider = pa.string()  # an integer beyond int64: text, exactly (see INTEGER)
        if wider is not None:
            raise _Widen(
                {
                    **types,
                    **({n: t for n, t in zip(schema.names, schema.types, strict=True)} if schema else {}),
                    name: wider,
                }
            )
    if "UTF8" in message or "utf8" in message.lower():
        raise InvalidInput("the file is not UTF-8 text", code="invalid_csv") from exc
    line = message.split("\n")[0]
    raise InvalidInput(f"malformed CSV: {line}", code="invalid_csv") from exc
