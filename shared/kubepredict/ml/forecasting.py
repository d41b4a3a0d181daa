"""Forecasting: a scikit-learn regressor over windows of past values (or a naive baseline), trained on
many series at once, forecasting ``horizon`` steps recursively, judged by a rolling-origin backtest.

Why our own windowing rather than skforecast: the stored artefact must load through our skops
allow-list (``ml/artifact_types.py``), which admits scikit-learn estimators, numpy arrays and JSON
values, not a forecasting library's classes; and skforecast would add its own dependency tree
(optuna, joblib, tqdm, numba in recent versions) for about 150 lines of numpy: sliding windows,
a recursive loop and a backtest. Here the artefact is a plain dict: ``config`` (JSON text: lags,
season, frequency, scales, interval quantiles, series keys), ``regressor`` (a scikit-learn estimator;
absent for the baselines) and ``history`` (the last values of every series, a float array). The
wrapper is rebuilt at load (``Forecaster.from_state``).

Backtest (rolling origin, no leakage): ``folds`` cut-offs ``T-1-k*horizon`` (k = folds..1) on the
shared time grid; for each, the regressor is fitted on the values up to the cut-off only (scales
too), every series with a full window at the cut-off is forecast ``horizon`` steps, and compared with
what came next. MAE, RMSE, sMAPE (%, 0..200) and MASE — here the model's MAE over the seasonal naive
forecast's MAE on the same backtest points (below 1: it beats seasonal naive) — per series and overall.

Intervals: quantiles of the backtest residuals (divided by each series' scale and by the mean error
of their step, so they widen with the horizon); their coverage is measured leave-one-fold-out (each
fold's points against quantiles from the other folds), in sample when there is one fold only.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from kubepredict.errors import InvalidInput
from kubepredict.ml import forecast_features as ff
from kubepredict.ml.algorithms import AUTO, build_estimator, check_ceilings, import_estimator_class, resolve
from kubepredict.ml.jsonsafe import json_safe

logger = logging.getLogger(__name__)

FORECASTING = "forecasting"
NAIVE, SEASONAL_NAIVE = "naive", "seasonal_naive"
BASELINES = (NAIVE, SEASONAL_NAIVE)
#: tried by ``auto``, in order of preference on ties
AUTO_CANDIDATES = (SEASONAL_NAIVE, NAIVE, "ridge", "hist_gradient_boosting")
DEFAULT_FOLDS = 3
MAX_FOLDS = 20
DEFAULT_LEVEL = 0.8
MAX_LAGS = 1000
#: floats in the training matrix (windows × (window + 1)) at most; beyond, each series' oldest windows
#: are left out (the most recent ones are kept); about 160 MB of windows, as much again of features
MAX_TRAIN_VALUES = 20_000_000
HISTORY_KEEP = 1000  # steps of each series kept in the artefact (online forecasts, the chart)
CHART_SERIES = 20  # series whose history and last backtest fold the model's metrics keep for the chart
FORMAT = "kubepredict-forecaster-1"


def list_algorithms() -> list[dict]:
    """The forecasting entries of GET /train/algorithms: auto, the baselines, and the regression catalogue."""
    from kubepredict.ml.algorithms import ALGORITHMS

    out: list[dict] = [
        {
            "name": AUTO,
            "task": FORECASTING,
            "estimator": None,
            "default_params": {},
            "candidates": list(AUTO_CANDIDATES),
        }
    ]
    out += [{"name": b, "task": FORECASTING, "estimator": None, "default_params": {}} for b in BASELINES]
    out += [
        {"name": s.name, "task": FORECASTING, "estimator": s.estimator, "default_params": dict(s.default_params)}
        for s in ALGORITHMS
        if s.task == "regression"
    ]
    return out


#: names of the forecast output's own columns, which series columns may not take
OUTPUT_COLUMNS = ("row", "timestamp", "prediction", "lower", "upper", "probabilities")


def check_series_columns(series_columns: list[str]) -> None:
    """Refuse series columns named like the forecast's own output columns (InvalidInput)."""
    clash = [c for c in series_columns if c in OUTPUT_COLUMNS]
    if clash:
        raise InvalidInput(
            f"series column {clash[0]!r} has the name of a forecast output column; rename it",
            code="invalid_field",
            details={"field": "series_columns", "column": clash[0], "reserved": list(OUTPUT_COLUMNS)},
        )


def check_algorithm(algorithm: str, params: dict | None, random_state: int | None = 0) -> None:
    """Refuse an unknown algorithm or params before a job is queued (InvalidInput)."""
    if algorithm == AUTO:
        if params is not None and not isinstance(params, dict):
            raise InvalidInput("params must be a JSON object", code="invalid_params")
        check_ceilings(params or {})
        return
    if algorithm in BASELINES:
        if params:
            raise InvalidInput(f"{algorithm} takes no params", code="invalid_params")
        return
    build_estimator(resolve(algorithm, "regression"), params, random_state)


@dataclass
class Forecaster:
    """A fitted forecaster: settings, the regressor (None for a baseline), scales and interval quantiles."""

    algorithm: str
    regressor: Any
    lags: int
    season: int
    step: pd.Timedelta
    features: list[str] = field(default_factory=list)

    @property
    def window(self) -> int:
        return max(self.lags, self.season)

    def fit(self, Y: np.ndarray, X: np.ndarray | None, cal: np.ndarray, scales: np.ndarray) -> Forecaster:
        if self.regressor is None:
            return self
        feats, target = training_rows(self, Y, X, cal, scales)
        if len(target) == 0:
            raise InvalidInput("no complete window to learn from; the series are too short", code="series_too_short")
        self.regressor.fit(feats, target)
        return self

    def forecast(self, windows: np.ndarray, scales: np.ndarray, cal: np.ndarray, exog: np.ndarray | None) -> np.ndarray:
        """``h`` steps of each window (rows × W), recursively; ``cal``: rows × h × terms; ``exog``: rows × h × p."""
        n, W = windows.shape
        h = cal.shape[1]
        buf = np.concatenate([windows, np.full((n, h), np.nan)], axis=1)
        for k in range(h):
            w = buf[:, k : k + W]
            if self.algorithm == NAIVE:
                p = w[:, -1]
            elif self.algorithm == SEASONAL_NAIVE:
                p = w[:, W - self.season]
            elif n == 0:
                p = np.empty(0)
            else:
                feats, r = ff.window_features(
                    w,
                    scales,
                    lags=self.lags,
                    season=self.season,
                    cal=cal[:, k],
                    exog=None if exog is None else exog[:, k],
                )
                p = r + scales * self.regressor.predict(feats)
            buf[:, W + k] = p
        return buf[:, W:]


def training_rows(fc: Forecaster, Y, X, cal, scales) -> tuple[np.ndarray, np.ndarray]:
    """Every complete window of ``Y`` (values up to the cut-off only) with the step after it."""
    W = fc.window
    n, T = Y.shape
    if T <= W:
        return np.empty((0, 0)), np.empty(0)
    start = max(W, T - max(1, MAX_TRAIN_VALUES // (n * (W + 1))))  # first target position kept
    flat = sliding_window_view(Y[:, start - W :], W + 1, axis=1).reshape(-1, W + 1)
    idx = np.flatnonzero(np.isfinite(flat).all(axis=1))
    series, pos = idx // (T - start), idx % (T - start) + start
    feats, r = ff.window_features(
        flat[idx, :W],
        scales[series],
        lags=fc.lags,
        season=fc.season,
        cal=cal[pos],
        exog=None if X is None else X[series, pos],
    )
    return feats, (flat[idx, W] - r) / scales[series]


def _new(algorithm: str, params: dict | None, random_state, lags, season, step, features) -> Forecaster:
    if algorithm in BASELINES:
        return Forecaster(algorithm, None, lags, season, step, features)
    spec = resolve(algorithm, "regression")
    own = params or {}
    if params:
        names = set(import_estimator_class(spec.estimator)._get_param_names())
        own = {k: v for k, v in params.items() if k in names}
    return Forecaster(algorithm, build_estimator(spec, own, random_state), lags, season, step, features)


# ---- scores ---------------------------------------------------------------------------------------
def scores(y: np.ndarray, yhat: np.ndarray, ysn: np.ndarray) -> dict:
    err = y - yhat
    mae = float(np.mean(np.abs(err))) if len(y) else None
    sn = float(np.mean(np.abs(y - ysn))) if len(y) else None
    denom = np.abs(y) + np.abs(yhat)
    with np.errstate(all="ignore"):
        sm = np.where(denom > 0, 2 * np.abs(err) / denom, 0.0)
    return {
        "mae": _r(mae),
        "rmse": _r(float(np.sqrt(np.mean(err**2)))) if len(y) else None,
        "smape": _r(float(np.mean(sm)) * 100) if len(y) else None,
        "mase": _r(mae / sn) if mae is not None and sn else None,
        "points": len(y),
    }


def _r(v: float | None) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), 6)


# ---- backtest -------------------------------------------------------------------------------------
@dataclass
class Backtest:
    """Backtest points of every candidate: fold, series, step (1..h), position, actual, scale."""

    fold: np.ndarray
    series: np.ndarray
    step: np.ndarray
    pos: np.ndarray
    y: np.ndarray
    scale: np.ndarray
    preds: dict[str, np.ndarray]


def cutoffs(T: int, window: int, horizon: int, folds: int) -> list[int]:
    return [c for k in range(folds, 0, -1) if (c := T - 1 - k * horizon) >= window + 1]


def backtest(
    factories: dict[str, Callable[[], Forecaster]],
    panel: ff.Panel,
    cal: np.ndarray,
    *,
    horizon: int,
    folds: int,
    window: int,
    progress: Callable[[float], None] = lambda p: None,
) -> Backtest:
    Y, X = panel.y, panel.exog
    n, T = Y.shape
    cuts = cutoffs(T, window, horizon, folds)
    parts: dict[str, list] = {k: [] for k in ("fold", "series", "step", "pos", "y", "scale")}
    preds: dict[str, list] = {name: [] for name in factories}
    total = max(len(cuts) * len(factories), 1)
    done = 0
    for f, cut in enumerate(cuts):
        Ytr = Y[:, : cut + 1]
        scales = ff.series_scales(Ytr)
        ok = np.flatnonzero(np.isfinite(Ytr[:, -window:]).all(axis=1))
        positions = np.arange(cut + 1, cut + 1 + horizon)
        actual = Y[ok][:, positions]
        keep = np.isfinite(actual)
        si, st = np.nonzero(keep)
        parts["fold"].append(np.full(len(si), f))
        parts["series"].append(ok[si])
        parts["step"].append(st + 1)
        parts["pos"].append(positions[st])
        parts["y"].append(actual[keep])
        parts["scale"].append(scales[ok][si])
        fut_cal = np.broadcast_to(cal[positions], (len(ok), horizon, cal.shape[1]))
        fut_x = None if X is None else X[ok][:, positions]
        for name, make in factories.items():
            fc = make().fit(Ytr, None if X is None else X[:, : cut + 1], cal[: cut + 1], scales)
            out = fc.forecast(Ytr[ok, -window:], scales[ok], fut_cal, fut_x)
            preds[name].append(out[keep])
            done += 1
            progress(done / total)
    cat = {k: np.concatenate(v) if v else np.empty(0) for k, v in parts.items()}
    return Backtest(
        cat["fold"].astype(int),
        cat["series"].astype(int),
        cat["step"].astype(int),
        cat["pos"].astype(int),
        cat["y"],
        cat["scale"],
        {k: np.concatenate(v) if v else np.empty(0) for k, v in preds.items()},
    )


def interval_quantiles(res: np.ndarray, steps: np.ndarray, level: float, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper quantiles (per step, in units of the series' scale) of scaled residuals."""
    if len(res) == 0:
        return np.zeros(horizon), np.zeros(horizon)
    spread = np.array(
        [np.mean(np.abs(res[steps == k])) if (steps == k).any() else np.nan for k in range(1, horizon + 1)]
    )
    spread = pd.Series(spread).ffill().bfill().to_numpy()
    spread = np.maximum.accumulate(np.where(spread > 0, spread, 1e-12))
    u = res / spread[steps - 1]
    lo, hi = np.quantile(u, [(1 - level) / 2, (1 + level) / 2])
    return lo * spread, hi * spread


def coverage(bt: Backtest, res: np.ndarray, level: float, horizon: int) -> tuple[float | None, bool]:
    """Share of backtest points inside their interval: leave-one-fold-out, in sample with one fold."""
    folds = np.unique(bt.fold)
    if len(res) == 0:
        return None, True
    if len(folds) < 2:
        lo, hi = interval_quantiles(res, bt.step, level, horizon)
        inside = (res >= lo[bt.step - 1]) & (res <= hi[bt.step - 1])
        return _r(float(inside.mean())), True
    inside = np.zeros(len(res), dtype=bool)
    for f in folds:
        mine = bt.fold == f
        lo, hi = interval_quantiles(res[~mine], bt.step[~mine], level, horizon)
        s = bt.step[mine] - 1
        inside[mine] = (res[mine] >= lo[s]) & (res[mine] <= hi[s])
    return _r(float(inside.mean())), False


# ---- training -------------------------------------------------------------------------------------
@dataclass
class ForecastResult:
    state: dict
    algorithm: str
    estimator: str | None
    params: dict
    metrics: dict


def _key_text(key: list) -> str:
    return "/".join(str(v) for v in key) if key else "all"


def plan(
    panel: ff.Panel, target: str, horizon: int, season_length: int | None, lags: int | None, folds: int
) -> tuple[int, int, int, int]:
    """Season, lags, window and grid steps for ``panel``; refuses series too short for them (InvalidInput)."""
    season = int(season_length) if season_length else ff.season_length(panel.grid)
    lags = int(lags) if lags else max(2 * season, 10)
    if not 1 <= lags <= MAX_LAGS or season < 1:
        raise InvalidInput(f"lags must be from 1 to {MAX_LAGS}", code="invalid_lags", details={"field": "lags"})
    window = max(lags, season)
    lengths = panel.last - panel.first + 1
    short = np.flatnonzero(lengths < window + horizon)
    if short.size:
        i = int(short[0])
        raise InvalidInput(
            f"series {panel.keys[i]} has {int(lengths[i])} steps; at least {window + horizon} are needed "
            f"(a window of {window} past values, then the horizon of {horizon})",
            code="series_too_short",
            details={"column": target, "series": panel.keys[i], "steps": int(lengths[i]), "needed": window + horizon},
        )
    T = len(panel.grid)
    cuts = cutoffs(T, window, horizon, folds)
    if not cuts:
        raise InvalidInput(
            f"the series span {T} steps; a backtest needs at least {window + 2 + horizon}",
            code="series_too_short",
            details={"column": target, "steps": T, "needed": window + 2 + horizon},
        )
    return season, lags, window, T


def train_forecast(
    frame: pd.DataFrame,
    *,
    time_column: str,
    target: str,
    series_columns: list[str] | None = None,
    horizon: int,
    frequency: str | None = None,
    features: list[str] | None = None,
    algorithm: str = AUTO,
    params: dict | None = None,
    season_length: int | None = None,
    lags: int | None = None,
    level: float = DEFAULT_LEVEL,
    folds: int = DEFAULT_FOLDS,
    random_state: int | None = 0,
    progress: Callable[[str, float], None] = lambda stage, p: None,
) -> ForecastResult:
    """Validate, backtest (every ``auto`` candidate, or the one algorithm), fit on all data, describe."""
    progress("preparing", 0.05)
    series_columns, features = list(series_columns or []), list(features or [])
    ff.check_horizon(horizon)
    check_series_columns(series_columns)
    check_algorithm(algorithm, params, random_state)
    panel = ff.build_panel(
        frame,
        time_column=time_column,
        target=target,
        series_columns=series_columns,
        features=features,
        frequency=frequency,
    )
    season, lags, window, T = plan(panel, target, horizon, season_length, lags, folds)
    step = panel.step
    ext = pd.date_range(panel.grid[0], periods=T + horizon, freq=panel.frequency)
    cal = ff.calendar(ext, step)
    names = list(AUTO_CANDIDATES) if algorithm == AUTO else [algorithm]
    if algorithm == AUTO and SEASONAL_NAIVE not in names:
        names.append(SEASONAL_NAIVE)
    if SEASONAL_NAIVE not in names:
        names.append(SEASONAL_NAIVE)  # the MASE reference

    def factory(name):
        return lambda: _new(name, params, random_state, lags, season, step, features)

    started = time.perf_counter()
    bt = backtest(
        {n: factory(n) for n in names},
        panel,
        cal,
        horizon=horizon,
        folds=folds,
        window=window,
        progress=lambda p: progress("backtesting", round(0.1 + 0.7 * p, 4)),
    )
    backtest_seconds = time.perf_counter() - started
    sn = bt.preds[SEASONAL_NAIVE]
    candidates = {n: scores(bt.y, bt.preds[n], sn) for n in names}
    if algorithm == AUTO:
        ranked = [(c["mae"], i, n) for i, n in enumerate(AUTO_CANDIDATES) if (c := candidates[n])["mae"] is not None]
        chosen = min(ranked)[2] if ranked else SEASONAL_NAIVE
    else:
        chosen = algorithm
    progress("fitting", 0.85)
    scales = ff.series_scales(panel.y)
    fc = _new(chosen, params, random_state, lags, season, step, features)
    started = time.perf_counter()
    fc.fit(panel.y, panel.exog, cal[:T], scales)
    fit_seconds = time.perf_counter() - started
    yhat = bt.preds[chosen]
    res = (bt.y - yhat) / bt.scale
    q_lo, q_hi = interval_quantiles(res, bt.step, level, horizon)
    cov, in_sample = coverage(bt, res, level, horizon)
    per_series = []
    for i in np.unique(bt.series):
        m = bt.series == i
        per_series.append({"series": panel.keys[i], **scores(bt.y[m], yhat[m], sn[m])})
    config = {
        "format": FORMAT,
        "algorithm": chosen,
        "time_column": time_column,
        "target": target,
        "series_columns": series_columns,
        "features": features,
        "frequency": panel.frequency,
        "season_length": season,
        "lags": lags,
        "horizon": horizon,
        "interval_level": level,
        "q_lo": [float(v) for v in q_lo],
        "q_hi": [float(v) for v in q_hi],
        "grid_start": panel.grid[0].isoformat(),
        "steps": T,
        "keys": panel.keys,
        "last": [int(v) for v in panel.last],
        "scales": [float(v) for v in scales],
    }
    keep = min(T, max(window, HISTORY_KEEP))
    history = _tails(panel.y, panel.last, keep)
    state: dict = {"format": FORMAT, "config": json.dumps(config), "history": history}
    if fc.regressor is not None:
        state["regressor"] = fc.regressor
    estimator = None if chosen in BASELINES else resolve(chosen, "regression").estimator
    est_params = json_safe(fc.regressor.get_params(deep=False)) if fc.regressor is not None else {}
    metrics = {
        "forecast": {k: config[k] for k in ("time_column", "target", "series_columns", "features", "frequency")}
        | {
            "season_length": season,
            "lags": lags,
            "horizon": horizon,
            "interval_level": level,
            "series": len(panel.keys),
            "steps": T,
            "filled_gaps": panel.filled,
            "first": panel.grid[0].isoformat(),
            "last": panel.grid[-1].isoformat(),
        },
        "backtest": {
            "folds": len(cutoffs(T, window, horizon, folds)),
            "horizon": horizon,
            "overall": candidates[chosen],
            "seasonal_naive": candidates[SEASONAL_NAIVE],
            "per_series": per_series[:1000],
            "interval": {
                "level": level,
                "coverage": cov,
                "method": "backtest residual quantiles, " + ("in sample" if in_sample else "leave-one-fold-out"),
            },
            "seconds": round(backtest_seconds, 4),
        },
        "chart": _chart(panel, bt, yhat, horizon, season),
        "train_rows": int(np.isfinite(panel.y).sum()),
        "fit_seconds": round(fit_seconds, 4),
    }
    if algorithm == AUTO:
        metrics["auto"] = {
            "scoring": "mae",
            "candidates": {n: candidates[n] for n in AUTO_CANDIDATES},
            "chosen": chosen,
        }
    progress("done", 1.0)
    logger.info("forecaster %s trained on %d series × %d steps", chosen, len(panel.keys), T)
    return ForecastResult(state, chosen, estimator, est_params, metrics)


def _tails(Y: np.ndarray, last: np.ndarray, keep: int) -> np.ndarray:
    n, T = Y.shape
    idx = last[:, None] - np.arange(keep - 1, -1, -1)[None, :]
    out = np.where(idx >= 0, Y[np.arange(n)[:, None], np.clip(idx, 0, T - 1)], np.nan)
    return np.ascontiguousarray(out, dtype=float)


def _times(values) -> list[str]:
    idx = pd.DatetimeIndex(values)
    fmt = "%Y-%m-%d" if (idx == idx.normalize()).all() else "%Y-%m-%dT%H:%M:%S"
    return list(idx.strftime(fmt))


def _chart(panel: ff.Panel, bt: Backtest, yhat: np.ndarray, horizon: int, season: int) -> dict:
    """History tails and the last backtest fold of the first CHART_SERIES series, for the model card."""
    tail = min(len(panel.grid), max(4 * horizon, 3 * season, 60), 500)
    last_fold = bt.fold == (bt.fold.max() if len(bt.fold) else 0)
    out = []
    for i in range(min(len(panel.keys), CHART_SERIES)):
        lo = max(int(panel.first[i]), int(panel.last[i]) - tail + 1)
        span = slice(lo, int(panel.last[i]) + 1)
        m = last_fold & (bt.series == i)
        out.append(
            {
                "series": panel.keys[i],
                "history": {"timestamps": _times(panel.grid[span]), "values": [_r(v) for v in panel.y[i, span]]},
                "backtest": {"timestamps": _times(panel.grid[bt.pos[m]]), "values": [_r(v) for v in yhat[m]]},
            }
        )
    return {"series": out, "total_series": len(panel.keys)}


# ---- prediction -----------------------------------------------------------------------------------
@dataclass
class Loaded:
    """A forecaster rebuilt from its artefact (``from_state``)."""

    config: dict
    forecaster: Forecaster
    history: np.ndarray

    @classmethod
    def from_state(cls, state) -> Loaded:
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise InvalidInput("this model is not a forecaster", code="not_a_forecaster")
        cfg = json.loads(state["config"])
        grid = pd.date_range(cfg["grid_start"], periods=2, freq=cfg["frequency"])
        fc = Forecaster(
            cfg["algorithm"],
            state.get("regressor"),
            cfg["lags"],
            cfg["season_length"],
            grid[1] - grid[0],
            cfg["features"],
        )
        return cls(cfg, fc, np.asarray(state["history"], dtype=float))


def is_forecaster(obj) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


@dataclass
class Inputs:
    """What a forecast needs, validated: each series' window, scale, calendar and exogenous future."""

    keys: list[list]
    windows: np.ndarray
    scales: np.ndarray
    times: pd.DatetimeIndex  # series × steps, flattened
    cal: np.ndarray
    exog: np.ndarray | None


def forecast_frame(
    model: Loaded, frame: pd.DataFrame | None = None, *, horizon: int | None = None, series: list | None = None
) -> pd.DataFrame:
    """``horizon`` future rows per series: timestamp, series keys, prediction, lower, upper.

    ``frame`` (optional, long format like the training data): rows with a target value are recent
    history (those series are forecast from it, others not); rows without one (or no target column)
    carry the future values of exogenous features. Without history rows, the stored history is used.
    """
    x = prepare(model, frame, horizon=horizon, series=series)
    cfg = model.config
    h = x.cal.shape[1]
    pred = model.forecaster.forecast(x.windows, x.scales, x.cal, x.exog)
    q_lo, q_hi = np.asarray(cfg["q_lo"][:h]), np.asarray(cfg["q_hi"][:h])
    lower = pred + x.scales[:, None] * q_lo[None, :]
    upper = pred + x.scales[:, None] * q_hi[None, :]
    out: dict[str, Any] = {"timestamp": _times(x.times)}
    for c, col in enumerate(cfg["series_columns"]):
        out[col] = [k[c] for k in x.keys for _ in range(h)]
    out.update(prediction=pred.reshape(-1), lower=lower.reshape(-1), upper=upper.reshape(-1))
    return pd.DataFrame(out)


def prepare(
    model: Loaded, frame: pd.DataFrame | None = None, *, horizon: int | None = None, series: list | None = None
) -> Inputs:
    """Validate a forecast's input (every rule of ``forecast_frame``) without forecasting."""
    cfg, fc = model.config, model.forecaster
    H = cfg["horizon"]
    h = H if horizon is None else ff.check_horizon(horizon)
    if h > H:
        raise InvalidInput(
            f"horizon {h} is beyond the model's {H} (its intervals are calibrated up to {H} steps)",
            code="invalid_horizon",
            details={"field": "horizon", "value": h, "maximum": H},
        )
    W, tcol, target, scols = fc.window, cfg["time_column"], cfg["target"], cfg["series_columns"]
    known = {json.dumps(k): i for i, k in enumerate(cfg["keys"])}
    panel = None
    if frame is not None and len(frame):
        has_target = target in frame.columns and frame[target].notna().any()
        panel = ff.build_panel(
            frame,
            time_column=tcol,
            target=target if has_target else None,
            series_columns=scols,
            features=[c for c in cfg["features"] if c in frame.columns],
            frequency=cfg["frequency"],
            need_target=has_target,
        )
        missing = [c for c in cfg["features"] if c not in frame.columns]
        if missing:
            raise InvalidInput(
                f"the input misses the exogenous feature column(s) {', '.join(missing)}",
                code="missing_feature",
                details={"column": missing[0], "missing": missing},
            )
    if panel is not None and np.isfinite(panel.y).any():
        keys, last = panel.keys, panel.last
        windows = _tails(panel.y, last, W)
        bad = np.flatnonzero(~np.isfinite(windows).all(axis=1))
        if bad.size:
            raise InvalidInput(
                f"series {keys[bad[0]]} has fewer than the {W} recent values a forecast needs",
                code="series_too_short",
                details={"column": target, "series": keys[bad[0]], "needed": W},
            )
        own = ff.series_scales(panel.y)
        scales = np.array(
            [cfg["scales"][known[json.dumps(k)]] if json.dumps(k) in known else own[i] for i, k in enumerate(keys)]
        )
        ends = panel.grid[last]
    else:
        keys, last = cfg["keys"], np.asarray(cfg["last"])
        if fc.features and panel is None:
            raise InvalidInput(
                f"this model needs future values of {', '.join(fc.features)}; send them with the input",
                code="missing_feature",
                details={"column": fc.features[0], "missing": fc.features},
            )
        windows = model.history[:, -W:]
        scales = np.asarray(cfg["scales"], dtype=float)
        grid = pd.date_range(cfg["grid_start"], periods=cfg["steps"], freq=cfg["frequency"])
        ends = grid[last]
    rows = np.arange(len(keys))
    if series is not None:
        wanted = {json.dumps(list(s) if isinstance(s, list) else [s]) for s in series}
        rows = np.array([i for i, k in enumerate(keys) if json.dumps(k) in wanted], dtype=int)
        if len(rows) == 0:
            raise InvalidInput(
                "none of the requested series is known", code="unknown_series", details={"series": series}
            )
    n = len(rows)
    future = np.empty((n, h), dtype="datetime64[ns]")
    for j, i in enumerate(rows):
        future[j] = pd.date_range(ends[int(i)], periods=h + 1, freq=cfg["frequency"])[1:].to_numpy(
            dtype="datetime64[ns]"
        )
    flat = pd.DatetimeIndex(future.reshape(-1))
    cal = ff.calendar(flat, fc.step).reshape(n, h, -1)
    exog = _future_exog(panel, [keys[i] for i in rows], flat, n, h, fc.features, tcol) if fc.features else None
    return Inputs([keys[i] for i in rows], windows[rows], scales[rows], flat, cal, exog)


def _future_exog(panel, keys, flat, n, h, features, tcol) -> np.ndarray:
    if panel is None or panel.exog is None:
        raise InvalidInput(
            f"the input has no future values of {', '.join(features)}",
            code="missing_feature",
            details={"column": features[0]},
        )
    where = {json.dumps(k): i for i, k in enumerate(panel.keys)}
    pos = panel.grid.get_indexer(flat).reshape(n, h)
    out = np.full((n, h, len(features)), np.nan)
    for j, k in enumerate(keys):
        i = where.get(json.dumps(k))
        ok = pos[j] >= 0
        if i is not None:
            out[j, ok] = panel.exog_raw[i, pos[j][ok]]
        bad = ~np.isfinite(out[j]).all(axis=1)
        if bad.any():
            col = features[int(np.flatnonzero(~np.isfinite(out[j][bad][0]))[0])]
            when = _times(flat[j * h : (j + 1) * h][bad])[:5]
            raise InvalidInput(
                f"the input misses future values of {col!r} for series {k} at {', '.join(when)}",
                code="missing_feature",
                details={"column": col, "series": k, "timestamps": when, "time_column": tcol},
            )
    return out
