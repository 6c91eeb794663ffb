"""A prompt prefix cache that only counts, the way DeepSeek and OpenAI report cached input tokens.

Real operators keep the attention state of prompt prefixes they have seen, in fixed-size blocks, and bill
the cached part of a new prompt at a lower price. The simulator keeps no state but the fact that a prefix
was seen: a hash of the token prefix at every block boundary, in a bounded LRU. A request's cached tokens
are the longest block-aligned prefix of its prompt seen before.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict
from collections.abc import Sequence

PREFIX_CACHE_ENTRIES_MAX = 100_000  # block hashes remembered per operator
_DIGEST_BYTES = 16  # 128-bit keys: collisions among 100k entries are negligible


def _block_keys(namespace: str, tokens: Sequence[int], block_tokens: int) -> list[tuple[int, bytes]]:
    """(prefix length, key) for every block boundary of ``tokens``, shortest first."""
    hasher = hashlib.blake2b(namespace.encode(), digest_size=_DIGEST_BYTES)
    keys: list[tuple[int, bytes]] = []
    full_blocks_end = len(tokens) - len(tokens) % block_tokens
    for start in range(0, full_blocks_end, block_tokens):
        hasher.update(array("I", tokens[start : start + block_tokens]).tobytes())
        # digest() does not finalise a hashlib object, so the prefix hash keeps growing block by block.
        keys.append((start + block_tokens, hasher.digest()))
    return keys


class PrefixCache:
    """Block-aligned prompt prefixes seen by one operator, least recently used evicted first."""

    def __init__(self, entries_max: int = PREFIX_CACHE_ENTRIES_MAX) -> None:
        self._entries_max = entries_max
        self._seen: OrderedDict[bytes, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def clear(self) -> None:
        self._seen.clear()

    def lookup_and_record(self, namespace: str, tokens: Sequence[int], block_tokens: int) -> int:
        """Tokens of the longest block-aligned prefix seen before; then remember this prompt's prefixes.

        ``namespace`` separates caches that share an operator (the model: a real operator's cache holds
        one model's state and can't serve another's).
        """
        keys = _block_keys(namespace, tokens, block_tokens)
        cached_tokens = 0
        for length, key in reversed(keys):
            if key in self._seen:
                cached_tokens = length
                break
        for _, key in keys:
            self._remember(key)
        return cached_tokens

    def _remember(self, key: bytes) -> None:
        if key in self._seen:
            self._seen.move_to_end(key)
            return
        self._seen[key] = None
        if len(self._seen) > self._entries_max:
            self._seen.popitem(last=False)
