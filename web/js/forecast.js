/* Forecasting on the page: the train form's time column, series columns, horizon and frequency (shown
 * when the task is "forecasting"), the model card's backtest metrics and line chart (history, last
 * backtest fold, forecast with its interval band; a series picker), and forecast columns in results. */
import { s } from "./charts.js";
import { api } from "./client.js";
import { guarded } from "./banner.js";
import { datasetDetail } from "./lookups.js";
import { state } from "./state.js";
import { $, el, fillSelect, fmtNum } from "./ui.js";

const FORECASTING = "forecasting";
const isForecast = () => $("#train-task").value === FORECASTING;

/** The forecasting algorithms (baselines + regressors), added to the catalogue the form lists. */
export async function loadForecastAlgorithms() {
  const body = await api("GET", "/function/train/algorithms?task=forecasting");
  state.algorithms = state.algorithms.filter((a) => a.task !== FORECASTING).concat(body.algorithms || []);
}

async function fillColumns() {
  const id = $("#train-dataset").value;
  if (!id) return;
  const ds = await guarded("Could not read the dataset's columns", () => datasetDetail(id));
  if (!ds || $("#train-dataset").value !== id) return;
  const cols = ds.columns.map((c) => ({ value: c.name, label: `${c.name} (${c.dtype})` }));
  const time = $("#train-time-column");
  const timeLike = ds.columns.find((c) => /date|time|day|week|month|year|ts/i.test(c.name) || /date|time/i.test(c.dtype));
  fillSelect(time, cols, null, timeLike ? timeLike.name : (cols[0] || {}).value);
  const series = $("#train-series-columns");
  series.replaceChildren(...ds.columns.filter((c) => !/float|double/i.test(c.dtype))
    .map((c) => el("option", { value: c.name, text: c.name })));
}

function onTaskChange() {
  $("#train-forecast").hidden = !isForecast();
  if (isForecast()) fillColumns();
}

/** The forecasting fields of a train body (none unless the task is forecasting). */
export function forecastTrainFields() {
  if (!isForecast()) return {};
  const out = { time_column: $("#train-time-column").value, horizon: parseInt($("#train-horizon").value, 10) };
  const series = [...$("#train-series-columns").selectedOptions].map((o) => o.value);
  if (series.length) out.series_columns = series;
  const freq = $("#train-frequency").value.trim();
  if (freq) out.frequency = freq;
  return out;
}

export function wireForecast() {
  $("#train-task").addEventListener("change", onTaskChange);
  $("#train-dataset").addEventListener("change", () => { if (isForecast()) fillColumns(); });
}

// ---------------------------------------------------------------- model card

/** Line chart of history, backtest and forecast (with its band) against time. */
export function forecastChart(history, backtest, forecast, label) {
  const w = 520, h = 200, l = 48, r = 10, t = 10, b = 26;
  const time = (x) => Date.parse(x);
  const pts = [...history.timestamps.map(time), ...backtest.timestamps.map(time), ...forecast.map((f) => time(f.timestamp))];
  const vals = [...history.values, ...backtest.values, ...forecast.flatMap((f) => [f.lower, f.upper, f.prediction])]
    .filter((v) => typeof v === "number");
  const x0 = Math.min(...pts), x1 = Math.max(...pts), y0 = Math.min(...vals), y1 = Math.max(...vals);
  const X = (x) => l + ((time(x) - x0) / Math.max(x1 - x0, 1)) * (w - l - r);
  const Y = (v) => h - b - ((v - y0) / Math.max(y1 - y0, 1e-12)) * (h - b - t);
  const path = (xs, ys) => xs.map((x, i) => (typeof ys[i] === "number" ? `${X(x).toFixed(1)},${Y(ys[i]).toFixed(1)}` : null))
    .filter(Boolean).join(" ");
  const root = s("svg", { viewBox: `0 0 ${w} ${h}`, width: w, height: h, role: "img", "aria-label": label, class: "chart-svg fc-chart" },
    [s("title", { text: label })]);
  if (forecast.length) {
    const upper = forecast.map((f) => `${X(f.timestamp).toFixed(1)},${Y(f.upper).toFixed(1)}`);
    const lower = forecast.map((f) => `${X(f.timestamp).toFixed(1)},${Y(f.lower).toFixed(1)}`).reverse();
    root.append(s("polygon", { points: upper.concat(lower).join(" "), class: "fc-band" }, [s("title", { text: "prediction interval" })]));
  }
  root.append(
    s("line", { x1: l, y1: h - b, x2: w - r, y2: h - b, class: "axis" }),
    s("polyline", { points: path(history.timestamps, history.values), class: "fc-history" }, [s("title", { text: "history" })]),
    s("polyline", { points: path(backtest.timestamps, backtest.values), class: "fc-backtest" }, [s("title", { text: "backtest" })]),
    s("polyline", { points: path(forecast.map((f) => f.timestamp), forecast.map((f) => f.prediction)), class: "fc-forecast" },
      [s("title", { text: "forecast" })]),
    s("text", { x: l - 4, y: t + 8, "text-anchor": "end", class: "chart-tick", text: fmtNum(y1, 1) }),
    s("text", { x: l - 4, y: h - b, "text-anchor": "end", class: "chart-tick", text: fmtNum(y0, 1) }),
    s("text", { x: l, y: h - 8, class: "chart-tick", text: new Date(x0).toISOString().slice(0, 10) }),
    s("text", { x: w - r, y: h - 8, "text-anchor": "end", class: "chart-tick", text: new Date(x1).toISOString().slice(0, 10) }));
  return root;
}

const forecasts = new Map();   // model_id|series index -> promise of its online forecast (cards re-render while polling)
const keyText = (key) => (key && key.length ? key.join(" / ") : "all");

/** The model card's forecasting part: backtest metrics, a series picker and the chart. */
export function forecastCharts(model) {
  const m = model.metrics || {};
  const bt = m.backtest || {};
  const o = bt.overall || {}, sn = bt.seasonal_naive || {}, iv = bt.interval || {};
  const rows = [["model", o], ["seasonal naive", sn]].map(([name, v]) => el("tr", null, [
    el("td", { text: name }), ...["mae", "rmse", "smape", "mase"].map((k) => el("td", { class: "num", text: fmtNum(v[k]) }))]));
  const metrics = el("figure", { class: "chart fc-metrics" }, [
    el("figcaption", { text: `Backtest: ${bt.folds} folds × ${bt.horizon} steps, ${fmtNum(o.points)} points` }),
    el("table", { class: "data-table" }, [
      el("thead", null, [el("tr", null, ["", "MAE", "RMSE", "sMAPE %", "MASE"].map((h) => el("th", { text: h })))]),
      el("tbody", null, rows)]),
    el("p", { class: "muted small fc-coverage", text: `${Math.round((iv.level || 0) * 100)}% interval: coverage ${fmtNum(iv.coverage)} (${iv.method || ""})` }),
  ]);
  const series = (m.chart && m.chart.series) || [];
  const box = el("div", { class: "fc-plot" });
  const picker = el("select", { class: "fc-series", "aria-label": "series" },
    series.map((sr, i) => el("option", { value: String(i), text: keyText(sr.series) })));
  const draw = async () => {
    const sr = series[Number(picker.value) || 0];
    if (!sr) return;
    const body = { model_id: model.model_id };
    if (sr.series.length) body.series = [sr.series.length === 1 ? sr.series[0] : sr.series];
    const key = model.model_id + "|" + picker.value;
    if (!forecasts.has(key)) forecasts.set(key, guarded("Could not forecast", () => api("POST", "/function/predict/forecast", body)));
    const fc = await forecasts.get(key);
    box.replaceChildren(forecastChart(sr.history, sr.backtest, (fc && fc.forecast) || [],
      `history, backtest and forecast of ${keyText(sr.series)}`));
    box.dataset.series = keyText(sr.series);
    box.dataset.points = String(((fc && fc.forecast) || []).length);
  };
  picker.addEventListener("change", draw);
  draw();
  const legend = el("p", { class: "muted small fc-legend" }, [
    el("span", { class: "fc-key fc-history", text: "history" }), " · ",
    el("span", { class: "fc-key fc-backtest", text: "backtest" }), " · ",
    el("span", { class: "fc-key fc-forecast", text: "forecast" }), " with its interval band"]);
  const title = series.length < ((m.chart && m.chart.total_series) || 0)
    ? `Forecast (first ${series.length} of ${m.chart.total_series} series)` : "Forecast";
  return [metrics, el("figure", { class: "chart fc-figure" }, [el("figcaption", { text: title }), picker, box, legend])];
}

/** Columns of a forecast job's result rows (null for other jobs). */
export function forecastColumns(rows) {
  if (!rows.length || !("timestamp" in rows[0])) return null;
  const skip = new Set(["row", "timestamp", "prediction", "lower", "upper"]);
  const keys = Object.keys(rows[0]).filter((k) => !skip.has(k));
  const num = (k) => ({ label: k, num: true, get: (r) => (typeof r[k] === "number" ? r[k].toFixed(3) : "") });
  return [{ label: "row", key: "row", num: true }, { label: "timestamp", key: "timestamp" },
    ...keys.map((k) => ({ label: k, key: k })), num("prediction"), num("lower"), num("upper")];
}
