"""A worker compares its clock with the database's at start and again while it runs, warns while they
differ by more than ``CLOCK_SKEW_WARN_S``, and says when they agree again."""

from __future__ import annotations

import asyncio
import logging

import pytest

from suanli.gateway import lease
from suanli.limits import CLOCK_SKEW_WARN_S
from suanli.store import pg

AHEAD_MS = int(CLOCK_SKEW_WARN_S * 1000) * 5


def skew_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "suanli.lease" and "clock" in r.getMessage()]


def test_a_clock_that_drifts_off_and_back_is_reported_both_times(
    pg_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = pg.open_database(pg_url)
    pg.migrate(setup)
    setup.close()
    keeper = lease.LeaseKeeper(pg_url, lambda notice: None)
    loop = asyncio.new_event_loop()
    caplog.set_level(logging.WARNING, "suanli.lease")
    try:
        keeper.start(loop)  # the clocks agree at start: nothing said
        assert skew_warnings(caplog) == [] and abs(keeper.clock_skew_s) < CLOCK_SKEW_WARN_S

        conn = pg.connect(pg_url)
        monkeypatch.setattr(lease, "now_ms", lambda: _db_ms(conn) + AHEAD_MS)
        keeper._check_clock(conn)  # the check the renewals make every CLOCK_CHECK_S
        assert keeper.clock_skew_s >= AHEAD_MS / 1000 - 1
        assert [m for m in skew_warnings(caplog) if "off the database's" in m]

        monkeypatch.setattr(lease, "now_ms", lambda: _db_ms(conn))
        keeper._check_clock(conn)
        assert abs(keeper.clock_skew_s) < CLOCK_SKEW_WARN_S
        assert skew_warnings(caplog)[-1].startswith("this machine's clock is back within")
        conn.close()
    finally:
        keeper.stop()
        loop.close()


def _db_ms(conn: pg.PgConnection) -> int:
    return int(conn.execute("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint").fetchone()[0])
