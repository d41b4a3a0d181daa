/* Drift of a batch prediction against the model's training data (the job's summary.drift): one bar per
 * feature, worst PSI first; clicking a feature shows its reference and current histograms side by side. */
import { figure, s } from "./charts.js";
import { $, el, fmtNum } from "./ui.js";

const share = (counts) => { const t = counts.reduce((a, b) => a + b, 0) || 1; return counts.map((c) => c / t); };

/** Reference and current shares per bin, two columns per bin. */
export function compareHistogram(feature) {
  const h = feature.histogram, ref = share(h.reference), cur = share(h.current);
  const w = 380, ht = 180, l = 34, b = 44, t = 8, r = 6;
  const bw = (w - l - r) / h.bins.length, max = Math.max(...ref, ...cur, 1e-9);
  const label = `reference and current distribution of ${feature.feature}`;
  const root = s("svg", { viewBox: `0 0 ${w} ${ht}`, width: w, height: ht, role: "img", "aria-label": label, class: "chart-svg drift-hist" },
    [s("title", { text: label })]);
  h.bins.forEach((bin, i) => {
    [[ref[i], "ref", "reference"], [cur[i], "cur", "current"]].forEach(([v, cls, who], k) => {
      const bh = (v / max) * (ht - b - t);
      root.append(s("rect", { x: l + i * bw + 1 + k * (bw - 2) / 2, y: ht - b - bh, width: Math.max(1, (bw - 2) / 2), height: bh,
        class: "drift-" + cls }, [s("title", { text: `${bin}, ${who}: ${(v * 100).toFixed(1)} %` })]));
    });
    if (h.bins.length <= 12) {
      const x = l + i * bw + bw / 2;
      root.append(s("text", { x, y: ht - b + 12, "text-anchor": "end", transform: `rotate(-35 ${x} ${ht - b + 12})`,
        class: "chart-tick", text: String(bin).slice(0, 14) }));
    }
  });
  root.append(s("line", { x1: l, y1: ht - b, x2: w - r, y2: ht - b, class: "axis" }),
    s("text", { x: l - 4, y: t + 8, "text-anchor": "end", class: "chart-tick", text: `${Math.round(max * 100)}%` }));
  return root;
}

function showFeature(box, feature) {
  const detail = $("#drift-detail", box);
  const test = feature.test ? `${feature.test.name === "ks" ? "KS" : "χ²"} ${fmtNum(feature.test.statistic)}, p ${fmtNum(feature.test.p_value, 4)}` : "";
  const missing = feature.missing_rate ? `missing ${(feature.missing_rate.reference * 100).toFixed(1)} % → ${(feature.missing_rate.current * 100).toFixed(1)} %` : "";
  const unseen = feature.unseen && feature.unseen.count ? `${feature.unseen.count} unseen (${feature.unseen.examples.join(", ")})` : "";
  detail.replaceChildren(
    figure(`${feature.feature}: training (light) vs this job (dark)`, compareHistogram(feature)),
    el("p", { class: "muted", text: [`PSI ${fmtNum(feature.psi)}`, test, missing, unseen].filter(Boolean).join(" · ") }));
  box.querySelectorAll(".drift-row").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.feature === feature.feature)));
}

/** Render summary.drift into #drift-report (empty it when there is none). */
export function renderDrift(drift) {
  const box = $("#drift-report");
  if (!box) return;
  box.replaceChildren();
  if (!drift) return;
  if (!drift.available) {
    box.append(el("p", { class: "muted", text: "No drift report: " + (drift.reason || "unavailable") }));
    return;
  }
  const max = Math.max(drift.threshold || 0, ...drift.features.map((f) => f.psi || 0), 1e-9);
  const rows = drift.features.map((f) => {
    const over = f.psi !== null && f.psi > drift.threshold;
    return el("button", { type: "button", class: "drift-row" + (over ? " over" : ""), dataset: { feature: f.feature },
      "aria-pressed": "false", title: `PSI ${fmtNum(f.psi)}`, onclick: () => showFeature(box, f) }, [
      el("span", { class: "drift-name", text: f.feature }),
      el("span", { class: "drift-track" }, [el("span", { class: "drift-fill", style: `width:${Math.max(1, ((f.psi || 0) / max) * 100)}%` })]),
      el("span", { class: "drift-psi", text: fmtNum(f.psi) })]);
  });
  const pred = drift.prediction && drift.prediction.psi !== null ? ` · predictions PSI ${fmtNum(drift.prediction.psi)}` : "";
  box.append(
    el("h4", { text: drift.detected ? `Drift detected (PSI over ${drift.threshold})` : "Drift against the training data" }),
    el("p", { class: "muted", text: `PSI per feature, worst first; ${fmtNum(drift.rows)} rows against ${fmtNum(drift.reference_rows)} training rows${pred}. Click a feature for its histograms.` }),
    el("div", { class: "drift-bars", role: "group", "aria-label": "PSI per feature" }, rows),
    el("div", { id: "drift-detail" }));
  if (drift.features.length) showFeature(box, drift.features[0]);
}
