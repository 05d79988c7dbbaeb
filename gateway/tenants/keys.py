"""API key lookup against stored SHA-256 hashes, in constant time per key."""

from __future__ import annotations

import hashlib
import hmac


class KeyIndex:
    """Maps a presented key to its owner without keeping any key in memory, only hashes."""

    def __init__(self) -> None:
        self._owners: list[tuple[bytes, str]] = []  # (sha256 digest, tenant name)

    def add(self, key_hash: str, owner: str) -> None:
        digest = bytes.fromhex(key_hash.removeprefix("sha256:"))
        if any(hmac.compare_digest(digest, known) for known, _ in self._owners):
            raise ValueError("an API key is shared by two tenants")
        self._owners.append((digest, owner))

    def owner(self, key: str) -> str | None:
        """The tenant holding ``key``, or None. Every stored hash is compared (no early exit),
        each with ``hmac.compare_digest``, so timing does not tell how close a guess came."""
        digest = hashlib.sha256(key.encode()).digest()
        found = None
        for known, owner in self._owners:
            if hmac.compare_digest(digest, known):
                found = owner
        return found
