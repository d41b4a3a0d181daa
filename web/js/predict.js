/* Section 4, Predict: pick a model and the data (or upload it right here), start a batch job. */
import { api } from "./client.js";
import { guarded, hideError, showError } from "./banner.js";
import { baseName, doUpload, progressUI } from "./datasets.js";
import { trackJob } from "./jobs.js";
import { setDownload, updatePager } from "./results.js";
import { state } from "./state.js";
import { $ } from "./ui.js";

async function onPredictFileChange() {
  const file = $("#predict-file").files[0];
  if (!file) return;
  const ui = progressUI("#predict-upload-row", "#predict-upload-progress", "#predict-upload-text");
  const p = guarded(`Could not upload “${file.name}”`, () => doUpload(file, baseName(file.name), ui, (d) => {
    $("#predict-dataset").value = d.dataset_id;
  }));
  state.predictUpload = p;
  const ds = await p;
  if (state.predictUpload === p) state.predictUpload = null;
  if (ds) hideError();
}

async function onPredictSubmit(ev) {
  ev.preventDefault();
  if (state.predictUpload) {
    $("#predict-hint").textContent = "Waiting for the upload to finish…";
    await state.predictUpload;
  }
  const modelId = $("#predict-model").value, datasetId = $("#predict-dataset").value;
  if (!modelId) { showError("Predict", new Error("Choose a trained model first.")); return; }
  if (!datasetId) { showError("Predict", new Error("Choose or upload the data to score.")); return; }
  const btn = $("#predict-button");
  btn.disabled = true;
  const res = await guarded("Could not start the prediction", () => api("POST", "/function/predict", { model_id: modelId, dataset_id: datasetId }));
  btn.disabled = false;
  if (!res) { $("#predict-hint").textContent = ""; return; }
  hideError();
  $("#predict-hint").textContent = `Prediction started: job ${res.job_id}.`;
  state.result = { jobId: res.job_id, offset: 0, total: 0 };
  $("#results").hidden = false;
  $("#results-title").textContent = "Results";
  $("#results-meta").textContent = "Waiting for the job to finish…";
  $("#result-table").replaceChildren();
  $("#results-chart").replaceChildren();
  setDownload(null);
  updatePager();
  trackJob({ job_id: res.job_id, kind: "predict", status: res.status || "queued", progress: 0,
    model_id: modelId, dataset_id: datasetId, created_at: new Date().toISOString() }, true);
}

export function wirePredict() {
  $("#predict-file").addEventListener("change", onPredictFileChange);
  $("#predict-form").addEventListener("submit", onPredictSubmit);
}
