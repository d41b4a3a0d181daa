/* Section 1, Data: upload a CSV (with progress), list the datasets, show one's columns and preview. */
import { api, uploadFile } from "./client.js";
import { guarded, hideError, showError } from "./banner.js";
import { datasetDetail } from "./lookups.js";
import { state } from "./state.js";
import { onTrainDatasetChange } from "./train.js";
import { $, el, fillSelect, fmtBytes, fmtNum, fmtTime, isNumericDtype, table } from "./ui.js";

let chosenFile = null;

function setChosenFile(file) {
  chosenFile = file;
  $("#upload-file-label").textContent = file ? `${file.name} (${fmtBytes(file.size)})` : "";
  if (file && !$("#upload-name").value) $("#upload-name").placeholder = baseName(file.name);
}
export const baseName = (n) => n.replace(/\.[^.]+$/, "") || n;

export function progressUI(rowSel, barSel, textSel) {
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
export async function doUpload(file, name, ui, select) {
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

export async function loadDatasets() {
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

export function wireDatasets() {
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
}
