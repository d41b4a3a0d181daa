/* The Settings panel: API base URL and token, kept in this browser (localStorage). */
import { settings } from "./client.js";
import { forgetServerReads } from "./state.js";
import { $ } from "./ui.js";

/** Fills the form from what is saved; on Save, stores it, forgets cached reads and calls `reload`. */
export function wireSettings(reload) {
  $("#settings-base").value = settings.base;
  $("#settings-token").value = settings.token;
  $("#settings-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    settings.save($("#settings-base").value, $("#settings-token").value);
    $("#settings-saved").textContent = "Saved.";
    setTimeout(() => { $("#settings-saved").textContent = ""; }, 2000);
    forgetServerReads();
    reload();
  });
}
