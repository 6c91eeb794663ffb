// The customer's "Alerts & statements" page: the alerts the account was sent (newest first, each with its
// deliveries per webhook), its webhooks and alert settings, and its monthly statement. The statement's
// amounts are the API's nano integers written the API's way (nanoToCny); the PDF and CSV are plain links,
// which the session cookie authenticates.

import { field, h } from "./dom.js";
import { withQuery } from "./api.js";
import { cny, dateTime, integer, nanoToCny } from "./format.js";
import { act, confirmDialog, secretDialog, section, stat, table, toast } from "./ui.js";
import { optional } from "./customer.js";

const STATEMENT_TOTALS = ["topups_nano", "purchases_nano", "usage_nano", "rebates_nano", "other_nano"];

export async function alertsPage(ctx) {
  const { api, root } = ctx;
  const [alerts, webhooks, settings] = await Promise.all([
    api.get("/v1/alerts"), api.get("/v1/webhooks"), api.get("/v1/alerts/settings")]);
  const hookUrls = new Map(webhooks.data.map((w) => [w.id, w.url]));
  root.append(alertsSection(ctx, alerts.data, hookUrls));
  root.append(webhooksSection(ctx, webhooks.data));
  root.append(settingsSection(ctx, settings));
  root.append(await statementSection(ctx));
}

function alertsSection(ctx, events, hookUrls) {
  const { t, lang } = ctx;
  if (!events.length) return section(t("alerts.list"), h("p", { "data-testid": "no-alerts" }, t("alerts.none")));
  return section(t("alerts.list"), table(null, [
    { label: t("alerts.col.type"), testid: "alert-type", cell: (e) => h("span", { title: e.type }, t(`alert_type.${e.type}`, null, true) || e.type) },
    { label: t("alerts.col.time"), cell: (e) => h("time", { "data-ms": String(e.created_at_ms) }, dateTime(e.created_at_ms, lang)) },
    { label: t("alerts.col.summary"), testid: "alert-summary", cell: (e) => summary(ctx, e) },
    { label: t("alerts.col.deliveries"), testid: "alert-deliveries", cell: (e) => deliveries(ctx, e.deliveries, hookUrls) },
  ], events, { "data-testid": "alerts" }, (e) => ({ "data-testid": "alert-row", "data-event-id": e.id, "data-type": e.type })));
}

/** One line of an event's facts, by type; an event not yet prepared has no data yet. */
function summary(ctx, event) {
  const { t, lang } = ctx;
  const d = event.data || {};
  if (event.prepared === false) return t("alerts.preparing");
  const amount = (value, unit) => (unit === "cny" ? cny(value) : integer(value, lang));
  switch (event.type) {
    case "balance.below":
      return t("alerts.summary.balance", { balance: cny(d.balance), threshold: cny(d.threshold) });
    case "budget.used":
      return t("alerts.summary.budget", { period: d.period, percent: d.percent,
        used: amount(d.used, d.unit), granted: amount(d.granted, d.unit) });
    case "window.used":
      return t("alerts.summary.window", { window: t(`window.${d.window}`, null, true) || d.window, percent: d.percent,
        used: integer(d.used, lang), granted: integer(d.granted, lang), unit: t(`unit.${d.unit}`, null, true) || d.unit });
    case "pack.used":
      return t("alerts.summary.pack", { pack: d.pack, percent: d.percent, used: integer(d.used, lang), granted: integer(d.granted, lang) });
    case "pack.expiring":
      return t("alerts.summary.expiring", { pack: d.pack, tokens: integer(d.available_tokens, lang), date: dateTime(d.expires_at_ms, lang) });
    case "subscription.renewal_failed":
      return t("alerts.summary.renewal", { subscription: d.subscription, price: cny(d.price) });
    default:
      return JSON.stringify(d);
  }
}

function deliveries(ctx, list, hookUrls) {
  const { t, lang } = ctx;
  if (!list || !list.length) return t("alerts.no_deliveries");
  return h("ul", { class: "plain" }, list.map((d) => h("li", { "data-testid": "delivery", "data-state": d.state, "data-webhook": d.webhook },
    h("strong", {}, t(`delivery.${d.state}`, null, true) || d.state), " · ", hookUrls.get(d.webhook) || d.webhook, " · ",
    t("alerts.attempts", { attempts: d.attempts }),
    d.last_status ? ` · HTTP ${d.last_status}` : "",
    d.last_error ? ` · ${d.last_error}` : "",
    d.state === "pending" && d.next_attempt_at_ms ? ` · ${t("alerts.next_attempt", { time: dateTime(d.next_attempt_at_ms, lang) })}` : "")));
}

function webhooksSection(ctx, hooks) {
  const { api, t, lang } = ctx;
  const status = h("p", { class: "error", role: "alert" });
  const url = h("input", { type: "url", required: true, placeholder: "https://example.com/suanli", "data-testid": "webhook-url" });
  async function register(event) {
    event.preventDefault();
    await act(status, t, async () => {
      const made = await api.post("/v1/webhooks", { url: url.value });
      await secretDialog(t, made.secret, { title: t("webhooks.created"), warning: t("webhooks.shown_once"), label: t("webhooks.secret") });
      ctx.reload();
    });
  }
  async function remove(hook) {
    const yes = await confirmDialog(t, t("webhooks.delete_title"), t("webhooks.delete_confirm", { url: hook.url }), t("webhooks.delete"));
    if (!yes) return;
    await act(status, t, async () => {
      await api.del(`/v1/webhooks/${encodeURIComponent(hook.id)}`);
      toast(t("webhooks.deleted", { url: hook.url }));
      ctx.reload();
    });
  }
  const list = hooks.length ? table(null, [
    { label: t("webhooks.col.url"), testid: "webhook-row-url", cell: (w) => h("code", {}, w.url) },
    { label: t("webhooks.col.events"), cell: (w) => (w.events.includes("*") ? t("webhooks.all_events") : w.events.join(", ")) },
    { label: t("webhooks.col.created"), cell: (w) => dateTime(w.created_at_ms, lang) },
    { label: t("keys.col.actions"), cell: (w) => h("button", { type: "button", class: "danger", "data-testid": "delete-webhook",
      "aria-label": t("webhooks.delete_named", { url: w.url }), on: { click: () => remove(w) } }, t("webhooks.delete")) },
  ], hooks, { "data-testid": "webhooks" }, (w) => ({ "data-testid": "webhook-row", "data-webhook-id": w.id }))
    : h("p", {}, t("webhooks.none"));
  const form = h("form", { class: "controls", "aria-label": t("webhooks.register_title"), on: { submit: register } },
    field(t("webhooks.url"), url, t("webhooks.url_hint")),
    h("button", { type: "submit", "data-testid": "register-webhook" }, t("webhooks.register")));
  return section(t("webhooks.title"), list, form, status);
}

function settingsSection(ctx, settings) {
  const { api, t } = ctx;
  const status = h("p", { class: "error", role: "alert" });
  const threshold = h("input", { type: "text", inputmode: "decimal", value: settings.balance_below || "",
    "data-testid": "alert-balance-below" });
  const days = h("input", { type: "number", min: "1", max: "365", step: "1", value: String(settings.pack_expiry_days ?? ""),
    "data-testid": "alert-pack-days" });
  async function save(event) {
    event.preventDefault();
    const body = { balance_below: threshold.value.trim() || null, pack_expiry_days: days.value ? Number(days.value) : null };
    await act(status, t, async () => {
      await api.request("PUT", "/v1/alerts/settings", body);
      toast(t("settings.saved"));
      ctx.reload();
    });
  }
  return h("form", { class: "card", "aria-labelledby": "alert-settings-title", "data-testid": "alert-settings",
    "data-enabled": String(settings.enabled), on: { submit: save } },
  h("h2", { id: "alert-settings-title" }, t("settings.title")),
  h("p", {}, settings.enabled ? t("settings.enabled") : t("settings.disabled")),
  h("div", { class: "controls" },
    field(t("settings.balance_below"), threshold, t("settings.balance_below_hint")),
    field(t("settings.pack_days"), days, t("settings.pack_days_hint")),
    h("button", { type: "submit", "data-testid": "save-alert-settings" }, t("settings.save"))),
  status);
}

/** "YYYY-MM" of the month before the browser's current one: the last closed month (closed 5 min after). */
function lastMonth() {
  const now = new Date();
  const d = new Date(now.getFullYear(), now.getMonth() - 1, 1);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}`;
}

async function statementSection(ctx) {
  const { t } = ctx;
  const month = h("input", { type: "month", required: true, value: lastMonth(), "data-testid": "statement-month" });
  const out = h("div", { "aria-live": "polite", "data-testid": "statement-out" });
  const form = h("form", { class: "controls", "aria-label": t("statement.pick"), on: { submit: (e) => { e.preventDefault(); show(); } } },
    field(t("statement.month"), month),
    h("button", { type: "submit", "data-testid": "statement-show" }, t("statement.show")));
  async function show() {
    out.removeAttribute("data-shown");
    out.replaceChildren(statementBody(ctx, month.value, await optional(ctx.api.get("/v1/statements", { month: month.value }))));
    out.setAttribute("data-shown", month.value);
  }
  await show();
  return section(t("statement.title"), form, out);
}

function statementBody(ctx, month, statement) {
  const { t, lang } = ctx;
  const link = (format) => h("a", { class: "button secondary", "data-testid": `statement-${format}`,
    href: withQuery("/v1/statements", { month, format, lang }) }, t(`statement.${format}`));
  const links = h("p", { class: "controls" }, link("pdf"), link("csv"));
  if (statement.error) return h("div", {}, h("p", { class: "error", role: "alert" }, t("error.api", { message: statement.error.message, code: statement.error.code || statement.error.status })));
  const money = statement.money;
  const amount = (nano, testid) => h("span", { "data-testid": testid, "data-nano": String(nano) }, cny(nanoToCny(nano)));
  return h("div", {},
    h("p", { "data-testid": "statement-final", "data-final": String(statement.final) },
      t("statement.number", { number: statement.number }), " · ", statement.final ? t("statement.final") : t("statement.open")),
    h("div", { class: "stats" },
      stat(t("statement.opening"), amount(money.opening_nano, "statement-opening")),
      stat(t("statement.closing"), amount(money.closing_nano, "statement-closing"))),
    table(t("statement.totals"), [
      { label: t("statement.col.line"), cell: ([name]) => t(`statement.line.${name}`) },
      { label: t("statement.col.amount"), num: true, cell: ([name, nano]) => amount(nano, `statement-total-${name}`) },
    ], STATEMENT_TOTALS.map((name) => [name, money.totals[name]]), { "data-testid": "statement-totals" }),
    money.pending && money.pending.reservations
      ? h("p", { class: "muted" }, t("statement.pending", { count: integer(money.pending.reservations, lang), amount: cny(nanoToCny(money.pending.reserved_nano)) }))
      : null,
    links);
}
