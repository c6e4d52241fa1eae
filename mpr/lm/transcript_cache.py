"""KV caches of transcripts, carried across turns and shared by siblings (HF engine).

A transcript only grows (``mpr.lm.prompts``): the prompt of turn t+1 is the prompt of turn t plus an
action segment and an observation segment, and a simulated child is its parent plus the same. So
the engine keeps, for prompts it has run, the model's KV cache and its next-token log-probs, keyed
by the prompt's token ids, and a new prompt runs only the tokens after its longest cached prefix
that ends on a segment boundary.

Memory is bounded: at most ``max_tokens`` cached tokens in all (an entry costs its prompt's
length), least recently used entries go first. A cache of T tokens holds
``2 x layers x kv_heads x head_dim x T`` numbers (SmolLM2-135M in bf16: ~23 KB per token, 1.5 GB
for 65,536 tokens; the ~4M tiny models: ~16 KB per token in fp32). Entries are copied out and in,
so a caller may extend the cache it was given (siblings never see each other's tokens).
"""

from __future__ import annotations

import copy
import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def ids_key(ids: Sequence[int]) -> str:
    return hashlib.sha1(b"".join(i.to_bytes(4, "little") for i in ids)).hexdigest()


@dataclass
class CachedPrompt:
    """A prompt's KV cache (for its ``length`` tokens) and the log-probs of the token after it."""

    cache: Any
    next_logprobs: Any
    length: int


class TranscriptCache:
    """LRU of CachedPrompt by prompt ids, at most ``max_tokens`` tokens in all."""

    def __init__(self, max_tokens: int):
        self.max_tokens = max_tokens
        self.entries: OrderedDict[str, CachedPrompt] = OrderedDict()
        self.tokens = 0
        self.hits = self.misses = self.reused_tokens = 0

    def longest(self, ids: Sequence[int], boundaries: Sequence[int]) -> CachedPrompt | None:
        """A copy of the entry for the longest ``ids[:b]``, ``b`` in ``boundaries``, that is cached."""
        for b in sorted(set(boundaries), reverse=True):
            entry = self.entries.get(ids_key(ids[:b])) if 0 < b <= len(ids) else None
            if entry is not None:
                self.entries.move_to_end(ids_key(ids[:b]))
                self.hits += 1
                self.reused_tokens += b
                return CachedPrompt(copy.deepcopy(entry.cache), entry.next_logprobs, entry.length)
        self.misses += 1
        return None

    def store(self, ids: Sequence[int], cache: Any, next_logprobs: Any) -> None:
        """Keep a copy of ``cache`` (``len(ids)`` tokens) for prompts that extend ``ids``."""
        if len(ids) > self.max_tokens:
            return
        key = ids_key(ids)
        if key in self.entries:
            self.entries.move_to_end(key)
            return
        self.entries[key] = CachedPrompt(copy.deepcopy(cache), next_logprobs, len(ids))
        self.tokens += len(ids)
        while self.tokens > self.max_tokens:
            _, old = self.entries.popitem(last=False)
            self.tokens -= old.length

    def clear(self) -> None:
        self.entries.clear()
        self.tokens = 0
