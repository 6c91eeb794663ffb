"""Token counting: the declared tokenizer, upstream usage reports, local estimates."""

from suanli.metering.tokenizer import count_messages, count_request, count_text
from suanli.metering.usage import (
    answer_texts,
    delivered_texts,
    estimate_usage,
    reported_count,
    usage_from_anthropic,
    usage_from_openai,
)

__all__ = [
    "answer_texts",
    "count_messages",
    "count_request",
    "count_text",
    "delivered_texts",
    "estimate_usage",
    "reported_count",
    "usage_from_anthropic",
    "usage_from_openai",
]
