"""The NameServer's namespaced key/value store (per RocketMQ's KVConfigManager).

The whole store is persisted to ``kvConfig.json`` after every change as
``{"configTable":{"<namespace>":{"<key>":"<value>"}}}``. Java 4.9.7 writes this file compact (not
pretty; see ``vectors/store/kvConfig.json``), and so do we. Deleting the last key of a namespace
keeps the (empty) namespace, as Java does: REGISTER_BROKER answers then carry ``{"table":{}}``.

Writes go through an injected ``persist(path, data) -> Deferred`` (the service runs
``write_atomic`` in a thread pool); they run one at a time, and changes made while a write runs
are coalesced into the next write. Each change returns a Deferred that fires once a write that
includes it has finished.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from rmq.common import fastjson
from rmq.common.atomicfile import read_with_backup

__all__ = ["KVConfigManager", "NAMESPACE_ORDER_TOPIC_CONFIG"]

#: Namespace of order-topic configs: key topic, value ``brokerName:queueNums;…`` (per NamesrvUtil).
NAMESPACE_ORDER_TOPIC_CONFIG = "ORDER_TOPIC_CONFIG"

Persist = Callable[[str, bytes], "Deferred[None] | None"]


class KVConfigManager:
    """namespace → {key → value}, persisted as a whole on every change (per KVConfigManager)."""

    log = Logger()

    def __init__(self, path: str, persist: Persist) -> None:
        self.path = path
        self._persist = persist
        self.config_table: dict[str, dict[str, str]] = {}
        self.generation = 0
        self._writing = False
        self._waiters: list[Deferred[None]] = []

    def load(self) -> None:
        """Read ``kvConfig.json`` (or its ``.bak``) if present. Blocking: call at start-up only.

        Raises ``ValueError`` when both the file and its backup are unreadable JSON of the
        wrong shape.
        """
        data = read_with_backup(self.path, fastjson.loads)
        if data is None:
            return
        parsed = fastjson.loads(data)
        table = parsed.get("configTable") if isinstance(parsed, dict) else None
        if not isinstance(table, dict):
            raise ValueError(f"{self.path}: no configTable object")
        loaded: dict[str, dict[str, str]] = {}
        for namespace, entries in table.items():
            if not isinstance(entries, dict):
                raise ValueError(f"{self.path}: namespace {namespace!r} is not an object")
            loaded[str(namespace)] = {str(k): _text(v) for k, v in entries.items()}
        self.config_table = loaded
        self.generation += 1
        self.log.info("Loaded {count} KV namespaces from {path}", count=len(loaded), path=self.path)

    def put(self, namespace: str, key: str, value: str) -> Deferred[None]:
        """Set ``namespace/key`` to ``value``; the Deferred fires when it is on disk."""
        table = self.config_table.setdefault(namespace, {})
        previous = table.get(key)
        table[key] = value
        self.generation += 1
        if previous is None:
            self.log.info(
                "KV config added: {namespace} {key}={value}",
                namespace=namespace,
                key=key,
                value=value,
            )
        else:
            self.log.info(
                "KV config changed: {namespace} {key}={value} (was {previous})",
                namespace=namespace,
                key=key,
                value=value,
                previous=previous,
            )
        return self._request_write()

    def delete(self, namespace: str, key: str) -> Deferred[None]:
        """Remove ``namespace/key`` (absent is fine); the Deferred fires when it is on disk."""
        table = self.config_table.get(namespace)
        if table is not None and key in table:
            value = table.pop(key)
            self.generation += 1
            self.log.info(
                "KV config deleted: {namespace} {key}={value}",
                namespace=namespace,
                key=key,
                value=value,
            )
        return self._request_write()

    def get(self, namespace: str, key: str) -> str | None:
        """The value of ``namespace/key``, or ``None``."""
        table = self.config_table.get(namespace)
        return None if table is None else table.get(key)

    def get_kv_list_by_namespace(self, namespace: str) -> dict[str, str] | None:
        """A copy of the namespace's table, or ``None`` when the namespace does not exist."""
        table = self.config_table.get(namespace)
        return None if table is None else dict(table)

    def encode(self) -> bytes:
        """The file content: ``{"configTable":{…}}``, compact like Java's."""
        return fastjson.dumps({"configTable": self.config_table})

    def _request_write(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        if not self._writing:
            self._start_write()
        return d

    def _start_write(self) -> None:
        waiters, self._waiters = self._waiters, []
        self._writing = True
        data = self.encode()
        d: Deferred[Any] = maybeDeferred(self._persist, self.path, data)

        def done(result: object) -> None:
            self._writing = False
            if isinstance(result, Failure):
                self.log.failure("Writing {path} failed", result, path=self.path)
            for w in waiters:
                if isinstance(result, Failure):
                    w.errback(result)
                else:
                    w.callback(None)
            if self._waiters:
                self._start_write()

        d.addBoth(done)


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    return fastjson.dumps(value).decode("utf-8")
