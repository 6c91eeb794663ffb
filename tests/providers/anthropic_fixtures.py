"""Builders shared by the Anthropic translation tests."""

from __future__ import annotations

from typing import Any


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
