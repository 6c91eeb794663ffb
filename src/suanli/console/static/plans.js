// The customer's Plans page (products on sale, packs, subscriptions, token transfers, budgets) and the
// Prices page (each offer's price now, its peak/off-peak bands over 24 hours, and a quote calculator).

import { field, h, select } from "./dom.js";
import { cny, date, dateTime, integer } from "./format.js";
import { daySegments, priceStrip, segmentText } from "./charts.js";
import { act, confirmDialog, section, table, toast } from "./ui.js";

const DAY_TYPES = ["weekday", "weekend", "holiday"];
const QUOTE_MAX_TOKENS_DEFAULT = 1024;

/** A CNY decimal string as nano (BigInt), to compare two prices exactly. */
function cnyNano(text) {
  const [whole, frac = ""] = text.split(".");
  return BigInt(whole) * 1000000000n + BigInt((frac + "000000000").slice(0, 9));
}

function idempotencyKey() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
}

export async function plansPage(ctx) {
  const { api, root } = ctx;
  const [products, plans, account, keys, transfers] = await Promise.all([
    api.get("/v1/products"), api.get("/v1/plans"), api.get("/v1/account"), api.get("/v1/keys"), api.get("/v1/token-transfers")]);
  const status = h("p", { class: "error", role: "alert", "data-testid": "plans-error" });
  root.append(status);
  const packs = products.data.filter((p) => p.kind === "pack" && !p.retired);
  const subs = products.data.filter((p) => p.kind === "subscription" && !p.retired);
  root.append(packShelf(ctx, packs, status), subscriptionShelf(ctx, subs, plans.subscription, status),
    transferSection(ctx, plans.packs, transfers.data, account.account, status), budgetSection(ctx, plans.budgets, keys.data, status));
}

function packShelf(ctx, packs, status) {
  const { api, t, lang } = ctx;
  async function buy(product) {
    const yes = await confirmDialog(t, t("plans.buy_title"), t("plans.buy_confirm", { title: product.title, price: cny(product.price) }),
      t("plans.buy"));
    if (!yes) return;
    await act(status, t, async () => {
      await api.post("/v1/packs", { product: product.id }, { "idempotency-key": idempotencyKey() });
      toast(t("plans.bought", { title: product.title }));
      ctx.reload();
    });
  }
  return section(t("plans.packs"), table(null, [
    { label: t("plans.col.product"), cell: (p) => p.title },
    { label: t("plans.col.tokens"), num: true, cell: (p) => integer(p.tokens, lang) },
    { label: t("plans.col.price"), num: true, cell: (p) => cny(p.price) },
    { label: t("plans.col.valid"), num: true, cell: (p) => t("overview.days", { days: p.valid_days }) },
    { label: t("plans.col.models"), cell: (p) => p.models.join(", ") },
    { label: t("plans.col.weights"), cell: (p) => Object.entries(p.weights || {}).map(([c, w]) => `${t(`class.${c}`)} ×${w}`).join(", ") },
    { label: t("plans.col.actions"), cell: (p) => h("button", { type: "button", "data-testid": `buy-${p.id}`,
      "aria-label": t("plans.buy_named", { title: p.title }), on: { click: () => buy(p) } }, t("plans.buy")) },
  ], packs, { "data-testid": "pack-shelf" }));
}

function subscriptionShelf(ctx, subs, current, status) {
  const { api, t, lang } = ctx;
  const held = current ? subs.find((p) => p.id === current.product) : null;
  async function subscribe(product, upgrade) {
    const yes = await confirmDialog(t, t(upgrade ? "plans.upgrade" : "plans.subscribe"),
      t(upgrade ? "plans.upgrade_confirm" : "plans.subscribe_confirm", { title: product.title, price: cny(product.price) }),
      t(upgrade ? "plans.upgrade" : "plans.subscribe"));
    if (!yes) return;
    await act(status, t, async () => {
      const answer = await api.post("/v1/subscription", { product: product.id });
      toast(t("plans.subscribed", { title: product.title, charged: cny(answer.charged) }));
      ctx.reload();
    });
  }
  async function cancel() {
    const yes = await confirmDialog(t, t("plans.cancel_title"), t("plans.cancel_confirm", { title: current.title }), t("plans.cancel"));
    if (!yes) return;
    await act(status, t, async () => {
      await api.del("/v1/subscription");
      ctx.reload();
    });
  }
  function action(product) {
    if (held && held.id === product.id) return h("span", { "data-testid": `current-${product.id}` }, "✓ ", t("plans.current"));
    if (held && cnyNano(product.price) < cnyNano(held.price)) return h("span", { class: "muted" }, t("plans.downgrade_note"));
    const upgrade = Boolean(held);
    return h("button", { type: "button", "data-testid": `subscribe-${product.id}`, on: { click: () => subscribe(product, upgrade) } },
      t(upgrade ? "plans.upgrade" : "plans.subscribe"));
  }
  const allowances = (p) => p.allowances.map((a) => `${integer(a.requests ?? a.tokens, lang)} ${t(a.requests !== undefined ? "unit.requests" : "unit.tokens")} / ${t(`window.${a.window}`)}`).join(", ");
  return section(t("plans.subscriptions"),
    current ? h("p", {}, t("overview.subscription_line", { title: current.title, end: date(current.period_end_ms, lang) }), " ",
      h("button", { type: "button", class: "danger", "data-testid": "cancel-subscription", on: { click: cancel } }, t("plans.cancel"))) : null,
    table(null, [
      { label: t("plans.col.product"), cell: (p) => p.title },
      { label: t("plans.col.monthly"), num: true, cell: (p) => cny(p.price) },
      { label: t("plans.col.allowances"), cell: allowances },
      { label: t("plans.col.models"), cell: (p) => p.models.join(", ") },
      { label: t("plans.col.actions"), cell: action },
    ], subs, { "data-testid": "subscription-shelf" }));
}

function transferSection(ctx, packs, transfers, me, status) {
  const { api, t, lang } = ctx;
  const usable = packs.filter((p) => p.state === "active" && p.available > 0);
  const pack = select({ required: true, "data-testid": "transfer-pack" }, usable.map((p) => [p.id, `${p.product} · ${integer(p.available, lang)} · ${p.id}`]));
  const to = h("input", { type: "text", required: true, "data-testid": "transfer-to", autocomplete: "off" });
  const tokens = h("input", { type: "number", min: "1", step: "1", required: true, "data-testid": "transfer-tokens" });
  const memo = h("input", { type: "text", maxlength: "200", "data-testid": "transfer-memo" });
  async function submit(event) {
    event.preventDefault();
    await act(status, t, async () => {
      await api.post("/v1/token-transfers", { pack: pack.value, to: to.value.trim(), tokens: Number(tokens.value), memo: memo.value });
      toast(t("plans.transferred", { tokens: tokens.value, to: to.value }));
      ctx.reload();
    });
  }
  const form = usable.length
    ? h("form", { class: "controls", "aria-label": t("plans.transfer"), on: { submit } },
      field(t("plans.transfer_pack"), pack), field(t("plans.transfer_to"), to, t("plans.transfer_to_hint")),
      field(t("plans.transfer_tokens"), tokens), field(t("plans.transfer_memo"), memo),
      h("button", { type: "submit", "data-testid": "transfer-submit" }, t("plans.transfer_submit")))
    : h("p", {}, t("plans.no_transferable"));
  return section(t("plans.transfer"), form, transfers.length ? table(t("plans.transfers"), [
    { label: t("plans.col.when"), cell: (x) => dateTime(x.created_at_ms, lang) },
    { label: t("plans.col.direction"), cell: (x) => t(x.from_account === me.id ? "plans.sent" : "plans.received") },
    { label: t("plans.col.other"), cell: (x) => (x.from_account === me.id ? x.to_account : x.from_account) },
    { label: t("plans.col.tokens"), num: true, cell: (x) => integer(x.tokens, lang) },
    { label: t("plans.col.memo"), cell: (x) => x.memo || "" },
  ], transfers, { "data-testid": "transfers" }) : null);
}

function budgetSection(ctx, budgets, keys, status) {
  const { api, t, lang } = ctx;
  const keyName = new Map(keys.map((k) => [k.id, k.name || `${k.prefix}…`]));
  const period = select({ "data-testid": "budget-period" }, ["day", "week", "month"].map((p) => [p, t(`budget.${p}`)]));
  const unit = select({ "data-testid": "budget-unit" }, [["cny", t("budget.cny")], ["tokens", t("budget.tokens")]]);
  const amount = h("input", { type: "text", inputmode: "decimal", required: true, pattern: "[0-9]+(\\.[0-9]+)?", "data-testid": "budget-amount" });
  const key = select({ "data-testid": "budget-key" }, [["", t("budget.whole_account")], ...keys.filter((k) => !k.revoked_at_ms).map((k) => [k.id, keyName.get(k.id)])]);
  async function submit(event) {
    event.preventDefault();
    const body = { period: period.value, unit: unit.value, amount: unit.value === "tokens" ? Number(amount.value) : amount.value };
    if (key.value) body.key = key.value;
    await act(status, t, async () => {
      await api.post("/v1/budgets", body);
      ctx.reload();
    });
  }
  async function remove(budget) {
    const yes = await confirmDialog(t, t("budget.delete_title"), t("budget.delete_confirm"), t("budget.delete"));
    if (!yes) return;
    await act(status, t, async () => {
      await api.del(`/v1/budgets/${encodeURIComponent(budget.id)}`);
      ctx.reload();
    });
  }
  const amountText = (b, v) => (b.unit === "cny" ? cny(v) : integer(v, lang));
  return section(t("plans.budgets"),
    budgets.length ? table(null, [
      { label: t("budget.col.scope"), cell: (b) => (b.key ? keyName.get(b.key) || b.key : t("budget.whole_account")) },
      { label: t("budget.col.period"), cell: (b) => t(`budget.${b.period}`) },
      { label: t("budget.col.limit"), num: true, cell: (b) => amountText(b, b.limit) },
      { label: t("budget.col.used"), num: true, testid: "budget-used", cell: (b) => amountText(b, b.used) },
      { label: t("budget.col.remaining"), num: true, cell: (b) => amountText(b, b.remaining) },
      { label: t("budget.col.resets"), cell: (b) => dateTime(b.resets_at_ms, lang) },
      { label: t("plans.col.actions"), cell: (b) => h("button", { type: "button", class: "danger", "data-testid": "budget-delete",
        on: { click: () => remove(b) } }, t("budget.delete")) },
    ], budgets, { "data-testid": "budgets" }, (b) => ({ "data-testid": "budget-row", "data-budget": b.id })) : h("p", {}, t("budget.none")),
    h("form", { class: "controls", "aria-label": t("budget.create"), on: { submit } },
      field(t("budget.col.period"), period), field(t("budget.unit"), unit), field(t("budget.amount"), amount),
      field(t("budget.col.scope"), key), h("button", { type: "submit", "data-testid": "budget-create" }, t("budget.create"))));
}

export async function prices(ctx) {
  const { api, t, lang, root } = ctx;
  const pricing = await api.get("/v1/pricing");
  const chat = pricing.data.filter((m) => m.kind === "chat");
  root.append(quoteCalculator(ctx, chat.map((m) => m.model)));
  const offers = pricing.data.flatMap((m) => m.offers.map((o) => ({ ...o, kind: m.kind })));
  const per = (o, c) => {
    const value = o.current.prices.cny_per_mtok[c];
    return value === undefined ? "—" : cny(value);
  };
  root.append(section(t("prices.now"), h("p", { class: "muted" }, t("prices.zone", { tz: pricing.timezone })),
    table(t("prices.caption"), [
      { label: t("prices.col.model"), cell: (o) => h("span", {}, o.model, " ", h("small", { class: "muted" }, t(`kind.${o.kind}`, null, true) || o.kind)) },
      { label: t("prices.col.operator"), cell: (o) => o.operator },
      { label: t("prices.col.window"), testid: "price-window", cell: (o) => `${o.current.window} (${o.current.window_percent}%)` },
      { label: t("class.input"), num: true, testid: "price-input", cell: (o) => per(o, "input") },
      { label: t("class.cached_input"), num: true, cell: (o) => per(o, "cached_input") },
      { label: t("class.output"), num: true, testid: "price-output", cell: (o) => per(o, "output") },
      { label: t("prices.col.until"), cell: (o) => (o.current.until_ms ? dateTime(o.current.until_ms, lang) : "—") },
    ], offers, { "data-testid": "prices" }, (o) => ({ "data-testid": "price-offer", "data-offer": o.offer }))));
  const windowed = offers.filter((o) => o.rules.windows && o.rules.windows.length);
  root.append(section(t("prices.bands_title"),
    windowed.length ? windowed.map((o) => offerBands(ctx, o)) : null,
    h("p", { class: "muted" }, t("prices.flat_rest", { n: offers.length - windowed.length }))));
}

function offerBands(ctx, offer) {
  const { t } = ctx;
  const rules = offer.rules;
  return h("div", { class: "bands", "data-testid": "bands", "data-offer": offer.offer },
    h("h3", {}, t("prices.bands", { offer: offer.offer })),
    DAY_TYPES.map((dayType) => {
      const segments = daySegments(rules, dayType);
      const text = segments.map(segmentText).join("; ");
      const label = `${t(`day.${dayType}`)}: ${text}`;
      return h("div", { class: "band-row" }, h("span", { class: "band-day" }, t(`day.${dayType}`)), priceStrip(segments, label),
        h("p", { class: "band-text", "data-testid": "band-text" }, text));
    }),
    h("p", { class: "legend-line" }, h("span", { class: "swatch band-low", "aria-hidden": "true" }), t("prices.cheaper"), " ",
      h("span", { class: "swatch band-std", "aria-hidden": "true" }), t("prices.standard"), " ",
      h("span", { class: "swatch band-high", "aria-hidden": "true" }), t("prices.dearer")));
}

function quoteCalculator(ctx, models) {
  const { api, t, lang } = ctx;
  const model = select({ "data-testid": "quote-model" }, models.map((m) => [m, m]));
  const prompt = h("textarea", { rows: "3", maxlength: "100000", "data-testid": "quote-prompt" });
  const maxTokens = h("input", { type: "number", min: "1", step: "1", value: String(QUOTE_MAX_TOKENS_DEFAULT), "data-testid": "quote-max-tokens" });
  const status = h("p", { class: "error", role: "alert" });
  const out = h("div", { "aria-live": "polite", "data-testid": "quote-result" });
  async function submit(event) {
    event.preventDefault();
    await act(status, t, async () => {
      const quote = await api.post("/v1/quote", { model: model.value, messages: [{ role: "user", content: prompt.value }],
        max_tokens: Number(maxTokens.value) });
      out.replaceChildren(h("p", {}, t("quote.prompt_tokens", { tokens: integer(quote.prompt_tokens, lang) })), table(t("quote.caption"), [
        { label: t("prices.col.operator"), cell: (o) => o.operator },
        { label: t("quote.fits"), cell: (o) => (o.fits_context_window ? `✓ ${t("yes")}` : `✕ ${t("no")}`) },
        { label: t("quote.now"), num: true, testid: "quote-now", cell: (o) => h("span", { "data-nano": String(o.now.max_cost_nano) },
          `${cny(o.now.max_cost)} (${o.now.window})`) },
        { label: t("quote.cheapest"), num: true, testid: "quote-cheapest", cell: (o) => h("span", { "data-nano": String(o.cheapest_today.max_cost_nano) },
          `${cny(o.cheapest_today.max_cost)} (${o.cheapest_today.window}, ${dateTime(o.cheapest_today.at_ms, lang)})`) },
      ], quote.data, {}, (o) => ({ "data-testid": "quote-offer", "data-offer": o.offer })));
    });
  }
  return h("form", { class: "card", "aria-labelledby": "quote-title", on: { submit } },
    h("h2", { id: "quote-title" }, t("quote.title")),
    h("div", { class: "controls" }, field(t("quote.model"), model), field(t("quote.max_tokens"), maxTokens)),
    field(t("quote.prompt"), prompt),
    h("button", { type: "submit", "data-testid": "quote-submit" }, t("quote.submit")), status, out);
}
