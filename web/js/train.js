/* Section 2, Train: dataset, target (with the task the server infers for it), algorithm and its
 * parameters as a form kept in step with the JSON box; submitting queues a training job. */
import { api } from "./client.js";
import { guarded, hideError, showError } from "./banner.js";
import { trackJob } from "./jobs.js";
import { datasetDetail, inferredTask, knownTask } from "./lookups.js";
import { loadModels } from "./models.js";
import { state } from "./state.js";
import { $, el, fillSelect } from "./ui.js";
import { forecastTrainFields } from "./forecast.js";

export async function loadAlgorithms() {
  const body = await api("GET", "/function/train/algorithms");
  state.algorithms = body.algorithms || [];
  renderAlgorithms();
}

/** The task chosen, else the one the server inferred for the target (classification until it answers). */
function currentTask() {
  const chosen = $("#train-task").value;
  if (chosen) return chosen;
  const id = $("#train-dataset").value;
  if (!state.datasetDetails.get(id)) return "classification";
  return knownTask(id, $("#train-target").value) || "classification";
}

export async function onTrainDatasetChange() {
  const id = $("#train-dataset").value;
  if (!id) { fillSelect($("#train-target"), [], "—"); renderAlgorithms(); return; }
  const ds = await guarded("Could not read the dataset's columns", () => datasetDetail(id));
  if (!ds || $("#train-dataset").value !== id) return;   // another dataset was chosen meanwhile
  const cols = ds.columns.map((c) => ({ value: c.name, label: `${c.name} (${c.dtype})` }));
  const target = $("#train-target");
  fillSelect(target, cols, "(none: clustering)", "");
  if (cols.length) target.value = cols[cols.length - 1].value;   // the label is usually the last column
  await onTargetChange();
}

/** Shows "(inferred: …)" from the server's answer (GET /function/train/task) and re-lists the algorithms. */
async function onTargetChange() {
  const id = $("#train-dataset").value, target = $("#train-target").value;
  const hint = $("#train-task-inferred");
  const loaded = Boolean(id && state.datasetDetails.get(id));
  const known = loaded ? knownTask(id, target) : null;
  hint.textContent = !loaded ? "" : known ? `(inferred: ${known})` : "(inferring…)";
  renderAlgorithms();
  if (!loaded || known) return;
  const task = await guarded("Could not infer the task from the target", () => inferredTask(id, target));
  if ($("#train-dataset").value !== id || $("#train-target").value !== target) return;   // changed meanwhile
  hint.textContent = task ? `(inferred: ${task})` : "";
  renderAlgorithms();
}

function renderAlgorithms() {
  const task = currentTask();
  const sel = $("#train-algorithm");
  const prev = sel.value;
  const opts = [{ value: "auto", label: "auto (best by cross-validation)" }].concat(
    state.algorithms.filter((a) => a.name !== "auto" && (!a.task || a.task === task))
      .map((a) => ({ value: a.name, label: `${a.name} (${String(a.estimator || "").split(".").pop()})` })));
  fillSelect(sel, opts, null, prev || "auto");
  renderParamsForm();
}

function paramOverrides() {
  try { return JSON.parse($("#train-params").value || "{}") || {}; } catch (e) { return {}; }
}

function renderParamsForm() {
  const box = $("#train-params-form");
  box.replaceChildren();
  const algo = state.algorithms.find((a) => a.name === $("#train-algorithm").value && (!a.task || a.task === currentTask()));
  const overrides = paramOverrides();
  if (!algo) {
    box.append(el("p", { class: "muted", text: "“auto” tries the catalogue's candidates and keeps the best; it takes no parameters." }));
    return;
  }
  const params = algo.default_params || {};
  const keys = Object.keys(params);
  if (!keys.length) box.append(el("p", { class: "muted", text: "This algorithm has no tunable parameters here." }));
  keys.forEach((k) => {
    const def = params[k];
    const val = k in overrides ? overrides[k] : def;
    const id = "param-" + k.replace(/[^a-zA-Z0-9_-]/g, "_");
    let input;
    if (typeof def === "boolean") {
      input = el("input", { id, type: "checkbox" });
      input.checked = !!val;
    } else if (typeof def === "number") {
      input = el("input", { id, type: "number", step: Number.isInteger(def) ? "1" : "any", value: val === null ? "" : val });
    } else {
      input = el("input", { id, type: "text", value: val === null || val === undefined ? "" : (typeof val === "object" ? JSON.stringify(val) : val),
        placeholder: def === null ? "None" : "" });
    }
    input.dataset.param = k;
    input.addEventListener("change", () => onParamField(k, def, input));
    box.append(el("label", { for: id, class: typeof def === "boolean" ? "check" : null },
      typeof def === "boolean" ? [input, " " + k] : [k, input]));
  });
}

function parseFieldValue(def, input) {
  if (typeof def === "boolean") return input.checked;
  const raw = input.value.trim();
  if (typeof def === "number") return raw === "" ? def : Number(raw);
  if (raw === "" || raw === "None" || raw === "null") return null;
  if (/^-?\d+(\.\d+)?([eE]-?\d+)?$/.test(raw)) return Number(raw);
  if (raw === "true" || raw === "false") return raw === "true";
  if (/^[[{]/.test(raw)) { try { return JSON.parse(raw); } catch (e) { /* keep as text */ } }
  return raw;
}

function onParamField(key, def, input) {
  const overrides = paramOverrides();
  const v = parseFieldValue(def, input);
  if (JSON.stringify(v) === JSON.stringify(def)) delete overrides[key]; else overrides[key] = v;
  $("#train-params").value = JSON.stringify(overrides);
}

async function onTrainSubmit(ev) {
  ev.preventDefault();
  const datasetId = $("#train-dataset").value;
  if (!datasetId) { showError("Train", new Error("Upload or choose a dataset first.")); return; }
  let params;
  try {
    params = JSON.parse($("#train-params").value.trim() || "{}");
    if (params === null || typeof params !== "object" || Array.isArray(params)) throw new Error("not an object");
  } catch (e) {
    showError("Train", new Error("The parameters are not a JSON object, e.g. {\"n_estimators\": 100}."));
    $("#train-params").focus();
    return;
  }
  const body = { dataset_id: datasetId, algorithm: $("#train-algorithm").value || "auto", params };
  const target = $("#train-target").value;
  const task = $("#train-task").value;
  if (target && task !== "clustering") body.target = target;
  if (task) body.task = task;
  const name = $("#train-name").value.trim();
  if (name) body.name = name;
  const testSize = parseFloat($("#train-test-size").value);
  if (!isNaN(testSize) && task !== "clustering") body.test_size = testSize;
  Object.assign(body, forecastTrainFields());
  const btn = $("#train-button");
  btn.disabled = true;
  const res = await guarded("Could not start training", () => api("POST", "/function/train", body));
  btn.disabled = false;
  if (!res) return;
  hideError();
  $("#train-hint").textContent = `Training started: job ${res.job_id}.`;
  trackJob({ job_id: res.job_id, kind: "train", status: res.status || "queued", progress: 0,
    model_id: res.model_id, dataset_id: datasetId, created_at: new Date().toISOString() }, true);
  guarded("Could not list the models", loadModels);
}

export function wireTrain() {
  $("#train-dataset").addEventListener("change", onTrainDatasetChange);
  $("#train-target").addEventListener("change", onTargetChange);
  $("#train-task").addEventListener("change", renderAlgorithms);
  $("#train-algorithm").addEventListener("change", () => { $("#train-params").value = "{}"; renderParamsForm(); });
  $("#train-params").addEventListener("change", renderParamsForm);
  $("#train-form").addEventListener("submit", onTrainSubmit);
}
