"""Suanli (算力): a token exchange for AI inference.

Operators sell LLM tokens; customers reach all of them through one OpenAI- and Anthropic-compatible API
with one key. Every call is quoted, reserved, relayed, measured in tokens and settled exactly once in a
double-entry ledger. The package is used through its command (``suanli``, see ``suanli.cli``) and its
ASGI application (``suanli.api.app.build_app``); docs/architecture.md describes the layers.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
