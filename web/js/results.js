/* Results of a batch prediction: the summary chart, the paged table and the CSV download. */
import { api, fetchBlob, settings, url } from "./client.js";
import { guarded } from "./banner.js";
import { renderDrift } from "./drift.js";
import { asPairs, barChart, figure, histogram } from "./charts.js";
import { PAGE_SIZE, state } from "./state.js";
import { $, el, fmtNum, fmtTime, table } from "./ui.js";
import { forecastColumns } from "./forecast.js";

export function setDownload(jobId) {
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
    const blobUrl = URL.createObjectURL(await fetchBlob(a.href));
    const tmp = el("a", { href: blobUrl, download: a.getAttribute("download") || "predictions.csv" });
    document.body.append(tmp);
    tmp.click();
    tmp.remove();
    setTimeout(() => URL.revokeObjectURL(blobUrl), 10000);
  });
}

export async function loadResultPage(offset) {
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
  table($("#result-table"), forecastColumns(rows) || cols, rows, { empty: "No predictions." });
  $("#result-table").dataset.offset = String(state.result.offset);
  $("#result-table").dataset.total = String(state.result.total);
  updatePager();
  setDownload(jobId);
}

export function updatePager() {
  const { offset, total, jobId } = state.result;
  const shown = $("#result-table").querySelectorAll("tbody tr:not(.empty)").length;
  $("#result-page").textContent = jobId && total
    ? `rows ${fmtNum(offset + 1)}–${fmtNum(offset + shown)} of ${fmtNum(total)}` : "";
  $("#result-prev").disabled = !jobId || offset <= 0;
  $("#result-next").disabled = !jobId || offset + PAGE_SIZE >= total;
}

export function renderResultSummary(job) {
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
  renderDrift(sm.drift);
}

export function wireResults() {
  $("#result-prev").addEventListener("click", () => loadResultPage(Math.max(0, state.result.offset - PAGE_SIZE)));
  $("#result-next").addEventListener("click", () => loadResultPage(state.result.offset + PAGE_SIZE));
  $("#result-download").addEventListener("click", onDownloadClick);
  setDownload(null);
  updatePager();
}
