"""CSV ingestion: validate and parse an uploaded file, describe its columns, keep a Parquet copy."""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from typing import BinaryIO, Protocol

import pandas as pd

from ..errors import InvalidInput

PREVIEW_ROWS = 20
SNIFF_BYTES = 64 * 1024
#: The header line may be this long at most, and name this many columns at most (documented limits).
MAX_HEADER_BYTES = 1024 * 1024
MAX_COLUMNS = 16_384


class Readable(Protocol):
    """What ingestion reads from: a request body, a file, or a body with its first bytes put back."""

    def read(self, n: int = -1, /) -> bytes: ...


def read_into(stream: Readable, view: memoryview) -> int:
    """Up to ``len(view)`` bytes of ``stream`` into ``view`` (0 at the end): through the stream's own
    ``readinto`` when it has one (a request body, a file), so no ``bytes`` is made just to be copied."""
    readinto = getattr(stream, "readinto", None)
    if readinto is not None:
        try:
            return readinto(view) or 0
        except (NotImplementedError, io.UnsupportedOperation):  # io.RawIOBase's, for a class with only read()
            pass
    chunk = stream.read(len(view))
    view[: len(chunk)] = chunk
    return len(chunk)


def header_end(head: bytes) -> int:
    """Offset just past the header line's end (\n, \r\n or \r) in ``head``, 0 while not there yet."""
    ends = [i for i in (head.find(b"\n"), head.find(b"\r")) if i >= 0]
    if not ends:
        return 0
    at = min(ends)
    if head[at : at + 1] == b"\r" and at + 1 == len(head):
        return 0  # a \r\n may be cut in two: wait for the next byte
    return at + (2 if head[at : at + 2] == b"\r\n" else 1)


def read_header(stream: Readable, head: bytes = b"") -> bytes:
    """``head`` plus what ``stream`` yields until the header line is whole (or the stream ends); a header
    line longer than MAX_HEADER_BYTES is refused."""
    while not header_end(head):
        if len(head) > MAX_HEADER_BYTES:
            raise InvalidInput(
                f"the header line is longer than {MAX_HEADER_BYTES // 1024} KiB",
                code="invalid_csv",
                details={"limit_bytes": MAX_HEADER_BYTES},
            )
        more = stream.read(SNIFF_BYTES)
        if not more:
            break
        head += more
    return head


def _check_header(head: bytes) -> list[str]:
    """The column names of the header line at the start of ``head`` (``head`` may hold more lines)."""
    end = header_end(head)
    line = head[:end] if end else head
    if b"\x00" in line:
        raise InvalidInput("the file looks binary, not CSV text", code="invalid_csv")
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # A multi-byte character may be cut at the end of the sniffed block; only fail on an early error.
        if end or exc.start < len(line) - 4:
            raise InvalidInput(f"the file is not UTF-8 text (byte {exc.start})", code="invalid_csv") from exc
        text = line[: exc.start].decode("utf-8-sig")
    first = text.rstrip("\r\n")
    if not first.strip():
        raise InvalidInput("the CSV file is empty (no header line)", code="empty_csv")
    names = next(csv.reader([first]))
    if len(names) > MAX_COLUMNS:
        raise InvalidInput(
            f"the file has {len(names)} columns; at most {MAX_COLUMNS} are accepted",
            code="too_many_columns",
            details={"columns": len(names), "limit": MAX_COLUMNS},
        )
    names = [n.strip() for n in names]
    if any(n == "" for n in names):
        raise InvalidInput(
            "the header has an empty column name", code="invalid_csv", details={"position": names.index("") + 1}
        )
    dupes = sorted(n for n, count in Counter(names).items() if count > 1)
    if dupes:
        raise InvalidInput(
            f"duplicate column names: {', '.join(dupes)}", code="invalid_csv", details={"duplicates": dupes}
        )
    return names


def parse_csv(stream: BinaryIO) -> pd.DataFrame:
    """Parse a small CSV stream into a DataFrame (uploads go through ingest_stream) or raise InvalidInput."""
    head = read_header(stream, stream.read(SNIFF_BYTES))
    names = _check_header(head)
    data = io.BufferedReader(_Rewound(head, stream))
    try:
        frame = pd.read_csv(data, skipinitialspace=True, encoding="utf-8-sig")
    except pd.errors.ParserError as exc:
        raise InvalidInput(f"malformed CSV: {exc}".strip(), code="invalid_csv") from exc
    except (pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"unreadable CSV: {exc}", code="invalid_csv") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    if list(frame.columns) != names:
        raise InvalidInput("the header could not be read consistently", code="invalid_csv")
    if len(frame) == 0:
        raise InvalidInput("the CSV file has a header but no rows", code="empty_csv")
    return frame


class _Rewound(io.RawIOBase):
    """Replays the sniffed head before the rest of the stream."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self._head, self._rest = memoryview(head), rest

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        chunk = self._rest.read(len(b))
        b[: len(chunk)] = chunk
        return len(chunk)


def describe_columns(frame: pd.DataFrame) -> list[dict]:
    return [
        {
            "name": c,
            "dtype": str(frame[c].dtype),
            "missing": int(frame[c].isna().sum()),
            "unique": int(frame[c].nunique(dropna=True)),
        }
        for c in frame.columns
    ]


def json_safe_records(frame: pd.DataFrame) -> list[dict]:
    """Rows as JSON-ready dicts (NaN → None, numpy scalars → Python)."""
    records = json.loads(frame.to_json(orient="records", date_format="iso"))
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in records]


def preview(frame: pd.DataFrame) -> list[dict]:
    return json_safe_records(frame.head(PREVIEW_ROWS))


def to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, engine="pyarrow", index=False)
    return buf.getvalue()


def read_parquet(data: bytes | BinaryIO, columns: list[str] | None = None) -> pd.DataFrame:
    src = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    return pd.read_parquet(src, engine="pyarrow", columns=columns)
