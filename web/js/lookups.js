/* Cached reads that several sections share: a dataset with its preview, and the task the server
 * infers for a target column (GET /function/train/task, the same rule training applies). */
import { api } from "./client.js";
import { state } from "./state.js";

/** One shared request per key; a failed one is forgotten so the next caller asks again. */
function once(requests, key, load) {
  if (!requests.has(key)) {
    const p = load();
    p.catch(() => requests.delete(key));
    requests.set(key, p);
  }
  return requests.get(key);
}

/** The dataset with its preview; resolved ones stay in state.datasetDetails for synchronous readers. */
export function datasetDetail(id) {
  return once(state.detailRequests, id, () => api("GET", "/function/upload/" + encodeURIComponent(id)).then((ds) => {
    state.datasetDetails.set(id, ds);
    return ds;
  }));
}

const taskKey = (datasetId, target) => datasetId + "\u0000" + target;

/** The task training infers when `target` is the label (no target: clustering). */
export function inferredTask(datasetId, target) {
  if (!target) return Promise.resolve("clustering");
  const key = taskKey(datasetId, target);
  return once(state.taskRequests, key, () => api("GET", "/function/train/task?dataset_id=" + encodeURIComponent(datasetId) +
    "&target=" + encodeURIComponent(target)).then((body) => {
    state.inferredTasks.set(key, body.task);
    return body.task;
  }));
}

/** The answer of inferredTask if it has arrived, else null. */
export function knownTask(datasetId, target) {
  if (!target) return "clustering";
  return state.inferredTasks.get(taskKey(datasetId, target)) || null;
}
