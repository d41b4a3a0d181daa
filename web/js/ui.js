/* Kubepredict web page: DOM and formatting helpers (an ES module, no build step). */

// ---------------------------------------------------------------- small helpers
export const $ = (sel, root) => (root || document).querySelector(sel);

export function el(tag, attrs, children) {
  const node = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node.setAttribute(k, v === true ? "" : v);
    }
  }
  (children || []).forEach((c) => { if (c !== null && c !== undefined) node.append(c); });
  return node;
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + " " + units[i];
}
export function fmtNum(v, digits) {
  if (v === null || v === undefined || v === "") return "—";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return v.toLocaleString("en-US");
  return v.toFixed(digits === undefined ? 3 : digits);
}
export function fmtCell(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "number" && !Number.isInteger(v)) return String(Math.round(v * 1e4) / 1e4);
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}
export function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString();
}
export function fmtDuration(sec) {
  if (sec === null || sec === undefined || isNaN(sec)) return "";
  if (sec < 60) return sec.toFixed(1) + " s";
  const m = Math.floor(sec / 60);
  return m + " min " + Math.round(sec - m * 60) + " s";
}
export function jobSeconds(job) {
  if (typeof job.duration_seconds === "number" && job.finished_at) return job.duration_seconds;
  const start = Date.parse(job.started_at || job.created_at);
  if (isNaN(start)) return null;
  const end = job.finished_at ? Date.parse(job.finished_at) : Date.now();
  return Math.max(0, (end - start) / 1000);
}
export const isNumericDtype = (dtype) => /^(u?int|float|double|number|Int|Float)/i.test(dtype || "");
export const shortId = (id) => (id || "").length > 14 ? id.slice(0, 14) + "…" : id;

export function table(tableNode, columns, rows, opts) {
  opts = opts || {};
  tableNode.replaceChildren();
  const thead = el("thead", null, [el("tr", null, columns.map((c) =>
    el("th", { scope: "col", class: c.num ? "num" : null, text: c.label })))]);
  const tbody = el("tbody");
  rows.forEach((r) => {
    tbody.append(el("tr", null, columns.map((c) => {
      const v = c.get ? c.get(r) : r[c.key];
      return el("td", { class: c.num ? "num" : null, text: fmtCell(v) });
    })));
  });
  if (!rows.length) tbody.append(el("tr", { class: "empty" }, [el("td", { colspan: columns.length, text: opts.empty || "Nothing to show." })]));
  tableNode.append(thead, tbody);
}

export function fillSelect(select, options, placeholder, keep) {
  const prev = keep === undefined ? select.value : keep;
  select.replaceChildren();
  if (placeholder) select.append(el("option", { value: "", text: placeholder }));
  options.forEach((o) => select.append(el("option", { value: o.value, text: o.label })));
  if (prev && options.some((o) => o.value === prev)) select.value = prev;
  else if (options.length) select.value = options[0].value;
}
