/* "Explain this row" in the online section: each column's contribution to the prediction (POST
 * /function/predict with "explain": true), as a bar chart, with the base value and the model's output. */
import { api } from "./client.js";
import { guarded, hideError, showError } from "./banner.js";
import { barChart, figure } from "./charts.js";
import { readRow } from "./online.js";
import { $, el, fmtNum } from "./ui.js";

const SCALES = { probability: "probability", "log-odds": "log-odds", logit: "logit (softmax input)", value: "predicted value" };

/** Which output to show: the predicted class when it is one of the explained outputs, else the first. */
function outputIndex(ex, prediction) {
  const i = ex.outputs.findIndex((o) => String(o) === String(prediction));
  return i >= 0 ? i : 0;
}

export function renderExplanation(box, ex, prediction) {
  const k = outputIndex(ex, prediction);
  const row = ex.rows[0];
  const items = ex.columns.map((c) => ({ label: c, value: row.contributions[c][k] }))
    .sort((a, b) => Math.abs(b.value) - Math.abs(a.value));
  const what = ex.outputs[k] === "value" ? "" : ` of “${ex.outputs[k]}”`;
  box.replaceChildren(
    figure(`Contributions to the ${SCALES[ex.scale] || ex.scale}${what}`, barChart(items, { label: "contribution per column", digits: 4 })),
    el("p", { class: "muted", text: `base ${fmtNum(ex.base[k], 4)} + contributions = ${fmtNum(row.output[k], 4)} · method: ${ex.method}` +
      (ex.method === "permutation" ? " (approximate shares)" : " (exact)") }));
}

async function onExplain() {
  const modelId = $("#predict-model").value;
  if (!modelId) { showError("Explain", new Error("Choose a trained model first.")); return; }
  const box = $("#online-explanation");
  box.textContent = "…";
  const res = await guarded("The explanation failed",
    () => api("POST", "/function/predict", { model_id: modelId, instances: [readRow()], explain: true }));
  if (!res) { box.textContent = ""; return; }
  hideError();
  renderExplanation(box, res.explanations, res.predictions[0]);
}

/** Adds the "Explain this row" button and the chart's place to the online form. */
export function wireExplain() {
  const predict = $("#online-button");
  if (!predict) return;
  predict.after(el("button", { id: "online-explain", type: "button", onclick: onExplain }, ["Explain this row"]));
  $("#online-form").append(el("div", { id: "online-explanation", class: "explanation", "aria-live": "polite" }));
}
