"""Per-request SQS queues that a crashed master left behind, swept.

A request's queues go with it (``SqsStore.delete_prefix`` in the master's cleanup), but a master
killed mid-request (its instance crashed, timed out, or the platform recycled it) never cleans
up, and SQS keeps an idle queue forever (its messages expire after the hour the store sets). The
gateway that uses the SQS transport sweeps them: every ``interval_s`` it lists the queues under
its prefix that carry per-request tensors and deletes those created longer than
``older_than_s`` ago, a bound no live request reaches (twice the burst timeout by default).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from burst.store.base import StoreError
from burst.store.encrypted import EncryptedStore
from burst.store.sqs import SqsStore

log = logging.getLogger("tidegate.burst")


async def sweep_orphan_queues(
    store: SqsStore, *, older_than_s: float, now_unix_s: float
) -> list[str]:
    """Delete the store's per-request queues created ``older_than_s`` before ``now_unix_s``;
    the names deleted. Younger queues (live requests) and other queues are left alone."""
    swept = []
    for name, url in sorted((await store.request_queues()).items()):
        created_s = await store.queue_created_unix_s(url)
        if created_s is not None and now_unix_s - created_s >= older_than_s:
            if await store.drop_queue(name, url):
                swept.append(name)
    return swept


class OrphanSweeper:
    """The periodic sweep, as a task the owner starts and closes."""

    def __init__(
        self,
        store: SqsStore,
        *,
        older_than_s: float,
        interval_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ):
        self.store, self.older_than_s, self.interval_s = store, older_than_s, interval_s
        self._clock = clock
        self.swept = 0  # queues deleted since start
        self._task: asyncio.Task | None = None

    @classmethod
    def start_for(
        cls, store, older_than_s: float, *, keep: Callable[[asyncio.Task], None] | None = None, **kw
    ) -> "OrphanSweeper | None":
        """A started sweeper when ``store`` is the SQS transport (sealed or not), else None;
        ``keep`` takes its task when the owner stops its background work itself."""
        inner = store.inner if isinstance(store, EncryptedStore) else store
        if not isinstance(inner, SqsStore):
            return None
        sweeper = cls(inner, older_than_s=older_than_s, **kw)
        sweeper._task = asyncio.get_running_loop().create_task(sweeper._loop())
        if keep is not None:
            keep(sweeper._task)
        return sweeper

    async def sweep_once(self) -> list[str]:
        swept = await sweep_orphan_queues(
            self.store, older_than_s=self.older_than_s, now_unix_s=self._clock()
        )
        self.swept += len(swept)
        if swept:
            log.info(
                "deleted %d orphaned burst queues (older than %.0f s)",
                len(swept),
                self.older_than_s,
            )
        return swept

    async def _loop(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except StoreError as exc:  # SQS unreachable: the next round tries again
                log.warning("orphaned burst queue sweep failed: %s", exc)
            await asyncio.sleep(self.interval_s)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


async def stop_sweeper(sweeper: OrphanSweeper | None) -> None:
    if sweeper is not None:
        await sweeper.close()
