"""Forecasting core (ml/forecasting.py, ml/forecast_features.py): accuracy against seasonal naive,
interval coverage, no leakage in the backtest, a real series shipped by statsmodels, the artefact
round trip through the allow-list, and each bad input refused with a 400 naming column and rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kubepredict.errors import ArtifactRejected, InvalidInput
from kubepredict.ml import artifacts
from kubepredict.ml import forecast_features as ff
from kubepredict.ml import forecasting as F


def seasonal(series=4, steps=240, noise=0.5, seed=0) -> pd.DataFrame:
    """Daily series with a trend, a weekly season and Gaussian noise, shuffled."""
    rng = np.random.default_rng(seed)
    parts = []
    t = np.arange(steps)
    for s in range(series):
        y = 20 + 10 * s + 0.08 * t + 4 * np.sin(2 * np.pi * t / 7 + s) + rng.normal(0, noise, steps)
        dates = pd.date_range("2021-01-01", periods=steps, freq="D").strftime("%Y-%m-%d")
        parts.append(pd.DataFrame({"day": dates, "shop": f"shop{s}", "sales": y}))
    return pd.concat(parts, ignore_index=True).sample(frac=1, random_state=seed).reset_index(drop=True)


def test_regressor_beats_seasonal_naive_with_calibrated_intervals():
    r = F.train_forecast(seasonal(), time_column="day", target="sales", series_columns=["shop"], horizon=14)
    bt = r.metrics["backtest"]
    assert r.metrics["forecast"]["frequency"] == "D" and r.metrics["forecast"]["season_length"] == 7
    assert r.algorithm not in F.BASELINES  # auto picked a learned model
    assert bt["overall"]["mase"] < 1
    assert bt["seasonal_naive"]["mase"] == 1.0
    assert abs(bt["interval"]["coverage"] - 0.8) <= 0.10
    assert {tuple(p["series"]) for p in bt["per_series"]} == {(f"shop{s}",) for s in range(4)}
    assert set(r.metrics["auto"]["candidates"]) == set(F.AUTO_CANDIDATES)
    best = min(c["mae"] for c in r.metrics["auto"]["candidates"].values())
    assert r.metrics["auto"]["candidates"][r.algorithm]["mae"] == best


def test_artefact_round_trip_through_the_allow_list():
    r = F.train_forecast(
        seasonal(2), time_column="day", target="sales", series_columns=["shop"], horizon=7, algorithm="ridge"
    )
    blob = artifacts.dump_model(r.state)
    loaded = F.Loaded.from_state(artifacts.load_model(blob, artifacts.sha256_hex(blob)))
    out = F.forecast_frame(loaded)
    assert list(out.columns) == ["timestamp", "shop", "prediction", "lower", "upper"]
    assert len(out) == 14 and out.groupby("shop").size().tolist() == [7, 7]
    assert out["timestamp"].iloc[0] == "2021-08-29"  # the day after the last of 240 days
    assert (out["lower"] <= out["prediction"]).all() and (out["prediction"] <= out["upper"]).all()
    with pytest.raises(ArtifactRejected):
        artifacts.load_model(blob, "0" * 64)


def test_backtest_has_no_leakage():
    frame = seasonal(3, 200)
    panel = ff.build_panel(
        frame, time_column="day", target="sales", series_columns=["shop"], features=[], frequency=None
    )
    cut = 160
    changed = ff.Panel(**{**panel.__dict__, "y": panel.y.copy()})
    changed.y[:, cut + 1 :] *= 3.0
    cal = ff.calendar(panel.grid, panel.step)
    makers = {
        n: (lambda n=n: F._new(n, {"max_iter": 30} if "hist" in n else None, 0, 14, 7, panel.step, []))
        for n in ("ridge", "hist_gradient_boosting", "seasonal_naive")
    }
    a = F.backtest(makers, panel, cal, horizon=10, folds=6, window=14)
    b = F.backtest(makers, changed, cal, horizon=10, folds=6, window=14)
    origins = np.array(F.cutoffs(200, 14, 10, 6))[a.fold]
    before = origins <= cut
    assert before.any() and (~before).any()
    for name in makers:
        np.testing.assert_array_equal(a.preds[name][before], b.preds[name][before])
        assert not np.array_equal(a.preds[name][~before], b.preds[name][~before])


def test_co2_from_statsmodels():
    from statsmodels.datasets import co2

    data = co2.load_pandas().data
    frame = pd.DataFrame({"week": data.index.strftime("%Y-%m-%d"), "co2": data["co2"].to_numpy()})
    r = F.train_forecast(frame, time_column="week", target="co2", horizon=26, algorithm="ridge")
    assert r.metrics["forecast"]["frequency"] == "W-SAT" and r.metrics["forecast"]["season_length"] == 52
    assert r.metrics["forecast"]["filled_gaps"] == int(data["co2"].isna().sum())
    assert r.metrics["backtest"]["overall"]["mase"] < 1
    assert r.metrics["backtest"]["overall"]["smape"] < 1  # percent, on values near 350 ppm


def test_sunspots_from_statsmodels_yearly():
    from statsmodels.datasets import sunspots

    data = sunspots.load_pandas().data
    frame = pd.DataFrame({"year": [f"{int(y)}-01-01" for y in data["YEAR"]], "spots": data["SUNACTIVITY"]})
    r = F.train_forecast(frame, time_column="year", target="spots", horizon=5, algorithm="ridge", lags=22)
    assert r.metrics["forecast"]["season_length"] == 1
    assert r.metrics["backtest"]["overall"]["points"] == 15
    assert r.metrics["backtest"]["overall"]["mase"] is not None


def test_exogenous_features_need_future_values():
    frame = seasonal(1, 120).sort_values("day").reset_index(drop=True)
    frame["promo"] = (np.arange(len(frame)) % 5 == 0).astype(float)
    r = F.train_forecast(frame, time_column="day", target="sales", horizon=5, features=["promo"], algorithm="ridge")
    loaded = F.Loaded.from_state(r.state)
    with pytest.raises(InvalidInput) as err:
        F.forecast_frame(loaded)
    assert err.value.code == "missing_feature" and err.value.details["column"] == "promo"
    future = pd.DataFrame({"day": pd.date_range("2021-05-01", periods=3).strftime("%Y-%m-%d"), "promo": 1.0})
    with pytest.raises(InvalidInput) as err:
        F.forecast_frame(loaded, future)  # 3 of the 5 future days
    assert err.value.details["column"] == "promo" and err.value.details["timestamps"] == ["2021-05-04", "2021-05-05"]
    future = pd.DataFrame({"day": pd.date_range("2021-05-01", periods=5).strftime("%Y-%m-%d"), "promo": 1.0})
    assert len(F.forecast_frame(loaded, future)) == 5
    with pytest.raises(InvalidInput) as err:
        F.forecast_frame(loaded, future.drop(columns="promo"))
    assert err.value.code == "missing_feature"


def test_recent_history_in_the_input_is_forecast_from():
    r = F.train_forecast(
        seasonal(2), time_column="day", target="sales", series_columns=["shop"], horizon=7, algorithm="naive"
    )
    loaded = F.Loaded.from_state(r.state)
    recent = pd.DataFrame(
        {"day": pd.date_range("2022-01-01", periods=20).strftime("%Y-%m-%d"), "shop": "new", "sales": 5.0}
    )
    out = F.forecast_frame(loaded, recent)
    assert out["shop"].unique().tolist() == ["new"] and out["timestamp"].iloc[0] == "2022-01-21"
    assert np.allclose(out["prediction"], 5.0)


def _refused(frame, **kw):
    args = dict(time_column="day", target="sales", series_columns=["shop"], horizon=7, algorithm="naive")
    with pytest.raises(InvalidInput) as err:
        F.train_forecast(frame, **{**args, **kw})
    return err.value


def test_bad_inputs_are_refused_naming_column_and_rows():
    base = seasonal(2, 60).sort_values(["shop", "day"]).reset_index(drop=True)
    f = base.copy()
    f.loc[3, "day"] = "not a date"
    e = _refused(f)
    assert e.code == "invalid_timestamps" and e.details == {"column": "day", "rows": [3]}
    f = base.astype({"sales": object})
    f.loc[[5, 9], "sales"] = "n/a"
    e = _refused(f)
    assert e.code == "non_numeric" and e.details == {"column": "sales", "rows": [5, 9]}
    f = base.copy()
    f.loc[4, "day"] = f.loc[3, "day"]
    e = _refused(f)
    assert e.code == "duplicate_timestamps" and e.details == {"column": "day", "rows": [3, 4]}
    e = _refused(base, horizon=0)
    assert e.code == "invalid_horizon"
    e = _refused(base, horizon=ff.MAX_HORIZON + 1)
    assert e.code == "invalid_horizon"
    short = pd.concat([base, pd.DataFrame({"day": ["2021-01-01", "2021-01-02"], "shop": "tiny", "sales": [1.0, 2.0]})])
    e = _refused(short.reset_index(drop=True))
    assert e.code == "series_too_short" and e.details["series"] == ["tiny"]
    f = base.copy()
    f.loc[7, "day"] = "2021-01-07 12:00"
    e = _refused(f, frequency="D")
    assert e.code == "irregular_timestamps" and e.details["rows"] == [7] and e.details["column"] == "day"
    e = _refused(base, frequency="fortnightly")
    assert e.code == "invalid_frequency"
    e = _refused(base, features=["promo"])
    assert e.code == "unknown_columns"


def test_gaps_are_filled_forward_up_to_a_share():
    base = seasonal(1, 100).sort_values("day").reset_index(drop=True)
    r = F.train_forecast(base.drop(index=[50, 51, 52]), time_column="day", target="sales", horizon=7, algorithm="naive")
    assert r.metrics["forecast"]["filled_gaps"] == 3 and r.metrics["forecast"]["steps"] == 100
    e = _refused(base.iloc[::2].reset_index(drop=True), series_columns=[], frequency="D")
    assert e.code == "too_many_gaps" and e.details["column"] == "sales"


def test_unsorted_input_gives_the_same_model_as_sorted():
    frame = seasonal(2, 120)
    args = dict(time_column="day", target="sales", series_columns=["shop"], horizon=7, algorithm="ridge")
    a = F.train_forecast(frame, **args).metrics["backtest"]["overall"]
    b = F.train_forecast(frame.sort_values(["shop", "day"]), **args).metrics["backtest"]["overall"]
    assert a == b


def test_training_rows_keep_the_most_recent_windows_within_the_budget(monkeypatch):
    panel = ff.build_panel(
        seasonal(2, 100), time_column="day", target="sales", series_columns=["shop"], features=[], frequency=None
    )
    fc = F._new("ridge", None, 0, 14, 7, panel.step, [])
    cal = ff.calendar(panel.grid, panel.step)
    scales = ff.series_scales(panel.y)
    feats, target = F.training_rows(fc, panel.y, None, cal, scales)
    assert len(target) == 2 * (100 - 14)
    monkeypatch.setattr(F, "MAX_TRAIN_VALUES", 2 * 15 * 10)  # room for 10 windows per series
    few, few_target = F.training_rows(fc, panel.y, None, cal, scales)
    assert len(few_target) == 2 * 10
    np.testing.assert_array_equal(few_target[:10], target[86 - 10 : 86])  # series 0's last ten
    np.testing.assert_array_equal(few[10:], feats[-10:])


def test_params_are_checked_before_queueing():
    with pytest.raises(InvalidInput) as err:
        F.check_algorithm("auto", {"n_estimators": 10**7})
    assert err.value.code == "param_ceiling"
    with pytest.raises(InvalidInput) as err:
        F.check_algorithm("naive", {"alpha": 1})
    assert err.value.code == "invalid_params"
    with pytest.raises(InvalidInput) as err:
        F.check_algorithm("ridge", {"nope": 1})
    assert err.value.code == "invalid_params"
    with pytest.raises(InvalidInput) as err:
        F.check_algorithm("kmeans", None)
    assert err.value.code == "unknown_algorithm"
    F.check_algorithm("sklearn.ensemble.ExtraTreesRegressor", {"n_estimators": 5})


def test_series_columns_may_not_take_an_output_column_name():
    e = _refused(seasonal(2, 60).rename(columns={"shop": "lower"}), series_columns=["lower"])
    assert e.code == "invalid_field" and e.details["column"] == "lower"


def test_online_forecasts_run_on_a_thread_not_the_event_loop():
    from kubepredict.api.predict import predict

    assert predict.is_quick("POST", "/", b'{"model_id": "m", "instances": [[1]]}')
    assert not predict.is_quick("POST", "/forecast", b'{"model_id": "m"}')


@pytest.mark.parametrize(
    "algorithm,params",
    [
        ("seasonal_naive", None),
        ("hist_gradient_boosting", {"max_iter": 20}),
        ("random_forest", {"n_estimators": 5}),
        ("knn", None),
        ("sklearn.ensemble.ExtraTreesRegressor", {"n_estimators": 5}),
    ],
)
def test_each_kind_of_forecaster_saves_and_loads_through_the_allow_list(algorithm, params):
    args = dict(time_column="day", target="sales", series_columns=["shop"], horizon=5, folds=1)
    r = F.train_forecast(seasonal(2, 60), algorithm=algorithm, params=params, **args)
    blob = artifacts.dump_model(r.state)
    loaded = F.Loaded.from_state(artifacts.load_model(blob, artifacts.sha256_hex(blob)))
    again = F.forecast_frame(loaded)
    np.testing.assert_allclose(again["prediction"], F.forecast_frame(F.Loaded.from_state(r.state))["prediction"])
    assert len(again) == 10 and r.algorithm == algorithm


def test_a_grid_too_fine_for_the_span_is_refused_before_it_is_built():
    base = seasonal(2, 60)
    e = _refused(base, frequency="ms")  # 60 days of milliseconds × 2 series, more than MAX_CELLS
    assert e.code == "too_many_steps" and e.details["column"] == "day"
    e = _refused(base, frequency="ns")  # would be 5e15 steps: refused at once, nothing allocated
    assert e.code == "too_many_steps"
