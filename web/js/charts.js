/* Kubepredict web page: small SVG charts (bar, histogram, heatmap, scatter) (an ES module, no build step). */
import { el, fmtNum } from "./ui.js";

// ---------------------------------------------------------------- SVG charts
const SVGNS = "http://www.w3.org/2000/svg";
/** An SVG element with attributes (`text`: its text) and children: every chart module draws with it. */
export function s(tag, attrs, children) {
  const node = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  (children || []).forEach((c) => c && node.append(c));
  return node;
}
function svgRoot(w, h, label) {
  return s("svg", { viewBox: `0 0 ${w} ${h}`, width: w, height: h, role: "img", "aria-label": label, class: "chart-svg" },
    [s("title", { text: label })]);
}
const trunc = (t, n) => { t = String(t); return t.length > n ? t.slice(0, n - 1) + "…" : t; };

/** Horizontal bar chart of {label, value} items. */
export function barChart(items, opts) {
  opts = opts || {};
  const labelW = opts.labelWidth || 110, barW = opts.width || 200, rowH = 20, pad = 4;
  const w = labelW + barW + 60, h = items.length * rowH + pad * 2;
  const max = Math.max(...items.map((i) => Math.abs(i.value)), 1e-12);
  const root = svgRoot(w, h, opts.label || "bar chart");
  items.forEach((it, i) => {
    const y = pad + i * rowH;
    const len = Math.max(1, (Math.abs(it.value) / max) * barW);
    root.append(
      s("text", { x: labelW - 6, y: y + rowH / 2 + 4, "text-anchor": "end", class: "chart-label", text: trunc(it.label, 16) },
        [s("title", { text: String(it.label) })]),
      s("rect", { x: labelW, y: y + 3, width: len, height: rowH - 6, rx: 2, class: "bar" + (it.value < 0 ? " neg" : "") },
        [s("title", { text: `${it.label}: ${fmtNum(it.value)}` })]),
      s("text", { x: labelW + len + 4, y: y + rowH / 2 + 4, class: "chart-value",
        text: opts.fixed !== undefined ? it.value.toFixed(opts.fixed) : fmtNum(it.value, opts.digits) }));
  });
  return root;
}

/** Histogram as vertical columns: counts per bin, bin edges on the x axis. */
export function histogram(counts, edges, opts) {
  opts = opts || {};
  const w = 360, h = 170, l = 36, b = 30, t = 8, r = 8;
  const max = Math.max(1, ...counts);
  const bw = (w - l - r) / counts.length;
  const root = svgRoot(w, h, opts.label || "histogram");
  counts.forEach((c, i) => {
    const bh = (c / max) * (h - b - t);
    const range = edges.length > i + 1 ? `${fmtNum(edges[i], 3)} to ${fmtNum(edges[i + 1], 3)}` : `bin ${i + 1}`;
    root.append(s("rect", { x: l + i * bw + 1, y: h - b - bh, width: Math.max(1, bw - 2), height: bh, class: "bar" },
      [s("title", { text: `${range}: ${c}` })]));
  });
  root.append(
    s("line", { x1: l, y1: h - b, x2: w - r, y2: h - b, class: "axis" }),
    s("text", { x: l - 4, y: t + 8, "text-anchor": "end", class: "chart-tick", text: String(max) }),
    s("text", { x: l - 4, y: h - b, "text-anchor": "end", class: "chart-tick", text: "0" }));
  if (edges.length) {
    root.append(
      s("text", { x: l, y: h - b + 14, "text-anchor": "start", class: "chart-tick", text: fmtNum(edges[0], 2) }),
      s("text", { x: w - r, y: h - b + 14, "text-anchor": "end", class: "chart-tick", text: fmtNum(edges[edges.length - 1], 2) }));
  }
  root.append(s("text", { x: (w + l) / 2, y: h - 4, "text-anchor": "middle", class: "chart-axis", text: opts.xLabel || "value" }));
  return root;
}

/** Confusion matrix heatmap: rows are actual labels, columns predicted. */
export function heatmap(matrix, labels) {
  const n = labels.length, cell = n > 8 ? 24 : 36, left = 96, top = 70;
  const w = left + n * cell + 60, h = top + n * cell + 8;
  const max = Math.max(1, ...matrix.flat());
  const root = svgRoot(w, h, "confusion matrix, rows actual, columns predicted");
  root.append(s("text", { x: left + (n * cell) / 2, y: 12, "text-anchor": "middle", class: "chart-axis", text: "predicted" }));
  root.append(s("text", { x: 12, y: top + (n * cell) / 2, "text-anchor": "middle",
    transform: `rotate(-90 12 ${top + (n * cell) / 2})`, class: "chart-axis", text: "actual" }));
  labels.forEach((lab, j) => {
    root.append(s("text", { x: left + j * cell + cell / 2 - 3, y: top - 6, "text-anchor": "start",
      transform: `rotate(-45 ${left + j * cell + cell / 2 - 3} ${top - 6})`, class: "chart-label", text: trunc(lab, 10) },
      [s("title", { text: String(lab) })]));
    root.append(s("text", { x: left - 6, y: top + j * cell + cell / 2 + 4, "text-anchor": "end", class: "chart-label", text: trunc(lab, 11) }));
  });
  matrix.forEach((row, i) => row.forEach((v, j) => {
    const t = v / max;
    root.append(
      s("rect", { x: left + j * cell, y: top + i * cell, width: cell - 2, height: cell - 2, rx: 2,
        class: "heat" + (i === j ? " diag" : ""), style: `fill-opacity:${0.08 + 0.92 * t}` },
        [s("title", { text: `actual ${labels[i]}, predicted ${labels[j]}: ${v}` })]),
      s("text", { x: left + j * cell + cell / 2 - 1, y: top + i * cell + cell / 2 + 3, "text-anchor": "middle",
        class: "heat-text" + (t > 0.55 ? " on-dark" : ""), text: String(v) }));
  }));
  return root;
}

/** Scatter of predicted against actual values, with the y = x line. */
export function scatter(xs, ys, opts) {
  opts = opts || {};
  const w = 260, h = 200, l = 40, b = 26, t = 8, r = 8;
  const all = xs.concat(opts.diagonal ? ys : []);
  const xmin = Math.min(...all), xmax = Math.max(...all);
  const ymin = Math.min(...ys, opts.diagonal ? xmin : Infinity), ymax = Math.max(...ys, opts.diagonal ? xmax : -Infinity);
  const sx = (v) => l + ((v - xmin) / (xmax - xmin || 1)) * (w - l - r);
  const sy = (v) => h - b - ((v - ymin) / (ymax - ymin || 1)) * (h - b - t);
  const root = svgRoot(w, h, opts.label || "scatter plot");
  root.append(s("line", { x1: l, y1: h - b, x2: w - r, y2: h - b, class: "axis" }), s("line", { x1: l, y1: t, x2: l, y2: h - b, class: "axis" }));
  if (opts.diagonal) root.append(s("line", { x1: sx(xmin), y1: sy(xmin), x2: sx(xmax), y2: sy(xmax), class: "ref" }));
  if (opts.zero && ymin < 0 && ymax > 0) root.append(s("line", { x1: l, y1: sy(0), x2: w - r, y2: sy(0), class: "ref" }));
  xs.forEach((x, i) => root.append(s("circle", { cx: sx(x), cy: sy(ys[i]), r: 2.5, class: "dot" })));
  root.append(
    s("text", { x: (w + l) / 2, y: h - 6, "text-anchor": "middle", class: "chart-axis", text: opts.xLabel || "x" }),
    s("text", { x: 10, y: (h - b) / 2, "text-anchor": "middle", transform: `rotate(-90 10 ${(h - b) / 2})`, class: "chart-axis", text: opts.yLabel || "y" }),
    s("text", { x: l - 4, y: t + 8, "text-anchor": "end", class: "chart-tick", text: fmtNum(ymax, 1) }),
    s("text", { x: l - 4, y: h - b, "text-anchor": "end", class: "chart-tick", text: fmtNum(ymin, 1) }));
  return root;
}

export function figure(title, chart) {
  return el("figure", { class: "chart" }, [el("figcaption", { text: title }), chart]);
}

/** {label, value} pairs from feature_importance / cluster_sizes / class counts, which may come as
 *  {name: value}, [{feature, importance}], [[name, value]] or [values] (labelled by `names`). */
export function asPairs(obj, names) {
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
