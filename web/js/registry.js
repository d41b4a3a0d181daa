/* Section 3, Models as a registry: a compact table grouped by name (versions, aliases, main metric,
 * status); the full card with charts only for the version opened, with its aliases (point one here:
 * promote or roll back) and its promotion decision; and a compare view of two versions' metrics. */
import { api } from "./client.js";
import { guarded } from "./banner.js";
import { el, fmtNum } from "./ui.js";

const MAIN = { classification: "accuracy", regression: "r2", clustering: "silhouette" };
const LOWER_IS_BETTER = new Set(["mae", "rmse", "fit_seconds"]);
// What the reader chose; kept across the polling re-renders.
const view = { open: null, compare: [], alias: "champion" };

const mainMetric = (m) => {
  if (m.task === "forecasting") {  // the backtest's MASE against seasonal naive (below 1: beats it)
    const v = m.metrics && m.metrics.backtest && m.metrics.backtest.overall && m.metrics.backtest.overall.mase;
    return typeof v === "number" ? `MASE ${v.toFixed(3)}` : "—";
  }
  const key = MAIN[m.task];
  const v = key && m.metrics ? m.metrics[key] : undefined;
  return typeof v === "number" ? `${key} ${v.toFixed(3)}` : "—";
};

function groups(models) {
  const byName = new Map();
  models.forEach((m) => { if (!byName.has(m.name)) byName.set(m.name, []); byName.get(m.name).push(m); });
  for (const list of byName.values()) list.sort((a, b) => b.version - a.version);
  return [...byName.entries()];
}

function aliasChips(model) {
  return (model.aliases || []).map((a) => el("span", { class: "alias-chip", dataset: { alias: a }, text: a }));
}

function row(model, jobs, rerender) {
  const job = [...jobs.values()].find((j) => j.kind === "train" && j.model_id === model.model_id);
  const status = model.status === "training" && job
    ? `training · ${Math.round((job.progress || 0) * 100)}%` : model.status;
  const compare = el("input", { type: "checkbox", class: "compare-pick", "aria-label": `compare ${model.name} v${model.version}`,
    checked: view.compare.includes(model.model_id), disabled: model.status !== "ready",
    onchange: (e) => {
      view.compare = view.compare.filter((id) => id !== model.model_id);
      if (e.target.checked) view.compare = [...view.compare, model.model_id].slice(-2);
      rerender();
    } });
  const opened = view.open === model.model_id;
  return el("tr", { class: opened ? "selected" : null, dataset: { modelId: model.model_id, status: model.status } }, [
    el("td", { class: "version", text: "v" + model.version }),
    el("td", null, aliasChips(model)),
    el("td", { class: "num", text: mainMetric(model) }),
    el("td", null, [el("span", { class: "badge " + model.status, text: status })]),
    el("td", null, [compare]),
    el("td", null, [el("button", { type: "button", class: "small open-model", "aria-expanded": String(opened),
      text: opened ? "Close" : "Open", onclick: () => { view.open = opened ? null : model.model_id; rerender(); } })]),
  ]);
}

function compareView(models) {
  const [a, b] = view.compare.map((id) => models.find((m) => m.model_id === id));
  if (!a || !b) return null;
  const keys = [...new Set([...Object.keys(a.metrics || {}), ...Object.keys(b.metrics || {})])]
    .filter((k) => typeof (a.metrics || {})[k] === "number" || typeof (b.metrics || {})[k] === "number");
  const cell = (v) => el("td", { class: "num", text: typeof v === "number" ? fmtNum(v) : "—" });
  const rows = keys.map((k) => {
    const va = (a.metrics || {})[k], vb = (b.metrics || {})[k];
    const diff = typeof va === "number" && typeof vb === "number" ? vb - va : null;
    const better = diff === null || diff === 0 ? "" : (diff > 0) !== LOWER_IS_BETTER.has(k) ? "better" : "worse";
    return el("tr", { dataset: { metric: k } }, [el("th", { scope: "row", text: k }), cell(va), cell(vb),
      el("td", { class: "num " + better, text: diff === null ? "—" : (diff > 0 ? "+" : "") + diff.toFixed(4) })]);
  });
  const label = (m) => `${m.name} v${m.version}`;
  return el("div", { id: "model-compare", class: "compare" }, [
    el("h3", { text: `Compare ${label(a)} and ${label(b)}` }),
    el("div", { class: "table-wrap" }, [el("table", { class: "data-table" }, [
      el("thead", null, [el("tr", null, [el("th", { text: "metric" }), el("th", { class: "num", text: label(a) }),
        el("th", { class: "num", text: label(b) }), el("th", { class: "num", text: "second − first" })])]),
      el("tbody", null, rows)])]),
  ]);
}

function promotionNote(model, jobs) {
  const job = [...jobs.values()].find((j) => j.kind === "train" && j.model_id === model.model_id);
  const p = job && job.summary && job.summary.promotion;
  if (!p) return null;
  const score = (s) => (typeof s === "number" ? s.toFixed(3) : "—");
  const versus = p.champion ? ` vs v${p.champion.version} ${score(p.champion.score)}` : "";
  const text = `Promotion to ${p.alias} on ${p.metric}: ${p.promoted ? "promoted" : "not promoted"} — `
    + `this ${score(p.challenger.score)}${versus} (${p.reason})`;
  return el("p", { class: "promotion " + (p.promoted ? "promoted" : "kept"), text });
}

function aliasTools(model, reload) {
  if (model.status !== "ready") return null;
  const input = el("input", { id: "alias-name", value: view.alias, "aria-label": "alias name", size: 12,
    oninput: (e) => { view.alias = e.target.value; } });
  const set = el("button", { type: "button", id: "alias-set", class: "small", text: `Point alias at v${model.version}`,
    onclick: () => guarded(`Could not set the alias “${input.value}”`, async () => {
      await api("PUT", `/function/train/${encodeURIComponent(model.name)}/aliases/${encodeURIComponent(input.value)}`,
        { version: model.version });
      await reload();
    }) });
  const remove = (model.aliases || []).map((a) => el("button", { type: "button", class: "small alias-remove",
    dataset: { alias: a }, text: `Remove ${a}`,
    onclick: () => guarded(`Could not remove the alias “${a}”`, async () => {
      await api("DELETE", `/function/train/${encodeURIComponent(model.name)}/aliases/${encodeURIComponent(a)}`);
      await reload();
    }) }));
  return el("div", { class: "alias-tools" }, [el("span", { class: "muted small", text: "Alias" }), input, set, ...remove]);
}

/** Draws the registry into ``box``; ``card(model)`` is the full card, ``reload()`` re-reads the models. */
export function renderRegistry(box, models, jobs, card, reload) {
  const rerender = () => renderRegistry(box, models, jobs, card, reload);
  view.compare = view.compare.filter((id) => models.some((m) => m.model_id === id));
  const body = [];
  groups(models).forEach(([name, versions]) => {
    body.push(el("tr", { class: "group-row", dataset: { name } }, [el("th", { colspan: 6, scope: "rowgroup" }, [
      name + " ", el("span", { class: "muted small", text: `${versions.length} version${versions.length > 1 ? "s" : ""}` })])]));
    versions.forEach((m) => body.push(row(m, jobs, rerender)));
  });
  const tableNode = el("table", { class: "data-table registry" }, [
    el("thead", null, [el("tr", null, ["version", "aliases", "main metric", "status", "compare", ""]
      .map((t) => el("th", { scope: "col", text: t })))]),
    el("tbody", null, body),
  ]);
  const opened = models.find((m) => m.model_id === view.open);
  const detail = el("div", { id: "model-detail" }, opened
    ? [aliasTools(opened, reload), promotionNote(opened, jobs), card(opened)] : []);
  const typing = document.activeElement && document.activeElement.id === "alias-name";
  box.replaceChildren(el("div", { class: "table-wrap" }, [tableNode]), compareView(models) || "", detail);
  if (typing && document.getElementById("alias-name")) document.getElementById("alias-name").focus();  // polls redraw
}

/** Opens a model's card (e.g. after "Use for prediction" elsewhere); the caller re-renders. */
export function openModel(modelId) { view.open = modelId; }

