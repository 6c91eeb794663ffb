// The platform's pages (an admin session): Operators (live breaker state and load), Revenue, Accounts
// (wallets, top-ups, contracts), Products and price versions.

import { clear, h } from "./dom.js";
import { cny, dateTime, integer } from "./format.js";
import { optional } from "./customer.js";
import { act, section, table } from "./ui.js";
import { usageView } from "./usage_view.js";

const OPERATORS_REFRESH_MS = 3000;
const ACCOUNTS_SHOWN_MAX = 500; // rows on the page; the API lists every account with its wallet
const TOPUPS_SHOWN = 50;

const BREAKER = {
  closed: { icon: "●", className: "state-ok" },
  half_open: { icon: "◐", className: "state-warn" },
  open: { icon: "✕", className: "state-bad" },
};

function ms(value, lang) {
  return value === null || value === undefined ? "—" : `${new Intl.NumberFormat(lang, { maximumFractionDigits: 0 }).format(value)} ms`;
}

export async function operators(ctx) {
  const { api, t, lang, root } = ctx;
  const updated = h("p", { class: "muted", "data-testid": "operators-updated" });
  const status = h("p", { class: "error", role: "alert" });
  const body = h("div", {});
  root.append(h("p", {}, t("operators.intro", { seconds: OPERATORS_REFRESH_MS / 1000 })), updated, status, body);
  async function load() {
    await act(status, t, async () => {
      const answer = await api.get("/admin/v1/operators");
      clear(body).append(...answer.data.map((op) => operatorSection(ctx, op)));
      updated.textContent = t("operators.updated", { at: dateTime(Date.now(), lang) });
    });
  }
  await load();
  if (!root.isConnected) return; // left while loading: no timer for a page no longer shown
  const timer = setInterval(load, OPERATORS_REFRESH_MS);
  ctx.onLeave(() => clearInterval(timer));
}

function operatorSection(ctx, op) {
  const { t, lang } = ctx;
  const state = (o) => {
    const look = BREAKER[o.state] || BREAKER.open;
    return h("span", { class: ["breaker", look.className], "data-testid": "breaker-state", "data-state": o.state },
      h("span", { "aria-hidden": "true" }, `${look.icon} `), t(`breaker.${o.state}`, null, true) || o.state,
      o.reason ? h("small", { class: "reason" }, ` (${o.reason})`) : null);
  };
  const load = (o) => h("span", { class: "load" },
    h("meter", { min: "0", max: String(o.capacity || 1), value: String(o.in_flight), "aria-label": t("operators.load_of", { offer: o.offer }) }),
    ` ${integer(o.in_flight, lang)} / ${integer(o.capacity, lang)}`);
  return section(`${op.operator}${op.region ? ` · ${op.region}` : ""}`, table(null, [
    { label: t("operators.col.offer"), cell: (o) => o.model },
    { label: t("operators.col.state"), cell: state },
    { label: t("operators.col.error_rate"), num: true, testid: "error-rate", cell: (o) => `${o.window_error_rate_percent}% (${integer(o.window_calls, lang)})` },
    { label: t("operators.col.latency"), num: true, cell: (o) => `${ms(o.latency_p50_ms, lang)} / ${ms(o.latency_p95_ms, lang)}` },
    { label: t("operators.col.ttft"), num: true, cell: (o) => `${ms(o.ttft_p50_ms, lang)} / ${ms(o.ttft_p95_ms, lang)}` },
    { label: t("operators.col.load"), cell: load },
    { label: t("operators.col.calls"), num: true, cell: (o) => `${integer(o.calls_total, lang)} / ${integer(o.failures_total, lang)}` },
  ], op.offers, { "data-testid": "operator", "data-operator": op.operator }, (o) => ({ "data-testid": "offer-row", "data-offer": o.offer })));
}

export async function revenue(ctx) {
  await usageView(ctx, {
    endpoint: "/admin/v1/usage/summary",
    byOptions: ["none", "operator", "tier", "model", "account", "token_class"],
    groupName: (group) => (group === "" ? ctx.t("by.all") : ctx.t(`class.${group}`, null, true) || ctx.t(`tier.${group}`, null, true) || group),
    showUncharged: true,
  });
}

export async function accounts(ctx) {
  const { api, t, lang, root } = ctx;
  const [list, topups, contracts] = await Promise.all([
    api.get("/admin/v1/accounts"), optional(api.get("/admin/v1/topups", { limit: TOPUPS_SHOWN })), optional(api.get("/admin/v1/contracts"))]);
  const shown = list.data.slice(0, ACCOUNTS_SHOWN_MAX);
  const wallets = shown.map((a) => ({ account: a, wallet: a.wallet }));
  const names = new Map(list.data.map((a) => [a.id, a.name]));
  root.append(section(t("accounts.list"),
    list.data.length > shown.length ? h("p", { class: "muted" }, t("accounts.first_n", { n: shown.length, total: list.data.length })) : null,
    table(null, [
      { label: t("accounts.col.name"), cell: (w) => w.account.name },
      { label: t("accounts.col.tier"), cell: (w) => t(`tier.${w.account.tier}`, null, true) || w.account.tier },
      { label: t("overview.balance"), num: true, testid: "account-balance", cell: (w) => h("span", { "data-nano": String(w.wallet.balance_nano) }, cny(w.wallet.balance)) },
      { label: t("overview.reserved"), num: true, cell: (w) => cny(w.wallet.reserved) },
      { label: t("overview.available"), num: true, cell: (w) => cny(w.wallet.available) },
      { label: t("accounts.col.created"), cell: (w) => dateTime(w.account.created_at_ms, lang) },
    ], wallets, { "data-testid": "accounts" }, (w) => ({ "data-testid": "account-row", "data-account": w.account.name }))));
  root.append(section(t("accounts.topups"), topups.error ? h("p", { class: "muted" }, t("error.unavailable")) : table(null, [
    { label: t("accounts.col.when"), cell: (x) => dateTime(x.at_ms, lang) },
    { label: t("accounts.col.name"), cell: (x) => names.get(x.account) || x.account },
    { label: t("accounts.col.amount"), num: true, testid: "topup-amount", cell: (x) => h("span", { "data-nano": String(x.amount_nano) }, cny(x.amount)) },
  ], topups.data, { "data-testid": "topups" })));
  root.append(section(t("accounts.contracts"), contracts.error ? h("p", { class: "muted" }, t("error.unavailable"))
    : contracts.data.length ? table(null, [
      { label: t("accounts.col.name"), cell: (c) => names.get(c.account) || c.account },
      { label: t("accounts.col.credit_limit"), num: true, cell: (c) => cny(c.credit_limit) },
      { label: t("accounts.col.tiers"), cell: (c) => c.tiers.map((x) => t("accounts.tier_line", { above: cny(x.above), percent: x.percent })).join("; ") },
    ], contracts.data, { "data-testid": "contracts" }) : h("p", {}, t("accounts.no_contracts"))));
}

export async function products(ctx) {
  const { api, t, lang, root } = ctx;
  const [shelf, ops] = await Promise.all([api.get("/admin/v1/products"), api.get("/admin/v1/operators")]);
  root.append(section(t("products.list"), table(null, [
    { label: t("products.col.id"), cell: (p) => h("code", {}, p.id) },
    { label: t("products.col.kind"), cell: (p) => t(`product_kind.${p.kind}`, null, true) || p.kind },
    { label: t("plans.col.product"), cell: (p) => p.title },
    { label: t("plans.col.price"), num: true, cell: (p) => cny(p.price) },
    { label: t("products.col.tiers"), cell: (p) => p.tiers.map((x) => t(`tier.${x}`, null, true) || x).join(", ") },
    { label: t("plans.col.models"), cell: (p) => p.models.join(", ") },
    { label: t("products.col.terms"), cell: (p) => (p.kind === "pack"
      ? t("products.pack_terms", { tokens: integer(p.tokens, lang), days: p.valid_days })
      : p.allowances.map((a) => `${integer(a.requests ?? a.tokens, lang)} / ${t(`window.${a.window}`)}`).join(", ")) },
    { label: t("products.col.state"), cell: (p) => t(p.retired ? "products.retired" : "products.on_sale") },
  ], shelf.data, { "data-testid": "products" })));
  const offers = ops.data.flatMap((op) => op.offers);
  // The notice rule is the platform's, the same in every offer's history: read from the first.
  const rule = offers.length ? (await api.get(historyPath(offers[0].offer))).rule : null;
  root.append(section(t("products.prices"),
    rule ? h("p", { "data-testid": "notice-rule" }, t("products.notice_rule", { minutes: rule.notice_s / 60, days: rule.horizon_days })) : null,
    offers.map((o) => priceVersions(ctx, o))));
}

function historyPath(offer) {
  const [operator, model] = offer.split("/");
  return `/admin/v1/offers/${encodeURIComponent(operator)}/${encodeURIComponent(model)}/prices`;
}

function priceVersions(ctx, offer) {
  const { api, t, lang } = ctx;
  const body = h("div", {});
  const details = h("details", { "data-testid": "offer-prices", "data-offer": offer.offer },
    h("summary", {}, offer.offer), body);
  let loaded = false;
  details.addEventListener("toggle", async () => {
    if (!details.open || loaded) return;
    loaded = true;
    const status = h("p", { class: "error", role: "alert" });
    body.append(status);
    await act(status, t, async () => {
      const history = await api.get(historyPath(offer.offer));
      body.append(table(null, [
        { label: t("products.col.from"), cell: (v) => (v.effective_from_ms ? dateTime(v.effective_from_ms, lang) : t("products.from_start")) },
        { label: t("class.input"), num: true, cell: (v) => cny(v.prices.cny_per_mtok.input) },
        { label: t("class.cached_input"), num: true, cell: (v) => cny(v.prices.cny_per_mtok.cached_input ?? v.prices.cny_per_mtok.input) },
        { label: t("class.output"), num: true, cell: (v) => cny(v.prices.cny_per_mtok.output) },
        { label: t("products.col.windows"), num: true, cell: (v) => String(v.windows) },
        { label: t("products.col.long_context"), num: true, cell: (v) => String(v.long_context_tiers) },
        { label: t("products.col.batch"), num: true, cell: (v) => `${v.batch_percent}%` },
      ], history.data, {}, (v) => ({ "data-testid": "price-version", "data-from-ms": String(v.effective_from_ms) })));
    });
  });
  return details;
}


