"""Replay the captured client → broker request vectors and compare our answers with Java's.

Each test feeds the recorded request frames (Java 4.9.7, ali-ons, cpp 1.0.1, probes) to a broker
built on the memory store and a task.Clock, and checks the response has the recorded meaning: same
code, opaque, serialization, header keys, the values that do not depend on store contents, and
bodies that decode alike (protocol §13.3).
"""

from __future__ import annotations

from typing import Any

from rmq.broker.clients import build_subscription
from rmq.broker.config import BrokerConfig
from rmq.common import fastjson
from rmq.common.message import decode_messages
from rmq.remoting.codec import decode
from rmq.remoting.command import RemotingCommand
from tests.broker.support import FakeConnection, MemoryBrokerTestCase
from tests.support.vectors import load_frame

CAPTURE_MS = 1795295100000


def frame(name: str) -> RemotingCommand:
    """A vector decoded (without its length word)."""
    return decode(load_frame(name)[4:])


class VectorReplayTests(MemoryBrokerTestCase):
    def setUp(self) -> None:
        config = BrokerConfig(
            listen_port=40911, broker_ip1="127.0.0.1", store_path_root_dir=self.mktemp()
        )
        self.start_broker(config, CAPTURE_MS / 1000, "127.0.0.1:56884")

    def replay(self, name: str, conn: FakeConnection | None = None) -> RemotingCommand | None:
        """Dispatch the request vector ``name`` and return our response (None = none sent)."""
        d = self.broker.dispatcher.dispatch(conn or self.conn, frame(name))
        return self.successResultOf(d)

    def check(self, ours: RemotingCommand | None, recorded_name: str, *same: str) -> Any:
        """Compare with the recorded response: code, opaque, serialization, header keys, ``same``
        header values, and the remark of error answers."""
        recorded = frame(recorded_name)
        assert ours is not None
        self.assertEqual(ours.code, recorded.code, ours.remark)
        self.assertEqual(ours.opaque, recorded.opaque)
        self.assertTrue(ours.is_response)
        self.assertEqual(ours.serialize_type, recorded.serialize_type)
        self.assertEqual(set(ours.ext_fields), set(recorded.ext_fields))
        for key in same:
            self.assertEqual(ours.ext_fields[key], recorded.ext_fields[key], key)
        if recorded.code != 0:
            self.assertEqual(ours.remark, recorded.remark)
        return recorded

    # -- sends ----------------------------------------------------------------------------

    def test_java_send_v2(self) -> None:
        """SEND_MESSAGE_V2 auto-creates TopicJ and answers exactly Java's header."""
        ours = self.replay("java-send-v2.req.hex")
        self.check(
            ours,
            "java-send-v2.resp.hex",
            "msgId",
            "queueId",
            "queueOffset",
            "MSG_REGION",
            "TRACE_ON",
        )
        tc = self.broker.topics.select("TopicJ")
        assert tc is not None
        self.assertEqual(tc.write_queue_nums, 4)

    def test_java_send_stores_recorded_record(self) -> None:
        """The stored record has the properties Java stored (WAIT dropped, CLUSTER added)."""
        self.replay("java-send-v2.req.hex")
        theirs = decode_messages(frame("java-pull.resp.hex").body)[0]
        result = self.successResultOf(self.store.get_messages("TopicJ", 1, 0, 1))
        (ours,) = decode_messages(result.body())
        self.assertEqual(ours.properties, theirs.properties)
        self.assertEqual((ours.body, ours.topic, ours.flag), (theirs.body, theirs.topic, 0))
        self.assertEqual(ours.born_timestamp, theirs.born_timestamp)
        self.assertEqual(ours.store_host, theirs.store_host)

    def test_rocketmq_serialized_send(self) -> None:
        """A ROCKETMQ-header send is answered in the ROCKETMQ serialization."""
        ours = self.replay("java-rmqser-send-v2.req.hex")
        self.check(ours, "java-rmqser-send-v2.resp.hex", "queueId", "MSG_REGION")

    def test_java_batch(self) -> None:
        """SEND_BATCH_MESSAGE stores three records and lists three offset ids."""
        ours = self.replay("java-send-batch.req.hex")
        recorded = self.check(ours, "java-send-batch.resp.hex", "queueId", "queueOffset")
        assert ours is not None
        self.assertEqual(len(ours.ext_fields["msgId"].split(",")), 3)
        self.assertEqual(len(recorded.ext_fields["msgId"].split(",")), 3)

    def test_java_batch_pulled_like_java(self) -> None:
        """The batch's records carry the same properties as the 3 Java pulled (WAIT twice)."""
        self.replay("java-send-batch.req.hex")
        result = self.successResultOf(self.store.get_messages("TopicJ", 0, 0, 32))
        ours = decode_messages(result.body())
        theirs = decode_messages(frame("java-pull-found-3msgs.resp.hex").body)
        self.assertEqual([m.body for m in ours], [m.body for m in theirs])
        self.assertEqual([m.properties for m in ours], [m.properties for m in theirs])

    def test_cpp_send(self) -> None:
        """cpp's V1 send (ints as numbers, trailing 0x02) is accepted like Java did."""
        ours = self.replay("cpp-send-message.req.hex")
        self.check(ours, "cpp-send-message.resp.hex", "queueId", "queueOffset")
        theirs = decode_messages(frame("cpp-pull.resp.hex").body)[0]
        result = self.successResultOf(self.store.get_messages("TopicC", 0, 0, 1))
        self.assertEqual(decode_messages(result.body())[0].properties, theirs.properties)

    def test_cpp_batch_stored_as_batch(self) -> None:
        """cpp's batch:"1" on code 10 is stored as two messages (Java stored one blob)."""
        ours = self.replay("cpp-send-batch.req.hex")
        self.check(ours, "cpp-send-batch.resp.hex", "queueId")
        result = self.successResultOf(self.store.get_messages("TopicC", 3, 0, 32))
        bodies = [m.body for m in decode_messages(result.body())]
        self.assertEqual(bodies, [b"cpp batch 0", b"cpp batch 1"])

    def test_alions_send(self) -> None:
        """ali-ons' typed header values are accepted."""
        self.broker.topics.create_topic_in_send("TopicN", "TBW102", 4)
        for name in ("alions-send-v2", "alions-send-v2-compressed"):
            self.check(self.replay(f"{name}.req.hex"), f"{name}.resp.hex", "queueId")

    def test_compressed_and_delay_sends(self) -> None:
        """Compressed (Java, cpp) and delayed sends are answered SEND_OK with the same header."""
        for name in (
            "java-send-v2-compressed",
            "cpp-send-message-compressed",
            "java-send-v2-delay",
            "cpp-send-message-delay",
        ):
            self.check(self.replay(f"{name}.req.hex"), f"{name}.resp.hex", "queueId")

    def test_oneway_send(self) -> None:
        """A oneway send is stored and gets no response."""
        self.assertIsNone(self.replay("java-send-v2-oneway.oneway.hex"))
        self.assertEqual(
            self.store.get_max_offset_in_queue("TopicJ", 0)
            + self.store.get_max_offset_in_queue("TopicJ", 1)
            + self.store.get_max_offset_in_queue("TopicJ", 2)
            + self.store.get_max_offset_in_queue("TopicJ", 3),
            1,
        )

    def test_send_to_schedule_topic_forbidden(self) -> None:
        """Sending to SCHEDULE_TOPIC_XXXX is NO_PERMISSION with Java's remark and header."""
        self.check(
            self.replay("probe-send-to-schedule-topic.req.hex"),
            "probe-send-to-schedule-topic.resp.hex",
            "MSG_REGION",
            "TRACE_ON",
        )

    # -- clients --------------------------------------------------------------------------

    def test_heartbeats(self) -> None:
        """Heartbeats of all three dialects are answered with a bare success."""
        for name in (
            "java-heartbeat-consumer",
            "java-heartbeat-producer",
            "cpp-heartbeat",
            "alions-heartbeat",
        ):
            ours = self.replay(f"{name}.req.hex")
            self.check(ours, f"{name}.resp.hex")
            assert ours is not None
            self.assertFalse(ours.ext_fields_present and ours.ext_fields)
        self.assertEqual(self.broker.consumers.client_ids("CG_JAVA"), ["192.0.2.2@capC"])
        self.assertIn("%RETRY%CG_CPP", self.broker.topics)
        self.assertEqual(
            sorted(self.broker.producers.groups()), ["CLIENT_INNER_PRODUCER", "PG_JAVA"]
        )

    def test_oneway_heartbeat(self) -> None:
        """A oneway heartbeat registers the producer and is not answered."""
        self.assertIsNone(self.replay("probe-heartbeat-oneway.oneway.hex"))
        self.assertEqual(self.broker.producers.groups(), ["PG_RAW"])

    def test_consumer_list(self) -> None:
        """GET_CONSUMER_LIST_BY_GROUP returns the heartbeat's client id, like Java."""
        self.replay("java-heartbeat-consumer.req.hex")
        ours = self.replay("java-get-consumer-list-by-group.req.hex")
        recorded = self.check(ours, "java-get-consumer-list-by-group.resp.hex")
        assert ours is not None
        self.assertEqual(fastjson.loads(ours.body), fastjson.loads(recorded.body))
        self.replay("cpp-heartbeat.req.hex")
        ours = self.replay("cpp-get-consumer-list-by-group.req.hex")
        recorded = self.check(ours, "cpp-get-consumer-list-by-group.resp.hex")
        assert ours is not None
        self.assertEqual(fastjson.loads(ours.body), fastjson.loads(recorded.body))

    def test_unregister_client(self) -> None:
        """UNREGISTER_CLIENT answers success with empty extFields; cpp's "" group is ignored."""
        self.replay("java-heartbeat-producer.req.hex")
        for name in (
            "java-unregister-client",
            "cpp-unregister-client",
            "alions-unregister-client",
            "java-rmqser-unregister-client",
        ):
            ours = self.replay(f"{name}.req.hex")
            self.check(ours, f"{name}.resp.hex")
        self.assertIsNone(self.broker.groups.find(""))

    # -- pulls ----------------------------------------------------------------------------

    def _delayed_send_delivered(self) -> None:
        """Replay the DELAY=3 send and let the schedule service deliver it to TopicJ:2 (10 s)."""
        schedule = self.broker.guarantees.schedule
        self.successResultOf(schedule.start())
        self.replay("java-send-v2-delay.req.hex")
        self.clock.advance(10)
        self.successResultOf(schedule.stop())
        self.assertEqual(self.store.get_max_offset_in_queue("TopicJ", 2), 1)

    def _java_consumer(self) -> None:
        """Register CG_JAVA's heartbeat subscription with the pulls' newer subVersion."""
        self.replay("java-heartbeat-consumer.req.hex")
        info = self.broker.consumers.group("CG_JAVA")
        assert info is not None
        info.subscriptions["TopicJ"] = build_subscription("TopicJ", "TagA || TagB", 1795295148702)

    def test_java_pull_found(self) -> None:
        """A pull of TopicJ:1 returns the stored record with Java's header and remark."""
        self.replay("java-send-v2.req.hex")
        self._java_consumer()
        ours = self.replay("java-pull.req.hex")
        self.check(ours, "java-pull.resp.hex", "suggestWhichBrokerId", "minOffset")
        assert ours is not None
        self.assertEqual(ours.remark, "FOUND")
        self.assertEqual([m.body for m in decode_messages(ours.body)], [b"hello java"])

    def test_java_pull_no_matched(self) -> None:
        """A queue holding only non-matching tags answers PULL_RETRY_IMMEDIATELY, offset past it."""
        self._delayed_send_delivered()  # TagD in TopicJ:2
        self._java_consumer()
        ours = self.replay("java-pull-no-matched.req.hex")
        self.check(
            ours, "java-pull-no-matched.resp.hex", "nextBeginOffset", "maxOffset", "minOffset"
        )
        assert ours is not None
        self.assertEqual(ours.remark, "NO_MATCHED_MESSAGE")

    def test_java_long_poll_not_found(self) -> None:
        """A pull at the queue end is held 15 s, commits its offset, then answers 19."""
        self._delayed_send_delivered()
        self._java_consumer()
        d = self.broker.dispatcher.dispatch(
            self.conn, frame("java-pull-long-poll-not-found.req.hex")
        )
        self.assertNoResult(d)
        self.assertEqual(self.broker.offsets.query_offset("CG_JAVA", "TopicJ", 2), 1)
        self.clock.advance(14.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        ours = self.successResultOf(d)
        self.check(ours, "java-pull-long-poll-not-found.resp.hex", "nextBeginOffset", "maxOffset")
        assert ours is not None
        self.assertEqual(ours.remark, "OFFSET_OVERFLOW_ONE")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_long_poll_woken_by_send(self) -> None:
        """The held pull is answered FOUND the moment a matching message arrives."""
        self._delayed_send_delivered()
        self._java_consumer()
        d = self.broker.dispatcher.dispatch(
            self.conn, frame("java-pull-long-poll-not-found.req.hex")
        )
        self.assertNoResult(d)
        send = frame("java-send-v2.req.hex")
        send.ext_fields["e"] = "2"
        self.successResultOf(self.broker.dispatcher.dispatch(self.conn, send))
        ours = self.successResultOf(d)
        assert ours is not None
        self.assertEqual((ours.code, ours.ext_fields["nextBeginOffset"]), (0, "2"))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_subscription_not_latest(self) -> None:
        """A pull newer than the heartbeat's subscription answers 25 like Java."""
        self.broker.topics.create_topic_in_send("TopicJ", "TBW102", 4)
        self.replay("java-heartbeat-consumer.req.hex")
        self.check(
            self.replay("java-pull-subscription-not-latest.req.hex"),
            "java-pull-subscription-not-latest.resp.hex",
        )

    def test_pull_without_group_info(self) -> None:
        """A pull without subscription flag and without heartbeat answers 24 like Java."""
        self.broker.topics.create_topic_in_send("TopicJ", "TBW102", 4)
        self.check(
            self.replay("probe-pull-no-subscription.req.hex"), "probe-pull-no-subscription.resp.hex"
        )

    def test_pull_with_subscription(self) -> None:
        """A pull with the subscription flag filters by the request's tags."""
        self.replay("java-send-v2.req.hex")
        ours = self.replay("probe-pull-with-subscription.req.hex")
        self.check(ours, "probe-pull-with-subscription.resp.hex", "minOffset")

    def test_cpp_and_alions_pulls(self) -> None:
        """cpp's and ali-ons' pulls (subscription flag, typed values) find their messages."""
        self.replay("cpp-send-message.req.hex")
        self.check(
            self.replay("cpp-pull.req.hex"),
            "cpp-pull.resp.hex",
            "nextBeginOffset",
            "maxOffset",
            "minOffset",
        )
        self.broker.topics.create_topic_in_send("TopicN", "TBW102", 4)
        self.replay("alions-send-v2.req.hex")
        ours = self.replay("alions-pull.req.hex")
        recorded = self.check(ours, "alions-pull.resp.hex", "nextBeginOffset", "maxOffset")
        assert ours is not None
        self.assertEqual(
            [m.properties for m in decode_messages(ours.body)],
            [m.properties for m in decode_messages(recorded.body)],
        )

    # -- offsets and queries --------------------------------------------------------------

    def test_consumer_offsets(self) -> None:
        """Offset queries answer 0 for young queues; updates from all clients are stored."""
        for name in (
            "java-query-consumer-offset",
            "probe-query-consumer-offset-unknown-group",
            "cpp-query-consumer-offset",
            "alions-query-consumer-offset",
        ):
            self.check(self.replay(f"{name}.req.hex"), f"{name}.resp.hex", "offset")
        self.assertIsNone(self.replay("java-update-consumer-offset.oneway.hex"))
        for name in (
            "cpp-update-consumer-offset",
            "alions-update-consumer-offset",
            "admin-update-consumer-offset",
        ):
            self.check(self.replay(f"{name}.req.hex"), f"{name}.resp.hex")
        self.assertEqual(self.broker.offsets.query_offset("CG_JAVA", "TopicJ", 2), 1)
        self.assertEqual(self.broker.offsets.query_offset("CG_CPP", "TopicC", 0), 1)
        self.assertEqual(self.broker.offsets.query_offset("CG_ALIONS", "TopicN", 0), 1)
        ours = self.replay("java-query-consumer-offset.req.hex")
        assert ours is not None
        self.assertEqual(ours.ext_fields["offset"], "1")

    def test_offset_queries(self) -> None:
        """GET_MIN/MAX_OFFSET (also ROCKETMQ-serialized), SEARCH and EARLIEST answer like Java."""
        for _ in range(5):
            send = frame("java-send-v2.req.hex")
            self.successResultOf(self.broker.dispatcher.dispatch(self.conn, send))
        self.check(
            self.replay("probe-get-min-offset.req.hex"), "probe-get-min-offset.resp.hex", "offset"
        )
        self.check(
            self.replay("probe-rocketmq-get-max-offset.req.hex"),
            "probe-rocketmq-get-max-offset.resp.hex",
            "offset",
        )
        self.check(
            self.replay("probe-search-offset-by-timestamp.req.hex"),
            "probe-search-offset-by-timestamp.resp.hex",
            "offset",
        )
        ours = self.replay("probe-get-earliest-msg-storetime.req.hex")
        self.check(ours, "probe-get-earliest-msg-storetime.resp.hex")
        assert ours is not None
        self.assertEqual(int(ours.ext_fields["timestamp"]), CAPTURE_MS)

    def test_view_message_by_id(self) -> None:
        """VIEW_MESSAGE_BY_ID returns the record at the commit-log offset, no header fields."""
        self.replay("java-send-v2.req.hex")
        ours = self.replay("probe-view-message-by-id.req.hex")
        recorded = self.check(ours, "probe-view-message-by-id.resp.hex")
        assert ours is not None
        self.assertEqual(
            decode_messages(ours.body)[0].properties, decode_messages(recorded.body)[0].properties
        )

    def test_unknown_code(self) -> None:
        """An unknown request code answers 3 with Java's remark."""
        self.check(
            self.replay("probe-broker-unknown-code.req.hex"), "probe-broker-unknown-code.resp.hex"
        )
