// The console's shell: the session (resumed from the cookie, or a sign-in with a key that is sent once and
// never kept), the language, the hash routes and the navigation. Each page is a function that fills its own
// root element and registers what must stop when the page is left (timers).

import { Api } from "./api.js";
import { clear, field, h } from "./dom.js";
import { LANGUAGES, translate } from "./i18n.js";
import * as customer from "./customer.js";
import * as plans from "./plans.js";
import { alertsPage } from "./alerts.js";
import * as admin from "./admin.js";
import { browserZone } from "./format.js";
import { errorBox } from "./ui.js";

const LANGUAGE_STORAGE_KEY = "suanli.console.language"; // a preference, never a secret

const CUSTOMER_PAGES = [
  ["overview", customer.overview],
  ["usage", customer.usage],
  ["calls", customer.calls],
  ["keys", customer.keys],
  ["plans", plans.plansPage],
  ["prices", plans.prices],
  ["alerts", alertsPage],
];
const ADMIN_PAGES = [
  ["operators", admin.operators],
  ["revenue", admin.revenue],
  ["accounts", admin.accounts],
  ["products", admin.products],
];

function initialLanguage() {
  const saved = localStorage.getItem(LANGUAGE_STORAGE_KEY);
  if (LANGUAGES.includes(saved)) return saved;
  for (const tag of navigator.languages || [navigator.language || "en"]) {
    const lower = tag.toLowerCase();
    if (lower.startsWith("zh")) return "zh-CN";
    if (lower.startsWith("en")) return "en";
  }
  return "en";
}

class Console {
  constructor() {
    this.api = new Api();
    this.session = null;
    this.lang = initialLanguage();
    this.cleanups = [];
    this.header = document.getElementById("top");
    this.main = document.getElementById("main");
    this.t = (key, params, soft) => translate(this.lang, key, params, soft);
  }

  async start() {
    this.applyLanguage();
    this.api.onUnauthorized = (err) => this.ended(err);
    window.addEventListener("hashchange", () => this.route());
    try {
      this.signedIn(await this.api.resume());
    } catch (err) {
      this.showSignIn(err.status === 401 ? "" : this.t("error.api", { message: err.message, code: err.code }));
    }
  }

  applyLanguage() {
    document.documentElement.lang = this.lang;
    document.title = this.t("app.title");
    document.getElementById("skip-link").textContent = this.t("app.skip");
  }

  setLanguage(lang) {
    this.lang = lang;
    localStorage.setItem(LANGUAGE_STORAGE_KEY, lang);
    this.applyLanguage();
    if (this.session) {
      this.renderHeader();
      this.route();
    } else {
      this.showSignIn("");
    }
  }

  languageSwitch() {
    const select = h("select", { "data-testid": "language", on: { change: (e) => this.setLanguage(e.target.value) } },
      LANGUAGES.map((lang) => h("option", { value: lang, selected: lang === this.lang }, translate(lang, "lang.name"))));
    return h("div", { class: "lang" }, field(this.t("lang.label"), select));
  }

  ended(err) {
    if (!this.session) return;
    const message = this.t("signin.ended", { code: err.code || "401" });
    this.session = null;
    this.api.csrfToken = null;
    this.showSignIn(message);
  }

  stopPage() {
    for (const fn of this.cleanups.splice(0)) fn();
  }

  showSignIn(message) {
    this.stopPage();
    clear(this.header).append(h("div", { class: "bar" }, h("span", { class: "brand" }, this.t("app.brand")), this.languageSwitch()));
    const key = h("input", { type: "password", name: "key", autocomplete: "off", required: true, spellcheck: "false",
      "data-testid": "signin-key" });
    const status = h("p", { class: "error", role: "alert", "data-testid": "signin-message" }, message || "");
    const button = h("button", { type: "submit", "data-testid": "signin-submit" }, this.t("signin.submit"));
    const form = h("form", { class: "card signin", "aria-labelledby": "signin-title", on: { submit: submit } },
      h("h1", { id: "signin-title" }, this.t("signin.title")),
      h("p", {}, this.t("signin.intro")),
      field(this.t("signin.key"), key, this.t("signin.key_hint")),
      button, status);
    const api = this.api;
    const self = this;
    async function submit(event) {
      event.preventDefault();
      button.disabled = true;
      status.textContent = "";
      const secret = key.value;
      key.value = ""; // the key is not kept in the page: cleared before the answer comes
      try {
        self.signedIn(await api.signIn(secret));
      } catch (err) {
        status.textContent = self.t("signin.failed", { message: err.message, code: err.code || err.status });
        button.disabled = false;
        key.focus();
      }
    }
    clear(this.main).append(form);
    key.focus();
  }

  pages() {
    return this.session && this.session.kind === "admin" ? ADMIN_PAGES : CUSTOMER_PAGES;
  }

  signedIn(session) {
    this.session = session;
    this.renderHeader();
    const names = this.pages().map(([name]) => name);
    const current = location.hash.replace(/^#\/?/, "");
    if (!names.includes(current)) {
      history.replaceState(null, "", `#/${names[0]}`);
    }
    this.route();
  }

  who() {
    if (this.session.kind === "admin") return this.t("app.admin_as", { name: this.session.key.name || this.session.key.prefix });
    return this.t("app.account_as", { name: this.session.account.name, tier: this.t(`tier.${this.session.account.tier}`) });
  }

  renderHeader() {
    const current = location.hash.replace(/^#\/?/, "");
    const nav = h("nav", { "aria-label": this.t("nav.label") }, h("ul", {}, this.pages().map(([name]) =>
      h("li", {}, h("a", { href: `#/${name}`, "data-testid": `nav-${name}`, "aria-current": name === current ? "page" : null },
        this.t(`nav.${name}`))))));
    const signOut = h("button", { type: "button", class: "secondary", "data-testid": "signout", on: { click: () => this.signOut() } },
      this.t("app.signout"));
    clear(this.header).append(
      h("div", { class: "bar" }, h("span", { class: "brand" }, this.t("app.brand")),
        h("span", { class: "who", "data-testid": "who" }, this.who()), this.languageSwitch(), signOut),
      nav);
  }

  async signOut() {
    try {
      await this.api.signOut();
    } catch {
      // the session may be gone already; the page forgets it either way
    }
    this.session = null;
    this.showSignIn(this.t("signin.signed_out"));
  }

  route() {
    if (!this.session) return;
    this.stopPage();
    const pages = this.pages();
    const name = location.hash.replace(/^#\/?/, "");
    const entry = pages.find(([n]) => n === name) || pages[0];
    for (const link of this.header.querySelectorAll("nav a")) {
      if (link.getAttribute("href") === `#/${entry[0]}`) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    const root = h("div", { class: "page", "data-page": entry[0] });
    const heading = h("h1", { tabindex: "-1" }, this.t(`nav.${entry[0]}`));
    clear(this.main).append(heading, root);
    document.title = `${this.t(`nav.${entry[0]}`)} · ${this.t("app.title")}`;
    const ctx = {
      api: this.api, t: this.t, lang: this.lang, zone: browserZone(), root, session: this.session,
      onLeave: (fn) => this.cleanups.push(fn),
      reload: () => this.route(),
    };
    entry[1](ctx).then(
      () => root.setAttribute("data-ready", "true"),
      (err) => {
        if (err.status !== 401) root.append(errorBox(this.t("error.api", { message: err.message, code: err.code || err.status })));
        root.setAttribute("data-ready", "true");
      });
    if (document.activeElement && document.activeElement.closest("nav")) heading.focus();
  }
}

new Console().start();
