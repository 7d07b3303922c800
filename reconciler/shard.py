"""Which environments a replica owns (pure).

Replica ``i`` of ``n`` owns the environments whose stable hash mod ``n`` is ``i``.
The hash is SHA-256 of the environment name, so every replica, on every
machine and Python version, computes the same split (``hash()`` is salted per
process and would not).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["Shard", "parse_shard", "shard_from_environment"]


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    def owns(self, env: str) -> bool:
        digest = hashlib.sha256(env.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index

    def select(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if self.owns(n)]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"I/N"`` with 0 <= I < N."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
        raise ValueError(f"shard {text!r} must be I/N with 0 <= I < N, e.g. 0/2")
    return Shard(int(m.group(1)), int(m.group(2)))


def shard_from_environment(explicit: str | None, env: Mapping[str, str], hostname: str) -> Shard:
    """``--shard``, else ``$RECONCILER_SHARD``, else a StatefulSet ordinal.

    A StatefulSet names its pods ``<name>-<ordinal>``; with ``$RECONCILER_SHARDS``
    set to the replica count, the ordinal is the shard index.
    """
    if explicit:
        return parse_shard(explicit)
    if env.get("RECONCILER_SHARD"):
        return parse_shard(env["RECONCILER_SHARD"])
    count = env.get("RECONCILER_SHARDS")
    if count:
        m = re.search(r"-(\d+)$", hostname)
        if not m:
            raise ValueError(f"RECONCILER_SHARDS is set but hostname {hostname!r} has no -<ordinal> suffix")
        return parse_shard(f"{m.group(1)}/{count}")
    return Shard()
