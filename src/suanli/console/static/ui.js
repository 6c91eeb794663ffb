// Shared pieces of the pages: tables, dialogs (native <dialog>, which keeps focus inside and returns it),
// the status line, and the error box.

import { clear, h } from "./dom.js";

/** A table from column specs [{label, cell(row) -> Node|string, testid?, num?}]. */
export function table(caption, columns, rows, attrs, rowAttrs) {
  return h("div", { class: "table-wrap" }, h("table", attrs || {},
    caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)))),
    h("tbody", {}, rows.map((row) => h("tr", rowAttrs ? rowAttrs(row) : {},
      columns.map((c) => h("td", { class: c.num ? "num" : null, "data-testid": c.testid || null }, c.cell(row))))))));
}

export function errorBox(message) {
  return h("p", { class: "error", role: "alert" }, message);
}

export function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), ...children);
}

export function stat(label, value, testid, attrs) {
  return h("div", { class: "stat" }, h("span", { class: "stat-label" }, label),
    h("span", { class: "stat-value", "data-testid": testid, ...(attrs || {}) }, value));
}

/** A modal dialog; resolves true when confirmed. Focus goes to the dialog and back to the opener. */
export function confirmDialog(t, title, message, confirmLabel) {
  return new Promise((resolve) => {
    const opener = document.activeElement;
    const dialog = h("dialog", { class: "dialog", "aria-labelledby": "confirm-title", "data-testid": "confirm-dialog" },
      h("h2", { id: "confirm-title" }, title),
      h("p", {}, message),
      h("div", { class: "actions" },
        h("button", { type: "button", class: "secondary", on: { click: () => close(false) } }, t("cancel")),
        h("button", { type: "button", class: "danger", "data-testid": "confirm-yes", on: { click: () => close(true) } },
          confirmLabel)));
    function close(answer) {
      dialog.close();
      dialog.remove();
      if (opener && opener.focus) opener.focus();
      resolve(answer);
    }
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      close(false);
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** The secret of a new key (or another secret: `words` names its title, warning and label), shown once,
 * with a copy button and a warning. */
export function secretDialog(t, secret, words) {
  const say = { title: t("keys.created"), warning: t("keys.shown_once"), label: t("keys.secret"), ...(words || {}) };
  return new Promise((resolve) => {
    const opener = document.activeElement;
    const status = h("span", { role: "status", class: "copied" });
    const output = h("input", { type: "text", readonly: true, value: secret, "data-testid": "new-key-secret",
      "aria-label": say.label });
    const dialog = h("dialog", { class: "dialog", "aria-labelledby": "secret-title", "aria-describedby": "secret-warning" },
      h("h2", { id: "secret-title" }, say.title),
      h("p", { id: "secret-warning", class: "warning" }, "⚠ ", say.warning),
      output,
      h("div", { class: "actions" },
        h("button", { type: "button", class: "secondary", "data-testid": "copy-key", on: { click: copy } }, t("keys.copy")),
        status,
        h("button", { type: "button", "data-testid": "close-secret", on: { click: close } }, t("keys.done"))));
    async function copy() {
      output.select();
      try {
        await navigator.clipboard.writeText(secret);
        status.textContent = t("keys.copied");
      } catch {
        status.textContent = t("keys.copy_manually");
      }
    }
    function close() {
      output.value = "";
      dialog.close();
      dialog.remove();
      if (opener && opener.focus) opener.focus();
      resolve();
    }
    dialog.addEventListener("close", () => dialog.isConnected && close());
    document.body.append(dialog);
    dialog.showModal();
    output.focus();
    output.select();
  });
}

let toastTimer = null;
export function toast(message) {
  const el = document.getElementById("toast");
  clear(el).append(message);
  el.classList.add("shown");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => el.classList.remove("shown"), 5000);
}

/** Run an action from a form or button, showing its error (not a 401: that signs out) in `where`. */
export async function act(where, t, fn) {
  where.textContent = "";
  try {
    await fn();
  } catch (err) {
    if (err.status === 401) return;
    where.textContent = t("error.api", { message: err.message, code: err.code || err.status || "" });
  }
}
