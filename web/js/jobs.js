/* Section 5, Jobs: the list with progress bars and Cancel, and polling every POLL_MS while any job
 * is queued or running; a finished job refreshes the models or the results it concerns. */
import { api } from "./client.js";
import { guarded, hideError, showError } from "./banner.js";
import { loadModels, renderModels } from "./models.js";
import { loadResultPage, renderResultSummary } from "./results.js";
import { ACTIVE, POLL_MS, state } from "./state.js";
import { $, el, fmtDuration, jobSeconds, shortId } from "./ui.js";

export function trackJob(job, isNew) {
  const prev = state.jobs.get(job.job_id) || {};
  state.jobs.set(job.job_id, Object.assign(prev, job));
  if (isNew) state.latestJobId = job.job_id;
  renderJobs();
  schedulePoll(0);
}

export async function loadJobs() {
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

export function wireJobs() {
  $("#jobs-refresh").addEventListener("click", () => guarded("Could not list the jobs", loadJobs));
}
