"""Ledger account ids compare byte by byte on PostgreSQL whatever the database's locale: a statement finds a
budget's windows as one range of their id prefix (economy/statement_ledger.py ``accounts_between``)."""

from __future__ import annotations

from suanli.economy.statement_ledger import accounts_between
from suanli.ledger.sqlite import open_account
from suanli.store import pg
from tests.pg import PgServer, psql

WINDOWS = ["budget:b1:1764518400000", "budget:b1:1764604800000"]
OTHERS = ["budget:b10:1764518400000", "budget:B1:1764518400000", "budget:b1-x:1", "wallet:b1"]


def test_a_budgets_windows_are_one_id_range_under_a_collation_that_orders_by_words(pg_server: PgServer) -> None:
    # ICU's root collation puts "budget:b1:1…" outside ["budget:b1:", "budget:b1;"): punctuation sorts apart.
    name = "icu_words"
    psql(pg_server.url, f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'und'")
    words = pg.connect(pg_server.database_url(name))
    try:
        assert words.execute("SELECT 'budget:b1:1' < 'budget:b1;' COLLATE \"und-x-icu\"").fetchone()[0] is False
        pg.migrate(words)
        for account in WINDOWS + OTHERS:
            open_account(words, account, "CNY_NANO", 0)
        assert accounts_between(words, "budget:b1:", "budget:b1;") == WINDOWS
    finally:
        words.close()
