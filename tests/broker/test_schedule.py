"""Delay levels and timer messages on a task.Clock (rmq.broker.schedule)."""

from __future__ import annotations

import json
import os
import tarfile

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from rmq.broker.interfaces import ISendMessageHook
from rmq.broker.schedule import (
    TIMER_TOPIC,
    DelayOffsetTable,
    TimerProgressTable,
    timer_due_ms,
)
from rmq.broker.topic import SCHEDULE_TOPIC
from rmq.common.message import DELAY, REAL_QID, REAL_TOPIC, TAGS, UNIQ_KEY, tags_hash
from rmq.remoting.codes import ResponseCode
from rmq.store.config import MessageStoreConfig, parse_delay_levels
from tests.broker.guarantees_support import GuaranteeBroker, make_root, new_clock
from tests.support.vectors import require_vectors

DAY_S = 86_400


class DelayLevelTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = new_clock()
        self.root = make_root(self)
        self.b = GuaranteeBroker(self, self.clock, self.root)
        self.addCleanup(self.b.stop)

    def test_hook_provides_interface(self) -> None:
        """The delay hook is an ISendMessageHook installed on the send path."""
        verifyObject(ISendMessageHook, self.b.g.delay_hook)
        self.assertIn(self.b.g.delay_hook, self.b.broker.send_hooks)

    def test_parked_then_delivered_on_real_queue(self) -> None:
        """DELAY=3 parks in SCHEDULE_TOPIC_XXXX queue 2 and is delivered to T:1 at exactly 10 s."""
        props = {TAGS: "TagD", UNIQ_KEY: "U1", DELAY: "3"}
        r = self.b.send("T", b"delayed", props, queue_id=1)
        self.assertEqual((r.code, r.ext_fields["queueId"]), (ResponseCode.SUCCESS, "1"))
        (parked,) = self.b.messages(SCHEDULE_TOPIC, 2)
        self.assertEqual(parked.properties[REAL_TOPIC], "T")
        self.assertEqual(parked.properties[REAL_QID], "1")
        got = self.successResultOf(self.b.store.get_messages(SCHEDULE_TOPIC, 2, 0, 1))
        self.assertEqual(got.tags_codes, [parked.store_timestamp + 10_000])
        self.clock.advance(9.999)
        self.assertEqual(self.b.messages("T", 1), [])
        self.clock.advance(0.001)
        (m,) = self.b.messages("T", 1)
        self.assertEqual((m.body, m.tags, m.unique_key), (b"delayed", "TagD", "U1"))
        self.assertNotIn(DELAY, m.properties)
        self.assertEqual((m.properties[REAL_TOPIC], m.properties[REAL_QID]), ("T", "1"))
        self.assertEqual(m.born_timestamp, parked.born_timestamp)
        self.assertNotEqual(m.commit_log_offset, parked.commit_log_offset)
        got = self.successResultOf(self.b.store.get_messages("T", 1, 0, 1))
        self.assertEqual(got.tags_codes, [tags_hash("TagD")])
        self.assertEqual(self.b.g.schedule.offset(3), 1)

    def test_every_level_precise(self) -> None:
        """Each of the 18 levels delivers at its due time, not 1 ms before."""
        delays = parse_delay_levels(MessageStoreConfig().message_delay_level)
        for level in range(1, 19):
            self.b.send("T", f"L{level}".encode(), {DELAY: str(level)})
        elapsed = 0
        for level in range(1, 19):
            due = delays[level]
            self.clock.advance((due - 1 - elapsed) / 1000)
            bodies = {m.body for m in self.b.messages("T", 0)}
            self.assertNotIn(f"L{level}".encode(), bodies, level)
            self.clock.advance(0.001)
            elapsed = due
            bodies = {m.body for m in self.b.messages("T", 0)}
            self.assertIn(f"L{level}".encode(), bodies, level)
        self.assertEqual(len(self.b.messages("T", 0)), 18)

    def test_level_clamped_to_max(self) -> None:
        """A level above 18 is parked in the 2 h level's queue."""
        self.b.send("T", b"x", {DELAY: "40"})
        (parked,) = self.b.messages(SCHEDULE_TOPIC, 17)
        self.assertEqual(parked.properties[DELAY], "18")

    def test_same_level_in_order(self) -> None:
        """Messages of one level sent 1 s apart are delivered 1 s apart, in order."""
        self.b.send("T", b"a", {DELAY: "2"})
        self.clock.advance(1)
        self.b.send("T", b"b", {DELAY: "2"})
        self.clock.advance(4)
        self.assertEqual([m.body for m in self.b.messages("T", 0)], [b"a"])
        self.clock.advance(1)
        self.assertEqual([m.body for m in self.b.messages("T", 0)], [b"a", b"b"])

    def test_offsets_written_in_rocketmq_format(self) -> None:
        """delayOffset.json is written 10 s after a delivery, byte-identical to Java's layout."""
        self.b.send("T", b"a", {DELAY: "2"})
        self.b.send("T", b"b", {DELAY: "3"})
        self.b.send("T", b"c", {DELAY: "3"})
        self.clock.advance(10)
        path = os.path.join(self.root, "config", "delayOffset.json")
        self.assertFalse(os.path.exists(path))
        self.clock.advance(10)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b'{\n\t"offsetTable":{2:1,3:2\n\t}\n}')

    def test_failed_delivery_retried(self) -> None:
        """A delivery the store refuses is logged and retried 10 s later, without loss."""
        self.b.send("T", b"a", {DELAY: "1"})
        self.successResultOf(self.b.store.stop())
        self.clock.advance(1)
        self.assertEqual(self.b.g.schedule.offset(1), 0)
        self.successResultOf(self.b.store.start())
        self.clock.advance(9.999)
        self.assertEqual(self.b.messages("T", 0), [])
        self.clock.advance(0.001)
        self.assertEqual([m.body for m in self.b.messages("T", 0)], [b"a"])
        self.assertEqual(self.b.g.schedule.offset(1), 1)

    def test_skips_ahead_of_removed_messages(self) -> None:
        """A saved offset below the queue's minimum moves up to it (logged), then delivers."""
        self.b.send("T", b"a", {DELAY: "1"})
        store = self.b.store
        original = store.get_min_offset_in_queue
        store.get_min_offset_in_queue = lambda topic, qid: 1 if topic == SCHEDULE_TOPIC else 0  # type: ignore[method-assign,assignment]
        self.addCleanup(setattr, store, "get_min_offset_in_queue", original)
        self.b.send("T", b"b", {DELAY: "1"})
        self.clock.advance(1)
        self.assertEqual([m.body for m in self.b.messages("T", 0)], [b"b"])

    def test_no_timer_while_idle(self) -> None:
        """An idle schedule service leaves no delayed call behind."""
        self.b.send("T", b"a", {DELAY: "1"})
        self.clock.advance(1)
        self.clock.advance(10)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class DelayConfigTests(SynchronousTestCase):
    def test_custom_levels(self) -> None:
        """messageDelayLevel is honoured: with "2s 4s", DELAY=2 waits 4 s and DELAY=9 clamps."""
        clock = new_clock()
        root = make_root(self)
        config = MessageStoreConfig(store_path_root_dir=root, message_delay_level="2s 4s")
        b = GuaranteeBroker(self, clock, root, store_config=config)
        self.addCleanup(b.stop)
        b.send("T", b"x", {DELAY: "2"})
        b.send("T", b"y", {DELAY: "9"})
        clock.advance(3.999)
        self.assertEqual(b.messages("T", 0), [])
        clock.advance(0.001)
        self.assertEqual([m.body for m in b.messages("T", 0)], [b"x", b"y"])

    def test_table_round_trips_java_file(self) -> None:
        """The vector delayOffset.json decodes and re-encodes byte for byte."""
        path = os.path.join(str(require_vectors()), "store", "delayOffset.json")
        with open(path, "rb") as f:
            data = f.read()
        table = DelayOffsetTable()
        table.decode(data)
        self.assertEqual(table.offsets, {2: 1, 3: 4})
        self.assertEqual(table.encode(), data)


class RestartTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = new_clock()
        self.root = make_root(self)

    def incarnation(self) -> GuaranteeBroker:
        b = GuaranteeBroker(self, self.clock, self.root, file_store=True)
        self.addCleanup(b.stop)
        return b

    def test_delay_resumes_after_restart(self) -> None:
        """Delivered messages stay delivered, parked ones are delivered after a restart."""
        b = self.incarnation()
        b.send("T", b"early", {DELAY: "1"})
        b.send("T", b"late", {DELAY: "4"})
        self.clock.advance(2)
        b.stop()
        b = self.incarnation()
        self.assertEqual(b.g.schedule.offset(1), 1)
        self.clock.advance(27.999)
        self.assertEqual([m.body for m in b.messages("T", 0)], [b"early"])
        self.clock.advance(0.001)
        self.assertEqual([m.body for m in b.messages("T", 0)], [b"early", b"late"])

    def test_three_day_timer_survives_restart(self) -> None:
        """A 3-day timer message survives a restart and is delivered at its time, once."""
        b = self.incarnation()
        due = int(self.clock.seconds() * 1000) + 3 * DAY_S * 1000
        r = b.send("T", b"in 3 days", {"TIMER_DELAY_SEC": str(3 * DAY_S)}, queue_id=2)
        self.assertEqual((r.code, r.ext_fields["queueId"]), (0, "2"))
        r = b.send("T", b"in 1 h", {"TIMER_DELAY_MS": "3600000"}, queue_id=2)
        self.assertEqual(r.code, 0)
        (parked, _) = b.messages(TIMER_TOPIC, 0)
        self.assertEqual(parked.properties["TIMER_OUT_MS"], str(due))
        self.clock.advance(DAY_S)
        self.assertEqual([m.body for m in b.messages("T", 2)], [b"in 1 h"])
        b.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        b = self.incarnation()
        self.assertEqual(b.g.timers.pending(), [(due, 0)])
        self.clock.advance(2 * DAY_S - 0.001)
        self.assertEqual([m.body for m in b.messages("T", 2)], [b"in 1 h"])
        self.clock.advance(0.001)
        delivered = b.messages("T", 2)
        self.assertEqual([m.body for m in delivered], [b"in 1 h", b"in 3 days"])
        self.assertEqual(delivered[1].store_timestamp, due)
        self.assertNotIn("TIMER_DELAY_SEC", delivered[1].properties)
        self.assertEqual(b.g.timers.table.progress, 2)
        b.stop()
        b = self.incarnation()
        self.clock.advance(DAY_S)
        self.assertEqual(len(b.messages("T", 2)), 2)


class TimerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = new_clock()
        self.b = GuaranteeBroker(self, self.clock, make_root(self))
        self.addCleanup(self.b.stop)

    def test_deliver_ms_absolute(self) -> None:
        """TIMER_DELIVER_MS delivers at that epoch millisecond."""
        at = int(self.clock.seconds() * 1000) + 1500
        self.b.send("T", b"x", {"TIMER_DELIVER_MS": str(at)})
        self.clock.advance(1.499)
        self.assertEqual(self.b.messages("T", 0), [])
        self.clock.advance(0.001)
        self.assertEqual([m.body for m in self.b.messages("T", 0)], [b"x"])

    def test_past_time_sent_at_once(self) -> None:
        """A timer time in the past is an ordinary send."""
        self.b.send("T", b"x", {"TIMER_DELIVER_MS": "1000"})
        self.assertEqual([m.body for m in self.b.messages("T", 0)], [b"x"])
        self.assertEqual(self.b.messages(TIMER_TOPIC, 0), [])

    def test_out_of_order_due_times(self) -> None:
        """Timer messages are delivered by due time, not by arrival."""
        self.b.send("T", b"late", {"TIMER_DELAY_SEC": "20"})
        self.b.send("T", b"soon", {"TIMER_DELAY_SEC": "5"})
        self.clock.advance(5)
        self.assertEqual([m.body for m in self.b.messages("T", 0)], [b"soon"])
        self.assertEqual(self.b.g.timers.table.progress, 0)
        self.assertEqual(self.b.g.timers.table.delivered, {1})
        self.clock.advance(15)
        self.assertEqual([m.body for m in self.b.messages("T", 0)], [b"soon", b"late"])
        self.assertEqual(self.b.g.timers.table.progress, 2)

    def test_beyond_max_refused(self) -> None:
        """A delay over 3 days is refused with MESSAGE_ILLEGAL and a remark naming the limit."""
        r = self.b.send("T", b"x", {"TIMER_DELAY_SEC": str(3 * DAY_S + 1)})
        self.assertEqual(r.code, ResponseCode.MESSAGE_ILLEGAL)
        assert r.remark is not None
        self.assertIn("timerMaxDelaySec", r.remark)

    def test_malformed_refused(self) -> None:
        """A non-integer timer property is refused with MESSAGE_ILLEGAL."""
        r = self.b.send("T", b"x", {"TIMER_DELAY_MS": "soon"})
        self.assertEqual(r.code, ResponseCode.MESSAGE_ILLEGAL)

    def test_due_computation(self) -> None:
        """timer_due_ms prefers TIMER_DELIVER_MS, then the relative properties."""
        self.assertEqual(timer_due_ms({"TIMER_DELIVER_MS": "5", "TIMER_DELAY_MS": "9"}, 100), 5)
        self.assertEqual(timer_due_ms({"TIMER_DELAY_SEC": "2"}, 100), 2100)
        self.assertEqual(timer_due_ms({"TIMER_DELAY_MS": "7"}, 100), 107)
        self.assertIsNone(timer_due_ms({}, 100))

    def test_progress_table_round_trip(self) -> None:
        """timerProgress.json keeps the progress and the delivered offsets above it."""
        t = TimerProgressTable()
        t.progress, t.delivered = 3, {5, 9}
        u = TimerProgressTable()
        u.decode(t.encode())
        self.assertEqual((u.progress, u.delivered), (3, {5, 9}))


class CrashStore497Tests(SynchronousTestCase):
    """The schedule service resumes a RocketMQ 4.9.7 store from its delayOffset.json."""

    def setUp(self) -> None:
        vectors = require_vectors()
        crash = vectors / "store-crash-4.9.7"
        self.root = make_root(self)
        with tarfile.open(crash / "store.tar.gz") as tar:
            tar.extractall(self.root, filter="data")
        self.manifest = json.loads((crash / "manifest.json").read_text())["sent"]
        self.config = MessageStoreConfig(
            store_path_root_dir=self.root,
            mapped_file_size_commit_log=1048576,
            mapped_file_size_consume_queue=1200,
            max_hash_slot_num=100,
            max_index_num=400,
        )
        self.clock = new_clock()

    def test_delayed_messages_on_real_topic_once(self) -> None:
        """The 30 delayed messages are on their real topics once; new delays still work."""
        b = GuaranteeBroker(self, self.clock, self.root, file_store=True, store_config=self.config)
        self.addCleanup(b.stop)
        self.assertEqual(b.g.schedule.offset(1), 30)
        self.clock.advance(5)
        seen: dict[tuple[str, str], int] = {}
        for topic in ("FixtureA", "FixtureB"):
            for m in b.all_messages(topic):
                key = (topic, m.properties.get("seq", ""))
                seen[key] = seen.get(key, 0) + 1
        delayed = [e for e in self.manifest if e["delay_level"]]
        self.assertEqual(len(delayed), 30)
        for e in delayed:
            self.assertEqual(seen.get((e["topic"], str(e["seq"]))), 1, e)
        self.assertEqual(sum(seen.values()), len(self.manifest))
        b.send("FixtureA", b"after", {DELAY: "1"}, queue_id=0)
        self.clock.advance(1)
        self.assertEqual(b.messages("FixtureA", 0)[-1].body, b"after")
        self.assertEqual(b.g.schedule.offset(1), 31)


class SlaveTests(SynchronousTestCase):
    def test_slave_runs_no_delivery_services(self) -> None:
        """A slave broker registers the processors but starts no schedule/timer/check service."""
        from rmq.broker.config import BrokerConfig
        from rmq.broker.service import build_broker
        from rmq.store.memory import MemoryMessageStore
        from tests.broker.support import FakeNameServerClient

        clock = new_clock()
        config = BrokerConfig(broker_role="SLAVE", broker_id=1, store_path_root_dir=make_root(self))
        broker = build_broker(config, clock, MemoryMessageStore(clock), FakeNameServerClient())
        self.assertEqual(broker.components, [])
        self.assertIsNotNone(broker.guarantees)


class BrokerServiceWiringTests(SynchronousTestCase):
    def test_service_starts_and_stops_the_schedule(self) -> None:
        """BrokerService starts the schedule after the store and writes delayOffset.json at stop."""
        from twisted.internet.endpoints import TCP4ServerEndpoint
        from twisted.internet.testing import MemoryReactorClock

        from rmq.broker.config import BrokerConfig
        from rmq.broker.service import build_broker_service
        from rmq.store.memory import MemoryMessageStore
        from tests.broker.support import FakeNameServerClient

        reactor = MemoryReactorClock()
        reactor.advance(1_800_000_000)
        root = make_root(self)
        config = BrokerConfig(
            namesrv_addr="127.0.0.1:9876", listen_port=10911, store_path_root_dir=root
        )
        store = MemoryMessageStore(reactor)
        svc = build_broker_service(
            config,
            TCP4ServerEndpoint(reactor, 10911),
            reactor,
            store=store,
            namesrv_client=FakeNameServerClient(),
        )
        svc.startService()
        self.successResultOf(svc.when_started())
        schedule = svc.broker.guarantees.schedule
        self.assertTrue(schedule.running)
        from rmq.common.message import properties_to_string
        from rmq.remoting.codes import RequestCode
        from rmq.remoting.command import new_request
        from tests.broker.support import FakeConnection

        send = new_request(
            RequestCode.SEND_MESSAGE,
            {
                "producerGroup": "PG",
                "topic": "T",
                "defaultTopic": "TBW102",
                "defaultTopicQueueNums": 4,
                "queueId": 0,
                "properties": properties_to_string({DELAY: "1"}),
            },
            b"x",
        )
        r = self.successResultOf(svc.broker.dispatcher.dispatch(FakeConnection(), send))
        assert r is not None
        self.assertEqual(r.code, 0)
        reactor.advance(1)
        self.assertEqual(store.get_max_offset_in_queue("T", 0), 1)
        self.successResultOf(svc.stopService())
        self.assertFalse(schedule.running)
        with open(os.path.join(root, "config", "delayOffset.json"), "rb") as f:
            self.assertEqual(f.read(), b'{\n\t"offsetTable":{1:1\n\t}\n}')
