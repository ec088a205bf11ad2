"""Tests for the broker's config tables: topics, subscription groups, consumer offsets."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rmq.broker.offsets import ConsumerOffsetManager
from rmq.broker.persist import ConfigPersister
from rmq.broker.subscription import SubscriptionGroupManager
from rmq.broker.topic import (
    PERM_INHERIT,
    PERM_READ,
    PERM_WRITE,
    TopicConfig,
    TopicConfigManager,
    TopicDefaults,
    topic_name_problem,
)
from rmq.common import fastjson
from tests.support.vectors import require_vectors


def _clock() -> Clock:
    clock = Clock()
    clock.advance(1_700_000_000)
    return clock


class TopicConfigManagerTests(SynchronousTestCase):
    def test_system_topics(self) -> None:
        """At start the table holds TBW102 (8 queues, perm 7), the schedule topic and the others."""
        topics = TopicConfigManager(_clock(), TopicDefaults(cluster_name="C", broker_name="b"))
        tbw = topics.select("TBW102")
        assert tbw is not None
        self.assertEqual((tbw.read_queue_nums, tbw.perm), (8, 7))
        sched = topics.select("SCHEDULE_TOPIC_XXXX")
        assert sched is not None
        self.assertEqual(sched.write_queue_nums, 18)
        for name in (
            "SELF_TEST_TOPIC",
            "BenchmarkTest",
            "C",
            "b",
            "OFFSET_MOVED_EVENT",
            "C_REPLY_TOPIC",
        ):
            self.assertIn(name, topics)

    def test_no_tbw102_without_auto_create(self) -> None:
        """With autoCreateTopicEnable=false there is no TBW102 and sends cannot auto-create."""
        topics = TopicConfigManager(_clock(), TopicDefaults(auto_create_topic_enable=False))
        self.assertIsNone(topics.select("TBW102"))
        self.assertIsNone(topics.create_topic_in_send("T", "TBW102", 4))

    def test_auto_create_from_template(self) -> None:
        """A new topic gets min(client queues, template queues), the template perm minus INHERIT."""
        clock = _clock()
        topics = TopicConfigManager(clock)
        changes: list[int] = []
        topics.listeners.append(lambda: changes.append(topics.data_version.counter))
        clock.advance(5)
        created = topics.create_topic_in_send("NewT", "TBW102", 4)
        self.assertEqual(created, TopicConfig("NewT", 4, 4, PERM_READ | PERM_WRITE))
        self.assertEqual(changes, [1])
        self.assertEqual(topics.data_version.timestamp, 1_700_000_005_000)
        big = topics.create_topic_in_send("BigT", "TBW102", 64)
        assert big is not None
        self.assertEqual(big.write_queue_nums, 8)

    def test_template_without_inherit(self) -> None:
        """A template lacking PERM_INHERIT refuses auto-creation."""
        topics = TopicConfigManager(_clock())
        topics.update_topic_config(TopicConfig("Tpl", 4, 4, PERM_READ | PERM_WRITE))
        self.assertIsNone(topics.create_topic_in_send("X", "Tpl", 4))
        topics.update_topic_config(TopicConfig("Tpl", 4, 4, PERM_READ | PERM_WRITE | PERM_INHERIT))
        self.assertIsNotNone(topics.create_topic_in_send("X", "Tpl", 4))

    def test_existing_topic_unchanged(self) -> None:
        """Auto-creating an existing topic returns it and does not bump the data version."""
        topics = TopicConfigManager(_clock())
        topics.create_topic_in_send("T", "TBW102", 4)
        counter = topics.data_version.counter
        topics.create_topic_in_send("T", "TBW102", 2)
        self.assertEqual(topics.data_version.counter, counter)

    def test_order_topics(self) -> None:
        """The NameServer's ORDER_TOPIC_CONFIG marks exactly the listed topics as ordered."""
        topics = TopicConfigManager(_clock())
        topics.create_topic_in_send("A", "TBW102", 4)
        topics.create_topic_in_send("B", "TBW102", 4)
        topics.update_order_topic_config(["A"])
        self.assertTrue(topics.is_order_topic("A"))
        self.assertFalse(topics.is_order_topic("B"))
        topics.update_order_topic_config([])
        self.assertFalse(topics.is_order_topic("A"))

    def test_topic_name_rules(self) -> None:
        """Blank, overlong and illegal-character names are refused with a reason."""
        self.assertIsNone(topic_name_problem("Good_topic-1%|x"))
        self.assertIn("blank", topic_name_problem(" ") or "")
        self.assertIn("127", topic_name_problem("x" * 128) or "")
        self.assertIn("illegal", topic_name_problem("a b") or "")

    def test_loads_rocketmq_topics_json(self) -> None:
        """A 4.9.7 topics.json loads with its data version and every topic config."""
        data = (require_vectors() / "store" / "topics.json").read_bytes()
        topics = TopicConfigManager(_clock())
        topics.decode(data)
        self.assertEqual(topics.data_version.counter, 11)
        tc = topics.select("%RETRY%CG_CPP")
        self.assertEqual(tc, TopicConfig("%RETRY%CG_CPP", 1, 1, 6))
        raw = fastjson.loads(data)["topicConfigTable"]
        for name in raw:
            self.assertIn(name, topics)

    def test_round_trip_same_shape(self) -> None:
        """Our topics.json has the same pretty shape as RocketMQ's and reads back equal."""
        data = (require_vectors() / "store" / "topics.json").read_bytes()
        topics = TopicConfigManager(_clock())
        topics.decode(data)
        again = TopicConfigManager(_clock())
        again.decode(topics.encode())
        self.assertEqual(again.to_json(), topics.to_json())
        self.assertTrue(topics.encode().startswith(b'{\n\t"dataVersion":{\n\t\t"counter":11,'))


class SubscriptionGroupManagerTests(SynchronousTestCase):
    def test_builtin_groups(self) -> None:
        """RocketMQ's built-in groups exist at start."""
        groups = SubscriptionGroupManager(_clock())
        for name in ("TOOLS_CONSUMER", "SELF_TEST_C_GROUP", "CID_ONSAPI_OWNER"):
            self.assertIsNotNone(groups.find(name))

    def test_auto_create(self) -> None:
        """find_or_create makes a default group (16 retries, 1 retry queue) and reports it."""
        groups = SubscriptionGroupManager(_clock())
        seen: list[int] = []
        groups.listeners.append(lambda: seen.append(1))
        g = groups.find_or_create("CG")
        assert g is not None
        self.assertEqual((g.retry_max_times, g.retry_queue_nums), (16, 1))
        self.assertEqual(seen, [1])

    def test_no_auto_create(self) -> None:
        """Without auto-creation an unknown group is None, except CID_RMQ_SYS_ groups."""
        groups = SubscriptionGroupManager(_clock(), auto_create=False)
        self.assertIsNone(groups.find_or_create("CG"))
        self.assertIsNotNone(groups.find_or_create("CID_RMQ_SYS_TRANS"))

    def test_loads_rocketmq_file(self) -> None:
        """A 4.9.7 subscriptionGroup.json loads (including the "" group cpp caused)."""
        data = (require_vectors() / "store" / "subscriptionGroup.json").read_bytes()
        groups = SubscriptionGroupManager(_clock())
        groups.decode(data)
        self.assertEqual(groups.data_version.counter, 6)
        self.assertIsNotNone(groups.find(""))
        again = SubscriptionGroupManager(_clock())
        again.decode(groups.encode())
        self.assertEqual(again.to_json(), groups.to_json())


class ConsumerOffsetManagerTests(SynchronousTestCase):
    def test_commit_and_query(self) -> None:
        """Offsets are kept per topic@group and queue; unknown ones read −1; −1 is stored too."""
        offsets = ConsumerOffsetManager()
        self.assertEqual(offsets.query_offset("G", "T", 0), -1)
        offsets.commit_offset("G", "T", 0, 5)
        offsets.commit_offset("G", "T", 3, -1)
        self.assertEqual(offsets.query_offset("G", "T", 0), 5)
        self.assertEqual(offsets.query_offset("G", "T", 3), -1)
        self.assertEqual(offsets.query_offsets("G", "T"), {0: 5, 3: -1})
        self.assertEqual(offsets.topics_of_group("G"), {"T"})
        self.assertEqual(offsets.groups_of_topic("T"), {"G"})

    def test_change_count(self) -> None:
        """Only real changes bump the change counter (so idle flushes write nothing)."""
        offsets = ConsumerOffsetManager()
        offsets.commit_offset("G", "T", 0, 5)
        n = offsets.change_count
        offsets.commit_offset("G", "T", 0, 5)
        self.assertEqual(offsets.change_count, n)

    def test_rocketmq_file_byte_identical(self) -> None:
        """A 4.9.7 consumerOffset.json loads and re-encodes to the very same bytes."""
        data = (require_vectors() / "store" / "consumerOffset.json").read_bytes()
        offsets = ConsumerOffsetManager()
        offsets.decode(data)
        self.assertEqual(offsets.query_offset("CG_ALIONS", "TopicN", 2), -1)
        self.assertEqual(offsets.query_offset("CG_JAVA", "TopicJ", 1), 4)
        self.assertEqual(offsets.encode(), data)


class ConfigPersisterTests(SynchronousTestCase):
    def test_write_and_load(self) -> None:
        """A table written under config/ loads back into a fresh table."""
        path = self.mktemp()
        persister = ConfigPersister(path)
        offsets = ConsumerOffsetManager()
        offsets.commit_offset("G", "T", 1, 7)
        self.successResultOf(persister.write_now(offsets))
        fresh = ConsumerOffsetManager()
        self.assertTrue(persister.load(fresh))
        self.assertEqual(fresh.query_offset("G", "T", 1), 7)

    def test_missing_file(self) -> None:
        """Loading a table with no file leaves it as is and says so."""
        self.assertFalse(ConfigPersister(self.mktemp()).load(ConsumerOffsetManager()))

    def test_coalesces_writes(self) -> None:
        """Requests during a running write cause exactly one more write, of the latest content."""
        from twisted.internet.defer import Deferred

        writes: list[tuple[str, bytes, Deferred[None]]] = []

        def writer(path: str, data: bytes) -> Deferred[None]:
            d: Deferred[None] = Deferred()
            writes.append((path, data, d))
            return d

        persister = ConfigPersister(self.mktemp(), writer)
        offsets = ConsumerOffsetManager()
        persister.request(offsets)
        for i in range(5):
            offsets.commit_offset("G", "T", 0, i)
            persister.request(offsets)
        idle = persister.when_idle()
        self.assertEqual(len(writes), 1)
        writes[0][2].callback(None)
        self.assertEqual(len(writes), 2)
        self.assertIn(b"0:4", writes[1][1])
        self.assertNoResult(idle)
        writes[1][2].callback(None)
        self.successResultOf(idle)


class TopicsEncodingTests(SynchronousTestCase):
    def test_fast_encoder_matches_generic_writer(self) -> None:
        """topics.json from the fast template equals fastjson.dumps_pretty byte for byte."""
        data = (require_vectors() / "store" / "topics.json").read_bytes()
        topics = TopicConfigManager(_clock())
        topics.decode(data)
        topics.update_topic_config(TopicConfig('we"ird\\name', 3, 2, 7, "MULTI_TAG", 1, True))
        self.assertEqual(topics.encode(), fastjson.dumps_pretty(topics.to_json()))

    def test_hundred_thousand_topics_encode_fast(self) -> None:
        """100,000 topics encode in well under a second."""
        import time

        topics = TopicConfigManager(_clock())
        for i in range(100_000):
            topics._put(TopicConfig(f"topic-{i:06d}", 8, 8))
        start = time.perf_counter()
        data = topics.encode()
        self.assertLess(time.perf_counter() - start, 1.0)
        self.assertTrue(data.endswith(b"\n\t}\n}"))
