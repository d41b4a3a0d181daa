/* What the page knows, shared by the sections; each section renders from it. */

export const POLL_MS = 500;
export const PAGE_SIZE = 25;
export const ACTIVE = new Set(["queued", "running"]);

export const state = {
  datasets: [],
  datasetDetails: new Map(),   // dataset_id -> dataset object with preview
  detailRequests: new Map(),   // dataset_id -> promise of it
  inferredTasks: new Map(),    // taskKey(dataset_id, target) -> the task the server infers
  taskRequests: new Map(),     // taskKey(dataset_id, target) -> promise of it
  algorithms: [],
  models: [],
  jobs: new Map(),             // job_id -> job object
  latestJobId: null,
  result: { jobId: null, offset: 0, total: 0 },
  predictUpload: null,         // promise of an upload started from #predict-file
};

/** Forgets what was read from the server (after the API base URL or token changed). */
export function forgetServerReads() {
  for (const m of [state.datasetDetails, state.detailRequests, state.inferredTasks, state.taskRequests]) m.clear();
}
