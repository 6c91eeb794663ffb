"""Settings from the environment: a wait given in seconds is a positive number within its bound, or the
gateway refuses to start with one clear line."""

from __future__ import annotations

import pytest

from suanli.errors import ConfigError
from suanli.gateway.platform import Settings
from suanli.limits import CLIENT_WRITE_TIMEOUT_S, CONSOLE_SESSION_TTL_MAX_S, CONSOLE_SESSION_TTL_S


def test_the_write_timeout_defaults_to_its_limit_and_can_be_set() -> None:
    assert Settings.from_env({}).client_write_timeout_s == CLIENT_WRITE_TIMEOUT_S
    assert Settings.from_env({"SUANLI_CLIENT_WRITE_TIMEOUT_S": "2.5"}).client_write_timeout_s == 2.5


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "inf", "3601", ""])
def test_a_bad_write_timeout_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="SUANLI_CLIENT_WRITE_TIMEOUT_S"):
        Settings.from_env({"SUANLI_CLIENT_WRITE_TIMEOUT_S": value})


def test_the_console_session_lifetime_defaults_to_its_limit_and_may_be_longer_than_an_hour() -> None:
    assert Settings.from_env({}).console_session_ttl_s == CONSOLE_SESSION_TTL_S
    week = {"SUANLI_CONSOLE_SESSION_TTL_S": str(7 * 24 * 3600)}
    assert Settings.from_env(week).console_session_ttl_s == 7 * 24 * 3600
    with pytest.raises(ConfigError, match="SUANLI_CONSOLE_SESSION_TTL_S"):
        Settings.from_env({"SUANLI_CONSOLE_SESSION_TTL_S": str(CONSOLE_SESSION_TTL_MAX_S + 1)})
