"""CONSUMER_SEND_MSG_BACK: retry topic, delay levels, DLQ (rmq.broker.sendback), on a task.Clock."""

from __future__ import annotations

import attrs
from twisted.trial.unittest import SynchronousTestCase

from rmq.broker.subscription import SubscriptionGroupConfig
from rmq.broker.topic import SCHEDULE_TOPIC
from rmq.common.message import (
    DELAY,
    ORIGIN_MESSAGE_ID,
    REAL_QID,
    REAL_TOPIC,
    RECONSUME_TIME,
    RETRY_TOPIC,
    TAGS,
    UNIQ_KEY,
    WAIT,
    MessageExt,
    decode_message,
)
from rmq.remoting.codec import decode
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_request
from rmq.store.config import MessageStoreConfig, parse_delay_levels
from tests.broker.guarantees_support import GuaranteeBroker, make_root, new_clock
from tests.broker.test_vectors import CAPTURE_MS
from tests.support.vectors import load_frame, load_hex

RETRY = "%RETRY%G"
DLQ = "%DLQ%G"


def frame(name: str) -> RemotingCommand:
    """A vector decoded (without its length word)."""
    return decode(load_frame(name)[4:])


def send_back(
    offset: int,
    group: str = "G",
    delay_level: int = 0,
    max_times: int | None = 16,
    version: int = 407,
    origin_topic: str | None = None,
) -> RemotingCommand:
    """A CONSUMER_SEND_MSG_BACK request as a Java (407) or other client sends it."""
    cmd = new_request(
        RequestCode.CONSUMER_SEND_MSG_BACK,
        {
            "offset": offset,
            "group": group,
            "delayLevel": delay_level,
            "originTopic": origin_topic,
            "maxReconsumeTimes": max_times,
        },
    )
    return attrs.evolve(cmd, version=version)


class SendBackTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = new_clock()
        self.b = GuaranteeBroker(self, self.clock, make_root(self))
        self.addCleanup(self.b.stop)
        self.delays = parse_delay_levels(MessageStoreConfig().message_delay_level)

    def first(self) -> MessageExt:
        self.b.send("T", b"payload", {TAGS: "TagA", UNIQ_KEY: "U1", "k": "v"}, queue_id=1)
        (m,) = self.b.messages("T", 1)
        return m

    def test_retry_copy_parked_with_level_3(self) -> None:
        """The first send-back parks a copy for %RETRY%G at level 3 with the retry properties."""
        m = self.first()
        r = self.b.request(send_back(m.commit_log_offset, origin_topic="T"))
        assert r is not None
        self.assertEqual((r.code, r.ext_fields), (ResponseCode.SUCCESS, {}))
        (parked,) = self.b.messages(SCHEDULE_TOPIC, 2)
        p = parked.properties
        self.assertEqual((p[REAL_TOPIC], p[REAL_QID], p[DELAY]), (RETRY, "0", "3"))
        self.assertEqual((p[RETRY_TOPIC], p[ORIGIN_MESSAGE_ID]), ("T", m.offset_msg_id))
        self.assertEqual((p[RECONSUME_TIME], p[UNIQ_KEY], p["k"]), ("1", "U1", "v"))
        self.assertEqual(parked.reconsume_times, 1)
        self.assertEqual((parked.born_timestamp, parked.body), (m.born_timestamp, b"payload"))
        retry = self.b.broker.topics.select(RETRY)
        assert retry is not None
        self.assertEqual((retry.read_queue_nums, retry.perm), (1, 6))
        self.clock.advance(10)
        (again,) = self.b.messages(RETRY, 0)
        self.assertEqual((again.body, again.reconsume_times, again.tags), (b"payload", 1, "TagA"))
        self.assertNotIn(DELAY, again.properties)

    def test_always_failing_message_walks_16_retries_into_dlq(self) -> None:
        """Every retry waits 10 s, 30 s, 1 m ... 2 h; the 17th failure files it in %DLQ%G."""
        current = self.first()
        origin = current.offset_msg_id
        start = self.clock.seconds()
        waits = []
        for attempt in range(16):
            self.assertEqual(self.b.request(send_back(current.commit_log_offset)).code, 0)
            level = 3 + attempt
            delay_s = self.delays[level] / 1000
            waits.append(delay_s)
            self.clock.advance(delay_s - 0.001)
            self.assertEqual(len(self.b.messages(RETRY, 0)), attempt, attempt)
            self.clock.advance(0.001)
            current = self.b.messages(RETRY, 0)[-1]
            self.assertEqual(current.reconsume_times, attempt + 1)
            self.assertEqual(current.properties[ORIGIN_MESSAGE_ID], origin)
            self.assertEqual(current.properties[RETRY_TOPIC], "T")
        self.assertEqual((waits[0], waits[1], waits[2], waits[-1]), (10, 30, 60, 7200))
        self.assertEqual(self.b.request(send_back(current.commit_log_offset)).code, 0)
        (dead,) = self.b.messages(DLQ, 0)
        self.assertEqual((dead.body, dead.reconsume_times), (b"payload", 17))
        self.assertNotIn(DELAY, dead.properties)
        self.assertEqual(dead.properties[ORIGIN_MESSAGE_ID], origin)
        dlq = self.b.broker.topics.select(DLQ)
        assert dlq is not None
        self.assertEqual((dlq.read_queue_nums, dlq.write_queue_nums, dlq.perm), (1, 1, 6))
        self.assertEqual(len(self.b.messages(RETRY, 0)), 16)
        self.assertEqual(self.clock.seconds() - start, sum(waits))
        self.assertEqual(
            sum(waits), 10 + 30 + 60 * (1 + 2 + 3 + 4 + 5 + 6 + 7 + 8 + 9 + 10 + 20 + 30 + 60 + 120)
        )

    def test_negative_level_goes_to_dlq_at_once(self) -> None:
        """delayLevel -1 skips the retries."""
        m = self.first()
        self.b.request(send_back(m.commit_log_offset, delay_level=-1))
        self.assertEqual(len(self.b.messages(DLQ, 0)), 1)
        self.assertEqual(self.b.messages(SCHEDULE_TOPIC, 2), [])

    def test_explicit_level(self) -> None:
        """A positive delayLevel from the consumer is used as is."""
        m = self.first()
        self.b.request(send_back(m.commit_log_offset, delay_level=1))
        self.clock.advance(1)
        self.assertEqual(len(self.b.messages(RETRY, 0)), 1)

    def test_header_max_reconsume_times(self) -> None:
        """maxReconsumeTimes from the header (client version >= 121) replaces the group's 16."""
        m = self.first()
        self.b.request(send_back(m.commit_log_offset, max_times=1, delay_level=1))
        self.clock.advance(1)
        (retry,) = self.b.messages(RETRY, 0)
        self.b.request(send_back(retry.commit_log_offset, max_times=1))
        self.assertEqual(len(self.b.messages(DLQ, 0)), 1)

    def test_cpp_minimal_header_uses_group_setting(self) -> None:
        """cpp 1.0.1 (version 63) sends group/offset/delayLevel only; the group's max applies."""
        self.b.broker.groups.update(SubscriptionGroupConfig("G", retry_max_times=1))
        m = self.first()
        cmd = new_request(
            RequestCode.CONSUMER_SEND_MSG_BACK,
            {"group": "G", "offset": m.commit_log_offset, "delayLevel": 0},
        )
        cmd = attrs.evolve(cmd, version=63)
        self.assertEqual(self.b.request(cmd).code, 0)
        self.clock.advance(10)
        (retry,) = self.b.messages(RETRY, 0)
        cmd = attrs.evolve(
            new_request(
                RequestCode.CONSUMER_SEND_MSG_BACK,
                {
                    "group": "G",
                    "offset": retry.commit_log_offset,
                    "delayLevel": 0,
                    "maxReconsumeTimes": 16,
                },
            ),
            version=63,
        )
        self.b.request(cmd)
        self.assertEqual(len(self.b.messages(DLQ, 0)), 1)

    def test_unknown_offset(self) -> None:
        """An offset with no message answers SYSTEM_ERROR naming the lookup."""
        r = self.b.request(send_back(123456))
        assert r is not None
        self.assertEqual(r.code, ResponseCode.SYSTEM_ERROR)
        self.assertIn("look message by offset failed", r.remark or "")

    def test_retry_queues_disabled(self) -> None:
        """A group with retryQueueNums 0 gets SUCCESS and nothing is stored."""
        self.b.broker.groups.update(SubscriptionGroupConfig("G", retry_queue_nums=0))
        m = self.first()
        self.assertEqual(self.b.request(send_back(m.commit_log_offset)).code, 0)
        self.assertEqual(self.b.messages(SCHEDULE_TOPIC, 2), [])

    def test_compressed_body_kept_compressed(self) -> None:
        """A compressed original is copied with its compressed body and sysFlag."""
        import zlib

        self.b.send("T", zlib.compress(b"z" * 500), {}, sys_flag=1)
        (m,) = self.b.messages("T", 0)
        self.b.request(send_back(m.commit_log_offset, delay_level=1))
        self.clock.advance(1)
        (retry,) = self.b.messages(RETRY, 0)
        self.assertEqual((retry.body, retry.sys_flag & 1), (b"z" * 500, 1))

    def test_client_resend_with_delay_parked(self) -> None:
        """The Java fallback (a plain send to %RETRY%G with DELAY) is parked and delivered too."""
        r = self.b.send(RETRY, b"again", {DELAY: "3", RETRY_TOPIC: "T"}, reconsume_times=1)
        self.assertEqual(r.code, 0)
        self.assertEqual(len(self.b.messages(SCHEDULE_TOPIC, 2)), 1)
        self.clock.advance(10)
        self.assertEqual([m.body for m in self.b.messages(RETRY, 0)], [b"again"])


class SendBackVectorTests(SynchronousTestCase):
    """The recorded Java and ali-ons send-backs, replayed: answers and stored records."""

    def setUp(self) -> None:
        self.clock = new_clock()
        self.clock.advance(CAPTURE_MS / 1000 - self.clock.seconds())
        self.b = GuaranteeBroker(self, self.clock, make_root(self), listen_port=40911)
        self.addCleanup(self.b.stop)

    def check(self, ours: RemotingCommand | None, recorded_name: str) -> None:
        recorded = frame(recorded_name)
        assert ours is not None
        self.assertEqual((ours.code, ours.opaque), (recorded.code, recorded.opaque))
        self.assertEqual(ours.ext_fields, recorded.ext_fields)
        self.assertTrue(ours.is_response)

    def java_record(self, pos: int) -> MessageExt:
        return decode_message(
            load_hex("store/commitlog-00000000000000000000.first-8299-bytes.hex"), pos
        )

    def test_java(self) -> None:
        """Java's send-back of TopicJ's first message: same answer, same parked record."""
        self.b.request(frame("java-send-v2.req.hex"))
        ours = self.b.request(frame("java-consumer-send-msg-back.req.hex"))
        self.check(ours, "java-consumer-send-msg-back.resp.hex")
        (parked,) = self.b.messages(SCHEDULE_TOPIC, 2)
        theirs = self.java_record(4202)
        expected = {k: v for k, v in theirs.properties.items() if k != WAIT}
        expected[RECONSUME_TIME] = "1"
        self.assertEqual(parked.properties, expected)
        self.assertEqual(
            (parked.topic, parked.queue_id, parked.reconsume_times, parked.body),
            (theirs.topic, theirs.queue_id, theirs.reconsume_times, theirs.body),
        )
        self.assertEqual(parked.born_timestamp, theirs.born_timestamp)
        self.clock.advance(10)
        (retry,) = self.b.messages("%RETRY%CG_JAVA", 0)
        delivered = self.java_record(4567)
        self.assertEqual(retry.body, delivered.body)
        self.assertEqual(retry.reconsume_times, delivered.reconsume_times)

    def test_alions(self) -> None:
        """ali-ons' send-back (typed header, version 121) gets the recorded answer."""
        self.b.request(frame("alions-send-v2.req.hex"))
        (m,) = self.b.all_messages("TopicN")
        request = frame("alions-consumer-send-msg-back.req.hex")
        request.ext_fields["offset"] = str(m.commit_log_offset)
        ours = self.b.request(request)
        self.check(ours, "alions-consumer-send-msg-back.resp.hex")
        (parked,) = self.b.messages(SCHEDULE_TOPIC, 2)
        theirs = self.java_record(5463)
        self.assertEqual(parked.properties[REAL_TOPIC], theirs.properties[REAL_TOPIC])
        self.assertEqual(parked.properties[RETRY_TOPIC], "TopicN")
        self.assertEqual(parked.properties[ORIGIN_MESSAGE_ID], m.offset_msg_id)
