"""Token counting: the declared tokenizer, upstream usage reports, local estimates."""

from suanli.metering.tokenizer import count_messages, count_request, count_text
from suanli.metering.usage import delivered_text, estimate_usage, usage_from_anthropic, usage_from_openai

__all__ = [
    "count_messages",
    "count_request",
    "count_text",
    "delivered_text",
    "estimate_usage",
    "usage_from_anthropic",
    "usage_from_openai",
]
