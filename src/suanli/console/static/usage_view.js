// Usage over time as a stacked bar chart with a table alternative, for the customer's Usage page
// (/v1/usage/summary) and the platform's Revenue page (/admin/v1/usage/summary): one view, two endpoints.

import { clear, field, h, select } from "./dom.js";
import { bucketLabel, cny, dateTime, integer } from "./format.js";
import { legend, pivot, stackedBars } from "./charts.js";
import { act, stat } from "./ui.js";

export async function usageView(ctx, { endpoint, byOptions, groupName, showUncharged }) {
  const { api, t, lang, root } = ctx;
  const state = { period: "day", by: byOptions[1] || "none", metric: "cost", table: false };
  const period = select({ "data-testid": "usage-period" }, [["day", t("period.day")], ["hour", t("period.hour")]]);
  const by = select({ "data-testid": "usage-by" }, byOptions.map((b) => [b, t(`by.${b}`)]));
  const metric = select({ "data-testid": "usage-metric" }, [["cost", t("metric.cost")], ["tokens", t("metric.tokens")]]);
  by.value = state.by;
  const toggle = h("button", { type: "button", class: "secondary", "aria-expanded": "false", "aria-controls": "usage-table",
    "data-testid": "usage-table-toggle" }, t("usage.show_table"));
  const status = h("p", { class: "error", role: "alert" });
  const out = h("div", { class: "usage-out", "aria-live": "polite", "data-testid": "usage-out" });
  const controls = h("form", { class: "controls", on: { submit: (e) => e.preventDefault() } },
    field(t("usage.period"), period), field(t("usage.by"), by), field(t("usage.metric"), metric), toggle);
  root.append(controls, status, out);
  let summary = null;

  function draw() {
    clear(out);
    if (!summary) return;
    const { groups } = pivot(summary);
    const totals = summary.totals;
    const label = t("usage.chart_label", {
      metric: t(`metric.${state.metric}`), by: t(`by.${summary.by}`), period: t(`period.${summary.period}`),
      from: dateTime(summary.from_ms, lang), to: dateTime(summary.to_ms, lang), calls: totals.calls, tokens: totals.tokens, cost: cny(totals.cost),
      buckets: new Set(summary.data.map((r) => r.start_ms)).size,
    });
    out.append(h("div", { class: "stats" },
      stat(t("usage.total_cost"), cny(totals.cost), "usage-total-cost", { "data-nano": String(totals.cost_nano) }),
      stat(t("usage.total_tokens"), integer(totals.tokens, lang), "usage-total-tokens", { "data-value": String(totals.tokens) }),
      stat(t("usage.total_calls"), integer(totals.calls, lang), "usage-total-calls", { "data-value": String(totals.calls) }),
      showUncharged ? stat(t("revenue.uncharged"), cny(totals.uncharged), "usage-uncharged",
        { "data-nano": String(totals.uncharged_nano) }) : null));
    if (!summary.data.length) {
      out.append(h("p", { "data-testid": "usage-empty" }, t("usage.empty")));
    } else {
      out.append(h("figure", { class: "chart-figure" }, stackedBars(summary, state.metric, label, groupName),
        h("figcaption", {}, label), legend(groups, groupName)));
    }
    out.append(usageTable(summary, ctx, groupName, state.table));
  }

  async function load() {
    await act(status, t, async () => {
      summary = await api.get(endpoint, { period: state.period, by: state.by, tz: ctx.zone });
      draw();
      out.setAttribute("data-shown", `${summary.period}/${summary.by}`); // which summary is drawn (tests wait on it)
    });
  }

  period.addEventListener("change", () => { state.period = period.value; load(); });
  by.addEventListener("change", () => { state.by = by.value; load(); });
  metric.addEventListener("change", () => { state.metric = metric.value; draw(); });
  toggle.addEventListener("click", () => {
    state.table = !state.table;
    toggle.setAttribute("aria-expanded", String(state.table));
    toggle.textContent = t(state.table ? "usage.hide_table" : "usage.show_table");
    const tableEl = document.getElementById("usage-table");
    if (tableEl) tableEl.hidden = !state.table;
  });
  await load();
}

function usageTable(summary, ctx, groupName, shown) {
  const { t, lang } = ctx;
  const rows = summary.data.map((row) => h("tr", { "data-testid": "usage-row", "data-start-ms": String(row.start_ms),
    "data-group": row.group === null ? "" : row.group },
  h("th", { scope: "row" }, bucketLabel(row.start, summary.period)),
  h("td", {}, groupName(row.group === null ? "" : row.group)),
  h("td", { class: "num", "data-testid": "row-calls", "data-value": String(row.calls) }, integer(row.calls, lang)),
  h("td", { class: "num", "data-testid": "row-tokens", "data-value": String(row.tokens) }, integer(row.tokens, lang)),
  h("td", { class: "num", "data-testid": "row-cost", "data-nano": String(row.cost_nano) }, cny(row.cost))));
  const totals = summary.totals;
  return h("div", { class: "table-wrap", id: "usage-table", hidden: !shown },
    h("table", { "data-testid": "usage-table" },
      h("caption", {}, t("usage.table_caption", { tz: summary.timezone })),
      h("thead", {}, h("tr", {}, [t("usage.col.start"), t("usage.col.group"), t("usage.col.calls"), t("usage.col.tokens"),
        t("usage.col.cost")].map((label, i) => h("th", { scope: "col", class: i > 1 ? "num" : null }, label)))),
      h("tbody", {}, rows),
      h("tfoot", {}, h("tr", {}, h("th", { scope: "row", colspan: "2" }, t("usage.total")),
        h("td", { class: "num" }, integer(totals.calls, lang)), h("td", { class: "num" }, integer(totals.tokens, lang)),
        h("td", { class: "num" }, cny(totals.cost))))));
}
