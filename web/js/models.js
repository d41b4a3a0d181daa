/* Section 3, Models: the registry table (registry.js) and the full card of the model opened. */
import { api } from "./client.js";
import { asPairs, barChart, figure, heatmap, scatter } from "./charts.js";
import { onPredictModelChange } from "./online.js";
import { renderRegistry } from "./registry.js";
import { forecastCharts } from "./forecast.js";
import { state } from "./state.js";
import { $, el, fillSelect, fmtNum, fmtTime, table } from "./ui.js";

export async function loadModels() {
  const body = await api("GET", "/function/train?limit=100");
  state.models = body.models || [];
  renderModels();
}

function perClassScores(matrix, labels) {
  return labels.map((lab, i) => {
    const tp = matrix[i][i];
    const actual = matrix[i].reduce((a, b) => a + b, 0);
    const predicted = matrix.reduce((a, row) => a + row[i], 0);
    const precision = predicted ? tp / predicted : 0;
    const recall = actual ? tp / actual : 0;
    const f1 = precision + recall ? (2 * precision * recall) / (precision + recall) : 0;
    return { label: lab, precision, recall, f1, support: actual };
  });
}

const METRIC_NAMES = {
  accuracy: "accuracy", f1_macro: "F1 (macro)", precision_macro: "precision (macro)", recall_macro: "recall (macro)",
  roc_auc: "ROC AUC", r2: "R²", mae: "MAE", rmse: "RMSE", silhouette: "silhouette",
  train_rows: "train rows", test_rows: "test rows", fit_seconds: "fit time (s)", cv_score: "CV score",
};

function modelCharts(model) {
  const m = model.metrics || {};
  const charts = [];
  if (model.task === "forecasting") return forecastCharts(model);
  if (Array.isArray(m.confusion_matrix) && m.confusion_matrix.length) {
    const labels = (m.labels || model.classes || m.confusion_matrix.map((_, i) => i)).map(String);
    charts.push(figure("Confusion matrix", heatmap(m.confusion_matrix, labels)));
    const scores = perClassScores(m.confusion_matrix, labels);
    const t = el("table", { class: "data-table per-class" });
    const f3 = (k) => (r) => r[k].toFixed(3);
    table(t, [{ label: "class", key: "label" }, { label: "precision", get: f3("precision"), num: true },
      { label: "recall", get: f3("recall"), num: true }, { label: "F1", get: f3("f1"), num: true }, { label: "support", key: "support", num: true }], scores);
    charts.push(figure("Per-class F1 (held-out split)", barChart(scores.map((c) => ({ label: c.label, value: c.f1 })),
      { label: "F1 score per class", width: 140, fixed: 3 })));
    charts.push(el("figure", { class: "chart" }, [el("figcaption", { text: "Per-class scores" }), el("div", { class: "table-wrap" }, [t])]));
  }
  // Regression diagnostics only when the metrics carry the points; nothing is made up here.
  const pva = m.predicted_vs_actual;
  const actual = m.y_true || m.actual || (pva && (pva.actual || pva.y_true));
  const predicted = m.y_pred || m.predicted || (pva && (pva.predicted || pva.y_pred));
  if (Array.isArray(actual) && Array.isArray(predicted) && actual.length && actual.length === predicted.length) {
    charts.push(figure("Predicted vs actual", scatter(actual, predicted, { diagonal: true, xLabel: "actual", yLabel: "predicted", label: "predicted against actual values" })));
    charts.push(figure("Residuals", scatter(predicted, predicted.map((p, i) => actual[i] - p), { zero: true, xLabel: "predicted", yLabel: "actual − predicted", label: "residuals against predicted values" })));
  }
  const sizes = asPairs(m.cluster_sizes);
  if (sizes.length) charts.push(figure("Cluster sizes", barChart(sizes.map((p) => ({ label: "cluster " + p.label, value: p.value })), { label: "rows per cluster", digits: 0 })));
  const fi = asPairs(m.feature_importance, model.features).filter((p) => !isNaN(p.value))
    .sort((a, b) => Math.abs(b.value) - Math.abs(a.value)).slice(0, 15);
  if (fi.length) charts.push(figure("Feature importance" + (fi.length === 15 ? " (top 15)" : ""), barChart(fi, { label: "feature importance" })));
  return charts;
}

/** The full card of one model: headline metrics and charts (shown for the version opened in the registry). */
export function modelCard(model) {
  const m = model.metrics || {};
  const headline = Object.keys(METRIC_NAMES).filter((k) => typeof m[k] === "number")
    .map((k) => el("div", { class: "metric" }, [el("dt", { text: METRIC_NAMES[k] }),
      el("dd", { text: /_rows$/.test(k) ? fmtNum(m[k]) : Number(m[k]).toFixed(Math.abs(m[k]) >= 1000 ? 1 : 3) })]));
  const job = [...state.jobs.values()].find((j) => j.kind === "train" && j.model_id === model.model_id);
  const statusText = model.status === "training" && job
    ? `training · ${job.stage || job.status} ${Math.round((job.progress || 0) * 100)}%` : model.status;
  return el("article", { class: "model-card status-" + model.status, dataset: { modelId: model.model_id, status: model.status } }, [
    el("header", null, [
      el("h3", null, [model.name + " ", el("span", { class: "version", text: "v" + model.version })]),
      el("span", { class: "badge " + model.status, text: statusText }),
    ]),
    el("p", { class: "muted small", text: [model.task, model.algorithm, model.target ? "target " + model.target : null, model.model_id, fmtTime(model.created_at)].filter(Boolean).join(" · ") }),
    headline.length ? el("dl", { class: "metrics" }, headline) : null,
    model.status === "failed" && job && job.error ? el("p", { class: "failed-text", text: job.error.message }) : null,
    el("div", { class: "charts" }, model.status === "ready" ? modelCharts(model) : []),
    model.status === "ready" ? el("button", { type: "button", class: "small", text: "Use for prediction",
      onclick: () => { $("#predict-model").value = model.model_id; onPredictModelChange(); $("#predict-model").focus(); } }) : null,
  ]);
}

export function renderModels() {
  const box = $("#model-list");
  if (!state.models.length) { box.replaceChildren(el("p", { class: "muted empty", text: "No models yet. Train one above." })); }
  else renderRegistry(box, state.models, state.jobs, modelCard, loadModels);
  const ready = state.models.filter((m) => m.status === "ready")
    .map((m) => ({ value: m.model_id, label: `${m.name} v${m.version} · ${m.algorithm}` }));
  const sel = $("#predict-model");
  const prev = sel.value;
  fillSelect(sel, ready, ready.length ? null : "— train a model first —");
  if (sel.value !== prev) onPredictModelChange();
}
