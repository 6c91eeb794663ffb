"""Claude Code itself, run headless (``claude -p``) against the test gateway.

Slow and opt-in: set ``SUANLI_CLAUDE_CODE_BIN`` to a ``claude`` binary (``scripts/verify-clients`` installs one
and runs this file). The simulator's answers are deterministic text, so this checks the protocol, not the
work: Claude Code gets answers, runs the tool loop they start, prints the result, and every call is billed.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import Gateway

CLAUDE_CODE_BIN = os.environ.get("SUANLI_CLAUDE_CODE_BIN", "")
RUN_TIMEOUT_S = 180  # a whole -p session, tool turns included
BAD_KEY_ANSWER_S_MAX = 30  # Claude Code retries a 401 for about three minutes unless told not to

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.access(CLAUDE_CODE_BIN, os.X_OK), reason="set SUANLI_CLAUDE_CODE_BIN to run Claude Code"),
]


def claude(gateway: Gateway, key: str, model: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``claude -p`` in a fresh home (no login, no onboarding), every model alias pointed at ``model``."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": gateway.url,
        "ANTHROPIC_AUTH_TOKEN": key,
        "ANTHROPIC_MODEL": model,
        "ANTHROPIC_SMALL_FAST_MODEL": model,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,
        "ANTHROPIC_DEFAULT_SONNET_MODEL": model,
        "ANTHROPIC_DEFAULT_OPUS_MODEL": model,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    command = [CLAUDE_CODE_BIN, "-p", *args, "--output-format", "json", "--max-turns", "6"]
    return subprocess.run(
        command, check=False, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )


def result(run: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert run.stdout, run.stderr
    parsed: dict[str, Any] = orjson.loads(run.stdout)
    return parsed


@pytest.mark.parametrize(
    "model",
    [
        "glm-5",  # an OpenAI-protocol operator: translated both ways
        "anthropic-only",  # an Anthropic-protocol operator: passed through
    ],
)
def test_prompt_with_default_tools(gateway: Gateway, unique: str, tmp_path: Path, model: str) -> None:
    key = gateway.account(unique, topup_cny="5")
    run = claude(gateway, key, model, tmp_path, "Please echo: hello from the gateway")
    answer = result(run)
    assert run.returncode == 0 and answer["is_error"] is False, answer
    # The simulated model first calls Claude Code's first tool, whose result it then answers with the echo.
    assert answer["num_turns"] == 2 and answer["result"].startswith("hello from the gateway")
    events = gateway.admin("GET", f"/admin/v1/accounts/{unique}/usage").json()["data"]
    assert len(events) == 2 and all(e["outcome"] == "ok" and e["stream"] and e["cost_nano"] > 0 for e in events)


def test_bad_key_fails_fast(gateway: Gateway, tmp_path: Path) -> None:
    started = time.monotonic()
    answer = result(claude(gateway, "sk-not-a-key", "glm-5", tmp_path, "hello"))
    assert answer["is_error"] is True and answer["api_error_status"] == 401
    assert time.monotonic() - started < BAD_KEY_ANSWER_S_MAX
