"""Per-request tensors through Amazon SQS (aioboto3), as FSD-Inference exchanges them; everything
else, and tensors larger than a message, through a backing object store (claim check).

Queues are per request and per stage leg (``burst.store.sqs_names``), so concurrent requests
never read each other's messages. A message carries the key as its body and the tensor bytes in
a binary attribute (no base64 growth in the size limit); a tensor that does not fit goes to the
backing store under the same key and the message says so. Reads *peek* (``VisibilityTimeout=0``,
no delete): a hedged second attempt of a worker reads the same input the first did. A request's
queues are deleted with it (``delete_prefix("req/R/")``), which is where its messages go.

Keys under ``req/`` and ``resp/`` are written once per request (no overwrite, unlike a store).
Encryption wraps this whole store (``burst.store.encrypted``): the message attribute and the
claim-check object are both ciphertext.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from burst.aws import AwsClient, error_code, transient_error
from burst.retry import RetryPolicy, with_retries
from burst.store.base import ObjectStore, StoreError, check_key, check_prefix
from burst.store.requests import count_objects, count_queue
from burst.store.sqs_names import (
    REQUEST_PREFIXES,
    check_queue_prefix,
    queue_name,
    queue_name_prefix,
    queued,
)
from policies.costs import PriceTable, queue_requests

DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024  # SQS's classic limit (body plus attributes)
DATA_ATTR, CLAIM_ATTR = "data", "claim"
_MISSING_QUEUE = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
_KNOWN_QUEUES_MAX = 4096  # names this instance created or read: sent to without a CreateQueue
_QUEUE_ATTRIBUTES = {"MessageRetentionPeriod": "3600"}  # an orphan's messages expire in an hour
# botocore waits 60 s for a connection and 60 s for an answer: an endpoint that never answers
# took ~2 min to report (two attempts of ``tidegate profile --sqs-endpoint``'s check). A queue
# call is small (a message is at most 1 MiB, a receive waits 1 s at most), so a connection not
# made in 3 s, or an answer not begun in 10 s, is a failure to retry, not a slow success.
CONNECT_TIMEOUT_S, READ_TIMEOUT_S = 3.0, 10.0
_PRICES = PriceTable()  # only its billing chunk: SQS bills each started 64 KiB as a request


def message_bytes(key: str, nbytes: int) -> int:
    """What SQS counts for a tensor message: the body (key), the attribute's name, type, value."""
    return len(key.encode()) + len(DATA_ATTR) + len("Binary") + nbytes


def _message_bytes(message: dict) -> int:
    data = (message.get("MessageAttributes") or {}).get(DATA_ATTR) or {}
    return len(message.get("Body", "")) + len(data.get("BinaryValue", b""))


class SqsStore:
    """Per-request keys through SQS queues, other keys (and claim checks) in ``backing``."""

    def __init__(
        self,
        backing: ObjectStore,
        *,
        queue_prefix: str = "tidegate-",
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_attempts: int = 5,
        missing_after_s: float = 2.0,
        max_pool_connections: int = 64,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        read_timeout_s: float = READ_TIMEOUT_S,
    ):
        self.backing = backing
        self.queue_prefix = check_queue_prefix(queue_prefix)
        self.max_message_bytes = int(max_message_bytes)
        self.missing_after_s = missing_after_s
        self._aws = AwsClient(
            "sqs",
            region=region,
            endpoint_url=endpoint_url,
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            max_pool_connections=max_pool_connections,
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
        )
        self.retry = RetryPolicy(attempts=max_attempts)
        self._base_url: str | None = None  # "https://sqs.<region>.amazonaws.com/<account>"
        self._known: OrderedDict[str, None] = OrderedDict()

    @classmethod
    def from_config(cls, cfg: dict, backing: ObjectStore) -> "SqsStore":
        known = {
            "queue_prefix",
            "region",
            "endpoint_url",
            "aws_access_key_id",
            "aws_secret_access_key",
            "max_message_bytes",
            "max_attempts",
            "missing_after_s",
            "max_pool_connections",
            "connect_timeout_s",
            "read_timeout_s",
        }
        return cls(backing, **{k: v for k, v in cfg.items() if k in known})

    # the client and queue URLs ---------------------------------------------------------------

    async def _sqs(self) -> Any:
        return await self._aws.client()

    async def _call(self, what: str, fn, *, payload_bytes: int = 0, **kwargs):
        """One SQS API call (retried), counted for the ledger (``burst.store.requests``)."""
        sqs = await self._sqs()
        count_queue(queue_requests(_PRICES, payload_bytes))
        try:
            return await with_retries(
                lambda: getattr(sqs, fn)(**kwargs), transient_error, self.retry, what=what
            )
        except ClientError as e:
            if error_code(e) in _MISSING_QUEUE:
                raise StoreError(f"sqs {what}: no such queue", missing=True) from None
            raise StoreError(f"sqs {what} failed after retries: {e}") from e
        except BotoCoreError as e:
            raise StoreError(f"sqs {what} failed after retries: {e}") from e

    def _remember(self, name: str, url: str) -> None:
        self._base_url = url.rsplit("/", 1)[0]
        self._known[name] = None
        self._known.move_to_end(name)
        while len(self._known) > _KNOWN_QUEUES_MAX:
            self._known.popitem(last=False)

    async def _url(self, name: str, *, create: bool) -> str:
        """The queue's URL: made from the account's base once one is known (queues this
        instance has not seen are created first when writing)."""
        if self._base_url is not None and (name in self._known or not create):
            return f"{self._base_url}/{name}"
        if create:
            resp = await self._call(
                f"create {name}", "create_queue", QueueName=name, Attributes=_QUEUE_ATTRIBUTES
            )
        else:
            resp = await self._call(f"url of {name}", "get_queue_url", QueueName=name)
        self._remember(name, resp["QueueUrl"])
        return resp["QueueUrl"]

    # the ObjectStore interface ---------------------------------------------------------------

    async def put(self, key: str, data: bytes) -> None:
        if not queued(check_key(key)):
            count_objects(puts=1)
            await self.backing.put(key, data)
            return
        name = queue_name(self.queue_prefix, key)
        nbytes = message_bytes(key, len(data))
        if nbytes <= self.max_message_bytes:
            url = await self._url(name, create=True)
            attrs = {DATA_ATTR: {"DataType": "Binary", "BinaryValue": bytes(data)}}
        else:  # claim check: the bytes in the store (beside making the queue), a pointer sent
            count_objects(puts=1)
            url, _ = await asyncio.gather(self._url(name, create=True), self.backing.put(key, data))
            attrs = {CLAIM_ATTR: {"DataType": "String", "StringValue": "store"}}
            nbytes = message_bytes(key, 0)
        try:
            await self._call(
                f"send {key}",
                "send_message",
                payload_bytes=nbytes,
                QueueUrl=url,
                MessageBody=key,
                MessageAttributes=attrs,
            )
        except StoreError as exc:
            if not exc.missing:
                raise
            # never made again: a late straggler of a finished request would leave an orphan
            raise StoreError(f"sqs queue {name} is gone: its request has ended") from None

    async def _find(self, key: str, *, delete: bool = False) -> dict | None:
        """The message carrying ``key`` (peeked, or deleted when ``delete``), or None."""
        name = queue_name(self.queue_prefix, key)
        url = await self._url(name, create=False)
        deadline = time.monotonic() + self.missing_after_s
        while True:
            resp = await self._call(
                f"receive {key}",
                "receive_message",
                QueueUrl=url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=0,  # peek: other readers (a hedge) still see it
                WaitTimeSeconds=0 if delete else 1,
                MessageAttributeNames=["All"],
            )
            self._remember(name, url)
            received = sum(_message_bytes(m) for m in resp.get("Messages", []))
            count_queue(queue_requests(_PRICES, received) - 1)  # chunks past the first
            found = [m for m in resp.get("Messages", []) if m.get("Body") == key]
            if delete:
                for m in found:
                    await self._call(
                        f"delete {key}",
                        "delete_message",
                        QueueUrl=url,
                        ReceiptHandle=m["ReceiptHandle"],
                    )
            if found or delete or time.monotonic() >= deadline:
                return found[0] if found else None

    async def get(self, key: str) -> bytes:
        if not queued(check_key(key)):
            count_objects(gets=1)
            return await self.backing.get(key)
        try:
            message = await self._find(key)
        except StoreError as exc:
            if exc.missing:
                raise StoreError(f"no such key: {key}", missing=True) from None
            raise
        if message is None:
            raise StoreError(f"no such key: {key}", missing=True)
        attrs = message.get("MessageAttributes") or {}
        if CLAIM_ATTR in attrs:
            count_objects(gets=1)
            return await self.backing.get(key)
        if DATA_ATTR not in attrs:
            raise StoreError(f"sqs message for {key} carries neither data nor a claim check")
        return attrs[DATA_ATTR]["BinaryValue"]

    async def delete(self, keys: list[str]) -> None:
        for key in keys:
            check_key(key)
        for key in filter(queued, keys):
            try:
                await self._find(key, delete=True)
            except StoreError as exc:
                if not exc.missing:
                    raise
        await self.backing.delete(keys)

    async def delete_prefix(self, prefix: str) -> int:
        """Delete the queues under ``prefix`` and the backing store's keys; returns how many
        queues and objects went."""
        check_prefix(prefix)
        names_prefix = queue_name_prefix(self.queue_prefix, prefix)
        count_objects(puts=1)  # the backing store's LIST, made either way
        if names_prefix is None:
            return await self.backing.delete_prefix(prefix)
        # what this instance made, and what a listing finds (SQS lists eventually); the claim
        # checks go meanwhile
        deleted, listed = await asyncio.gather(
            self.backing.delete_prefix(prefix),
            self._call(
                f"list {names_prefix}", "list_queues", QueueNamePrefix=names_prefix, MaxResults=1000
            ),
        )
        urls = {u.rsplit("/", 1)[1]: u for u in listed.get("QueueUrls", [])}
        if self._base_url is not None:
            for name in [n for n in self._known if n.startswith(names_prefix)]:
                urls.setdefault(name, f"{self._base_url}/{name}")
        # concurrently: the master cleans up before it answers, so this is on the request's path
        return deleted + sum(
            await asyncio.gather(*(self.drop_queue(n, u) for n, u in urls.items()))
        )

    async def list_prefix(self, prefix: str) -> list[str]:
        """The backing store's keys (messages in flight on queues are not listed)."""
        return await self.backing.list_prefix(prefix)

    async def drop_queue(self, name: str, url: str) -> bool:
        """Delete one queue (and forget it); False if it was gone already."""
        self._known.pop(name, None)
        try:
            await self._call(f"delete queue {name}", "delete_queue", QueueUrl=url)
            return True
        except StoreError as exc:
            if not exc.missing:
                raise
            return False

    # orphans of crashed masters (burst.store.sqs_sweep) -----------------------------------------

    async def request_queues(self) -> dict[str, str]:
        """Every per-request queue under this store's prefix (all pages): name -> URL."""
        found: dict[str, str] = {}
        for key_prefix in REQUEST_PREFIXES:
            names_prefix, page = queue_name_prefix(self.queue_prefix, key_prefix), {}
            while True:
                resp = await self._call(
                    f"list {names_prefix}",
                    "list_queues",
                    QueueNamePrefix=names_prefix,
                    MaxResults=1000,
                    **page,
                )
                found.update({u.rsplit("/", 1)[1]: u for u in resp.get("QueueUrls", [])})
                if not resp.get("NextToken"):
                    break
                page = {"NextToken": resp["NextToken"]}
        return found

    async def queue_created_unix_s(self, url: str) -> float | None:
        """When the queue was made (SQS's clock), or None if it is gone."""
        try:
            resp = await self._call(
                "created", "get_queue_attributes", QueueUrl=url, AttributeNames=["CreatedTimestamp"]
            )
        except StoreError as exc:
            if exc.missing:
                return None
            raise
        return float(resp["Attributes"]["CreatedTimestamp"])

    async def close(self) -> None:
        await self.backing.close()
        await self._aws.close()
