"""An operator's statement as a PDF document, in English or Chinese, from the same JSON body the API serves
(economy/operator_statement.py): the platform, the operator and the period, the settlement runs, the tokens
served by model and class, the sales by offer and commission rate, then gross, commission, net, what was
settled so far and what is still unsettled.

The fonts, the escaping and the tables are the customer statement's (economy/statements_pdf.py), so Chinese
in an English document and markup in an operator's name are handled the same way. The body carries instants
as epoch milliseconds; ``zone`` (the catalog's) turns them into the local times printed.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from reportlab.platypus import Spacer

from suanli.economy.operator_sales import TOKEN_CLASSES
from suanli.economy.statements import PLATFORM_NAME, iso
from suanli.economy.statements_pdf import build, font_for_lang, paragraph, section
from suanli.money import nano_to_cny

WORDS = {
    "en": {
        "title": "Operator settlement statement",
        "operator": "Operator",
        "period": "Period",
        "as_of": "as of",
        "runs": "Settlement runs",
        "run": "Run",
        "number": "No.",
        "settled_to": "Settled up to",
        "served": "Tokens served",
        "model": "Model",
        "offer": "Offer",
        "calls": "Calls",
        "charged": "Charged (CNY)",
        "sales": "Sales and commission (CNY)",
        "rate": "Commission (bp)",
        "gross": "Gross",
        "commission": "Commission",
        "net": "Net",
        "totals": "Totals (CNY)",
        "item": "Item",
        "amount": "Amount (CNY)",
        "settled": "Settled so far (net)",
        "unsettled": "Unsettled (net)",
        "none": "none yet",
    },
    "zh-CN": {
        "title": "运营方结算单",
        "operator": "运营方",
        "period": "账期",
        "as_of": "截至",
        "runs": "结算批次",
        "run": "批次",
        "number": "序号",
        "settled_to": "结算至",
        "served": "已服务 Token",
        "model": "模型",
        "offer": "报价",
        "calls": "调用次数",
        "charged": "计费（元）",
        "sales": "销售与佣金（元）",
        "rate": "佣金（基点）",
        "gross": "销售总额",
        "commission": "佣金",
        "net": "净额",
        "totals": "合计（元）",
        "item": "项目",
        "amount": "金额（元）",
        "settled": "已结算（净额）",
        "unsettled": "未结算（净额）",
        "none": "暂无",
    },
}


def render(
    statement: dict[str, Any],
    zone: ZoneInfo,
    lang: str = "en",
    *,
    platform_name: str = PLATFORM_NAME,
    invariant: bool = False,
) -> bytes:
    words = WORDS[lang]
    font = font_for_lang(lang)
    story: list[Any] = [paragraph(f"{platform_name} — {words['title']}", font, 15), Spacer(1, 6)]
    story += [paragraph(text, font, 9) for text in _header(statement, words, zone)]
    story += section(words["runs"], _run_rows(statement, words, zone), font, numbers_from=1)
    story += section(words["served"], _served_rows(statement, words), font, numbers_from=2)
    story += section(words["sales"], _sales_rows(statement, words), font, numbers_from=2)
    story += section(words["totals"], _total_rows(statement, words), font, numbers_from=1)
    return build(story, f"{words['title']} {statement['operator']} {statement['month']}", invariant=invariant)


def _header(statement: dict[str, Any], words: dict[str, str], zone: ZoneInfo) -> list[str]:
    period = statement["period"]
    start, end = iso(period["start_ms"], zone)[:10], iso(period["end_ms"], zone)[:10]
    as_of = iso(period["as_of_ms"], zone)[:19]
    return [
        f"{words['operator']}: {statement['operator']}",
        f"{words['period']}: {statement['month']} ({start} — {end}, {zone.key}) · {words['as_of']} {as_of}",
    ]


def _run_rows(statement: dict[str, Any], words: dict[str, str], zone: ZoneInfo) -> list[list[str]]:
    rows = [[words["run"], words["number"], words["settled_to"], words["net"]]]
    for run in statement["runs"]:
        settled_to = iso(run["settled_to_ms"], zone)[:19]
        rows.append([run["run_id"], str(run["seq"]), settled_to, nano_to_cny(run["net_nano"])])
    if not statement["runs"]:
        rows.append([words["none"], "", "", ""])
    return rows


def _served_rows(statement: dict[str, Any], words: dict[str, str]) -> list[list[str]]:
    rows = [[words["model"], words["offer"], words["calls"], *TOKEN_CLASSES, words["charged"]]]
    for line in statement["served"]:
        tokens = [str(line["tokens"][name]) for name in TOKEN_CLASSES]
        charged = nano_to_cny(line["charged_nano"] + line["uncharged_nano"])
        rows.append([line["model"], line["offer"], str(line["calls"]), *tokens, charged])
    return rows


def _sales_rows(statement: dict[str, Any], words: dict[str, str]) -> list[list[str]]:
    rows = [[words["model"], words["offer"], words["rate"], words["gross"], words["commission"], words["net"]]]
    for group in statement["sales"]:
        money = [nano_to_cny(group[key]) for key in ("gross_nano", "commission_nano", "net_nano")]
        rows.append([group["model"], group["offer"], str(group["commission_bp"]), *money])
    return rows


def _total_rows(statement: dict[str, Any], words: dict[str, str]) -> list[list[str]]:
    return [
        [words["item"], words["amount"]],
        [words["gross"], nano_to_cny(statement["gross_nano"])],
        [words["commission"], nano_to_cny(-statement["commission_nano"])],
        [words["net"], nano_to_cny(statement["net_nano"])],
        [words["settled"], nano_to_cny(statement["settled"]["net_nano"])],
        [words["unsettled"], nano_to_cny(statement["unsettled_net_nano"])],
    ]
