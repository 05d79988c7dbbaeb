"""AES-GCM for per-request tensors at rest in object storage.

Tensors that cross a remote store on the burst path (``req/...`` and ``resp/...`` keys) are
sealed under a key made for that one request. The key travels only in the invocation payloads
(``event["tensor_key"]``), never in the store: someone who can read the bucket sees ciphertext,
and someone who can write it cannot change a tensor without the request failing (GCM's tag; the
object's key is the associated data, so an object moved to another key fails too).

Plan data (graphs, weight slices) is written once per plan with no request key and is left as
it is. A store built with encryption refuses to put or get a per-request tensor until it is
bound to a request key (``for_request``), so a call path that forgets the key fails loudly
instead of writing plaintext.

Object format: ``b"TGE1" + nonce (12 bytes) + ciphertext + tag (16 bytes)``. Cost, measured:
ResNet-50 on 2 workers seals 7 MB in 12 objects per request (each opened once), about 14 MB of
AES-GCM at 0.4-0.6 GB/s on a loaded 2-core machine: ~25 ms against ~900 ms of burst latency.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from burst.store.base import ObjectStore, StoreError

MAGIC = b"TGE1"
NONCE_BYTES = 12
KEY_BYTES = 32  # AES-256
TAG_BYTES = 16
EVENT_FIELD = "tensor_key"
# Per-request tensors: the only objects sealed (see module docstring).
REQUEST_PREFIXES = ("req/", "resp/")
# Remote stores are encrypted unless the config says otherwise; local ones are not (the data
# never leaves the machine, and the directory is the gateway's own).
DEFAULT_ENCRYPTED_KINDS = ("s3", "oss", "sqs")


class TamperedObject(StoreError):
    """An object failed its integrity check: changed, truncated, or sealed under another key."""


def wants_encryption(cfg: dict) -> bool:
    value = cfg.get("encrypt")
    if value is None:
        return cfg.get("kind") in DEFAULT_ENCRYPTED_KINDS
    if not isinstance(value, bool):
        raise ValueError(f"store option 'encrypt' must be true or false, got {value!r}")
    return value


def new_request_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def encode_key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode("ascii")


def decode_key(text: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.encode("ascii"))
    except (ValueError, AttributeError, UnicodeEncodeError):
        raise StoreError(f"'{EVENT_FIELD}' is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise StoreError(f"'{EVENT_FIELD}' must hold {KEY_BYTES} bytes, got {len(key)}")
    return key


def _per_request(key: str) -> bool:
    return key.startswith(REQUEST_PREFIXES)


def seal_with(aead: AESGCM, key: str, data: bytes) -> bytearray:
    """``data`` sealed in the object format above, ``key`` (its name) as associated data.
    Also used for async payloads at rest (gateway/asyncq/payload.py)."""
    nonce = os.urandom(NONCE_BYTES)
    head = len(MAGIC) + NONCE_BYTES
    # one buffer, written in place: tensors are megabytes, so no concatenation copies
    out = bytearray(head + len(data) + TAG_BYTES)
    out[:head] = MAGIC + nonce
    aead.encrypt_into(nonce, data, key.encode(), memoryview(out)[head:])
    return out


def open_with(aead: AESGCM, key: str, blob: bytes) -> bytes:
    """What ``seal_with`` sealed under ``key``; TamperedObject if it was changed or moved."""
    head = len(MAGIC) + NONCE_BYTES
    if len(blob) < head + TAG_BYTES or blob[: len(MAGIC)] != MAGIC:
        raise TamperedObject(
            f"object {key} is not an encrypted tensor (modified, "
            f"truncated, or written without encryption)"
        )
    try:
        return aead.decrypt(bytes(blob[len(MAGIC) : head]), memoryview(blob)[head:], key.encode())
    except InvalidTag:
        raise TamperedObject(
            f"object {key} failed its integrity check (AES-GCM): it was "
            f"modified, or sealed under another request's key"
        ) from None


class EncryptedStore:
    """Wraps an ObjectStore; per-request tensors are sealed with the bound request key."""

    def __init__(self, inner: ObjectStore, key: bytes | None = None):
        self.inner = inner
        self._aead = AESGCM(key) if key is not None else None

    def for_request(self, key: bytes) -> "EncryptedStore":
        """A view bound to one request's key, sharing the inner client (cheap: no I/O)."""
        return EncryptedStore(self.inner, key)

    def _cipher(self, key: str) -> AESGCM:
        if self._aead is None:
            raise StoreError(
                f"{key}: this store encrypts request tensors and has no request "
                f"key (the invocation needs '{EVENT_FIELD}')"
            )
        return self._aead

    def seal(self, key: str, data: bytes) -> bytes:
        return seal_with(self._cipher(key), key, data)

    def open(self, key: str, blob: bytes) -> bytes:
        return open_with(self._cipher(key), key, blob)

    async def put(self, key: str, data: bytes) -> None:
        if _per_request(key):
            data = self.seal(key, data)
        await self.inner.put(key, data)

    async def get(self, key: str) -> bytes:
        blob = await self.inner.get(key)
        return self.open(key, blob) if _per_request(key) else blob

    async def delete(self, keys: list[str]) -> None:
        await self.inner.delete(keys)

    async def delete_prefix(self, prefix: str) -> int:
        return await self.inner.delete_prefix(prefix)

    async def list_prefix(self, prefix: str) -> list[str]:
        return await self.inner.list_prefix(prefix)

    async def close(self) -> None:
        await self.inner.close()


def bind_request_key(store, event: dict):
    """``store`` bound to the request key in ``event`` when it encrypts; else ``store`` itself."""
    if not isinstance(store, EncryptedStore):
        return store
    text = event.get(EVENT_FIELD)
    if not isinstance(text, str):
        raise StoreError(
            f"the tensor store encrypts request tensors but the event has no '{EVENT_FIELD}'"
        )
    return store.for_request(decode_key(text))
