"""Builders shared by the Anthropic translation tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

RECORDED = Path(__file__).parent / "recorded"


def completion(message: dict[str, Any], finish_reason: str | None = "stop", **fields: Any) -> dict[str, Any]:
    """A non-streamed chat.completion as DeepSeek returns it."""
    return {
        "id": "8d2f6a3c-1b7e-4c9a-9e0f-5a4b3c2d1e0f",
        "object": "chat.completion",
        "created": 1745400000,
        "model": "deepseek-chat",
        "choices": [
            {"index": 0, "message": {"role": "assistant", **message}, "logprobs": None, "finish_reason": finish_reason}
        ],
        "usage": {
            "prompt_tokens": 20,
            "completion_tokens": 5,
            "total_tokens": 25,
            "prompt_tokens_details": {"cached_tokens": 0},
            "prompt_cache_hit_tokens": 0,
            "prompt_cache_miss_tokens": 20,
        },
        "system_fingerprint": "fp_8802369eaa_prod0425fp8",
        **fields,
    }


# The first request of `claude -p "say hello"` (Claude Code 2.1.197, sent with
# "anthropic-beta: claude-code-20250219,interleaved-thinking-2025-05-14,...,mid-conversation-system-2026-04-07"),
# recorded against the gateway; only long texts, the tool list and the ids are cut.
CLAUDE_CODE_REQUEST: dict[str, Any] = {
    "model": "glm-5",
    "messages": [
        {
            "role": "user",
            "content": [
                {
                    "type": "text",
                    "text": "<system-reminder>\nAs you answer the user's questions, you can use the following "
                    "context:\n# currentDate\nToday's date is 2026-11-29.\n</system-reminder>\n\n",
                },
                {"type": "text", "text": "say hello", "cache_control": {"type": "ephemeral"}},
            ],
        },
        {
            "role": "system",
            "content": "Available agent types for the Agent tool:\n- claude: Catch-all for any task. (Tools: *)",
        },
    ],
    "system": [
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197.1c0; cc_entrypoint=sdk-cli;"},
        {
            "type": "text",
            "text": "You are a Claude agent, built on Anthropic's Claude Agent SDK.",
            "cache_control": {"type": "ephemeral"},
        },
        {
            "type": "text",
            "text": "\nYou are an interactive agent that helps users with software engineering tasks.\n",
            "cache_control": {"type": "ephemeral"},
        },
    ],
    "tools": [
        {
            "name": "Agent",
            "description": "Launch a new agent to handle complex, multi-step tasks autonomously.",
            "input_schema": {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "properties": {
                    "description": {"description": "A short (3-5 word) description of the task", "type": "string"},
                    "prompt": {"description": "The task for the agent to perform", "type": "string"},
                },
                "required": ["description", "prompt"],
                "additionalProperties": False,
            },
        },
        {
            "name": "Read",
            "description": "Reads a file from the local filesystem.",
            "input_schema": {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "properties": {"file_path": {"description": "The absolute path to the file to read", "type": "string"}},
                "required": ["file_path"],
                "additionalProperties": False,
            },
        },
    ],
    "metadata": {"user_id": '{"device_id":"94c87a3e15548112","account_uuid":"","session_id":"286fdf3a-9f6b-4ba8"}'},
    "max_tokens": 32000,
    "thinking": {"type": "adaptive"},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "output_config": {"effort": "high"},
    "stream": True,
}


def recorded_stream(name: str) -> list[dict[str, Any]]:
    """The chunks of a recorded chat stream (``recorded/{name}.sse``: one ``data:`` line per chunk)."""
    lines = (RECORDED / f"{name}.sse").read_bytes().splitlines()
    return [orjson.loads(line.removeprefix(b"data: ")) for line in lines if line.startswith(b"data: ")]
