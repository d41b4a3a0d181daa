/* Kubepredict web page: native ES modules, no build step, no network beyond the Kubepredict API.
 *
 *   js/client.js    the one API client (base URL + bearer token from Settings, JSON, readable errors)
 *   js/state.js     what the page knows, shared by the sections
 *   js/lookups.js   cached reads several sections share (dataset detail, the server's inferred task)
 *   js/banner.js    the #error-banner
 *   js/ui.js, js/charts.js        DOM/format helpers and the small SVG charts
 *   js/settings.js, js/datasets.js, js/train.js, js/models.js, js/predict.js, js/results.js,
 *   js/online.js, js/jobs.js      one module per section of the page
 *   js/drift.js, js/explain.js    a batch prediction's drift report; "Explain this row" (online)
 *   js/registry.js  the models section as a registry: table by name, aliases, the opened card, compare
 *
 * This entry module wires the sections and loads the page's data.
 */
import { wireBanner, guarded, hideError } from "./js/banner.js";
import { loadDatasets, wireDatasets } from "./js/datasets.js";
import { wireExplain } from "./js/explain.js";
import { loadJobs, wireJobs } from "./js/jobs.js";
import { loadModels } from "./js/models.js";
import { wireOnline } from "./js/online.js";
import { wirePredict } from "./js/predict.js";
import { wireResults } from "./js/results.js";
import { wireSettings } from "./js/settings.js";
import { loadAlgorithms, wireTrain } from "./js/train.js";
import { loadForecastAlgorithms, wireForecast } from "./js/forecast.js";

async function refreshAll() {
  hideError();
  await guarded("Could not load the page's data", async () => {
    await Promise.all([loadAlgorithms(), loadDatasets()]);
    await loadForecastAlgorithms();
    await Promise.all([loadModels(), loadJobs()]);
  });
}

wireBanner();
wireSettings(refreshAll);
wireDatasets();
wireTrain();
wireForecast();
wirePredict();
wireResults();
wireOnline();
wireExplain();
wireJobs();
refreshAll();
