"""Persistence of the broker's config tables under ``<storePathRootDir>/config/``.

Java's ``ConfigManager`` writes ``topics.json``, ``subscriptionGroup.json``,
``consumerOffset.json``,
… synchronously on the caller's thread. Here a table only encodes itself to bytes (on the reactor
thread, so no domain object crosses a thread) and a :class:`ConfigPersister` writes the bytes with
``rmq.common.atomicfile.write_atomic`` (temp file + fsync + rename, keeping a ``.bak``) through an
injected writer, normally a thread pool. Requests for the same table coalesce: at most one write per
table is in flight and one more is queued.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from rmq.common import fastjson
from rmq.common.atomicfile import read_with_backup, write_atomic

#: Writes ``data`` to ``path`` atomically; the Deferred fires when it is durable.
Writer = Callable[[str, bytes], "Deferred[None]"]


class PersistentTable(Protocol):
    """What a persisted config table offers (Java's ``ConfigManager`` encode/decode pair)."""

    file_name: str

    def encode(self) -> bytes:
        """The table in RocketMQ's pretty fastjson form."""

    def decode(self, data: bytes) -> None:
        """Replace the table's content by ``data`` (a file RocketMQ or rmq wrote)."""


def sync_writer(path: str, data: bytes) -> Deferred[None]:
    """A writer running ``write_atomic`` on the calling thread (tests, shutdown)."""
    write_atomic(path, data)
    return succeed(None)


class ConfigPersister:
    """Writes tables under ``config_dir``, coalescing repeated requests per table."""

    log = Logger()

    def __init__(self, config_dir: str, writer: Writer = sync_writer) -> None:
        self.config_dir = config_dir
        self._writer = writer
        self._running: dict[str, Deferred[None]] = {}
        self._again: set[str] = set()
        self._tables: dict[str, PersistentTable] = {}
        self._idle_waiters: list[Deferred[None]] = []

    def path_of(self, table: PersistentTable) -> str:
        """Absolute file path of ``table``."""
        return os.path.join(self.config_dir, table.file_name)

    def load(self, table: PersistentTable) -> bool:
        """Load ``table`` from its file (or its ``.bak``); False when neither exists."""
        data = read_with_backup(self.path_of(table), fastjson.loads)
        if data is None or not data.strip():
            return False
        table.decode(data)
        self.log.info("Loaded {file}", file=self.path_of(table))
        return True

    def request(self, table: PersistentTable) -> None:
        """Ask for ``table`` to be written soon (returns at once; errors are logged)."""
        name = table.file_name
        self._tables[name] = table
        if name in self._running:
            self._again.add(name)
            return
        self._start(name)

    def _start(self, name: str) -> None:
        table = self._tables[name]
        os.makedirs(self.config_dir, exist_ok=True)
        data = table.encode()
        d = self._writer(self.path_of(table), data)
        self._running[name] = d

        def done(result: None | Failure) -> None:
            del self._running[name]
            if isinstance(result, Failure):
                self.log.failure("Writing {file} failed", result, file=name)
            if name in self._again:
                self._again.discard(name)
                self._start(name)
            elif not self._running:
                waiters, self._idle_waiters = self._idle_waiters, []
                for w in waiters:
                    w.callback(None)

        d.addBoth(done)

    def write_now(self, table: PersistentTable) -> Deferred[None]:
        """Write ``table`` and fire when every pending write (this one included) is done."""
        self.request(table)
        return self.when_idle()

    def when_idle(self) -> Deferred[None]:
        """A fresh Deferred that fires once no write is in flight."""
        if not self._running:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._idle_waiters.append(d)
        return d


def thread_writer(reactor: Any) -> Writer:
    """A writer that runs ``write_atomic`` in ``reactor``'s thread pool (fsync off the reactor)."""
    from twisted.internet.threads import deferToThreadPool

    def write(path: str, data: bytes) -> Deferred[None]:
        d: Deferred[None] = deferToThreadPool(
            reactor, reactor.getThreadPool(), write_atomic, path, data
        )
        return d

    return write
