/* The one client of the Kubepredict API: base URL and bearer token from Settings, JSON in and out,
 * errors turned into ApiError with a sentence a person understands. */

export const settings = {
  get base() { return (localStorage.getItem("kubepredict.baseUrl") || "").replace(/\/+$/, ""); },
  get token() { return localStorage.getItem("kubepredict.token") || ""; },
  save(base, token) {
    localStorage.setItem("kubepredict.baseUrl", (base || "").trim());
    localStorage.setItem("kubepredict.token", (token || "").trim());
  },
};

export function url(path) { return settings.base + path; }

export function authHeaders() {
  const h = {};
  if (settings.token) h.Authorization = "Bearer " + settings.token;
  return h;
}

export class ApiError extends Error {
  constructor(message, status, code, details) {
    super(message);
    this.status = status;
    this.code = code || "";
    this.details = details || {};
  }
}

const STATUS_WORDS = {
  400: "the request was not accepted",
  401: "the API needs a valid token (set it in Settings)",
  403: "access is not allowed",
  404: "it was not found",
  405: "this action is not supported",
  409: "it conflicts with something in progress",
  413: "the data is too large",
  415: "this kind of file is not supported",
  422: "the data cannot be used for this",
  429: "too many jobs are waiting; try again in a moment",
  503: "the service is not available right now",
};

/** Turns a response body (any shape) into an ApiError with a sentence a person understands. */
export function errorFromResponse(status, text) {
  let body = null;
  try { body = JSON.parse(text); } catch (e) { /* not JSON: an HTML page from a proxy, say */ }
  const err = body && body.error;
  if (err && typeof err === "object" && err.message) {
    let msg = String(err.message);
    if (status === 401) msg += " — set the API token in Settings.";
    return new ApiError(msg, status, err.code, err.details);
  }
  const words = STATUS_WORDS[status] || (status >= 500 ? "the server had a problem" : "the request failed");
  return new ApiError(words.charAt(0).toUpperCase() + words.slice(1) + " (HTTP " + status + ").", status);
}

export function networkError() {
  const where = settings.base || location.origin;
  return new ApiError("Could not reach the Kubepredict API at " + where +
    ". Check that the server is running and the API base URL in Settings.", 0, "network_error");
}

/** JSON request to the API; resolves to the parsed body (or null for 204), rejects with ApiError. */
export async function api(method, path, body) {
  const headers = Object.assign({ Accept: "application/json" }, authHeaders());
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(url(path), init);
  } catch (e) {
    throw networkError();
  }
  const text = await res.text();
  if (!res.ok) throw errorFromResponse(res.status, text);
  if (!text) return null;
  try { return JSON.parse(text); } catch (e) {
    throw new ApiError("The server answered with something that is not JSON.", res.status, "bad_response");
  }
}

/** A GET of a non-JSON resource (a CSV download) with the token; resolves to the Blob. */
export async function fetchBlob(href) {
  let res;
  try { res = await fetch(href, { headers: authHeaders() }); } catch (e) { throw networkError(); }
  if (!res.ok) throw errorFromResponse(res.status, await res.text());
  return res.blob();
}

/** Uploads a file as a CSV body with XMLHttpRequest so the upload progress can be shown. */
export function uploadFile(file, name, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url("/function/upload?name=" + encodeURIComponent(name)));
    xhr.setRequestHeader("Content-Type", "text/csv");
    xhr.setRequestHeader("Accept", "application/json");
    const h = authHeaders();
    Object.keys(h).forEach((k) => xhr.setRequestHeader(k, h[k]));
    xhr.upload.onprogress = (ev) => { if (ev.lengthComputable) onProgress(ev.loaded / ev.total, ev.loaded, ev.total); };
    xhr.onerror = () => reject(networkError());
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        try { resolve(JSON.parse(xhr.responseText)); } catch (e) {
          reject(new ApiError("The server answered with something that is not JSON.", xhr.status));
        }
      } else {
        reject(errorFromResponse(xhr.status, xhr.responseText));
      }
    };
    xhr.send(file);
  });
}
