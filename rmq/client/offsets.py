"""Consumer offset stores (Java ``RemoteBrokerOffsetStore`` and ``LocalFileOffsetStore``).

The offset of a queue is the next offset to consume. Clustering consumers keep offsets on the
broker hosting the queue; broadcasting consumers keep them in a local JSON file
(``<dir>/<clientId>/<group>/offsets.json``, Java's ``OffsetSerializeWrapper`` format, written
atomically with a ``.bak``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from zope.interface import implementer

from rmq.client.api import MQClientAPI
from rmq.client.interfaces import IOffsetStore
from rmq.client.message_queue import MessageQueue
from rmq.common import fastjson
from rmq.common.asyncutil import deferred_api
from rmq.common.atomicfile import read_with_backup, write_atomic
from rmq.common.errors import MQClientError, RMQError

BlockingRunner = Callable[[Callable[[], Any]], Deferred[Any]]


def run_inline(f: Callable[[], Any]) -> Deferred[Any]:
    """Run a blocking function on the calling thread (tests, tiny files)."""
    return maybeDeferred(f)


class _Table:
    def __init__(self) -> None:
        self.table: dict[MessageQueue, int] = {}

    def update_offset(self, mq: MessageQueue, offset: int, increase_only: bool) -> None:
        """Set the next offset of ``mq`` (only forward when ``increase_only``)."""
        old = self.table.get(mq)
        if old is None or not increase_only or offset > old:
            self.table[mq] = offset

    def remove_offset(self, mq: MessageQueue) -> None:
        """Forget ``mq``."""
        self.table.pop(mq, None)

    def offsets(self) -> dict[MessageQueue, int]:
        """A copy of the table."""
        return dict(self.table)

    def current(self, mq: MessageQueue) -> int:
        """The in-memory offset of ``mq``; -1 if none."""
        return self.table.get(mq, -1)


@implementer(IOffsetStore)
class RemoteBrokerOffsetStore(_Table):
    """Offsets on the broker: QUERY_CONSUMER_OFFSET to read, UPDATE_CONSUMER_OFFSET to persist."""

    log = Logger()

    def __init__(self, api: MQClientAPI, group: str, addr_of: Callable[[str], str | None]) -> None:
        super().__init__()
        self.api = api
        self.group = group
        self.addr_of = addr_of

    def load(self) -> Deferred[None]:
        """Nothing to load: offsets are read per queue."""
        return maybeDeferred(lambda: None)

    @deferred_api
    async def read_offset(self, mq: MessageQueue, from_store: bool) -> int:
        """Memory, or the broker (``from_store``); -1 when the broker has none."""
        if not from_store and mq in self.table:
            return self.table[mq]
        addr = self.addr_of(mq.broker_name)
        if addr is None:
            raise MQClientError(f"The broker[{mq.broker_name}] not exist")
        offset = await self.api.query_consumer_offset(addr, self.group, mq)
        if offset >= 0:
            self.update_offset(mq, offset, False)
        return offset

    @deferred_api
    async def persist(self, mqs: Sequence[MessageQueue]) -> None:
        """UPDATE_CONSUMER_OFFSET (oneway) for each of ``mqs`` with a known offset."""
        for mq in mqs:
            offset = self.table.get(mq)
            addr = self.addr_of(mq.broker_name)
            if offset is None or addr is None:
                continue
            try:
                await self.api.update_consumer_offset(addr, self.group, mq, offset)
            except RMQError as e:
                self.log.warn("Persisting offset of {mq} failed: {e}", mq=mq, e=e)

    @deferred_api
    async def persist_now(self, mq: MessageQueue, offset: int) -> None:
        """Store ``offset`` with an answered request (used before a reset takes effect)."""
        self.update_offset(mq, offset, False)
        addr = self.addr_of(mq.broker_name)
        if addr is None:
            raise MQClientError(f"The broker[{mq.broker_name}] not exist")
        await self.api.update_consumer_offset(addr, self.group, mq, offset, oneway=False)


def default_offset_dir() -> str:
    """Java's ``rocketmq.client.localOffsetStoreDir`` default: ``~/.rocketmq_offsets``."""
    return os.path.join(os.path.expanduser("~"), ".rocketmq_offsets")


@implementer(IOffsetStore)
class LocalFileOffsetStore(_Table):
    """Offsets in ``<base_dir>/<client_id>/<group>/offsets.json``.

    ``blocking`` runs the file I/O (fsync) — a thread pool in production, inline in tests.
    """

    log = Logger()

    def __init__(
        self,
        base_dir: str,
        client_id: str,
        group: str,
        blocking: BlockingRunner = run_inline,
    ) -> None:
        super().__init__()
        self.path = os.path.join(base_dir, client_id, group, "offsets.json")
        self.blocking = blocking
        self._stored: dict[MessageQueue, int] = {}

    @staticmethod
    def parse(data: bytes) -> dict[MessageQueue, int]:
        """Parse an OffsetSerializeWrapper (object keys or ``"{...}"`` string keys)."""
        table = fastjson.loads(data).get("offsetTable") or {}
        return {MessageQueue.from_json_key(k): int(v) for k, v in table.items()}

    def serialize(self) -> bytes:
        """The file content for the current table (fastjson object keys, like Java)."""
        table = {mq.json_key(): off for mq, off in sorted(self.table.items())}
        return fastjson.dumps_pretty({"offsetTable": table})

    @deferred_api
    async def load(self) -> None:
        """Read the file (or its backup) into memory."""
        data = await self.blocking(lambda: read_with_backup(self.path, self.parse))
        if data:
            self._stored = self.parse(data)
            self.table.update(self._stored)

    @deferred_api
    async def read_offset(self, mq: MessageQueue, from_store: bool) -> int:
        """Memory, or the last loaded file content; -1 if none."""
        if not from_store and mq in self.table:
            return self.table[mq]
        if mq in self._stored:
            return self._stored[mq]
        return self.table.get(mq, -1) if not from_store else -1

    @deferred_api
    async def persist(self, mqs: Sequence[MessageQueue]) -> None:
        """Write the whole table atomically (temp file, fsync, rename, ``.bak``)."""
        if not self.table:
            return
        data = self.serialize()
        path = self.path
        await self.blocking(lambda: write_atomic(path, data))
        self._stored = dict(self.table)
