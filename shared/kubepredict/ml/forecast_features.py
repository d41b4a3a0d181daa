"""Time series input for forecasting: validate a long-format frame into a panel on a regular time grid,
and turn windows of it into the features a scikit-learn regressor learns from.

Rules (each refusal is an ``InvalidInput``, a 400, naming the column and up to ``MAX_NAMED_ROWS`` data
rows, 0-based as in prediction results):

- the time column must parse as timestamps; time zones are converted to UTC;
- the target must be numeric (an empty cell is a missing value, see gaps);
- a timestamp may appear once per series (``series_columns`` tell the series apart);
- the rows may come in any order: they are sorted by series and time;
- the frequency is the one given (a pandas offset alias such as ``D``, ``h``, ``W-SUN``, ``MS``) or the
  one inferred from the timestamps; every timestamp must fall on that frequency's grid (irregular
  timestamps are refused);
- gaps (steps of the grid inside a series' span with no row, or with an empty target) are filled with
  the last observed value (forward fill: never a later value, so backtests stay leak-free); a series
  with more than ``MAX_GAP_SHARE`` of its steps missing is refused;
- exogenous features must be numeric; their gaps are filled forward, then backward.

Features of one window (the ``W`` values before the predicted step), all relative to the window's
level ``r`` (mean of its last ``season`` values) and divided by the series' scale ``s`` (mean absolute
one-step change of its training data), so one regressor serves series of any level and size:
lags 1..L, the mean of the last L values, the spread of the last season, calendar terms (sine and
cosine of the hour, weekday, day of year or month, by frequency) of the predicted step, and the
exogenous values at the predicted step. The regressor learns ``(y - r) / s``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from kubepredict.errors import InvalidInput
from kubepredict.ml.jsonsafe import json_safe

MAX_HORIZON = 1000
MAX_NAMED_ROWS = 20
MAX_GAP_SHARE = 0.2
MAX_CELLS = 20_000_000  # series × grid steps


def _rows(mask) -> list[int]:
    return [int(i) for i in np.flatnonzero(np.asarray(mask))[:MAX_NAMED_ROWS]]


def _refuse(message: str, code: str, column: str | None, rows: list[int] | None = None, **details) -> InvalidInput:
    info: dict = {"column": column} if column is not None else {}
    if rows is not None:
        info["rows"] = rows
        message += f" (rows {', '.join(map(str, rows))}{' …' if len(rows) == MAX_NAMED_ROWS else ''})"
    info.update(details)
    return InvalidInput(message, code=code, details=info)


def check_horizon(horizon) -> int:
    if not isinstance(horizon, int) or isinstance(horizon, bool) or not 1 <= horizon <= MAX_HORIZON:
        raise InvalidInput(
            f"horizon must be an integer from 1 to {MAX_HORIZON}",
            code="invalid_horizon",
            details={"field": "horizon", "value": horizon, "maximum": MAX_HORIZON},
        )
    return horizon


def parse_times(values: pd.Series, column: str) -> pd.DatetimeIndex:
    """Timestamps (UTC, naive) of a column; refuses cells that do not parse."""
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        raise _refuse(f"column {column!r} holds numbers, not timestamps", "invalid_timestamps", column, [0])
    try:
        parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    except (ValueError, TypeError, OverflowError) as exc:
        raise _refuse(f"column {column!r} does not hold timestamps: {exc}", "invalid_timestamps", column) from exc
    bad = parsed.isna().to_numpy()
    if bad.any():
        raise _refuse(f"column {column!r} has values that are not timestamps", "invalid_timestamps", column, _rows(bad))
    return pd.DatetimeIndex(parsed).tz_convert(None).as_unit("ns")


def numeric(values: pd.Series, column: str, what: str) -> np.ndarray:
    """Float values of a column (empty cells NaN); refuses text that is not a number."""
    if pd.api.types.is_bool_dtype(values):
        raise _refuse(f"{what} {column!r} must be numeric, not true/false", "non_numeric", column, [0])
    out = pd.to_numeric(values, errors="coerce")
    bad = out.isna().to_numpy() & values.notna().to_numpy()
    if bad.any():
        raise _refuse(f"{what} {column!r} must be numeric", "non_numeric", column, _rows(bad))
    return np.asarray(out, dtype=float)


def check_frequency(frequency: str):
    try:
        offset = to_offset(frequency)
        pd.date_range("2000-01-01", periods=2, freq=offset)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            f"frequency {frequency!r} is not a pandas offset alias (e.g. D, h, W-SUN, MS)",
            code="invalid_frequency",
            details={"field": "frequency", "value": frequency},
        ) from exc
    return offset


def infer_frequency(times: pd.DatetimeIndex, codes: np.ndarray, column: str) -> str:
    """The frequency pandas infers from the longest series, else the most common step between rows."""
    order = np.lexsort((times.asi8, codes))
    t, c = times.asi8[order], codes[order]
    longest = np.bincount(c).argmax()
    own = pd.DatetimeIndex(t[c == longest])
    if len(own) >= 3:
        with pd.option_context("future.infer_freq_returns_offset", True):
            guessed = pd.infer_freq(own)
        if guessed is not None:
            return str(to_offset(guessed).freqstr)
    steps = np.diff(t)[np.diff(c) == 0]
    steps = steps[steps > 0]
    if steps.size == 0:
        raise InvalidInput(
            f"cannot infer a frequency from {column!r}: no series has two timestamps; send 'frequency'",
            code="invalid_frequency",
            details={"column": column},
        )
    values, counts = np.unique(steps, return_counts=True)
    return str(to_offset(pd.Timedelta(int(values[counts.argmax()]), unit="ns")).freqstr)


def season_length(grid: pd.DatetimeIndex) -> int:
    """The seasonal period in steps: a day of sub-daily steps, a week of days, a year of weeks/months/quarters."""
    if len(grid) < 2:
        return 1
    step = grid[1] - grid[0]
    day = pd.Timedelta(days=1)
    if step < day:
        return int(day // step) if day % step == pd.Timedelta(0) else 1
    if step == day:
        return 7
    if step == pd.Timedelta(days=7):
        return 52
    if pd.Timedelta(days=28) <= step <= pd.Timedelta(days=31):
        return 12
    if pd.Timedelta(days=89) <= step <= pd.Timedelta(days=92):
        return 4
    return 1


def calendar(times: pd.DatetimeIndex, step: pd.Timedelta) -> np.ndarray:
    """Sine/cosine calendar terms of ``times`` for a grid with steps of ``step``."""
    phases = []
    if step < pd.Timedelta(days=1):
        phases.append((times.hour + times.minute / 60) / 24)
    if step < pd.Timedelta(days=7):
        phases.append(times.day_of_week / 7)
    if step < pd.Timedelta(days=28):
        phases.append((times.day_of_year - 1) / 365.25)
    elif step < pd.Timedelta(days=365):
        phases.append((times.month - 1) / 12)
    cols = []
    for phase in phases:
        p = 2 * np.pi * np.asarray(phase, dtype=float)
        cols += [np.sin(p), np.cos(p), np.sin(2 * p), np.cos(2 * p)]
    return np.column_stack(cols) if cols else np.empty((len(times), 0))


@dataclass
class Panel:
    """Series on one regular grid: ``y`` is series × steps (NaN outside a series' span)."""

    keys: list[list]  # each series' key values, in ``series_columns`` order
    grid: pd.DatetimeIndex
    frequency: str
    y: np.ndarray
    exog: np.ndarray | None  # series × steps × features
    first: np.ndarray  # first observed step of each series
    last: np.ndarray  # last observed step of each series
    filled: int  # gap steps filled forward
    exog_raw: np.ndarray | None = None  # ``exog`` before filling (predict checks future values are given)

    @property
    def step(self) -> pd.Timedelta:
        return self.grid[1] - self.grid[0] if len(self.grid) > 1 else pd.Timedelta(days=1)


def series_codes(frame: pd.DataFrame, series_columns: list[str]) -> tuple[np.ndarray, list[list]]:
    """A code per row (0..n-1, in sorted key order) and each code's key values."""
    if not series_columns:
        return np.zeros(len(frame), dtype=np.int64), [[]]
    grouped = frame.groupby(series_columns, sort=True, dropna=False)
    codes = grouped.ngroup().to_numpy(dtype=np.int64)
    keys = [list(k) if isinstance(k, tuple) else [k] for k in grouped.size().index.tolist()]
    return codes, [[json_safe(v) for v in k] for k in keys]


def build_panel(
    frame: pd.DataFrame,
    *,
    time_column: str,
    target: str | None,
    series_columns: list[str],
    features: list[str],
    frequency: str | None,
    need_target: bool = True,
) -> Panel:
    """Validate ``frame`` (long format: one row per series and timestamp) into a Panel (rules: module doc)."""
    missing = [
        c
        for c in [time_column, *series_columns, *features, *([target] if need_target and target else [])]
        if c not in frame
    ]
    if missing:
        raise InvalidInput(
            f"unknown columns: {', '.join(missing)}", code="unknown_columns", details={"missing": missing}
        )
    if len(frame) == 0:
        raise InvalidInput("no rows to forecast from", code="too_few_rows", details={"rows": 0})
    times = parse_times(frame[time_column], time_column)
    y = numeric(frame[target], target, "the target") if need_target and target else np.full(len(frame), np.nan)
    exog = [numeric(frame[c], c, "the feature") for c in features]
    codes, keys = series_codes(frame, series_columns)
    if frequency is None:
        frequency = infer_frequency(times, codes, time_column)
    offset = check_frequency(frequency)
    start, end = times.min(), times.max()
    # the grid's size from one step (the second: the first may be shortened by an anchor), before building it
    first_step = start + offset
    step_ns = max(int(((first_step + offset) - first_step).value), 1)
    steps = (int(end.value) - int(start.value)) // step_ns + 2  # Python ints: spans beyond 292 years too
    if len(keys) * steps > MAX_CELLS:
        raise InvalidInput(
            f"{len(keys)} series × {steps} steps of {frequency!r} is more than {MAX_CELLS} cells",
            code="too_many_steps",
            details={"series": len(keys), "steps": steps, "maximum_cells": MAX_CELLS, "column": time_column},
        )
    grid = pd.date_range(start, end, freq=offset)
    if len(grid) == 0 or grid[0] != start:
        grid = pd.date_range(start, end + offset, freq=offset)
    pos = grid.get_indexer(times)
    off = pos < 0
    if off.any():
        raise _refuse(
            f"timestamps in {time_column!r} do not fall on the {frequency!r} grid starting {start}",
            "irregular_timestamps",
            time_column,
            _rows(off),
            frequency=frequency,
        )
    flat = codes * len(grid) + pos
    order = np.argsort(flat, kind="stable")
    dup = np.zeros(len(frame), dtype=bool)
    same = np.flatnonzero(np.diff(flat[order]) == 0)
    dup[order[same]] = dup[order[same + 1]] = True
    if dup.any():
        raise _refuse(
            f"duplicate timestamps in {time_column!r} within a series", "duplicate_timestamps", time_column, _rows(dup)
        )
    n, steps = len(keys), len(grid)
    Y: np.ndarray = np.full(n * steps, np.nan)
    Y[flat] = y
    Y = Y.reshape(n, steps)
    present: np.ndarray = np.zeros(n * steps, dtype=bool)
    present[flat] = True
    present = present.reshape(n, steps)
    first = np.argmax(present, axis=1)
    last = steps - 1 - np.argmax(present[:, ::-1], axis=1)
    X: np.ndarray | None = None
    if features:
        X = np.full((n * steps, len(features)), np.nan)
        X[flat] = np.column_stack(exog)
        X = X.reshape(n, steps, len(features))
    filled = 0
    if need_target:
        observed = np.isfinite(Y)
        first = np.where(observed.any(axis=1), np.argmax(observed, axis=1), first)
        last = np.where(observed.any(axis=1), steps - 1 - np.argmax(observed[:, ::-1], axis=1), last)
        inside = (np.arange(steps) >= first[:, None]) & (np.arange(steps) <= last[:, None])
        gaps = inside & ~observed
        share = gaps.sum(axis=1) / np.maximum(inside.sum(axis=1), 1)
        bad = np.flatnonzero((share > MAX_GAP_SHARE) | ~observed.any(axis=1))
        if bad.size:
            rows = [int(i) for i in np.flatnonzero(np.isin(codes, bad))[:MAX_NAMED_ROWS]]
            raise _refuse(
                f"series {keys[bad[0]]} of {target!r} misses more than {MAX_GAP_SHARE:.0%} of its {frequency!r} steps",
                "too_many_gaps",
                target,
                rows,
                series=keys[bad[0]],
            )
        filled = int(gaps.sum())
        if filled:
            Y = pd.DataFrame(Y).ffill(axis=1).to_numpy(copy=True)
            Y[~inside] = np.nan
    raw = None if X is None else X.copy()
    if X is not None:
        for j in range(X.shape[2]):
            X[:, :, j] = pd.DataFrame(X[:, :, j]).ffill(axis=1).bfill(axis=1).to_numpy(copy=True)
    return Panel(keys, grid, str(frequency), Y, X, first, last, filled, raw)


def window_features(
    windows: np.ndarray,
    scales: np.ndarray,
    *,
    lags: int,
    season: int,
    cal: np.ndarray,
    exog: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Features of each window (rows × W raw values, oldest first) and its level ``r`` (module doc)."""
    s = scales[:, None]
    r = windows[:, -season:].mean(axis=1)
    recent = windows[:, -lags:][:, ::-1]  # lag 1 first
    cols = [(recent - r[:, None]) / s, ((recent.mean(axis=1) - r) / scales)[:, None]]
    if season > 1:
        cols.append((windows[:, -season:].std(axis=1) / scales)[:, None])
    cols.append(cal)
    if exog is not None and exog.shape[1]:
        cols.append(exog)
    return np.column_stack(cols), r


def series_scales(Y: np.ndarray) -> np.ndarray:
    """Each series' mean absolute one-step change (1 where it is 0 or unknown)."""
    with np.errstate(all="ignore"):
        d = np.abs(np.diff(Y, axis=1))
        counts = np.isfinite(d).sum(axis=1)
        s = np.where(counts > 0, np.nansum(d, axis=1) / np.maximum(counts, 1), np.nan)
    return np.where(np.isfinite(s) & (s > 0), s, 1.0)
