"""A statement as a PDF document (reportlab), in English or Chinese, from the same JSON body the API serves:
the platform and the account, the statement number and period, then the money and token tables, the
packs' and allowances' draws by model and token class, and the budgets.

Chinese uses reportlab's built-in CID font ``STSong-Light`` (Adobe's Asian font pack, which every PDF
reader resolves), so no font file ships with the package. An English statement still holds Chinese where
the data does (the platform's name 算力, an account's name, a memo): any text Helvetica can't encode is set
in the CID font too, or it would print as black boxes. Text is escaped before it goes into a Paragraph,
whose markup an account named ``<b>`` would otherwise break. ``invariant=True`` gives byte-identical output
for the same body (fixed dates and ids inside the PDF), which the tests use.
"""

from __future__ import annotations

import io
from typing import Any
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from suanli.economy.statements import iso
from suanli.money import nano_to_cny

LANGS = ("en", "zh-CN")
CJK_FONT = "STSong-Light"
WORDS = {
    "en": {
        "title": "Statement",
        "number": "Statement number",
        "account": "Account",
        "period": "Period",
        "final": "Final",
        "open": "Open month: not final",
        "money": "Wallet (CNY)",
        "opening": "Opening balance",
        "topup": "Top-up",
        "purchase": "Purchase",
        "usage": "Usage charges",
        "rebates": "Contract rebates",
        "other": "Other",
        "closing": "Closing balance",
        "pending": "Reserved, not settled (not in the balance)",
        "late": "Call made {made}, settled {settled}",
        "model": "Model",
        "class": "Token class",
        "price": "Unit price (CNY/token)",
        "tokens": "Tokens",
        "amount": "Amount (CNY)",
        "calls": "calls",
        "not_charged": "Paid by plans or not charged",
        "packs": "Packs and allowances (tokens)",
        "item": "Item",
        "bought": "bought",
        "received": "received",
        "sent": "sent",
        "drawn": "drawn",
        "forfeited": "forfeited",
        "granted": "granted",
        "budgets": "Budgets (CNY or tokens)",
        "budget": "Budget window",
        "used": "used",
        "remaining": "Remaining at the end",
        "draws": "Packs and allowances drawn, by model and token class",
        "drawn_units": "Drawn (tokens or requests)",
        "requests": "requests",
        "unattributed": "not attributed to a class",
    },
    "zh-CN": {
        "title": "对账单",
        "number": "对账单编号",
        "account": "账户",
        "period": "账期",
        "final": "已结账",
        "open": "本月未结束：非最终版",
        "money": "钱包（人民币）",
        "opening": "期初余额",
        "topup": "充值",
        "purchase": "购买",
        "usage": "用量费用",
        "rebates": "合同返利",
        "other": "其他",
        "closing": "期末余额",
        "pending": "已预留未结算（不计入余额）",
        "late": "调用于 {made}，结算于 {settled}",
        "model": "模型",
        "class": "Token 类别",
        "price": "单价（元/token）",
        "tokens": "Token 数",
        "amount": "金额（元）",
        "calls": "次调用",
        "not_charged": "由套餐支付或未收费",
        "packs": "资源包与额度（token）",
        "item": "项目",
        "bought": "购入",
        "received": "转入",
        "sent": "转出",
        "drawn": "使用",
        "forfeited": "过期作废",
        "granted": "发放",
        "budgets": "预算（人民币或 token）",
        "budget": "预算周期",
        "used": "已用",
        "remaining": "期末剩余",
        "draws": "资源包与额度的使用（按模型与 Token 类别）",
        "drawn_units": "使用量（token 或请求）",
        "requests": "请求",
        "unattributed": "未归入类别",
    },
}


def render(body: dict[str, Any], lang: str = "en", *, invariant: bool = False) -> bytes:
    words = WORDS[lang]
    font = font_for_lang(lang)
    zone = ZoneInfo(body["period"]["zone"])
    story: list[Any] = [paragraph(f"{body['platform']['name']} — {words['title']}", font, 15), Spacer(1, 6)]
    story += [paragraph(text, font, 9) for text in _header(body, words)]
    story += section(words["money"], _money_rows(body, words, zone), font)
    story += section(words["packs"], _token_rows(body, words), font)
    draws = _draw_rows(body, words)
    if len(draws) > 1:
        story += section(words["draws"], draws, font)
    if body.get("budgets"):  # a statement stored before budgets were shown has none
        story += section(words["budgets"], _budget_rows(body, words, zone), font, numbers_from=1)
    return build(story, f"{words['title']} {body['number']}", invariant=invariant)


def _header(body: dict[str, Any], words: dict[str, str]) -> list[str]:
    account, period = body["account"], body["period"]
    status = words["final"] if body["final"] else words["open"]
    return [
        f"{words['number']}: {body['number']}",
        f"{words['account']}: {account['name']} ({account['id']}, {account['tier']})",
        f"{words['period']}: {period['from']} — {period['to']} ({period['zone']}) · {status}",
        f"SHA-256: {body.get('sha256', '')}",
    ]


def _money_rows(body: dict[str, Any], words: dict[str, str], zone: ZoneInfo) -> list[list[str]]:
    money = body["money"]
    rows = [[words["item"], words["model"], words["class"], words["price"], words["tokens"], words["amount"]]]
    rows.append(_amount_row(words["opening"], money["opening_nano"]))
    for line in money["topups"]:
        rows.append(_amount_row(f"{words['topup']} {iso(line['at_ms'], zone)[:10]}", line["amount_nano"]))
    for line in money["purchases"]:
        rows.append(_amount_row(f"{words['purchase']}: {line['memo']}", line["amount_nano"]))
    rows.extend(_usage_rows(money, words, zone))
    rows.append(_amount_row(words["rebates"], money["rebates"]["amount_nano"]))
    for line in money["other"]:
        rows.append(_amount_row(f"{words['other']}: {line['counter_account']}", line["amount_nano"]))
    rows.append(_amount_row(words["closing"], money["closing_nano"]))
    rows.append(_amount_row(words["pending"], money["pending"]["reserved_nano"]))
    return rows


def _amount_row(label: str, amount_nano: int, model: str = "") -> list[str]:
    """A row with only a label, perhaps a model, and an amount."""
    return [label, model, "", "", "", nano_to_cny(amount_nano)]


def _usage_rows(money: dict[str, Any], words: dict[str, str], zone: ZoneInfo) -> list[list[str]]:
    """Usage by model and token class at list price, what plans paid or nobody was charged, what the wallet
    paid, and the calls made before the period that settled in it."""
    rows: list[list[str]] = []
    for model in money["usage"]["models"]:
        name = model["model"]
        for c in model["classes"]:
            price, tokens = nano_to_cny(c["unit_price_nano"]), str(c["tokens"])
            rows.append([words["usage"], name, c["class"], price, tokens, nano_to_cny(-c["amount_nano"])])
        rows.append(_amount_row(words["not_charged"], model["not_charged_to_wallet_nano"], name))
        rows.append(_amount_row(f"{words['usage']} ({model['calls']} {words['calls']})", -model["charged_nano"], name))
    for late in money["late_settlements"]:
        made, settled = iso(late["call_made_ms"], zone)[:19], iso(late["settled_ms"], zone)[:19]
        rows.append(
            _amount_row(words["late"].format(made=made, settled=settled), late["amount_nano"], late["model"] or "")
        )
    return rows


def _token_rows(body: dict[str, Any], words: dict[str, str]) -> list[list[str]]:
    rows = [[words["item"], words["opening"], "+ / −", words["closing"], words["pending"]]]
    for section in body["packs"] + body["allowances"]:
        moved = ", ".join(f"{words.get(k, k)} {v:+d}" for k, v in section["totals"].items() if v)
        rows.append(
            [
                f"{section['ledger_account']} ({section['product']})",
                str(section["opening"]),
                moved,
                str(section["closing"]),
                str(section["pending"]["reserved"]),
            ]
        )
    return rows


def _draw_rows(body: dict[str, Any], words: dict[str, str]) -> list[list[str]]:
    """Each pack's and window's draws by model and token class (a window counting requests: by model), and
    what no call's classes explain (docs/statements.md); a statement stored before draws were broken down
    has none."""
    rows = [[words["item"], words["model"], words["class"], words["drawn_units"]]]
    for section in body["packs"] + body["allowances"]:
        usage, item = section.get("usage") or {"unit": "tokens", "models": []}, section["ledger_account"]
        for model in usage["models"]:
            name, unattributed = model["model"], model["unattributed"]
            rows += [[item, name, c["class"], str(c["tokens"])] for c in model["classes"]]
            if usage["unit"] == "requests" and model["drawn"] > unattributed:
                rows.append([item, name, words["requests"], str(model["drawn"] - unattributed)])
            if unattributed:
                rows.append([item, name, words["unattributed"], str(unattributed)])
    return rows


def _budget_rows(body: dict[str, Any], words: dict[str, str], zone: ZoneInfo) -> list[list[str]]:
    rows = [[words["budget"], words["opening"], "+ / −", words["remaining"], words["pending"]]]
    for b in body["budgets"]:

        def shown(units: int, unit: str = b["unit"]) -> str:
            return nano_to_cny(units) if unit == "cny" else str(units)

        moved = ", ".join(f"{words.get(k, k)} {'+' if v > 0 else ''}{shown(v)}" for k, v in b["totals"].items() if v)
        window = f"{iso(b['window_start_ms'], zone)[:10]} — {iso(b['window_end_ms'], zone)[:10]}"
        rows.append(
            [
                f"{b['budget']} ({b['period']}, {b['unit']}) {window}",
                shown(b["opening"]),
                moved,
                shown(b["closing"]),
                shown(b["pending"]["reserved"]),
            ]
        )
    return rows


# The building blocks, shared with the operator's statement (economy/operator_statement_pdf.py).


def build(story: list[Any], title: str, *, invariant: bool = False) -> bytes:
    """The PDF of ``story`` on A4; ``invariant`` fixes the dates and ids inside it (byte-identical output)."""
    out = io.BytesIO()
    SimpleDocTemplate(out, pagesize=A4, title=title, invariant=int(invariant)).build(story)
    return out.getvalue()


def section(heading: str, rows: list[list[str]], font: str, *, numbers_from: int = 3) -> list[Any]:
    """A heading and its table, a little space above."""
    return [Spacer(1, 8), paragraph(heading, font, 15), table(rows, font, numbers_from=numbers_from)]


def font_for_lang(lang: str) -> str:
    """The body font of ``lang``: Helvetica, or the CID font for Chinese (registered on first use)."""
    if lang == "en":
        return "Helvetica"
    pdfmetrics.registerFont(UnicodeCIDFont(CJK_FONT))  # idempotent: reportlab keeps one registry
    return CJK_FONT


def _font_for(text: str, font: str) -> str:
    """``font`` if it can set every character of ``text``, else the CID font (which covers Latin too)."""
    if font == CJK_FONT:
        return font
    try:
        text.encode(pdfmetrics.getFont(font).encName)
    except UnicodeEncodeError:
        return font_for_lang("zh-CN")
    return font


def paragraph(text: str, font: str, size: int) -> Paragraph:
    """``text`` escaped for Paragraph markup, in ``font`` or the CID font where ``font`` lacks a glyph."""
    style = ParagraphStyle("text", fontName=_font_for(text, font), fontSize=size, leading=size * 4 // 3)
    return Paragraph(escape(text), style)


def table(rows: list[list[str]], font: str, *, numbers_from: int = 3) -> Table:
    """A grid with a grey header row repeated on each page; columns from ``numbers_from`` on align right."""
    table = Table(rows, repeatRows=1)
    wide = [
        ("FONTNAME", (col, row), (col, row), CJK_FONT)
        for row, cells in enumerate(rows)
        for col, text in enumerate(cells)
        if _font_for(text, font) != font
    ]
    table.setStyle(
        TableStyle(
            [
                ("FONTNAME", (0, 0), (-1, -1), font),
                *wide,
                ("FONTSIZE", (0, 0), (-1, -1), 7),
                ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey),
                ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
                ("ALIGN", (numbers_from, 1), (-1, -1), "RIGHT"),
            ]
        )
    )
    return table
