"""Settings from the environment: a wait given in seconds is a positive number within its bound, or the
gateway refuses to start with one clear line."""

from __future__ import annotations

import pytest

from suanli.errors import ConfigError
from suanli.gateway.platform import Settings
from suanli.limits import CLIENT_WRITE_TIMEOUT_S


def test_the_write_timeout_defaults_to_its_limit_and_can_be_set() -> None:
    assert Settings.from_env({}).client_write_timeout_s == CLIENT_WRITE_TIMEOUT_S
    assert Settings.from_env({"SUANLI_CLIENT_WRITE_TIMEOUT_S": "2.5"}).client_write_timeout_s == 2.5


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "inf", "3601", ""])
def test_a_bad_write_timeout_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="SUANLI_CLIENT_WRITE_TIMEOUT_S"):
        Settings.from_env({"SUANLI_CLIENT_WRITE_TIMEOUT_S": value})
