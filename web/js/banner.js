/* The #error-banner: one place where any failure is told in words. */
import { $ } from "./ui.js";

export function showError(context, err) {
  const msg = err instanceof Error ? err.message : String(err);
  $("#error-text").textContent = context ? context + ": " + msg : msg;
  const banner = $("#error-banner");
  banner.hidden = false;
  banner.dataset.code = (err && err.code) || "";
}

export function hideError() { $("#error-banner").hidden = true; }

/** Runs an async action, showing any failure in the banner under a short description. */
export async function guarded(context, fn) {
  try { return await fn(); } catch (e) { showError(context, e); return undefined; }
}

export function wireBanner() {
  $("#error-dismiss").addEventListener("click", hideError);
  document.addEventListener("keydown", (ev) => { if (ev.key === "Escape" && !$("#error-banner").hidden) hideError(); });
}
