"""HA between two FileMessageStores over StringTransports: multi-file transfer, the last-file
start rule, blank end-of-file records, dispatch on the slave and restart from its max offset."""

from __future__ import annotations

import os
import struct
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from rmq.broker.config import configs_from_properties
from rmq.broker.ha import HAClientProtocol, HAConnection, HAService
from rmq.common.message import BrokerMessage, decode_messages
from rmq.store.config import MessageStoreConfig
from rmq.store.filestore import FileMessageStore
from rmq.store.interfaces import IReplicaStore
from tests.support.vectors import load_hex

FILE = 4096


def run_now(f: Any, *args: Any) -> Deferred[Any]:
    """Run a blocking call synchronously (deterministic tests)."""
    return maybeDeferred(f, *args)


def store_config(root: str, file_size: int = FILE) -> MessageStoreConfig:
    return MessageStoreConfig(
        store_path_root_dir=root,
        mapped_file_size_commit_log=file_size,
        mapped_file_size_consume_queue=20 * 50,
        max_hash_slot_num=64,
        max_index_num=200,
    )


class Link:
    """A master HAConnection and a slave HAClientProtocol joined by two StringTransports."""

    def __init__(self, master: HAService, slave: HAService) -> None:
        self.m_transport = StringTransport()
        self.s_transport = StringTransport()
        self.conn = HAConnection(master)
        self.client = HAClientProtocol(slave)
        self.conn.makeConnection(self.m_transport)
        self.client.makeConnection(self.s_transport)

    def pump(self) -> None:
        """Shuttle bytes both ways until both sides are quiet."""
        while True:
            up = self.s_transport.value()
            self.s_transport.clear()
            if up:
                self.conn.dataReceived(up)
            down = self.m_transport.value()
            self.m_transport.clear()
            if down:
                self.client.dataReceived(down)
            if not up and not down:
                return


class FileStoreReplicationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)  # store timestamps look real
        root = self.mktemp()
        self.master_store = self.open_store(os.path.join(root, "master"))
        self.slave_root = os.path.join(root, "slave")
        self.slave_store = self.open_store(self.slave_root)
        m_config, _ = configs_from_properties({"brokerRole": "SYNC_MASTER"})
        s_config, _ = configs_from_properties({"brokerRole": "SLAVE", "brokerId": "1"})
        self.master = HAService(m_config, self.master_store, self.clock)
        self.slave = HAService(s_config, self.slave_store, self.clock)
        self.successResultOf(self.master.start())
        self.addCleanup(self.master.stop)

    def open_store(self, root: str, file_size: int = FILE) -> FileMessageStore:
        store = FileMessageStore(store_config(root, file_size), self.clock, run_blocking=run_now)
        self.successResultOf(store.start())
        self.addCleanup(lambda: store.running and store.stop())
        return store

    def put(self, n: int, start: int = 0) -> None:
        for i in range(start, start + n):
            msg = BrokerMessage(
                topic="HaT",
                queue_id=i % 2,
                body=b"x" * 300 + b"%d" % i,
                properties={"KEYS": f"k{i}"},
            )
            self.successResultOf(self.master_store.put_message(msg))

    def bodies(self, store: FileMessageStore, qid: int) -> list[bytes]:
        got = self.successResultOf(store.get_messages("HaT", qid, 0, 1000))
        return [m.body for m in decode_messages(got.body())]

    def test_provides_replica_store(self) -> None:
        """The file store provides IReplicaStore."""
        self.assertTrue(IReplicaStore.providedBy(self.master_store))

    def test_empty_slave_gets_last_file_then_follows_across_files(self) -> None:
        """An empty slave starts at the master's last file and then follows it file after file."""
        self.put(30)  # ~10 KiB: files 0, 4096 and 8192
        last_start = self.master_store.get_max_phy_offset() // FILE * FILE
        self.assertGreater(last_start, 0)
        link = Link(self.master, self.slave)
        link.pump()
        self.assertEqual(self.slave_store.get_min_phy_offset(), last_start)
        self.assertEqual(
            self.slave_store.get_max_phy_offset(), self.master_store.get_max_phy_offset()
        )
        self.put(30, 30)  # crosses at least two more file boundaries (blank records included)
        self.clock.advance(0)
        link.pump()
        end = self.master_store.get_max_phy_offset()
        self.assertEqual(self.slave_store.get_max_phy_offset(), end)
        self.assertEqual(
            self.slave_store.read_commit_log(last_start, FILE),
            self.master_store.read_commit_log(last_start, FILE),
        )
        self.assertEqual(self.master.push2slave_max_offset, end)
        for qid in (0, 1):
            master_bodies = self.bodies(self.master_store, qid)
            slave_bodies = self.bodies(self.slave_store, qid)
            self.assertEqual(slave_bodies, master_bodies[-len(slave_bodies) :])
            self.assertEqual(slave_bodies[-1], master_bodies[-1])
            self.assertEqual(
                self.slave_store.get_max_offset_in_queue("HaT", qid),
                self.master_store.get_max_offset_in_queue("HaT", qid),
            )
        found = self.successResultOf(self.slave_store.query_message("HaT", "k59", 10, 0, 2**62))
        self.assertEqual(len(found.messages), 1)

    def test_slave_restart_reports_its_max_offset(self) -> None:
        """After a clean restart the slave reports its max offset and gets only the rest."""
        self.put(5)
        link = Link(self.master, self.slave)
        link.pump()
        before = self.slave_store.get_max_phy_offset()
        self.successResultOf(self.slave_store.stop())
        self.put(5, 5)
        reopened = self.open_store(self.slave_root)
        self.assertEqual(reopened.get_max_phy_offset(), before)
        slave = HAService(self.slave.config, reopened, self.clock)
        link2 = Link(self.master, slave)
        self.assertEqual(link2.s_transport.value(), struct.pack(">q", before))
        link2.pump()
        self.assertEqual(link2.conn.slave_request_offset, before)
        self.assertEqual(reopened.get_max_phy_offset(), self.master_store.get_max_phy_offset())
        self.assertEqual(self.bodies(reopened, 0), self.bodies(self.master_store, 0))

    def test_vector_log_on_file_slave(self) -> None:
        """The 4.9.7 capture applied to a file slave rebuilds TopicJ queue 1 unit for unit."""
        store = self.open_store(self.slave_root + "-10m", 10 * 1024 * 1024)
        slave = HAService(self.slave.config, store, self.clock)
        proto = HAClientProtocol(slave)
        proto.makeConnection(StringTransport())
        proto.dataReceived(load_hex("ha/ha-master-first-push.s2c.hex"))
        proto.dataReceived(load_hex("ha/ha-master-push-one-message.s2c.hex"))
        self.assertEqual(store.get_max_phy_offset(), 8299)
        units = load_hex("store/consumequeue-TopicJ-1-00000000000000000000.first-5-units.hex")
        got = self.successResultOf(store.get_messages("TopicJ", 1, 0, 32))
        phys = [struct.unpack_from(">q", bytes(m), 28)[0] for m in got.messages]
        self.assertEqual(
            list(zip(phys, [len(m) for m in got.messages], got.tags_codes, strict=True)),
            [struct.unpack_from(">qiq", units, i * 20) for i in range(5)],
        )

    def test_replicated_data_flushed_by_the_async_flusher(self) -> None:
        """Under ASYNC_FLUSH the slave's flusher fsyncs replicated data (checkpoint advances)."""
        self.put(5)
        link = Link(self.master, self.slave)
        link.pump()
        last = self.successResultOf(
            self.slave_store.get_message_store_timestamp(
                "HaT", 0, self.slave_store.get_max_offset_in_queue("HaT", 0) - 1
            )
        )
        self.assertGreater(last, 0)
        self.clock.advance(11)  # thorough commit-log flush (10 s), then the 1 s checkpoint tick
        with open(os.path.join(self.slave_root, "checkpoint"), "rb") as f:
            (physic_ts,) = struct.unpack(">q", f.read(8))
        self.assertEqual(physic_ts, last)
