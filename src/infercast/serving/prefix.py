"""The prompt prefix every request shares, cached once in the paged KV cache (vLLM's prefix caching).

The first prefill chunk that covers the prefix's K full blocks publishes them; a later request
admitted while they are cached shares them and skips those prompt tokens. Shared blocks are
reference counted: unreferenced, they stay cached but count as free, and an allocation evicts
them only when the other free blocks run out (the simplification of vLLM's LRU free list this
simulator makes: the shared prefix is the block most worth keeping).
"""

from __future__ import annotations


class PrefixCache:
    """The shared prompt prefix: its K full blocks, whether they are cached, and who holds them."""

    def __init__(self, blocks: int, block_size: int, num_requests: int) -> None:
        self.K, self.bs = blocks, block_size
        self.cached, self.ref = False, 0
        self.held = [False] * num_requests

    def take(self, blocks: int, free: int) -> int:
        """Allocate; an unreferenced cached prefix is evicted only when the other free blocks run out."""
        if self.cached and self.ref == 0 and blocks > free - self.K:
            self.cached = False
        return free - blocks

    def release(self, r: int, tokens: int) -> int:
        """Blocks that come free when request ``r``, holding ``tokens`` tokens of KV, lets go."""
        blocks = -(-tokens // self.bs)
        if self.held[r]:
            self.held[r] = False
            self.ref -= 1
            if self.ref:
                blocks -= self.K  # still shared by others; unreferenced, they stay cached but count as free
        return blocks

    def hit(self) -> tuple[int, int]:
        """(prompt tokens an admission skips, blocks it takes from the free pool to share them)."""
        if not self.cached:
            return 0, 0
        return self.K * self.bs, 0 if self.ref else self.K

    def share(self, r: int) -> None:
        self.held[r] = True
        self.ref += 1

    def publish(self, r: int, tokens: int) -> None:
        """Request ``r`` has scheduled ``tokens`` prompt tokens: once they cover the prefix, it is cached."""
        if not self.cached and not self.held[r] and tokens >= self.K * self.bs:
            self.cached = True
            self.share(r)
