"""HA protocol and SYNC_MASTER waits on StringTransport + Clock (rmq.broker.ha, protocol §10.13).

The byte-exact tests replay the 4.9.7 capture in ``vectors/ha/``: the master's store holds the
first 8077 bytes of ``vectors/store/commitlog-…`` (the same broker's commit log), then the next
222-byte record arrives.
"""

from __future__ import annotations

import struct

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from rmq.broker.config import configs_from_properties
from rmq.broker.ha import HAClientProtocol, HAConnection, HAService, SyncMasterStore, build_ha
from rmq.common.message import WAIT, BrokerMessage
from rmq.remoting.command import RemotingCommand
from rmq.store.interfaces import IMessageStore, IReplicaStore, PutMessageResult, PutMessageStatus
from rmq.store.memory import MemoryMessageStore
from tests.support.vectors import load_hex

HEADER = struct.Struct(">qi")


def commit_log() -> bytes:
    """The 8299 bytes of the 4.9.7 broker's commit log (34 records)."""
    return load_hex("store/commitlog-00000000000000000000.first-8299-bytes.hex")


def service(
    clock: Clock, store: MemoryMessageStore, role: str = "ASYNC_MASTER", **props: str
) -> HAService:
    config, _ = configs_from_properties({"brokerRole": role, **props})
    return HAService(config, store, clock)


def started_store(clock: Clock, props: dict[str, str] | None = None) -> MemoryMessageStore:
    _, store_config = configs_from_properties(props or {})
    store = MemoryMessageStore(clock, store_config)
    store.start()
    return store


def blocks(data: bytes) -> list[tuple[int, bytes]]:
    """Split a master → slave byte stream into (offset, payload) blocks."""
    out = []
    pos = 0
    while pos < len(data):
        offset, size = HEADER.unpack_from(data, pos)
        out.append((offset, data[pos + 12 : pos + 12 + size]))
        pos += 12 + size
    return out


class MasterVectorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.store = started_store(self.clock)
        self.store.append_replica(0, commit_log()[:8077])
        self.ha = service(self.clock, self.store)
        self.ha.start()
        self.addCleanup(self.ha.stop)
        self.transport = StringTransport()
        self.conn = HAConnection(self.ha)
        self.conn.makeConnection(self.transport)

    def test_first_push_heartbeat_then_whole_last_file(self) -> None:
        """An empty slave's report 0 gets the heartbeat header then the 8077 bytes, as 4.9.7."""
        self.conn.dataReceived(load_hex("ha/ha-slave-report-initial.c2s.hex"))
        self.assertEqual(self.transport.value(), load_hex("ha/ha-master-first-push.s2c.hex"))

    def test_heartbeat_after_five_idle_seconds(self) -> None:
        """After the slave caught up, 5 s without data bring the 12-byte heartbeat."""
        self.conn.dataReceived(load_hex("ha/ha-slave-report-initial.c2s.hex"))
        self.conn.dataReceived(load_hex("ha/ha-slave-report-after-sync.c2s.hex"))
        self.transport.clear()
        self.clock.advance(5)
        self.assertEqual(self.transport.value(), b"")
        self.clock.advance(1)
        self.assertEqual(self.transport.value(), load_hex("ha/ha-master-heartbeat.s2c.hex"))

    def test_new_record_pushed(self) -> None:
        """A record appended after the sync is pushed as one block with 4.9.7's bytes."""
        self.conn.dataReceived(load_hex("ha/ha-slave-report-initial.c2s.hex"))
        self.conn.dataReceived(load_hex("ha/ha-slave-report-after-sync.c2s.hex"))
        self.transport.clear()
        self.store.append_replica(8077, commit_log()[8077:])
        self.clock.advance(0)
        self.assertEqual(self.transport.value(), load_hex("ha/ha-master-push-one-message.s2c.hex"))
        self.assertEqual(self.ha.push2slave_max_offset, 8077)
        self.conn.dataReceived(load_hex("ha/ha-slave-report-after-push.c2s.hex"))
        self.assertEqual(self.ha.push2slave_max_offset, 8299)

    def test_resume_from_reported_offset(self) -> None:
        """A slave that already holds data is served from its reported offset."""
        self.conn.dataReceived(struct.pack(">q", 5000))
        (hb, data) = blocks(self.transport.value())
        self.assertEqual(hb, (5000, b""))
        self.assertEqual(data, (5000, commit_log()[5000:8077]))

    def test_slave_beyond_master_dropped(self) -> None:
        """A slave reporting more than the master has is disconnected."""
        self.conn.dataReceived(struct.pack(">q", 9000))
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.transport.value(), b"")

    def test_silent_slave_dropped_after_housekeeping_interval(self) -> None:
        """20 s without a report drop the slave (heartbeats alone do not keep it)."""
        self.conn.dataReceived(load_hex("ha/ha-slave-report-initial.c2s.hex"))
        self.clock.advance(20)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(self.transport.disconnecting)

    def test_report_split_across_reads(self) -> None:
        """A report arriving a byte at a time is acted on once complete."""
        for b in load_hex("ha/ha-slave-report-initial.c2s.hex"):
            self.conn.dataReceived(bytes([b]))
        self.assertEqual(self.transport.value(), load_hex("ha/ha-master-first-push.s2c.hex"))


class MasterTransferTests(SynchronousTestCase):
    def test_batches_bounded_by_transfer_batch_size(self) -> None:
        """Blocks carry at most haTransferBatchSize bytes and together the whole log."""
        clock = Clock()
        store = started_store(clock)
        store.append_replica(0, commit_log())
        ha = service(clock, store, haTransferBatchSize="1000")
        transport = StringTransport()
        conn = HAConnection(ha)
        conn.makeConnection(transport)
        conn.dataReceived(struct.pack(">q", 0))
        got = blocks(transport.value())[1:]
        self.assertTrue(all(0 < len(b) <= 1000 for _, b in got))
        self.assertEqual([o for o, _ in got], [i * 1000 for i in range(9)])
        self.assertEqual(b"".join(b for _, b in got), commit_log())

    def test_empty_slave_starts_at_last_file(self) -> None:
        """Report 0 starts the transfer at max − max % mappedFileSizeCommitLog."""
        clock = Clock()
        store = started_store(clock, {"mappedFileSizeCommitLog": "4096"})
        store.append_replica(0, commit_log())
        ha = service(clock, store)
        transport = StringTransport()
        conn = HAConnection(ha)
        conn.makeConnection(transport)
        conn.dataReceived(struct.pack(">q", 0))
        got = blocks(transport.value())
        self.assertEqual(got[0], (8192, b""))
        self.assertEqual(got[1], (8192, commit_log()[8192:]))

    def test_paused_transport_stops_pushing(self) -> None:
        """While the transport has paused the producer no block is written; resume continues."""
        clock = Clock()
        store = started_store(clock)
        store.append_replica(0, commit_log())
        ha = service(clock, store, haTransferBatchSize="4096")
        transport = StringTransport()
        conn = HAConnection(ha)
        conn.makeConnection(transport)
        assert transport.producer is not None
        transport.producer.pauseProducing()
        conn.dataReceived(struct.pack(">q", 0))
        self.assertEqual(blocks(transport.value()), [(0, b"")])
        transport.producer.resumeProducing()
        self.assertEqual(b"".join(b for _, b in blocks(transport.value())), commit_log())


class SlaveVectorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.store = started_store(self.clock)
        self.ha = service(self.clock, self.store, role="SLAVE", brokerId="1")
        self.transport = StringTransport()
        self.proto = HAClientProtocol(self.ha)
        self.proto.makeConnection(self.transport)

    def test_reports_follow_the_capture(self) -> None:
        """Initial report 0, 0x1f8d after the first push, 0x206b after the next record."""
        self.assertEqual(self.transport.value(), load_hex("ha/ha-slave-report-initial.c2s.hex"))
        self.transport.clear()
        self.proto.dataReceived(load_hex("ha/ha-master-first-push.s2c.hex"))
        self.assertEqual(self.transport.value(), load_hex("ha/ha-slave-report-after-sync.c2s.hex"))
        self.transport.clear()
        self.proto.dataReceived(load_hex("ha/ha-master-heartbeat.s2c.hex"))
        self.assertEqual(self.transport.value(), b"")
        self.proto.dataReceived(load_hex("ha/ha-master-push-one-message.s2c.hex"))
        self.assertEqual(self.transport.value(), load_hex("ha/ha-slave-report-after-push.c2s.hex"))
        self.assertEqual(self.store.read_commit_log(0, 1 << 20), commit_log())

    def test_replicated_records_dispatched_like_local_puts(self) -> None:
        """The slave's consume queue units equal the 4.9.7 master's on-disk units."""
        self.proto.dataReceived(load_hex("ha/ha-master-first-push.s2c.hex"))
        self.proto.dataReceived(load_hex("ha/ha-master-push-one-message.s2c.hex"))
        units = load_hex("store/consumequeue-TopicJ-1-00000000000000000000.first-5-units.hex")
        want = [struct.unpack_from(">qiq", units, i * 20) for i in range(5)]
        got = self.successResultOf(self.store.get_messages("TopicJ", 1, 0, 32))
        self.assertEqual(got.message_count, 5)
        self.assertEqual(
            [
                (o, len(raw), code)
                for o, raw, code in zip(
                    [struct.unpack_from(">q", bytes(m), 28)[0] for m in got.messages],
                    got.messages,
                    got.tags_codes,
                    strict=True,
                )
            ],
            want,
        )

    def test_stream_split_anywhere(self) -> None:
        """Blocks arriving in 100-byte pieces end in the same store and report."""
        stream = load_hex("ha/ha-master-first-push.s2c.hex") + load_hex(
            "ha/ha-master-push-one-message.s2c.hex"
        )
        for i in range(0, len(stream), 100):
            self.proto.dataReceived(stream[i : i + 100])
        self.assertEqual(self.store.get_max_phy_offset(), 8299)
        self.assertEqual(self.transport.value()[-8:], struct.pack(">q", 8299))

    def test_block_not_at_local_end_drops_link(self) -> None:
        """A block that does not start at the slave's max offset drops the connection."""
        self.proto.dataReceived(load_hex("ha/ha-master-first-push.s2c.hex"))
        self.proto.dataReceived(HEADER.pack(9000, 4) + b"abcd")
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.store.get_max_phy_offset(), 8077)

    def test_heartbeat_report_every_five_seconds(self) -> None:
        """An idle slave repeats its max offset every 5 s and drops a master silent for 20 s."""
        self.ha.start()
        self.addCleanup(self.ha.stop)
        self.transport.clear()
        self.clock.advance(4)
        self.assertEqual(self.transport.value(), b"")
        self.clock.advance(1)
        self.assertEqual(self.transport.value(), struct.pack(">q", 0))
        self.clock.advance(15)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(self.transport.disconnecting)


class SlaveConnectTests(SynchronousTestCase):
    def test_slave_needs_positive_broker_id(self) -> None:
        """A SLAVE configured with brokerId 0 is a usage error (Java refuses to start)."""
        from twisted.python.usage import UsageError

        with self.assertRaises(UsageError) as e:
            configs_from_properties({"brokerRole": "SLAVE"})
        self.assertIn("brokerId", str(e.exception))

    def test_learns_master_from_registration_and_connects(self) -> None:
        """haServerAddr of the REGISTER_BROKER answer is where the slave connects."""
        from twisted.internet.endpoints import TCP4ClientEndpoint

        reactor = MemoryReactorClock()
        store = started_store(Clock())
        config, _ = configs_from_properties({"brokerRole": "SLAVE", "brokerId": "1"})

        def endpoint(addr: str) -> TCP4ClientEndpoint:
            host, port = addr.rsplit(":", 1)
            return TCP4ClientEndpoint(reactor, host, int(port))

        ha = HAService(config, store, reactor, connect=endpoint)
        ha.start()
        self.assertEqual(reactor.tcpClients, [])
        ha.registered(
            RemotingCommand(
                code=0,
                ext_fields={"masterAddr": "127.0.0.1:10911", "haServerAddr": "127.0.0.1:10912"},
            )
        )
        self.assertEqual(ha.master_addr, "127.0.0.1:10911")
        self.assertEqual([(h, p) for h, p, *_ in reactor.tcpClients], [("127.0.0.1", 10912)])
        ha.stop()

    def test_build_ha_off_without_endpoints(self) -> None:
        """No HA service when a master has no HA endpoint or a slave cannot connect."""
        store = started_store(Clock())
        for role in ("ASYNC_MASTER", "SYNC_MASTER", "SLAVE"):
            config, _ = configs_from_properties({"brokerRole": role, "brokerId": "1"})
            self.assertEqual(build_ha(config, store, Clock()), (store, None))


def put_result(end: int) -> PutMessageResult:
    return PutMessageResult(PutMessageStatus.PUT_OK, wrote_offset=end - 100, wrote_bytes=100)


class SyncMasterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.store = started_store(self.clock)
        self.store.append_replica(0, commit_log())
        self.ha = service(self.clock, self.store, role="SYNC_MASTER")
        self.transport = StringTransport()

    def connect_slave(self, offset: int = 0) -> HAConnection:
        conn = HAConnection(self.ha)
        conn.makeConnection(self.transport)
        conn.dataReceived(struct.pack(">q", offset))
        return conn

    def test_no_slave_is_slave_not_available(self) -> None:
        """Without a connected slave a put is answered SLAVE_NOT_AVAILABLE at once."""
        result = self.successResultOf(self.ha.wait_for_slave(put_result(1000), None))
        self.assertIs(result.status, PutMessageStatus.SLAVE_NOT_AVAILABLE)

    def test_released_when_slave_acknowledges(self) -> None:
        """A put waits until a slave report covers its end offset, then answers PUT_OK."""
        conn = self.connect_slave()
        d1 = self.ha.wait_for_slave(put_result(5000), None)
        d2 = self.ha.wait_for_slave(put_result(8000), None)
        self.assertNoResult(d1)
        conn.dataReceived(struct.pack(">q", 6000))
        self.assertIs(self.successResultOf(d1).status, PutMessageStatus.PUT_OK)
        self.assertNoResult(d2)
        conn.dataReceived(struct.pack(">q", 8000))
        self.assertIs(self.successResultOf(d2).status, PutMessageStatus.PUT_OK)
        self.clock.advance(0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timeout_is_flush_slave_timeout(self) -> None:
        """An unacknowledged put gets FLUSH_SLAVE_TIMEOUT after slaveTimeout (3 s)."""
        self.connect_slave()
        d = self.ha.wait_for_slave(put_result(9000), None)
        self.clock.advance(2.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.assertIs(self.successResultOf(d).status, PutMessageStatus.FLUSH_SLAVE_TIMEOUT)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_lagging_slave_not_available(self) -> None:
        """A slave more than haSlaveFallbehindMax behind counts as unavailable."""
        self.ha.fall_behind_max = 1000
        self.connect_slave(5000)
        self.assertNoResult(self.ha.wait_for_slave(put_result(5999), None))
        result = self.successResultOf(self.ha.wait_for_slave(put_result(6000), None))
        self.assertIs(result.status, PutMessageStatus.SLAVE_NOT_AVAILABLE)

    def test_wait_false_does_not_wait(self) -> None:
        """A message with WAIT=false is answered without waiting for a slave."""
        msg = BrokerMessage(topic="T", queue_id=0, body=b"x", properties={WAIT: "false"})
        result = self.successResultOf(self.ha.wait_for_slave(put_result(9000), msg))
        self.assertIs(result.status, PutMessageStatus.PUT_OK)

    def test_many_waiters_one_timer(self) -> None:
        """Thousands of waits use one timer and are released in offset order by one ack."""
        conn = self.connect_slave()
        ds = [self.ha.wait_for_slave(put_result(6000 + i), None) for i in range(2000)]
        self.assertEqual(len(self.clock.getDelayedCalls()), 2)  # timeout + one coalesced wake
        conn.dataReceived(struct.pack(">q", 6999))
        self.assertEqual(sum(1 for d in ds if d.called), 1000)
        self.clock.advance(3)
        statuses = {self.successResultOf(d).status for d in ds[1000:]}
        self.assertEqual(statuses, {PutMessageStatus.FLUSH_SLAVE_TIMEOUT})

    def test_store_wrapper_waits(self) -> None:
        """SyncMasterStore answers a put only after the slave acknowledged it."""
        conn = self.connect_slave(8299)
        wrapped = SyncMasterStore(self.store, self.ha)
        verifyObject(IMessageStore, wrapped)
        verifyObject(IReplicaStore, wrapped)
        d = wrapped.put_message(BrokerMessage(topic="T", queue_id=0, body=b"hello"))
        self.assertNoResult(d)
        self.clock.advance(0)  # the coalesced wake pushes the new record
        end = self.store.get_max_phy_offset()
        last = blocks(self.transport.value())[-1]
        self.assertEqual(last, (8299, self.store.read_commit_log(8299, 1 << 20)))
        self.assertEqual(8299 + len(last[1]), end)
        conn.dataReceived(struct.pack(">q", end))
        self.assertIs(self.successResultOf(d).status, PutMessageStatus.PUT_OK)
