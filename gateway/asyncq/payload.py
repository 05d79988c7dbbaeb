"""Async payloads at rest: sealed with AES-GCM under a per-request key, large ones claim-checked.

A request body (and later its answer) is kept in the queue as an *envelope*::

    b"TGA1" + u32 big-endian header length + JSON header + inline bytes
    header: {"key": "<urlsafe base64 AES-256 key>" | null,
             "ref": "async/<job id>/<part>-<nonce>" | null, "size": <plaintext bytes>}

- ``ref`` null: the payload follows the header (sealed when ``key`` is set). Else it is an object
  in the object store under ``ref`` (a claim check), and nothing follows the header. Payloads
  over ``inline_limit_bytes`` take the store, so an SQS message stays under its size limit.
- ``key`` set: the payload is sealed with ``burst.store.encrypted.seal_with`` (AES-GCM; format
  ``b"TGE1" + nonce + ciphertext + tag``), the name ``async/<job id>/<part>`` (or the ``ref``)
  as associated data, so a payload moved to another job or part fails too. The key lives only
  in the envelope, i.e. in the queue's record of the request: never in the object store, never
  in a log line (``Job``'s repr leaves payloads out) or a metric.
- A body without the magic is a plain Open Inference Protocol body (producers may send those).

The answer is sealed under the request's key (a fresh one when the request came plain); its
envelope carries the key, as the request body is dropped once answered. Threat model, plainly:
whoever can read the queue's records can read inline payloads (key and data sit in one record);
the object store, where large tensors go, only ever holds ciphertext.
"""

from __future__ import annotations

import enum
import logging
import struct
import uuid
from dataclasses import dataclass

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from burst.store.base import ObjectStore, StoreError
from burst.store.encrypted import (
    TamperedObject,
    decode_key,
    encode_key,
    new_request_key,
    open_with,
    seal_with,
)

from ..errors import TidegateError

log = logging.getLogger("tidegate.async")

MAGIC = b"TGA1"
_HEAD = struct.Struct(">I")
PREFIX = "async/"


class Part(str, enum.Enum):
    REQUEST = "request"
    RESULT = "result"


class PayloadError(TidegateError):
    """A stored payload cannot be read: tampered with, truncated, or its object is gone."""

    status = 500


@dataclass(frozen=True)
class Envelope:
    key: bytes | None  # the per-request AES key; None: stored plain
    ref: str | None  # object-store key of a claim-checked payload; None: inline
    size: int
    inline: bytes = b""


def _header(blob: bytes) -> tuple[dict, int]:
    """An envelope's JSON header and where its inline bytes start (raises on a corrupt one)."""
    (n,) = _HEAD.unpack_from(blob, len(MAGIC))
    start = len(MAGIC) + _HEAD.size
    return orjson.loads(blob[start : start + n]), start + n


def parse(blob: bytes) -> Envelope | None:
    """The envelope in ``blob``; None for a plain body (no magic)."""
    if blob[: len(MAGIC)] != MAGIC:
        return None
    try:
        head, end = _header(blob)
        key = decode_key(head["key"]) if head.get("key") else None
        return Envelope(key, head.get("ref"), int(head["size"]), bytes(blob[end:]))
    except (struct.error, orjson.JSONDecodeError, KeyError, TypeError, ValueError, StoreError):
        raise PayloadError("async payload envelope is corrupt (modified or truncated)") from None


def claim_checked(blob: bytes | None) -> bool:
    """Whether ``blob`` is an envelope whose payload is an object in the store (reads the
    header only: an inline payload is not copied)."""
    if not blob or blob[: len(MAGIC)] != MAGIC:
        return False
    try:
        return bool(_header(blob)[0].get("ref"))
    except (struct.error, orjson.JSONDecodeError, AttributeError):
        return False


def _dump(env: Envelope) -> bytes:
    head = orjson.dumps(
        {"key": encode_key(env.key) if env.key else None, "ref": env.ref, "size": env.size}
    )
    return MAGIC + _HEAD.pack(len(head)) + head + env.inline


def name_of(job_id: str, part: Part) -> str:
    return f"{PREFIX}{job_id}/{part.value}"


class PayloadCodec:
    """Packs payloads into envelopes and back; ``store`` holds the claim-checked ones."""

    def __init__(self, store: ObjectStore | None, inline_limit_bytes: int, encrypt: bool):
        self.store = store
        self.inline_limit_bytes = inline_limit_bytes
        self.encrypt = encrypt

    def new_key(self) -> bytes | None:
        return new_request_key() if self.encrypt else None

    async def pack(self, job_id: str, part: Part, data: bytes, key: bytes | None) -> bytes:
        """The envelope of ``data``: inline up to the limit, else through the store."""
        if len(data) <= self.inline_limit_bytes or self.store is None:
            sealed = seal_with(AESGCM(key), name_of(job_id, part), data) if key else data
            return _dump(Envelope(key, None, len(data), bytes(sealed)))
        # a fresh object name per pack: two racing writers never overwrite each other's object
        ref = f"{name_of(job_id, part)}-{uuid.uuid4().hex[:12]}"
        await self.store.put(ref, bytes(seal_with(AESGCM(key), ref, data)) if key else data)
        return _dump(Envelope(key, ref, len(data)))

    async def unpack(self, job_id: str, part: Part, blob: bytes) -> bytes:
        """The payload an envelope (or a plain body) holds; PayloadError if it was tampered."""
        env = parse(blob)
        if env is None:
            return blob
        name, data = name_of(job_id, part), env.inline
        if env.ref is not None:
            if not env.ref.startswith(name):
                raise PayloadError(f"async {part.value} of {job_id} points at another job's object")
            if self.store is None:
                raise PayloadError("async payload is in an object store this gateway lacks")
            try:
                data = await self.store.get(env.ref)
            except StoreError as exc:
                raise PayloadError(f"async {part.value} of {job_id}: {exc}") from None
            name = env.ref
        if env.key is not None:
            try:
                data = open_with(AESGCM(env.key), name, data)
            except TamperedObject:
                raise PayloadError(
                    f"async {part.value} of {job_id} failed its integrity check (AES-GCM): it "
                    "was modified in the queue or the object store, or belongs to another request"
                ) from None
        if len(data) != env.size:
            raise PayloadError(f"async {part.value} of {job_id} has the wrong size")
        return bytes(data)

    @staticmethod
    def key_of(blob: bytes) -> bytes | None:
        env = parse(blob) if blob else None
        return env.key if env is not None else None

    async def discard(self, blob: bytes | None) -> None:
        """Delete the object an envelope points at (once its payload is no longer needed)."""
        try:
            env = parse(blob) if blob else None
        except PayloadError:
            return
        if env is not None and env.ref is not None and self.store is not None:
            await self.store.delete([env.ref])

    async def discard_expired(self, blob: bytes | None) -> None:
        """``discard`` for the housekeeping's purge: a store that fails leaves that object
        (logged), not the purge of the others."""
        try:
            await self.discard(blob)
        except Exception as exc:
            log.warning("could not delete an expired async answer's stored object: %s", exc)

    async def discard_job(self, job_id: str) -> None:
        if self.store is not None:
            await self.store.delete_prefix(f"{PREFIX}{job_id}/")

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()
