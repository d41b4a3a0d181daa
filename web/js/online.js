/* Section 4, "Try one row": a field per feature of the chosen model, answered at once by online predict. */
import { api } from "./client.js";
import { guarded, hideError, showError } from "./banner.js";
import { datasetDetail } from "./lookups.js";
import { state } from "./state.js";
import { $, el, fmtCell, isNumericDtype } from "./ui.js";

export async function onPredictModelChange() {
  const box = $("#online-fields");
  box.replaceChildren();
  $("#online-output").textContent = "";
  const model = state.models.find((m) => m.model_id === $("#predict-model").value);
  if (!model) { box.append(el("p", { class: "muted", text: "Choose a model first." })); return; }
  if (model.task === "forecasting") {
    box.append(el("p", { class: "muted", text: "A forecaster takes no row: it forecasts from the history stored with it." }));
    return;
  }
  const ds = await datasetDetail(model.dataset_id).catch(() => null);
  const sample = ds && ds.preview && ds.preview[0];
  (model.features || []).forEach((f, i) => {
    const col = ds && ds.columns.find((c) => c.name === f);
    const numeric = col ? isNumericDtype(col.dtype) : sample ? typeof sample[f] === "number" : false;
    const id = "online-f" + i;
    const v = sample && sample[f] !== undefined && sample[f] !== null ? sample[f] : "";
    box.append(el("label", { for: id }, [f, el("input", { id, type: numeric ? "number" : "text", step: numeric ? "any" : null,
      value: v, dataset: { feature: f, numeric: numeric ? "1" : "" } })]));
  });
}

/** The row the fields describe, as {feature: value} (empty: null). */
export function readRow() {
  const row = {};
  document.querySelectorAll("#online-fields input").forEach((inp) => {
    const raw = inp.value.trim();
    row[inp.dataset.feature] = raw === "" ? null : inp.dataset.numeric ? Number(raw) : raw;
  });
  return row;
}

async function onOnlineSubmit(ev) {
  ev.preventDefault();
  const modelId = $("#predict-model").value;
  if (!modelId) { showError("Predict", new Error("Choose a trained model first.")); return; }
  const row = readRow();
  const out = $("#online-output");
  out.textContent = "…";
  if ((state.models.find((m) => m.model_id === modelId) || {}).task === "forecasting") {
    const fc = await guarded("The online forecast failed", () => api("POST", "/function/predict/forecast", { model_id: modelId }));
    const f = fc && fc.forecast[0];
    out.textContent = f ? `Forecast: ${fc.forecast.length} rows, ${fc.horizon} steps per series; first ${f.timestamp} ${fmtCell(f.prediction)} [${fmtCell(f.lower)}, ${fmtCell(f.upper)}]` : "";
    return;
  }
  const res = await guarded("The online prediction failed", () => api("POST", "/function/predict", { model_id: modelId, instances: [row] }));
  if (!res) { out.textContent = ""; return; }
  hideError();
  let text = "Prediction: " + fmtCell(res.predictions[0]);
  const proba = res.probabilities && res.probabilities[0];
  if (Array.isArray(proba) && res.classes) {
    text += " · " + res.classes.map((c, i) => `P(${c}) ${proba[i].toFixed(3)}`).join(", ");
  }
  out.textContent = text;
}

export function wireOnline() {
  $("#predict-model").addEventListener("change", onPredictModelChange);
  $("#online-form").addEventListener("submit", onOnlineSubmit);
}
