"""Tests for the client registry: heartbeat dialects, membership, expiry, notices, warnings."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from rmq.broker.clients import (
    ConsumerData,
    ConsumerManager,
    ProducerManager,
    build_subscription,
    parse_heartbeat,
    tags_hash_code,
)
from rmq.broker.interfaces import IConsumerIdsChangeListener
from rmq.common.message import tags_hash
from rmq.remoting.codec import decode
from tests.broker.support import FakeConnection
from tests.support.vectors import load_frame


def _body(name: str) -> bytes:
    frame = load_frame(name)
    return decode(frame[4:]).body


@implementer(IConsumerIdsChangeListener)
class RecordingListener:
    """Records (group, connections) notifications."""

    def __init__(self) -> None:
        self.events: list[tuple[str, list[Any]]] = []

    def consumer_ids_changed(self, group: str, connections: list[Any]) -> None:
        """Record."""
        self.events.append((group, list(connections)))


def _consumer(group: str = "G", *subs: tuple[str, str, int]) -> ConsumerData:
    return ConsumerData(
        group,
        "CONSUME_PASSIVELY",
        "CLUSTERING",
        "CONSUME_FROM_LAST_OFFSET",
        tuple(build_subscription(t, e, v) for t, e, v in subs or (("T", "*", 1),)),
    )


class HeartbeatParsingTests(SynchronousTestCase):
    def test_java(self) -> None:
        """The Java heartbeat yields its client id, group, enums, subscriptions and producer."""
        hb = parse_heartbeat(_body("java-heartbeat-consumer.req.hex"))
        self.assertEqual(hb.client_id, "192.0.2.2@capC")
        self.assertEqual(hb.producer_groups, ("CLIENT_INNER_PRODUCER",))
        (c,) = hb.consumers
        self.assertEqual(
            (c.group_name, c.consume_type, c.message_model, c.consume_from_where),
            ("CG_JAVA", "CONSUME_PASSIVELY", "CLUSTERING", "CONSUME_FROM_FIRST_OFFSET"),
        )
        sub = {s.topic: s for s in c.subscriptions}["TopicJ"]
        self.assertEqual(sub.code_set, frozenset({2598919, 2598920}))
        self.assertEqual(sub.sub_version, 1795295147659)

    def test_cpp_ordinals_and_missing_code_set(self) -> None:
        """cpp's ordinals become names; string subVersion parses; codes rebuilt from subString."""
        hb = parse_heartbeat(_body("cpp-heartbeat.req.hex"))
        self.assertEqual(hb.client_id, "23558-127.0.0.1@DEFAULT")
        self.assertEqual(hb.producer_groups, ())
        (c,) = hb.consumers
        self.assertEqual(
            (c.consume_type, c.message_model, c.consume_from_where),
            ("CONSUME_PASSIVELY", "CLUSTERING", "CONSUME_FROM_LAST_OFFSET"),
        )
        self.assertEqual([s.sub_version for s in c.subscriptions], [1795295302082] * 2)

    def test_cpp_tag_expression_gets_codes(self) -> None:
        """A heartbeat without codeSet still filters by the tags of its expression."""
        body = (
            b'{"clientID":"1-x@D","consumerDataSet":[{"consumeFromWhere":0,"consumeType":1,'
            b'"groupName":"G","messageModel":1,"subscriptionDataSet":[{"subString":"TagA || TagB",'
            b'"subVersion":"5","topic":"T"}]}]}\n'
        )
        (c,) = parse_heartbeat(body).consumers
        (sub,) = c.subscriptions
        self.assertEqual(sub.code_set, frozenset({2598919, 2598920}))
        self.assertTrue(sub.is_matched_by_tags_code(2598920))
        self.assertFalse(sub.is_matched_by_tags_code(100))

    def test_alions(self) -> None:
        """ali-ons' heartbeat (names, fixed key order) parses."""
        hb = parse_heartbeat(_body("alions-heartbeat.req.hex"))
        self.assertEqual(hb.consumers[0].group_name, "CG_ALIONS")
        self.assertEqual(hb.consumers[0].subscriptions[0].topic, "TopicN")

    def test_tags_hash(self) -> None:
        """Our tag hash is Java's String.hashCode, including non-ASCII and negative values."""
        for tag in ("TagA", "d", "äöü-标签", "x" * 50):
            self.assertEqual(tags_hash_code(tag), tags_hash(tag))
        self.assertEqual(tags_hash_code("TagA"), 2598919)


class ConsumerManagerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.listener = RecordingListener()
        self.manager = ConsumerManager(self.clock, self.listener)

    def test_listener_interface(self) -> None:
        """The recording listener provides IConsumerIdsChangeListener."""
        verifyObject(IConsumerIdsChangeListener, self.listener)

    def test_join_notifies_all_members(self) -> None:
        """A new member makes the group notify every member at once; a refresh does not."""
        a, b = FakeConnection("1.1.1.1:1"), FakeConnection("1.1.1.2:1")
        self.assertTrue(self.manager.register_consumer(_consumer(), a, "ca"))
        self.assertTrue(self.manager.register_consumer(_consumer(), b, "cb"))
        self.assertEqual(self.listener.events, [("G", [a]), ("G", [a, b])])
        self.assertFalse(self.manager.register_consumer(_consumer(), b, "cb"))
        self.assertEqual(len(self.listener.events), 2)
        self.assertEqual(sorted(self.manager.client_ids("G")), ["ca", "cb"])

    def test_topic_set_change_notifies(self) -> None:
        """Adding or removing a subscribed topic notifies; a newer subVersion replaces silently."""
        a = FakeConnection()
        self.manager.register_consumer(_consumer("G", ("T", "*", 1)), a, "ca")
        self.manager.register_consumer(_consumer("G", ("T", "TagA", 2)), a, "ca")
        self.assertEqual(len(self.listener.events), 1)
        sub = self.manager.find_subscription("G", "T")
        assert sub is not None
        self.assertEqual(sub.sub_string, "TagA")
        self.manager.register_consumer(_consumer("G", ("T", "*", 3), ("U", "*", 3)), a, "ca")
        self.assertEqual(len(self.listener.events), 2)
        self.manager.register_consumer(_consumer("G", ("U", "*", 4)), a, "ca")
        self.assertEqual(len(self.listener.events), 3)
        self.assertIsNone(self.manager.find_subscription("G", "T"))

    def test_older_sub_version_ignored(self) -> None:
        """A heartbeat with an older subVersion does not replace the stored subscription."""
        a = FakeConnection()
        self.manager.register_consumer(_consumer("G", ("T", "TagB", 5)), a, "ca")
        self.manager.register_consumer(_consumer("G", ("T", "TagA", 4)), a, "ca")
        sub = self.manager.find_subscription("G", "T")
        assert sub is not None
        self.assertEqual(sub.sub_string, "TagB")

    def test_connection_closed(self) -> None:
        """A closed connection leaves its groups and the rest are notified; last one removes it."""
        a, b = FakeConnection("1.1.1.1:1"), FakeConnection("1.1.1.2:1")
        self.manager.register_consumer(_consumer(), a, "ca")
        self.manager.register_consumer(_consumer(), b, "cb")
        del self.listener.events[:]
        self.assertEqual(self.manager.connection_closed(a), ["G"])
        self.assertEqual(self.listener.events, [("G", [b])])
        self.manager.connection_closed(b)
        self.assertIsNone(self.manager.group("G"))
        self.assertEqual(len(self.listener.events), 1)

    def test_unregister(self) -> None:
        """UNREGISTER_CLIENT removes the member and notifies the others."""
        a, b = FakeConnection("1.1.1.1:1"), FakeConnection("1.1.1.2:1")
        self.manager.register_consumer(_consumer(), a, "ca")
        self.manager.register_consumer(_consumer(), b, "cb")
        self.assertTrue(self.manager.unregister_consumer("G", a))
        self.assertFalse(self.manager.unregister_consumer("G", a))
        self.assertEqual(self.listener.events[-1], ("G", [b]))

    def test_expiry(self) -> None:
        """A member silent for more than 120 s is expired by the scan; others are notified."""
        a, b = FakeConnection("1.1.1.1:1"), FakeConnection("1.1.1.2:1")
        self.manager.register_consumer(_consumer(), a, "ca")
        self.clock.advance(60)
        self.manager.register_consumer(_consumer(), b, "cb")
        self.clock.advance(60)
        self.assertEqual(self.manager.scan_not_active(), [])
        self.clock.advance(0.5)
        self.assertEqual(self.manager.scan_not_active(), [a])
        self.assertEqual(self.manager.client_ids("G"), ["cb"])
        self.assertEqual(self.listener.events[-1], ("G", [b]))

    def test_duplicate_client_id_warning(self) -> None:
        """Two connections with one client id produce a group warning naming it."""
        a, b = FakeConnection("1.1.1.1:1"), FakeConnection("1.1.1.2:1")
        self.manager.register_consumer(_consumer(), a, "same")
        self.assertEqual(self.manager.warnings(), {})
        self.manager.register_consumer(_consumer(), b, "same")
        (text,) = self.manager.warnings()["G"]
        self.assertIn("client id same", text)
        self.manager.connection_closed(b)
        self.assertEqual(self.manager.warnings(), {})

    def test_different_subscriptions_warning(self) -> None:
        """Members subscribing differently produce a group warning listing both."""
        a, b = FakeConnection("1.1.1.1:1"), FakeConnection("1.1.1.2:1")
        self.manager.register_consumer(_consumer("G", ("T", "TagA", 1)), a, "ca")
        self.manager.register_consumer(_consumer("G", ("T", "TagB", 1)), b, "cb")
        (text,) = self.manager.warnings()["G"]
        self.assertIn("subscribe differently", text)
        self.assertIn("T=TagA", text)
        self.assertIn("T=TagB", text)

    def test_notify_disabled(self) -> None:
        """With notification off for the group no listener call happens."""
        self.manager.register_consumer(_consumer(), FakeConnection(), "ca", notify_enabled=False)
        self.assertEqual(self.listener.events, [])


class ProducerManagerTests(SynchronousTestCase):
    def test_register_and_expire(self) -> None:
        """Producers register per group, expire after 120 s silence and leave on close."""
        clock = Clock()
        producers = ProducerManager(clock)
        a, b = FakeConnection("1.1.1.1:1"), FakeConnection("1.1.1.2:1")
        producers.register_producer("P", a, "ca")
        clock.advance(100)
        producers.register_producer("P", b, "cb")
        self.assertIs(producers.available_connection("P"), b)
        clock.advance(21)
        self.assertEqual(producers.scan_not_active(), [a])
        self.assertEqual(producers.connection_closed(b), ["P"])
        self.assertEqual(producers.groups(), [])
        self.assertIsNone(producers.available_connection("P"))
