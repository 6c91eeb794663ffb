// The customer's pages: Overview (wallet, packs, Coding Plan windows, forecast), Usage, Calls and Keys.

import { clear, field, h, select } from "./dom.js";
import { withQuery } from "./api.js";
import { cny, countdown, date, dateTime, integer } from "./format.js";
import { act, confirmDialog, secretDialog, section, stat, table, toast } from "./ui.js";
import { usageView } from "./usage_view.js";

const COUNTDOWN_TICK_MS = 1000;
const CALLS_PAGE_SIZE = 50;
const OUTCOMES = ["ok", "ok_estimated", "cut_short", "client_gone", "upstream_error", "upstream_timeout", "internal_error", "recovered"];

export async function optional(promise) {
  try {
    return await promise;
  } catch (err) {
    if (err.status === 401) throw err;
    return { error: err };
  }
}

export async function overview(ctx) {
  const { api, t, root } = ctx;
  const [account, plans, forecast] = await Promise.all([
    api.get("/v1/account"), api.get("/v1/plans"), optional(api.get("/v1/forecast"))]);
  const wallet = account.wallet;
  root.append(section(t("overview.wallet"), h("div", { class: "stats" },
    stat(t("overview.balance"), cny(wallet.balance), "wallet-balance", { "data-nano": String(wallet.balance_nano) }),
    stat(t("overview.reserved"), cny(wallet.reserved), "wallet-reserved", { "data-nano": String(wallet.reserved_nano) }),
    stat(t("overview.available"), cny(wallet.available), "wallet-available", { "data-nano": String(wallet.available_nano) })),
  forecastLine(ctx, forecast)));
  root.append(packsSection(ctx, plans.packs, forecast));
  root.append(subscriptionSection(ctx, plans.subscription));
  if (plans.contract) {
    root.append(section(t("overview.contract"), h("p", {}, t("overview.credit_limit", { amount: cny(plans.contract.credit_limit) }))));
  }
}

function forecastLine(ctx, forecast) {
  const { t, lang } = ctx;
  if (forecast.error) return h("p", { class: "muted", "data-testid": "forecast" }, t("overview.forecast_unavailable"));
  const rate = forecast.rates["7d"];
  const days = forecast.balance.days;
  if (days === null) return h("p", { "data-testid": "forecast", "data-days": "" }, t("overview.forecast_none"));
  return h("p", { "data-testid": "forecast", "data-days": days }, t("overview.forecast", {
    rate: cny(rate.cost), days, date: date(forecast.balance.runs_out_at_ms, lang) }));
}

function packsSection(ctx, packs, forecast) {
  const { t, lang } = ctx;
  if (!packs.length) return section(t("overview.packs"), h("p", {}, t("overview.no_packs"), " ",
    h("a", { href: "#/plans" }, t("overview.buy_pack"))));
  const packDays = new Map(((forecast && forecast.packs) || []).map((p) => [p.pack, p.days]));
  return section(t("overview.packs"), table(null, [
    { label: t("overview.pack_product"), cell: (p) => p.product },
    { label: t("overview.pack_remaining"), num: true, testid: "pack-available",
      cell: (p) => h("span", { "data-value": String(p.available) }, `${integer(p.available, lang)} / ${integer(p.tokens, lang)}`) },
    { label: t("overview.pack_reserved"), num: true, cell: (p) => integer(p.reserved, lang) },
    { label: t("overview.pack_expires"), cell: (p) => h("time", { "data-ms": String(p.expires_at_ms) }, dateTime(p.expires_at_ms, lang)) },
    { label: t("overview.pack_state"), cell: (p) => t(`pack_state.${p.state}`) },
    { label: t("overview.pack_lasts"), num: true, cell: (p) => packDays.get(p.id) ? t("overview.days", { days: packDays.get(p.id) }) : "—" },
  ], packs, { "data-testid": "packs" }, (p) => ({ "data-testid": "pack-row", "data-pack": p.id })));
}

function subscriptionSection(ctx, sub) {
  const { t, lang } = ctx;
  if (!sub) return section(t("overview.subscription"), h("p", {}, t("overview.no_subscription"), " ",
    h("a", { href: "#/plans" }, t("overview.subscribe"))));
  const counters = [];
  const rows = sub.allowances.map((a) => {
    const counter = h("span", { class: "countdown", "data-testid": "window-countdown", "aria-live": "off" });
    counters.push([counter, a.resets_at_ms]);
    return h("tr", { "data-testid": "window-row", "data-window": a.window },
      h("th", { scope: "row" }, t(`window.${a.window}`)),
      h("td", { class: "num", "data-testid": "window-used", "data-value": String(a.used) }, `${integer(a.used, lang)} / ${integer(a.limit, lang)}`),
      h("td", { class: "num", "data-testid": "window-remaining", "data-value": String(a.remaining) }, integer(a.remaining, lang)),
      h("td", {}, h("time", { "data-testid": "window-reset", "data-ms": String(a.resets_at_ms),
        datetime: new Date(a.resets_at_ms).toISOString() }, dateTime(a.resets_at_ms, lang))),
      h("td", {}, counter));
  });
  const tick = () => {
    const now = Date.now();
    for (const [el, ms] of counters) el.textContent = countdown(ms, now, t("unit.day_short"));
  };
  tick();
  if (ctx.root.isConnected) {
    const timer = setInterval(tick, COUNTDOWN_TICK_MS);
    ctx.onLeave(() => clearInterval(timer));
  }
  const head = [t("window.col.window"), t("window.col.used"), t("window.col.remaining"), t("window.col.resets"), t("window.col.countdown")];
  return section(t("overview.subscription"),
    h("p", {}, t("overview.subscription_line", { title: sub.title, end: date(sub.period_end_ms, lang) })),
    h("div", { class: "table-wrap" }, h("table", { "data-testid": "windows" },
      h("caption", {}, t("window.caption", { unit: t(`unit.${sub.allowances[0] ? sub.allowances[0].unit : "requests"}`) })),
      h("thead", {}, h("tr", {}, head.map((label) => h("th", { scope: "col" }, label)))),
      h("tbody", {}, rows))));
}

export async function usage(ctx) {
  const keyNames = await keyNamer(ctx);
  await usageView(ctx, {
    endpoint: "/v1/usage/summary",
    byOptions: ["none", "model", "key", "token_class", "operator"],
    groupName: (group) => groupLabel(ctx, group, keyNames),
  });
}

function groupLabel(ctx, group, keyNames) {
  if (group === "") return ctx.t("by.all");
  if (keyNames && keyNames.has(group)) return keyNames.get(group);
  const translated = ctx.t(`class.${group}`, null, true);
  return translated || group;
}

async function keyNamer(ctx) {
  const keys = await ctx.api.get("/v1/keys");
  return new Map(keys.data.map((k) => [k.id, k.name ? `${k.name} (${k.prefix}…)` : `${k.prefix}…`]));
}

export async function calls(ctx) {
  const { api, t, root } = ctx;
  const [models, keys] = await Promise.all([api.get("/v1/models"), api.get("/v1/keys")]);
  const keyNames = new Map(keys.data.map((k) => [k.id, k.name ? `${k.name} (${k.prefix}…)` : `${k.prefix}…`]));
  const operators = [...new Set(models.data.flatMap((m) => m.operators || []))].sort();
  const any = ["", t("calls.any")];
  const filters = {
    model: select({ name: "model", "data-testid": "filter-model" }, [any, ...models.data.map((m) => [m.id, m.id])]),
    key: select({ name: "key", "data-testid": "filter-key" }, [any, ...keys.data.map((k) => [k.id, keyNames.get(k.id)])]),
    operator: select({ name: "operator", "data-testid": "filter-operator" }, [any, ...operators.map((o) => [o, o])]),
    outcome: select({ name: "outcome", "data-testid": "filter-outcome" }, [any, ...OUTCOMES.map((o) => [o, t(`outcome.${o}`)])]),
  };
  const exportLink = h("a", { class: "button secondary", "data-testid": "export-csv", download: "usage.csv" }, t("calls.export"));
  const status = h("p", { class: "error", role: "alert" });
  const list = h("div", { "aria-live": "polite" });
  const more = h("button", { type: "button", class: "secondary", hidden: true, "data-testid": "calls-more" }, t("calls.more"));
  const form = h("form", { class: "controls", "aria-label": t("calls.filters"), on: { submit: (e) => { e.preventDefault(); load(null); } } },
    field(t("calls.col.model"), filters.model), field(t("calls.col.key"), filters.key),
    field(t("calls.col.operator"), filters.operator), field(t("calls.col.outcome"), filters.outcome),
    h("button", { type: "submit", "data-testid": "calls-apply" }, t("calls.apply")), exportLink);
  root.append(form, status, list, more);
  let before = null;
  let tbody = null;

  function query() {
    return Object.fromEntries(Object.entries(filters).map(([name, el]) => [name, el.value]));
  }

  async function load(beforeMs) {
    await act(status, t, async () => {
      const q = query();
      exportLink.setAttribute("href", withQuery("/v1/usage", { ...q, format: "csv" }));
      const page = await api.get("/v1/usage", { ...q, limit: CALLS_PAGE_SIZE, before_ms: beforeMs });
      if (beforeMs === null) {
        clear(list);
        tbody = callsTable(ctx, list);
      }
      for (const call of page.data) tbody.append(callRow(call, ctx, keyNames));
      if (beforeMs === null && !page.data.length) list.append(h("p", { "data-testid": "calls-empty" }, t("calls.empty")));
      before = page.next_before_ms;
      more.hidden = before === null || before === undefined || page.data.length < CALLS_PAGE_SIZE;
    });
  }
  more.addEventListener("click", () => load(before));
  await load(null);
}

function callsTable(ctx, list) {
  const { t } = ctx;
  const heads = ["time", "model", "operator", "key", "input", "cached", "output", "cost", "window", "outcome"];
  const tbody = h("tbody", {});
  list.append(h("div", { class: "table-wrap" }, h("table", { "data-testid": "calls" },
    h("caption", {}, t("calls.caption")),
    h("thead", {}, h("tr", {}, heads.map((k) => h("th", { scope: "col", class: ["input", "cached", "output", "cost"].includes(k) ? "num" : null },
      t(`calls.col.${k}`))))), tbody)));
  return tbody;
}

function callRow(call, ctx, keyNames) {
  const { t, lang } = ctx;
  const ok = call.outcome === "ok" || call.outcome === "ok_estimated";
  const output = call.output_tokens + (call.reasoning_tokens || 0);
  return h("tr", { "data-testid": "call-row", "data-request-id": call.request_id },
    h("td", {}, h("time", { "data-ms": String(call.created_at_ms) }, dateTime(call.created_at_ms, lang))),
    h("td", { "data-testid": "call-model" }, call.model),
    h("td", { "data-testid": "call-operator" }, call.operator || "—"),
    h("td", { "data-testid": "call-key" }, keyNames.get(call.key_id) || call.key_id),
    h("td", { class: "num", "data-testid": "call-input", "data-value": String(call.input_tokens) }, integer(call.input_tokens, lang)),
    h("td", { class: "num", "data-testid": "call-cached", "data-value": String(call.cached_input_tokens) }, integer(call.cached_input_tokens, lang)),
    h("td", { class: "num", "data-testid": "call-output", "data-value": String(output) }, integer(output, lang),
      call.estimated ? h("abbr", { title: t("calls.estimated") }, " *") : null),
    h("td", { class: "num", "data-testid": "call-cost", "data-nano": String(call.cost_nano) }, cny(call.cost)),
    h("td", { "data-testid": "call-window" }, call.price_window || "—"),
    h("td", { "data-testid": "call-outcome", "data-value": call.outcome, class: ok ? "ok" : "bad" },
      h("span", { "aria-hidden": "true" }, ok ? "✓ " : "✕ "), t(`outcome.${call.outcome}`, null, true) || call.outcome));
}

export async function keys(ctx) {
  const { api, t, lang, root } = ctx;
  const [list, models] = await Promise.all([api.get("/v1/keys"), api.get("/v1/models")]);
  const status = h("p", { class: "error", role: "alert", "data-testid": "keys-error" });
  root.append(createKeyForm(ctx, models.data, status), status);
  const now = Date.now();
  const stateOf = (k) => (k.revoked_at_ms ? "revoked" : k.expires_at_ms && k.expires_at_ms <= now ? "expired" : "active");
  root.append(section(t("keys.list"), table(null, [
    { label: t("keys.col.name"), cell: (k) => k.name || "—" },
    { label: t("keys.col.prefix"), cell: (k) => h("code", {}, `${k.prefix}…`) },
    { label: t("keys.col.models"), cell: (k) => (k.models ? k.models.join(", ") : t("keys.all_models")) },
    { label: t("keys.col.created"), cell: (k) => dateTime(k.created_at_ms, lang) },
    { label: t("keys.col.expires"), cell: (k) => (k.expires_at_ms ? dateTime(k.expires_at_ms, lang) : t("keys.never")) },
    { label: t("keys.col.state"), testid: "key-state", cell: (k) => t(`key_state.${stateOf(k)}`) },
    { label: t("keys.col.actions"), cell: (k) => (stateOf(k) === "active" && (!ctx.session.key || ctx.session.key.id !== k.id)
      ? h("button", { type: "button", class: "danger", "data-testid": "revoke-key",
        "aria-label": t("keys.revoke_named", { name: k.name || k.prefix }),
        on: { click: () => revoke(ctx, k, status) } }, t("keys.revoke"))
      : (ctx.session.key && ctx.session.key.id === k.id ? t("keys.this_session") : "")) },
  ], list.data, { "data-testid": "keys" }, (k) => ({ "data-testid": "key-row", "data-key-id": k.id, "data-prefix": k.prefix }))));
}

async function revoke(ctx, key, status) {
  const { api, t } = ctx;
  const yes = await confirmDialog(t, t("keys.revoke_title"), t("keys.revoke_confirm", { name: key.name || key.prefix }), t("keys.revoke"));
  if (!yes) return;
  await act(status, t, async () => {
    await api.post(`/v1/keys/${encodeURIComponent(key.id)}/revoke`);
    toast(t("keys.revoked", { name: key.name || key.prefix }));
    ctx.reload();
  });
}

function createKeyForm(ctx, models, status) {
  const { api, t } = ctx;
  const name = h("input", { type: "text", maxlength: "100", "data-testid": "key-name" });
  const expiry = h("input", { type: "datetime-local", "data-testid": "key-expiry" });
  const boxes = models.map((m) => h("input", { type: "checkbox", value: m.id, id: `key-model-${m.id}`, "data-testid": `key-model-${m.id}` }));
  const modelSet = h("fieldset", { class: "checks" }, h("legend", {}, t("keys.models")),
    h("small", { class: "hint" }, t("keys.models_hint")),
    h("div", { class: "check-grid" }, boxes.map((box) => h("label", { for: box.id }, box, " ", box.value))));
  async function submit(event) {
    event.preventDefault();
    const chosen = boxes.filter((b) => b.checked).map((b) => b.value);
    const body = { name: name.value };
    if (chosen.length) body.models = chosen;
    if (expiry.value) body.expires_at = new Date(expiry.value).toISOString(); // the browser's local time, sent in UTC
    await act(status, t, async () => {
      const created = await api.post("/v1/keys", body);
      await secretDialog(t, created.key);
      ctx.reload();
    });
  }
  return h("form", { class: "card", "aria-labelledby": "new-key-title", on: { submit } },
    h("h2", { id: "new-key-title" }, t("keys.create_title")),
    field(t("keys.name"), name), modelSet, field(t("keys.expiry"), expiry, t("keys.expiry_hint")),
    h("button", { type: "submit", "data-testid": "create-key" }, t("keys.create")));
}

