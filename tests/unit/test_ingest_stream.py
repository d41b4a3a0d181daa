"""Streaming CSV ingestion reads files as ``pandas.read_csv`` did: same types, missing values, preview, data."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from kubepredict.errors import InvalidInput, PayloadTooLarge
from kubepredict.services import ingest, ingest_stream

MESSY = (
    "id,score,city,flag,maybe,when,empty,note\n"
    "1,1.5,Paris,True,true,2024-01-02,,hello\n"
    "2,,Lyon,False,,2024-01-03,,\n"
    "3,2.25,,True,false,2024-02-01,,NA\n"
    '4,3,Nice,False,True,,,"a, quoted"\n'
    "5,-0.5,Paris,True,,2024-03-01,,x\n"
)


def _ingest(tmp_path, data: bytes, max_bytes: int | None = None):
    return ingest_stream.ingest_csv(
        io.BytesIO(data), raw_path=tmp_path / "raw.csv", parquet_path=tmp_path / "data.parquet", max_bytes=max_bytes
    )


def _old(data: bytes):
    """What the upload stored before: pandas' frame, its description and preview, and its Parquet copy read back."""
    frame = ingest.parse_csv(io.BytesIO(data))
    return ingest.read_parquet(ingest.to_parquet_bytes(frame)), ingest.describe_columns(frame), ingest.preview(frame)


def test_types_missing_unique_and_preview_match_pandas(tmp_path):
    data = MESSY.encode()
    got = _ingest(tmp_path, data)
    frame, columns, preview = _old(data)
    assert got.columns == columns
    assert got.preview == preview
    assert got.rows == len(frame) == 5
    assert got.size == len(data) and got.sha256 == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "raw.csv").read_bytes() == data
    back = pd.read_parquet(tmp_path / "data.parquet")
    assert [str(t) for t in back.dtypes] == [str(t) for t in frame.dtypes]
    pd.testing.assert_frame_equal(back, frame)


def test_parquet_is_written_in_fixed_row_groups(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest_stream, "ROW_GROUP_ROWS", 1000)
    monkeypatch.setattr(ingest_stream, "BLOCK_BYTES", 4096)
    frame = pd.DataFrame({"a": np.arange(4500), "b": np.arange(4500) / 7})
    got = _ingest(tmp_path, frame.to_csv(index=False).encode())
    meta = pq.ParquetFile(tmp_path / "data.parquet").metadata
    assert got.row_groups == meta.num_row_groups == 5
    assert [meta.row_group(i).num_rows for i in range(5)] == [1000, 1000, 1000, 1000, 500]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "data.parquet"), frame)


def test_a_predict_batch_is_one_row_group_by_default():
    """Batch jobs score whole row groups: a batch size that is not one splits every group in two batches."""
    from kubepredict.config import Settings

    assert Settings().predict_chunk_rows == ingest_stream.ROW_GROUP_ROWS


@pytest.mark.parametrize("late, dtype", [("2.5", "float64"), ("oops", "str"), ("", "float64")])
def test_a_late_value_that_does_not_fit_widens_the_column(tmp_path, monkeypatch, late, dtype):
    """Types are inferred from the head; ``1.5`` or text far into an integer column widens it, as pandas does."""
    monkeypatch.setattr(ingest_stream, "SAMPLE_BYTES", 2048)
    monkeypatch.setattr(ingest_stream, "BLOCK_BYTES", 2048)
    rows = [str(i) for i in range(3000)] + [late] + ["7"]
    data = ("n,m\n" + "".join(f"{v},{i}\n" for i, v in enumerate(rows))).encode()
    got = _ingest(tmp_path, data)
    frame, columns, _ = _old(data)
    assert got.columns == columns and got.columns[0]["dtype"] == dtype
    back = pd.read_parquet(tmp_path / "data.parquet")
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
    assert (tmp_path / "raw.csv").read_bytes() == data  # the spooled copy is whole after a second pass


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_rows_cut_into_blocks_anywhere_read_as_pandas_reads_them(tmp_path, monkeypatch, newline):
    """Blocks parsed in parallel are cut only between rows: never inside a quoted field that holds the
    row terminator, a comma or an escaped quote, whatever the line endings."""
    monkeypatch.setattr(ingest_stream, "SAMPLE_BYTES", 700)
    monkeypatch.setattr(ingest_stream, "BLOCK_BYTES", 311)  # blocks end at every kind of place
    rng = np.random.default_rng(3)
    notes = ["plain", "a, comma", 'say "hi"', f"two{newline}lines", "", f'all: "x",{newline}"y"']
    frame = pd.DataFrame(
        {
            "id": np.arange(1500),
            "x": rng.normal(size=1500).round(4),
            "note": [notes[i % len(notes)] for i in range(1500)],
        }
    )
    data = frame.to_csv(index=False, lineterminator=newline).encode()
    got = _ingest(tmp_path, data)
    expected, columns, preview = _old(data)
    assert got.rows == 1500 and got.columns == columns and got.preview == preview
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "data.parquet"), expected)
    assert (tmp_path / "raw.csv").read_bytes() == data


def test_every_missing_value_marker_but_the_empty_one_holds_an_n():
    """What lets a block with no ``n`` or ``N`` be converted looking for "" alone (``_Block``)."""
    assert all("n" in marker.lower() for marker in ingest_stream.NULLS if marker)


def test_blocks_with_and_without_missing_markers_count_missing_values_as_pandas(tmp_path, monkeypatch):
    """Blocks with only empty values missing (converted looking for "" alone) and blocks holding pandas'
    other markers (NaN, NA, null, #N/A, -1.#IND …) in the same file: the same missing values and data."""
    monkeypatch.setattr(ingest_stream, "SAMPLE_BYTES", 600)
    monkeypatch.setattr(ingest_stream, "BLOCK_BYTES", 400)
    rng = np.random.default_rng(5)
    markers = ["NaN", "NA", "null", "#N/A", "-1.#IND", "None", "n/a", "<NA>", "-nan"]
    rows = ["a,b,c,label"]
    for i in range(3000):
        a, b = f"{rng.normal():.4f}", f"{rng.integers(0, 9)}"
        if i % 7 == 0:
            a = ""
        if 1000 <= i < 1100 and i % 3 == 0:  # markers only in a few blocks
            a = markers[i % len(markers)]
        label = "" if i % 11 == 0 else "xyz"[i % 3]  # text with no n: blocks stay marker-free
        rows.append(f"{a},{b},{'' if i % 13 == 0 else i},{label}")
    data = ("\n".join(rows) + "\n").encode()
    got = _ingest(tmp_path, data)
    expected, columns, _ = _old(data)
    assert got.columns == columns
    assert got.columns[0]["missing"] == int(expected["a"].isna().sum()) > 3000 // 7
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "data.parquet"), expected)


def test_rows_longer_than_a_buffer_s_room_for_them_read_whole(tmp_path, monkeypatch):
    """A row the block before cut that is longer than the room kept for it in the next buffer gets a
    buffer of its own; pooled buffers are read into again only once parsed."""
    monkeypatch.setattr(ingest_stream, "SAMPLE_BYTES", 2000)
    monkeypatch.setattr(ingest_stream, "BLOCK_BYTES", 700)
    monkeypatch.setattr(ingest_stream, "CARRY_BYTES", 64)
    rng = np.random.default_rng(9)
    frame = pd.DataFrame(
        {"x": np.arange(800), "note": ["w" * int(n) for n in rng.integers(1, 1500, size=800)], "y": np.arange(800) / 3}
    )
    data = frame.to_csv(index=False).encode()
    got = _ingest(tmp_path, data)
    expected, columns, _ = _old(data)
    assert got.rows == 800 and got.columns == columns
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "data.parquet"), expected)
    assert (tmp_path / "raw.csv").read_bytes() == data


def _reuses_lines(tmp_path) -> bool:
    meta = pq.ParquetFile(tmp_path / "data.parquet").metadata.metadata or {}
    return meta.get(ingest_stream.RAW_LINES_KEY.encode()) == b"1"


@pytest.mark.parametrize(
    "text, plain",
    [
        ("a,b\n1,2\n3,4\n", True),
        ("a,b\n1,2\n3,4", True),  # no newline after the last row
        ("a,b\n1,2\n,\n3,4\n", True),  # a row of empty values is a row (pandas keeps it)
        ("a\n1\nNA\n2\n", True),  # one column: a missing value is a row too
        ("a,b\n1,2\n\n3,4\n", False),
        ("a,b\n\n1,2\n3,4\n", False),  # right after the header
        ("a,b\n1,2\n3,4\n\n\n", False),  # at the end
        ("a\n1\n\n2\n", False),  # one column: a blank line is not a missing value
        ("a,b\n1,2\n\n,\n3,4\n", False),  # a blank line beside a row of empty values
        ('a,b\n1,"2"\n3,4\n', False),  # quoted
        ("a,b\r\n1,2\r\n", False),
        ("a,b\r1,2\r3,4\r", False),  # classic Mac: no \n at all
    ],
)
def test_blank_lines_are_skipped_as_pandas_skips_them_and_keep_the_lines_from_being_reused(tmp_path, text, plain):
    """Rows are read as pandas reads them; the raw lines are marked for reuse by the CSV download only when
    they are exactly the header then one line per row (blank lines are found by the parser, per block)."""
    data = text.encode()
    got = _ingest(tmp_path, data)
    expected, columns, _ = _old(data)
    assert got.rows == len(expected) and got.columns == columns
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "data.parquet"), expected)
    assert _reuses_lines(tmp_path) == plain


@pytest.mark.parametrize("blank_every", [0, 97])
def test_blank_lines_at_block_edges_read_as_pandas_reads_them(tmp_path, monkeypatch, blank_every):
    """Small blocks put blank lines at blocks' starts and ends; rows of empty values, which are not blank
    lines, sit among them."""
    monkeypatch.setattr(ingest_stream, "SAMPLE_BYTES", 600)
    monkeypatch.setattr(ingest_stream, "BLOCK_BYTES", 300)
    rng = np.random.default_rng(11)
    lines = ["x,y,label"]
    for i in range(3000):
        lines.append(",," if i % 41 == 0 else f"{rng.normal():.3f},{'' if i % 5 else i},{'ab'[i % 2]}")
        if blank_every and i % blank_every == 0:
            lines.append("")
    data = ("\n".join(lines) + "\n").encode()
    got = _ingest(tmp_path, data)
    expected, columns, _ = _old(data)
    assert got.rows == len(expected) == 3000 and got.columns == columns
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "data.parquet"), expected)
    assert _reuses_lines(tmp_path) == (blank_every == 0)


@pytest.mark.parametrize("cached", [True, False])
def test_the_parquet_copy_is_the_same_written_through_or_around_the_page_cache(tmp_path, cached):
    frame = pd.DataFrame({"a": np.arange(30_000), "b": np.arange(30_000) / 3, "c": ["x", "yz", None] * 10_000})
    data = frame.to_csv(index=False).encode()
    ingest_stream.ingest_csv(
        io.BytesIO(data),
        raw_path=tmp_path / "raw.csv",
        parquet_path=tmp_path / "data.parquet",
        max_bytes=None,
        parquet_cached=cached,
    )
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "data.parquet"), _old(data)[0])


def test_a_row_longer_than_the_limit_is_invalid_input(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest_stream, "SAMPLE_BYTES", 1024)
    monkeypatch.setattr(ingest_stream, "BLOCK_BYTES", 1024)
    monkeypatch.setattr(ingest_stream, "MAX_ROW_BYTES", 10_000)
    with pytest.raises(InvalidInput) as err:
        _ingest(tmp_path, b"a,b\n1,2\n" + b'3,"' + b"x" * 200_000 + b'"\n')
    assert err.value.code == "invalid_csv" and "longer than" in err.value.message


def test_register_ranks_are_the_leading_zeros_of_the_low_bits_plus_one():
    """HyperLogLog's rank of a hash: its low 64 - P bits' leading zeros plus one, exactly, at every edge."""
    p = ingest_stream._Distinct.P
    low = (1 << (64 - p)) - 1
    rng = np.random.default_rng(3)
    edges = [0, 1, 2, 3, (1 << 49) - 1, 1 << 49, low - 1, low, (1 << 64) - 1, 1 << 63, low + 1]
    hashes = edges + [int(v) for v in rng.integers(0, 2**63, 2000, dtype=np.int64)] + [1 << k for k in range(64)]
    idx, rank = ingest_stream._register_ranks(np.array(hashes, dtype=np.uint64), p)
    assert idx.tolist() == [h >> (64 - p) for h in hashes]
    assert rank.tolist() == [64 - p + 1 - (h & low).bit_length() for h in hashes]


def test_many_distinct_values_are_estimated_closely(tmp_path):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=60_000).round(5),
            "k": rng.integers(0, 50, 60_000),
            "s": [f"id{i}" for i in rng.integers(0, 40_000, 60_000)],
        }
    )
    got = {c["name"]: c for c in _ingest(tmp_path, frame.to_csv(index=False).encode()).columns}
    assert got["k"]["unique"] == frame["k"].nunique() and "unique_estimated" not in got["k"]
    for name in ("x", "s"):
        exact = frame[name].nunique()
        assert got[name]["unique_estimated"] is True
        assert abs(got[name]["unique"] - exact) / exact < 0.05, (name, got[name], exact)


def test_refuses_more_than_max_bytes(tmp_path):
    data = b"a,b\n" + b"1,2\n" * 100_000
    with pytest.raises(PayloadTooLarge):
        _ingest(tmp_path, data, max_bytes=10_000)


@pytest.mark.parametrize(
    "data, code",
    [
        (b"a,b\n1,2\n3,4,5,6\n7,8\n", "invalid_csv"),
        (b"a,b,c\n", "empty_csv"),
        ("na\xefve,b\n\xe9t\xe9,2\n".encode("latin-1"), "invalid_csv"),
        (b"a,b\n" + b"x,1\n" * 2000 + "\xe9t\xe9,2\n".encode("latin-1"), "invalid_csv"),
    ],
)
def test_bad_files_are_invalid_input(tmp_path, data, code):
    with pytest.raises(InvalidInput) as err:
        _ingest(tmp_path, data)
    assert err.value.code == code


def test_a_10000_column_header_longer_than_64_kib_is_read_whole(tmp_path):
    """Issue 16: a header past the 64 KiB sniff was cut (its last name read as a duplicate) and refused."""
    names = [f"column_{i}" for i in range(10_000)]
    header = ",".join(names).encode()
    assert len(header) > 64 * 1024
    data = (
        header
        + b"\n"
        + b"\n".join(",".join(str((r + c) % 7) for c in range(10_000)).encode() for r in range(3))
        + b"\n"
    )
    got = _ingest(tmp_path, data)
    assert [c["name"] for c in got.columns] == names and got.rows == 3
    back = pq.read_table(tmp_path / "data.parquet")
    assert back.column_names == names and back.column("column_9999").to_pylist() == [(r + 9999) % 7 for r in range(3)]


def test_more_columns_than_the_ceiling_is_a_clear_400(tmp_path):
    header = ",".join(f"c{i}" for i in range(ingest.MAX_COLUMNS + 1)).encode()
    with pytest.raises(InvalidInput) as err:
        _ingest(tmp_path, header + b"\n" + b"1," * ingest.MAX_COLUMNS + b"1\n")
    assert err.value.code == "too_many_columns" and err.value.details["limit"] == ingest.MAX_COLUMNS


def test_a_header_line_longer_than_its_limit_is_a_clear_400(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "MAX_HEADER_BYTES", 100_000)
    with pytest.raises(InvalidInput) as err:
        _ingest(tmp_path, b"a" * 300_000 + b"\n1\n")
    assert err.value.code == "invalid_csv" and "header line is longer" in err.value.message


@pytest.mark.parametrize("late", [False, True])
@pytest.mark.parametrize("cell", ["99999999999999999999999999999", "-9223372036854775809", "9223372036854775808"])
def test_an_integer_beyond_int64_makes_its_column_text_kept_exactly(tmp_path, late, cell):
    """Issue 16: ``99999999999999999999999999999``. pandas.read_csv reads such a column as ``object`` (Python
    ints, exact; ``uint64`` for values up to 2**64 - 1 when none is negative); we store it as text, exactly,
    never rounded to a float. A column with decimals stays float64, as in pandas."""
    n = 200_000 if late else 3
    values = [str(i) for i in range(n)]
    values[-2] = cell
    data = ("a,b,y\n" + "".join(f"{v},{i}.5,{i % 2}\n" for i, v in enumerate(values))).encode()
    got = {c["name"]: c for c in _ingest(tmp_path, data).columns}
    assert got["a"]["dtype"] == "str" and got["b"]["dtype"] == "float64" and got["y"]["dtype"] == "int64"
    back = pq.read_table(tmp_path / "data.parquet")
    assert back.schema.field("a").type == "string" and back.column("a").to_pylist()[-2] == cell
    decimals = _ingest(tmp_path, f"a\n1.5\n{cell}\n".encode()).columns[0]
    assert decimals["dtype"] == str(pd.read_csv(io.StringIO(f"a\n1.5\n{cell}\n"))["a"].dtype) == "float64"


@pytest.mark.parametrize("late, dtype", [("oops", "str"), ("2.5", "float64")])
def test_a_type_change_after_262k_rows_gives_one_schema(tmp_path, late, dtype):
    """Issue 16: a column numeric for its first 262k rows that then holds text (or a decimal) is stored, with
    one Parquet schema over every row group; the earlier rows are converted, not lost."""
    n = 300_000
    body = "".join(f"{i},{i % 3},{i % 2}\n" if i != 262_200 else f"{late},1,0\n" for i in range(n))
    got = _ingest(tmp_path, ("a,b,y\n" + body).encode())
    assert got.rows == n and got.columns[0]["dtype"] == dtype
    parquet = pq.ParquetFile(tmp_path / "data.parquet")
    assert parquet.metadata.num_row_groups > 4  # row groups written before the change hold the wider type too
    table = parquet.read()
    assert table.num_rows == n and str(table.schema.field("a").type) == ("string" if dtype == "str" else "double")
    column = table.column("a").to_pylist()
    assert column[262_200] == (late if dtype == "str" else 2.5)
    assert column[0] == ("0" if dtype == "str" else 0.0) and column[-1] == ("299999" if dtype == "str" else 299999.0)


def test_columns_changing_type_in_the_same_block_cost_one_more_pass_not_one_each(tmp_path, monkeypatch):
    """Five integer columns that all turn to text on one late row: every widening the block needs is found
    at once (int → text directly), so the spooled upload is parsed twice, not once per column and step."""
    passes = []
    real = ingest_stream._parse
    monkeypatch.setattr(ingest_stream, "_parse", lambda *a, **k: passes.append(1) or real(*a, **k))
    body = "".join(f"{i},{i},{i},{i},{i}\n" if i != 262_200 else "a,b,c,d,e\n" for i in range(300_000))
    got = _ingest(tmp_path, ("v,w,x,y,z\n" + body).encode())
    assert [c["dtype"] for c in got.columns] == ["str"] * 5 and got.rows == 300_000
    assert len(passes) == 2
    assert pq.read_table(tmp_path / "data.parquet").column("z").to_pylist()[262_199:262_202] == [
        "262199",
        "e",
        "262201",
    ]


class _OnlyRead(io.RawIOBase):
    """A body stream with ``read`` alone: io.RawIOBase gives it a ``readinto`` that raises."""

    def __init__(self, data: bytes, piece: int):
        self._data, self._piece = data, piece

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self._piece if n is None or n < 0 else min(n, self._piece)
        out, self._data = self._data[:n], self._data[n:]
        return out


@pytest.mark.parametrize("stream", ["only_read", "bytes_io"])
def test_bodies_with_and_without_a_working_readinto_ingest_the_same(tmp_path, monkeypatch, stream):
    monkeypatch.setattr(ingest_stream, "BLOCK_BYTES", 1000)
    frame = pd.DataFrame({"a": np.arange(3000), "b": np.arange(3000) / 7})
    data = frame.to_csv(index=False).encode()
    body = _OnlyRead(data, 777) if stream == "only_read" else io.BytesIO(data)
    got = ingest_stream.ingest_csv(
        body, raw_path=tmp_path / "raw.csv", parquet_path=tmp_path / "data.parquet", max_bytes=None
    )
    assert got.rows == 3000 and got.sha256 == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "raw.csv").read_bytes() == data
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "data.parquet"), frame, check_dtype=False)
