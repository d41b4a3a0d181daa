/* Kubepredict web page: plain JavaScript, no build step, no network beyond the Kubepredict API.
 *
 * Layout of this file:
 *   settings + api()         HTTP with the bearer token, errors turned into readable sentences
 *   errors                   the #error-banner
 *   ui.js, charts.js         DOM/format helpers and the small SVG chart builders (loaded first)
 *   data / train / models / predict / online / jobs    one block per section of the page
 *   polling                  every 500 ms while any job is queued or running
 */
(function () {
  "use strict";

  const POLL_MS = 500;
  const PAGE_SIZE = 25;
  const ACTIVE = new Set(["queued", "running"]);

  const $ = (sel, root) => (root || document).querySelector(sel);

  // ---------------------------------------------------------------- settings
  const settings = {
    get base() { return (localStorage.getItem("kubepredict.baseUrl") || "").replace(/\/+$/, ""); },
    get token() { return localStorage.getItem("kubepredict.token") || ""; },
    save(base, token) {
      localStorage.setItem("kubepredict.baseUrl", (base || "").trim());
      localStorage.setItem("kubepredict.token", (token || "").trim());
    },
  };

  function url(path) { return settings.base + path; }

  function authHeaders() {
    const h = {};
    if (settings.token) h.Authorization = "Bearer " + settings.token;
    return h;
  }

  class ApiError extends Error {
    constructor(message, status, code, details) {
      super(message);
      this.status = status;
      this.code = code || "";
      this.details = details || {};
    }
  }

  const STATUS_WORDS = {
    400: "the request was not accepted",
    401: "the API needs a valid token (set it in Settings)",
    403: "access is not allowed",
    404: "it was not found",
    405: "this action is not supported",
    409: "it conflicts with something in progress",
    413: "the data is too large",
    415: "this kind of file is not supported",
    422: "the data cannot be used for this",
    429: "too many jobs are waiting; try again in a moment",
    503: "the service is not available right now",
  };

  /** Turns a response body (any shape) into an ApiError with a sentence a person understands. */
  function errorFromResponse(status, text) {
    let body = null;
    try { body = JSON.parse(text); } catch (e) { /* not JSON: an HTML page from a proxy, say */ }
    const err = body && body.error;
    if (err && typeof err === "object" && err.message) {
      let msg = String(err.message);
      if (status === 401) msg += " — set the API token in Settings.";
      return new ApiError(msg, status, err.code, err.details);
    }
    const words = STATUS_WORDS[status] || (status >= 500 ? "the server had a problem" : "the request failed");
    return new ApiError(words.charAt(0).toUpperCase() + words.slice(1) + " (HTTP " + status + ").", status);
  }

  function networkError() {
    const where = settings.base || location.origin;
    return new ApiError("Could not reach the Kubepredict API at " + where +
      ". Check that the server is running and the API base URL in Settings.", 0, "network_error");
  }

  /** JSON request to the API; resolves to the parsed body (or null for 204), rejects with ApiError. */
  async function api(method, path, body) {
    const headers = Object.assign({ Accept: "application/json" }, authHeaders());
    const init = { method, headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(url(path), init);
    } catch (e) {
      throw networkError();
    }
    const text = await res.text();
    if (!res.ok) throw errorFromResponse(res.status, text);
    if (!text) return null;
    try { return JSON.parse(text); } catch (e) {
      throw new ApiError("The server answered with something that is not JSON.", res.status, "bad_response");
    }
  }

  /** Uploads a file as a CSV body with XMLHttpRequest so the upload progress can be shown. */
  function uploadFile(file, name, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", url("/function/upload?name=" + encodeURIComponent(name)));
      xhr.setRequestHeader("Content-Type", "text/csv");
      xhr.setRequestHeader("Accept", "application/json");
      const h = authHeaders();
      Object.keys(h).forEach((k) => xhr.setRequestHeader(k, h[k]));
      xhr.upload.onprogress = (ev) => { if (ev.lengthComputable) onProgress(ev.loaded / ev.total, ev.loaded, ev.total); };
      xhr.onerror = () => reject(networkError());
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) {
          try { resolve(JSON.parse(xhr.responseText)); } catch (e) {
            reject(new ApiError("The server answered with something that is not JSON.", xhr.status));
          }
        } else {
          reject(errorFromResponse(xhr.status, xhr.responseText));
        }
      };
      xhr.send(file);
    });
  }

  // ---------------------------------------------------------------- errors
  function showError(context, err) {
    const msg = err instanceof Error ? err.message : String(err);
    $("#error-text").textContent = context ? context + ": " + msg : msg;
    const banner = $("#error-banner");
    banner.hidden = false;
    banner.dataset.code = (err && err.code) || "";
  }
  function hideError() { $("#error-banner").hidden = true; }

  /** Runs an async action, showing any failure in the banner under a short description. */
  async function guarded(context, fn) {
    try { return await fn(); } catch (e) { showError(context, e); return undefined; }
  }

  const { el, fmtBytes, fmtNum, fmtCell, fmtTime, fmtDuration, jobSeconds, isNumericDtype, shortId, table, fillSelect, s, svgRoot, trunc, barChart, histogram, heatmap, scatter, figure } = window.KP;  // ui.js, charts.js

  // ---------------------------------------------------------------- state
  const state = {
    datasets: [],
    datasetDetails: new Map(),   // dataset_id -> dataset object with preview
    detailRequests: new Map(),   // dataset_id -> promise of it
    algorithms: [],
    models: [],
    jobs: new Map(),             // job_id -> job object
    latestJobId: null,
    result: { jobId: null, offset: 0, total: 0 },
    predictUpload: null,         // promise of an upload started from #predict-file
  };

  // ---------------------------------------------------------------- data
  let chosenFile = null;

  function setChosenFile(file) {
    chosenFile = file;
    $("#upload-file-label").textContent = file ? `${file.name} (${fmtBytes(file.size)})` : "";
    if (file && !$("#upload-name").value) $("#upload-name").placeholder = baseName(file.name);
  }
  const baseName = (n) => n.replace(/\.[^.]+$/, "") || n;

  function progressUI(rowSel, barSel, textSel) {
    return {
      start() { $(rowSel).hidden = false; $(barSel).value = 0; $(textSel).textContent = "Uploading…"; },
      update(frac, loaded, total) {
        $(barSel).value = frac;
        $(textSel).textContent = `Uploading… ${Math.round(frac * 100)}% (${fmtBytes(loaded)} of ${fmtBytes(total)})`;
      },
      done(text) { $(barSel).value = 1; $(textSel).textContent = text; },
      fail() { $(rowSel).hidden = true; },
    };
  }

  /** Uploads, refreshes the dataset lists, lets `select` pick the new dataset, then says "Uploaded". */
  async function doUpload(file, name, ui, select) {
    ui.start();
    try {
      const ds = await uploadFile(file, name, ui.update);
      await loadDatasets();
      if (select) await select(ds);
      ui.done(`Uploaded ${ds.name}: ${fmtNum(ds.rows)} rows, ${ds.columns.length} columns.`);
      return ds;
    } catch (e) {
      ui.fail();
      throw e;
    }
  }

  async function onUploadSubmit(ev) {
    ev.preventDefault();
    const file = chosenFile || $("#upload-file").files[0];
    if (!file) { showError("Upload", new Error("Choose a CSV file first.")); return; }
    const name = $("#upload-name").value.trim() || baseName(file.name);
    const btn = $("#upload-button");
    btn.disabled = true;
    const ds = await guarded(`Could not upload “${file.name}”`, () =>
      doUpload(file, name, progressUI("#upload-progress-row", "#upload-progress", "#upload-progress-text"), async (d) => {
        $("#train-dataset").value = d.dataset_id;
        await onTrainDatasetChange();
      }));
    btn.disabled = false;
    if (ds) {
      hideError();
      $("#upload-name").value = "";
      showDataset(ds.dataset_id);
    }
  }

  async function loadDatasets() {
    const body = await api("GET", "/function/upload?limit=200");
    state.datasets = body.datasets || [];
    renderDatasets();
  }

  function renderDatasets() {
    const tbody = $("#dataset-list");
    tbody.replaceChildren();
    if (!state.datasets.length) {
      tbody.append(el("tr", { class: "empty" }, [el("td", { colspan: 5, text: "No datasets yet." })]));
    }
    state.datasets.forEach((ds) => {
      const open = el("button", { type: "button", class: "link", text: ds.name,
        "aria-label": `Show dataset ${ds.name}`, onclick: () => showDataset(ds.dataset_id) });
      tbody.append(el("tr", { dataset: { datasetId: ds.dataset_id } }, [
        el("td", null, [open]),
        el("td", { class: "num", text: fmtNum(ds.rows) }),
        el("td", { class: "num", text: fmtNum((ds.columns || []).length) }),
        el("td", { class: "num", text: fmtBytes(ds.size_bytes) }),
        el("td", { text: fmtTime(ds.created_at) }),
      ]));
    });
    const opts = state.datasets.map((d) => ({ value: d.dataset_id, label: `${d.name} (${fmtNum(d.rows)} rows)` }));
    const trainSel = $("#train-dataset");
    const hadTrain = trainSel.value;
    fillSelect(trainSel, opts, opts.length ? null : "— upload a dataset first —");
    if (trainSel.value && trainSel.value !== hadTrain) onTrainDatasetChange();
    fillSelect($("#predict-dataset"), opts, opts.length ? null : "— choose a dataset —");
  }

  /** The dataset with its preview; concurrent callers share one request. Resolved ones stay in
   *  state.datasetDetails for synchronous readers. */
  function datasetDetail(id) {
    if (!state.detailRequests.has(id)) {
      const p = api("GET", "/function/upload/" + encodeURIComponent(id)).then((ds) => {
        state.datasetDetails.set(id, ds);
        return ds;
      });
      p.catch(() => state.detailRequests.delete(id));
      state.detailRequests.set(id, p);
    }
    return state.detailRequests.get(id);
  }

  async function showDataset(id) {
    const ds = await guarded("Could not open the dataset", () => datasetDetail(id));
    if (!ds) return;
    document.querySelectorAll("#dataset-list tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.datasetId === id));
    $("#dataset-detail").hidden = false;
    $("#dataset-detail-title").textContent = ds.name;
    $("#dataset-detail-meta").textContent =
      `${ds.dataset_id} · ${fmtNum(ds.rows)} rows · ${ds.columns.length} columns · ${fmtBytes(ds.size_bytes)} · uploaded ${fmtTime(ds.created_at)}`;
    table($("#dataset-columns"), [
      { label: "Column", key: "name" }, { label: "Type", key: "dtype" },
      { label: "Missing", key: "missing", num: true }, { label: "Unique", key: "unique", num: true },
    ], ds.columns);
    const preview = ds.preview || [];
    table($("#dataset-preview"), ds.columns.map((c) => ({ label: c.name, key: c.name, num: isNumericDtype(c.dtype) })), preview,
      { empty: "No preview rows." });
  }

  // ---------------------------------------------------------------- train
  async function loadAlgorithms() {
    const body = await api("GET", "/function/train/algorithms");
    state.algorithms = body.algorithms || [];
    renderAlgorithms();
  }

  // Mirrors the server's rule (ml/catalogue.py infer_task) as far as column stats allow:
  // floats are regression, integers with > 20 distinct values that are > 5 % of rows too.
  function inferTask(col, rows) {
    if (!col) return "clustering";
    const dtype = col.dtype || "";
    if (/bool/i.test(dtype) || !isNumericDtype(dtype)) return "classification";
    if (/float|double/i.test(dtype)) return "regression";
    return col.unique > 20 && col.unique > 0.05 * (rows || 0) ? "regression" : "classification";
  }

  function currentTask() {
    const chosen = $("#train-task").value;
    if (chosen) return chosen;
    const ds = state.datasetDetails.get($("#train-dataset").value);
    if (!ds) return "classification";
    const col = ds.columns.find((c) => c.name === $("#train-target").value);
    return inferTask(col, ds.rows);
  }

  async function onTrainDatasetChange() {
    const id = $("#train-dataset").value;
    if (!id) { fillSelect($("#train-target"), [], "—"); renderAlgorithms(); return; }
    const ds = await guarded("Could not read the dataset's columns", () => datasetDetail(id));
    if (!ds || $("#train-dataset").value !== id) return;   // another dataset was chosen meanwhile
    const cols = ds.columns.map((c) => ({ value: c.name, label: `${c.name} (${c.dtype})` }));
    const target = $("#train-target");
    fillSelect(target, cols, "(none: clustering)", "");
    if (cols.length) target.value = cols[cols.length - 1].value;   // the label is usually the last column
    onTargetChange();
  }

  function onTargetChange() {
    const ds = state.datasetDetails.get($("#train-dataset").value);
    const col = ds && ds.columns.find((c) => c.name === $("#train-target").value);
    $("#train-task-inferred").textContent = ds ? `(inferred: ${inferTask(col, ds.rows)})` : "";
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

  function renderParamsForm() {
    const box = $("#train-params-form");
    box.replaceChildren();
    const algo = state.algorithms.find((a) => a.name === $("#train-algorithm").value && (!a.task || a.task === currentTask()));
    let overrides = {};
    try { overrides = JSON.parse($("#train-params").value || "{}") || {}; } catch (e) { overrides = {}; }
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
    let overrides = {};
    try { overrides = JSON.parse($("#train-params").value || "{}") || {}; } catch (e) { overrides = {}; }
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

  // ---------------------------------------------------------------- models
  async function loadModels() {
    const body = await api("GET", "/function/train?limit=100");
    state.models = body.models || [];
    renderModels();
  }

  function asPairs(obj, names) {
    // feature_importance / cluster_sizes may be {name: value}, [{feature, importance}], [[name, value]] or [values].
    if (!obj) return [];
    if (Array.isArray(obj)) {
      return obj.map((v, i) => {
        if (Array.isArray(v)) return { label: String(v[0]), value: Number(v[1]) };
        if (v && typeof v === "object") {
          const label = v.feature ?? v.name ?? v.label ?? v.cluster ?? String(i);
          const value = v.importance ?? v.value ?? v.size ?? v.count ?? 0;
          return { label: String(label), value: Number(value) };
        }
        return { label: names && names[i] !== undefined ? String(names[i]) : String(i), value: Number(v) };
      });
    }
    if (typeof obj === "object") return Object.entries(obj).map(([k, v]) => ({ label: k, value: Number(v) }));
    return [];
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

  function renderModels() {
    const box = $("#model-list");
    box.replaceChildren();
    if (!state.models.length) { box.append(el("p", { class: "muted empty", text: "No models yet. Train one above." })); }
    state.models.forEach((model) => {
      const m = model.metrics || {};
      const headline = Object.keys(METRIC_NAMES).filter((k) => typeof m[k] === "number")
        .map((k) => el("div", { class: "metric" }, [el("dt", { text: METRIC_NAMES[k] }),
          el("dd", { text: /_rows$/.test(k) ? fmtNum(m[k]) : Number(m[k]).toFixed(Math.abs(m[k]) >= 1000 ? 1 : 3) })]));
      const job = [...state.jobs.values()].find((j) => j.kind === "train" && j.model_id === model.model_id);
      const statusText = model.status === "training" && job
        ? `training · ${job.stage || job.status} ${Math.round((job.progress || 0) * 100)}%` : model.status;
      const card = el("article", { class: "model-card status-" + model.status, dataset: { modelId: model.model_id, status: model.status } }, [
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
      box.append(card);
    });
    const ready = state.models.filter((m) => m.status === "ready")
      .map((m) => ({ value: m.model_id, label: `${m.name} v${m.version} · ${m.algorithm}` }));
    const sel = $("#predict-model");
    const prev = sel.value;
    fillSelect(sel, ready, ready.length ? null : "— train a model first —");
    if (sel.value !== prev) onPredictModelChange();
  }

  // ---------------------------------------------------------------- predict
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

  function setDownload(jobId) {
    const a = $("#result-download");
    if (jobId) {
      a.href = url(`/function/result/${encodeURIComponent(jobId)}?format=csv`);
      a.setAttribute("download", `predictions-${jobId}.csv`);
      a.removeAttribute("aria-disabled");
      a.classList.remove("disabled");
    } else {
      a.href = "#";
      a.setAttribute("aria-disabled", "true");
      a.classList.add("disabled");
    }
  }

  async function onDownloadClick(ev) {
    const a = $("#result-download");
    if (a.getAttribute("aria-disabled") === "true") { ev.preventDefault(); return; }
    const crossOrigin = settings.base && new URL(settings.base, location.href).origin !== location.origin;
    if (!settings.token && !crossOrigin) return;   // the browser downloads it directly
    // A plain link cannot carry the bearer token (and `download` is ignored across origins): fetch it.
    ev.preventDefault();
    await guarded("Could not download the predictions", async () => {
      let res;
      try { res = await fetch(a.href, { headers: authHeaders() }); } catch (e) { throw networkError(); }
      if (!res.ok) throw errorFromResponse(res.status, await res.text());
      const blobUrl = URL.createObjectURL(await res.blob());
      const tmp = el("a", { href: blobUrl, download: a.getAttribute("download") || "predictions.csv" });
      document.body.append(tmp);
      tmp.click();
      tmp.remove();
      setTimeout(() => URL.revokeObjectURL(blobUrl), 10000);
    });
  }

  async function loadResultPage(offset) {
    const jobId = state.result.jobId;
    if (!jobId) return;
    const job = await guarded("Could not load the results",
      () => api("GET", `/function/result/${encodeURIComponent(jobId)}?offset=${offset}&limit=${PAGE_SIZE}`));
    if (!job || state.result.jobId !== jobId) return;
    const p = job.predictions || { total: 0, offset, rows: [] };
    state.result.offset = p.offset ?? offset;
    state.result.total = p.total ?? 0;
    const rows = p.rows || [];
    const model = state.models.find((m) => m.model_id === job.model_id);
    const classes = (model && model.classes) || null;
    const numeric = rows.length && rows.every((r) => typeof r.prediction === "number");
    const cols = [{ label: "row", key: "row", num: true }, { label: "prediction", key: "prediction", num: numeric }];
    const withProba = rows.some((r) => Array.isArray(r.probabilities));
    if (withProba) {
      const n = Math.max(...rows.map((r) => (r.probabilities || []).length));
      for (let i = 0; i < n; i++) {
        cols.push({ label: "P(" + (classes && classes[i] !== undefined ? classes[i] : i) + ")", num: true,
          get: (r) => r.probabilities && typeof r.probabilities[i] === "number" ? r.probabilities[i].toFixed(3) : "" });
      }
    } else if (rows.some((r) => r.probabilities && typeof r.probabilities === "object")) {
      const keys = Object.keys(rows.find((r) => r.probabilities).probabilities);
      keys.forEach((k) => cols.push({ label: "P(" + k + ")", num: true,
        get: (r) => r.probabilities && typeof r.probabilities[k] === "number" ? r.probabilities[k].toFixed(3) : "" }));
    }
    table($("#result-table"), cols, rows, { empty: "No predictions." });
    $("#result-table").dataset.offset = String(state.result.offset);
    $("#result-table").dataset.total = String(state.result.total);
    updatePager();
    setDownload(jobId);
  }

  function updatePager() {
    const { offset, total, jobId } = state.result;
    const shown = $("#result-table").querySelectorAll("tbody tr:not(.empty)").length;
    $("#result-page").textContent = jobId && total
      ? `rows ${fmtNum(offset + 1)}–${fmtNum(offset + shown)} of ${fmtNum(total)}` : "";
    $("#result-prev").disabled = !jobId || offset <= 0;
    $("#result-next").disabled = !jobId || offset + PAGE_SIZE >= total;
  }

  function renderResultSummary(job) {
    const box = $("#results-chart");
    box.replaceChildren();
    const sm = job.summary || {};
    $("#results-meta").textContent = `Job ${job.job_id} · ${fmtNum(sm.rows ?? state.result.total)} rows scored` +
      (job.finished_at ? ` · finished ${fmtTime(job.finished_at)}` : "");
    const counts = sm.class_counts || sm.counts || sm.classes || sm.distribution;
    const hist = sm.histogram;
    const quant = sm.quantiles || sm.value_quantiles;
    if (counts && typeof counts === "object") {
      const items = asPairs(counts).sort((a, b) => b.value - a.value);
      box.append(figure("Predicted class distribution", barChart(items, { label: "rows per predicted class", digits: 0 })));
    } else if (hist && Array.isArray(hist.counts)) {
      box.append(figure("Predicted value histogram", histogram(hist.counts, hist.edges || hist.bins || [],
        { label: "histogram of predicted values", xLabel: "predicted value" })));
      if (quant && typeof quant === "object") {
        box.append(el("p", { class: "muted", text: "Quantiles: " + asPairs(quant).map((p) => `${p.label} ${fmtNum(p.value)}`).join(" · ") }));
      }
    } else if (quant && typeof quant === "object") {
      const items = asPairs(quant).map((p) => ({ label: /^[\d.]+$/.test(p.label) && Number(p.label) <= 1 ? `q${Math.round(Number(p.label) * 100)}` : p.label, value: p.value }));
      box.append(figure("Predicted value quantiles", barChart(items, { label: "quantiles of predicted values" })));
    }
    const extra = ["mean", "std", "min", "max"].filter((k) => typeof sm[k] === "number");
    if (extra.length) box.append(el("p", { class: "muted", text: extra.map((k) => `${k} ${fmtNum(sm[k])}`).join(" · ") }));
  }

  // ---------------------------------------------------------------- online ("try one row")
  async function onPredictModelChange() {
    const box = $("#online-fields");
    box.replaceChildren();
    $("#online-output").textContent = "";
    const model = state.models.find((m) => m.model_id === $("#predict-model").value);
    if (!model) { box.append(el("p", { class: "muted", text: "Choose a model first." })); return; }
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

  async function onOnlineSubmit(ev) {
    ev.preventDefault();
    const modelId = $("#predict-model").value;
    if (!modelId) { showError("Predict", new Error("Choose a trained model first.")); return; }
    const row = {};
    document.querySelectorAll("#online-fields input").forEach((inp) => {
      const raw = inp.value.trim();
      row[inp.dataset.feature] = raw === "" ? null : inp.dataset.numeric ? Number(raw) : raw;
    });
    const out = $("#online-output");
    out.textContent = "…";
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

  // ---------------------------------------------------------------- jobs
  function trackJob(job, isNew) {
    const prev = state.jobs.get(job.job_id) || {};
    state.jobs.set(job.job_id, Object.assign(prev, job));
    if (isNew) state.latestJobId = job.job_id;
    renderJobs();
    schedulePoll(0);
  }

  async function loadJobs() {
    const body = await api("GET", "/function/result?limit=30");
    (body.jobs || []).forEach((j) => {
      const prev = state.jobs.get(j.job_id) || {};
      state.jobs.set(j.job_id, Object.assign(prev, j));
    });
    if (!state.latestJobId) {
      const newest = [...state.jobs.values()].sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)))[0];
      if (newest) state.latestJobId = newest.job_id;
    }
    renderJobs();
    schedulePoll(0);
  }

  function jobLabel(job) {
    const pct = Math.round((job.progress || 0) * 100);
    const bits = [job.kind || "job", job.status];
    if (ACTIVE.has(job.status)) bits.push(`${job.stage ? job.stage + " " : ""}${pct}%`);
    if (job.status === "failed" && job.error) bits.push(job.error.message);
    return bits.join(" · ");
  }

  function renderJobs() {
    const list = $("#job-list");
    const jobs = [...state.jobs.values()].sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
    list.replaceChildren();
    if (!jobs.length) list.append(el("li", { class: "empty muted", text: "No jobs yet." }));
    jobs.forEach((job) => {
      const done = job.status === "succeeded";
      const value = done ? 1 : job.progress || 0;
      const dur = jobSeconds(job);
      list.append(el("li", { class: "job status-" + job.status, dataset: { jobId: job.job_id, status: job.status, kind: job.kind || "", modelId: job.model_id || "" } }, [
        el("div", { class: "job-head" }, [
          el("span", { class: "job-kind", text: job.kind || "job" }),
          el("span", { class: "badge " + job.status, text: job.status }),
          el("span", { class: "muted small job-id", title: job.job_id, text: shortId(job.job_id) }),
        ]),
        el("progress", { max: "1", value: String(value), class: "job-progress", "aria-label": `Progress of ${job.kind || ""} job ${job.job_id}` }),
        el("div", { class: "job-foot small" }, [
          el("span", { class: "job-stage", text: ACTIVE.has(job.status) ? `${job.stage || job.status} · ${Math.round(value * 100)}%`
            : job.status === "failed" && job.error ? job.error.message : `${Math.round(value * 100)}%` }),
          el("span", { class: "muted job-duration", text: dur === null ? "" : fmtDuration(dur) }),
          ACTIVE.has(job.status) ? el("button", { type: "button", class: "small danger", text: "Cancel",
            "aria-label": `Cancel job ${job.job_id}`, onclick: () => cancelJob(job.job_id) }) : null,
        ]),
      ]));
    });
    const latest = state.jobs.get(state.latestJobId);
    if (latest) {
      $("#job-status").textContent = `Latest: ${latest.job_id} — ${jobLabel(latest)}`;
      $("#job-status").dataset.status = latest.status;
      $("#job-status").dataset.jobId = latest.job_id;
      $("#job-progress").value = latest.status === "succeeded" ? 1 : latest.progress || 0;
    }
  }

  async function cancelJob(jobId) {
    const ok = await guarded("Could not cancel the job", () => api("DELETE", "/function/result/" + encodeURIComponent(jobId)));
    if (ok !== undefined) { hideError(); schedulePoll(0); }
  }

  // ---------------------------------------------------------------- polling
  let pollTimer = null, polling = false;
  function schedulePoll(delay) {
    if (pollTimer) clearTimeout(pollTimer);
    pollTimer = setTimeout(poll, delay);
  }

  async function poll() {
    pollTimer = null;
    if (polling) { schedulePoll(POLL_MS); return; }
    const active = [...state.jobs.values()].filter((j) => ACTIVE.has(j.status));
    if (!active.length) return;
    polling = true;
    let failed = false;
    const finished = [];
    await Promise.all(active.map(async (j) => {
      try {
        const fresh = await api("GET", "/function/result/" + encodeURIComponent(j.job_id));
        Object.assign(state.jobs.get(j.job_id), fresh);
        if (!ACTIVE.has(fresh.status)) finished.push(fresh);
      } catch (e) {
        failed = true;
        if (e.status === 404) { j.status = "failed"; j.error = { message: "the job no longer exists" }; }
        else showError("Could not follow job " + j.job_id, e);
      }
    }));
    polling = false;
    renderJobs();
    if (state.models.some((m) => m.status === "training")) renderModels();
    for (const job of finished) await onJobFinished(job);
    if ([...state.jobs.values()].some((j) => ACTIVE.has(j.status))) schedulePoll(failed ? POLL_MS * 4 : POLL_MS);
  }

  async function onJobFinished(job) {
    if (job.kind === "train") {
      await guarded("Could not list the models", loadModels);
      if (job.job_id === state.latestJobId) {
        $("#train-hint").textContent = job.status === "succeeded" ? "Training finished." : `Training ${job.status}.`;
      }
    } else if (job.kind === "predict" && job.job_id === state.result.jobId) {
      if (job.status === "succeeded") {
        $("#predict-hint").textContent = "Prediction finished.";
        $("#results-title").textContent = "Results";
        renderResultSummary(job);
        await loadResultPage(0);
      } else {
        $("#predict-hint").textContent = `Prediction ${job.status}.`;
        $("#results-meta").textContent = job.error ? job.error.message : `The job ${job.status}.`;
      }
    }
    if (job.status === "failed" && job.error) showError(`The ${job.kind || ""} job ${job.job_id} failed`, new Error(job.error.message));
  }

  // ---------------------------------------------------------------- wiring
  function wire() {
    $("#error-dismiss").addEventListener("click", hideError);
    document.addEventListener("keydown", (ev) => { if (ev.key === "Escape" && !$("#error-banner").hidden) hideError(); });

    $("#settings-base").value = settings.base;
    $("#settings-token").value = settings.token;
    $("#settings-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      settings.save($("#settings-base").value, $("#settings-token").value);
      $("#settings-saved").textContent = "Saved.";
      setTimeout(() => { $("#settings-saved").textContent = ""; }, 2000);
      state.datasetDetails.clear();
      state.detailRequests.clear();
      refreshAll();
    });

    $("#upload-file").addEventListener("change", () => setChosenFile($("#upload-file").files[0] || null));
    const drop = $("#upload-drop");
    ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (ev) => { ev.preventDefault(); drop.classList.add("over"); }));
    ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, () => drop.classList.remove("over")));
    drop.addEventListener("drop", (ev) => {
      ev.preventDefault();
      const files = ev.dataTransfer && ev.dataTransfer.files;
      if (!files || !files.length) return;
      try { $("#upload-file").files = files; } catch (e) { /* older browsers: keep it in chosenFile only */ }
      setChosenFile(files[0]);
    });
    $("#upload-form").addEventListener("submit", onUploadSubmit);

    $("#train-dataset").addEventListener("change", onTrainDatasetChange);
    $("#train-target").addEventListener("change", onTargetChange);
    $("#train-task").addEventListener("change", renderAlgorithms);
    $("#train-algorithm").addEventListener("change", () => { $("#train-params").value = "{}"; renderParamsForm(); });
    $("#train-params").addEventListener("change", renderParamsForm);
    $("#train-form").addEventListener("submit", onTrainSubmit);

    $("#predict-file").addEventListener("change", onPredictFileChange);
    $("#predict-model").addEventListener("change", onPredictModelChange);
    $("#predict-form").addEventListener("submit", onPredictSubmit);
    $("#result-prev").addEventListener("click", () => loadResultPage(Math.max(0, state.result.offset - PAGE_SIZE)));
    $("#result-next").addEventListener("click", () => loadResultPage(state.result.offset + PAGE_SIZE));
    $("#result-download").addEventListener("click", onDownloadClick);
    $("#online-form").addEventListener("submit", onOnlineSubmit);

    $("#jobs-refresh").addEventListener("click", () => guarded("Could not list the jobs", loadJobs));
    setDownload(null);
    updatePager();
  }

  async function refreshAll() {
    hideError();
    await guarded("Could not load the page's data", async () => {
      await Promise.all([loadAlgorithms(), loadDatasets()]);
      await Promise.all([loadModels(), loadJobs()]);
    });
  }

  wire();
  refreshAll();
})();
