"""Tests for rmq.namesrv.kvconfig.KVConfigManager: values, namespaces, persistence."""

from __future__ import annotations

import os

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from rmq.common.atomicfile import write_atomic
from rmq.namesrv.kvconfig import KVConfigManager
from tests.support.vectors import require_vectors


class ManualPersist:
    """A persist callable whose writes complete only when the test says so."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes, Deferred[None]]] = []

    def __call__(self, path: str, data: bytes) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.calls.append((path, data, d))
        return d


def sync_persist(path: str, data: bytes) -> None:
    """Write at once (the test's stand-in for the thread pool)."""
    write_atomic(path, data)


class KVConfigManagerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = os.path.join(self.mktemp(), "namesrv", "kvConfig.json")

    def test_put_get_delete_persist(self) -> None:
        """put/get/delete work and every change is written as Java's compact configTable JSON."""
        kv = KVConfigManager(self.path, sync_persist)
        self.successResultOf(kv.put("ORDER_TOPIC_CONFIG", "TopicOrd", "broker-a:4"))
        self.assertEqual(kv.get("ORDER_TOPIC_CONFIG", "TopicOrd"), "broker-a:4")
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), (require_vectors() / "store" / "kvConfig.json").read_bytes())
        self.successResultOf(kv.delete("ORDER_TOPIC_CONFIG", "TopicOrd"))
        self.assertIsNone(kv.get("ORDER_TOPIC_CONFIG", "TopicOrd"))
        self.assertEqual(kv.get_kv_list_by_namespace("ORDER_TOPIC_CONFIG"), {})
        self.assertIsNone(kv.get_kv_list_by_namespace("NOPE"))
        self.assertIsNone(kv.get("NOPE", "k"))
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b'{"configTable":{"ORDER_TOPIC_CONFIG":{}}}')

    def test_load_java_file(self) -> None:
        """A kvConfig.json written by RocketMQ 4.9.7 loads."""
        write_atomic(self.path, (require_vectors() / "store" / "kvConfig.json").read_bytes())
        kv = KVConfigManager(self.path, sync_persist)
        kv.load()
        self.assertEqual(kv.get("ORDER_TOPIC_CONFIG", "TopicOrd"), "broker-a:4")

    def test_load_missing_and_backup(self) -> None:
        """A missing file loads nothing; a corrupt file falls back to its backup; both bad raise."""
        kv = KVConfigManager(self.path, sync_persist)
        kv.load()
        self.assertEqual(kv.config_table, {})
        write_atomic(self.path, b'{"configTable":{"N":{"k":"v"}}}')
        write_atomic(self.path, b'{"configTable":{"N":{"k":"v2"}}}')
        with open(self.path, "wb") as f:
            f.write(b'{"configTa')
        kv.load()
        self.assertEqual(kv.get("N", "k"), "v")
        with open(self.path + ".bak", "wb") as f:
            f.write(b"[1]")
        with open(self.path, "wb") as f:
            f.write(b"[1]")
        self.assertRaises(ValueError, KVConfigManager(self.path, sync_persist).load)

    def test_writes_are_serialized_and_coalesced(self) -> None:
        """Changes during a running write wait for one following write that contains them all."""
        persist = ManualPersist()
        kv = KVConfigManager(self.path, persist)
        d1 = kv.put("N", "a", "1")
        d2 = kv.put("N", "b", "2")
        d3 = kv.delete("N", "a")
        self.assertEqual(len(persist.calls), 1)
        self.assertEqual(persist.calls[0][1], b'{"configTable":{"N":{"a":"1"}}}')
        self.assertNoResult(d2)
        persist.calls[0][2].callback(None)
        self.successResultOf(d1)
        self.assertNoResult(d2)
        self.assertEqual(len(persist.calls), 2)
        self.assertEqual(persist.calls[1][1], b'{"configTable":{"N":{"b":"2"}}}')
        persist.calls[1][2].callback(None)
        self.successResultOf(d2)
        self.successResultOf(d3)

    def test_write_failure_is_reported(self) -> None:
        """A failed write fails its waiters and is logged; the next change writes again."""
        persist = ManualPersist()
        kv = KVConfigManager(self.path, persist)
        d = kv.put("N", "a", "1")
        persist.calls[0][2].errback(OSError("disk full"))
        self.failureResultOf(d, OSError)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        kv.put("N", "b", "2")
        self.assertEqual(len(persist.calls), 2)
