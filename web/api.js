// API reference: renders the server's OpenAPI document (routes, parameters, bodies, responses, schemas).
// No build step, no external resources; text is always set with textContent.

const base = (localStorage.getItem("kubepredict.baseUrl") || "").replace(/\/+$/, "");

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const slug = (s) => s.replace(/[^A-Za-z0-9]+/g, "-");

function refName(ref) { return ref.split("/").pop(); }

// A JSON Schema as one short line: references become links to the schema section.
function typeOf(schema) {
  if (!schema || Object.keys(schema).length === 0) return ["any"];
  if (schema.$ref) { const n = refName(schema.$ref); return [el("a", { href: `#schema-${slug(n)}` }, n)]; }
  for (const key of ["anyOf", "oneOf", "allOf"]) {
    if (schema[key]) {
      const parts = [];
      schema[key].forEach((s, i) => { if (i) parts.push(key === "allOf" ? " & " : " | "); parts.push(...typeOf(s)); });
      return parts;
    }
  }
  if (schema.type === "string" && schema.maxLength === 0) return ["empty (= absent)"];
  if (schema.enum) return [schema.enum.map((v) => JSON.stringify(v)).join(" | ")];
  if (schema.const !== undefined) return [JSON.stringify(schema.const)];
  if (schema.type === "array") return ["array of ", ...typeOf(schema.items)];
  if (schema.type === "object" && schema.additionalProperties && typeof schema.additionalProperties === "object") {
    return ["object of ", ...typeOf(schema.additionalProperties)];
  }
  const limits = [];
  for (const [k, sym] of [["minimum", "≥"], ["exclusiveMinimum", ">"], ["maximum", "≤"], ["exclusiveMaximum", "<"],
    ["minLength", "min length "], ["maxLength", "max length "], ["minItems", "min items "]]) {
    if (schema[k] !== undefined) limits.push(`${sym}${schema[k]}`);
  }
  const t = Array.isArray(schema.type) ? schema.type.join(" | ") : (schema.type || "any");
  return [t + (limits.length ? ` (${limits.join(", ")})` : "")];
}

function parametersTable(params) {
  return el("table", {},
    el("thead", {}, el("tr", {}, el("th", {}, "name"), el("th", {}, "in"), el("th", {}, "type"), el("th", {}, "description"))),
    el("tbody", {}, params.map((p) => el("tr", {},
      el("td", {}, el("code", {}, p.name), p.required ? " *" : ""), el("td", {}, p.in),
      el("td", {}, ...typeOf(p.schema)), el("td", {}, p.description || "")))));
}

function contentList(content) {
  return el("ul", {}, Object.entries(content || {}).map(([media, m]) =>
    el("li", {}, el("code", {}, media), ": ", ...typeOf(m.schema))));
}

function operation(path, method, op) {
  const card = el("section", { class: "op", id: `op-${op.operationId}` },
    el("h3", {}, el("span", { class: `method ${method}` }, method.toUpperCase()), path,
      (op.security || []).length === 0 ? el("span", { class: "badge" }, "open") : el("span", { class: "badge" }, "token when set")),
    el("p", {}, op.summary || ""));
  if (op.parameters?.length) card.append(el("h4", {}, "Parameters"), parametersTable(op.parameters));
  if (op.requestBody) card.append(el("h4", {}, `Body${op.requestBody.required ? "" : " (optional)"}`), contentList(op.requestBody.content));
  const rows = Object.entries(op.responses || {}).map(([status, r]) => el("tr", {},
    el("td", {}, el("code", {}, status)), el("td", {}, r.description || ""),
    el("td", {}, Object.keys(r.content || {}).length ? contentList(r.content) : "—"),
    el("td", {}, Object.keys(r.links || {}).map((name) => el("div", {}, el("a", { href: `#op-${r.links[name].operationId}` }, name))))));
  card.append(el("h4", {}, "Responses"), el("table", {},
    el("thead", {}, el("tr", {}, el("th", {}, "status"), el("th", {}, "meaning"), el("th", {}, "body"), el("th", {}, "next"))),
    el("tbody", {}, rows)));
  return card;
}

function schemaSection(name, schema) {
  const required = new Set(schema.required || []);
  const section = el("section", { class: "schema", id: `schema-${slug(name)}` }, el("h3", {}, name));
  if (schema.description) section.append(el("p", { class: "muted" }, schema.description));
  const props = Object.entries(schema.properties || {});
  if (props.length) {
    section.append(el("table", {},
      el("thead", {}, el("tr", {}, el("th", {}, "field"), el("th", {}, "type"), el("th", {}, "description"))),
      el("tbody", {}, props.map(([k, v]) => el("tr", {}, el("td", {}, el("code", {}, k), required.has(k) ? " *" : ""),
        el("td", {}, ...typeOf(v)), el("td", {}, v.description || ""))))));
  } else {
    section.append(el("p", {}, ...typeOf(schema)));
  }
  if (schema.additionalProperties === false) section.append(el("p", { class: "hint" }, "No other fields are accepted."));
  return section;
}

function render(doc) {
  const byTag = new Map();
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const tag = (op.tags && op.tags[0]) || "other";
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push([path, method, op]);
    }
  }
  const toc = document.getElementById("api-toc");
  const main = document.getElementById("api-doc");
  main.replaceChildren(el("p", {}, doc.info.description || ""), el("p", { class: "hint" }, `OpenAPI ${doc.openapi}, version ${doc.info.version}. * = required.`));
  toc.replaceChildren();
  for (const [tag, ops] of byTag) {
    main.append(el("h2", { id: `tag-${slug(tag)}` }, tag));
    toc.append(el("h2", {}, el("a", { href: `#tag-${slug(tag)}` }, tag)),
      el("ul", {}, ops.map(([path, method, op]) => el("li", {}, el("a", { href: `#op-${op.operationId}` }, `${method.toUpperCase()} ${path}`)))));
    ops.forEach(([path, method, op]) => main.append(operation(path, method, op)));
  }
  main.append(el("h2", { id: "schemas" }, "Schemas"));
  toc.append(el("h2", {}, el("a", { href: "#schemas" }, "Schemas")));
  for (const [name, schema] of Object.entries(doc.components?.schemas || {}).sort()) main.append(schemaSection(name, schema));
  if (location.hash) document.getElementById(location.hash.slice(1))?.scrollIntoView();
}

fetch(`${base}/openapi.json`).then((r) => {
  if (!r.ok) throw new Error(`${r.status} ${r.statusText}`);
  return r.json();
}).then(render).catch((err) => {
  document.getElementById("api-doc").replaceChildren(el("p", { class: "muted" }, `Could not load /openapi.json: ${err.message}`));
});
