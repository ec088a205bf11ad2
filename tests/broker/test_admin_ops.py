"""The admin codes of ``rmq.broker.admin_ops``: request/response shapes as a 4.9.7 broker answers
them (checked against AdminBrokerProcessor's code, there are no recorded vectors for these), on a
broker prepared with real sends, pulls, heartbeats and offsets."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import Any

from twisted.internet.defer import Deferred, succeed

from rmq.broker.admin_ops import (
    LONG_MAX,
    ConsumeAdminProcessor,
    StatsSampler,
    java_time_text,
    system_topics,
)
from rmq.broker.topic import TRANS_CHECK_MAX_TIME_TOPIC, TRANS_HALF_TOPIC
from rmq.common import fastjson
from rmq.common.message import TRANSACTION_CHECK_TIMES, MessageSysFlag, decode_messages
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_request, new_response
from rmq.store.memory import MemoryMessageStore
from tests.broker.support import FakeConnection
from tests.broker.test_admin import CAPTURE_MS, AdminTestBase, frame, mq_table
from tests.broker.test_transaction import TransactionTestsBase


class StatusAnswering(FakeConnection):
    """A consumer connection answering GET_CONSUMER_STATUS_FROM_CLIENT with its queue offsets."""

    def __init__(self, address: str, offset: int) -> None:
        super().__init__(address)
        self.offset = offset

    def invoke(self, command: RemotingCommand, timeout: float) -> Deferred[RemotingCommand]:
        self.invoked.append(command)
        key = fastjson.ObjectKey.of(brokerName="broker-a", queueId=0, topic="TopicJ")
        body = fastjson.dumps({"messageQueueTable": {key: self.offset}})
        return succeed(new_response(command, body=body))


class OpsTestBase(AdminTestBase):
    """AdminTestBase plus helpers for offsets, heartbeats and pulls."""

    def prepare(self) -> None:
        """TopicJ with 3/4/1/1 messages; CG_JAVA at 3/3/1/1, CG_B at 1/1/1/1."""
        for qid, n in ((0, 3), (1, 4), (2, 1), (3, 1)):
            self.send_java(qid, n)
        for qid, offset in enumerate((3, 3, 1, 1)):
            self.broker.offsets.commit_offset("CG_JAVA", "TopicJ", qid, offset)
            self.broker.offsets.commit_offset("CG_B", "TopicJ", qid, 1)

    def pull(self, queue_id: int = 0, offset: int = 0) -> RemotingCommand:
        """A recorded Java pull of CG_JAVA on TopicJ (after its heartbeat)."""
        self.replay("java-heartbeat-consumer.req.hex")
        pull = frame("java-pull.req.hex")
        pull.ext_fields.update(
            queueId=str(queue_id), queueOffset=str(offset), subVersion="1795295147659"
        )
        response = self.dispatch(pull)
        self.assertEqual(response.code, 0, response.remark)
        return response  # type: ignore[no-any-return]

    @property
    def sampler(self) -> StatsSampler:
        processor = self.broker.dispatcher.processor_for(RequestCode.VIEW_BROKER_STATS_DATA)
        sampler = getattr(processor, "sampler", None)
        assert isinstance(sampler, StatsSampler)
        return sampler


class ConsumeTimeSpanTests(OpsTestBase):
    def test_time_span(self) -> None:
        """QUERY_CONSUME_TIME_SPAN: one QueueTimeSpan per write queue with store times and the
        delay of the first unconsumed message."""
        self.prepare()
        self.clock.advance(5)
        response = self.request(
            RequestCode.QUERY_CONSUME_TIME_SPAN, {"topic": "TopicJ", "group": "CG_JAVA"}
        )
        self.assertEqual(response.code, 0)
        spans = fastjson.loads(response.body)["consumeTimeSpanSet"]
        self.assertEqual([s["messageQueue"]["queueId"] for s in spans], [0, 1, 2, 3])
        q0, q1 = spans[0], spans[1]
        self.assertEqual(
            sorted(q0),
            [
                "consumeTimeStamp",
                "consumeTimeStampStr",
                "delayTime",
                "maxTimeStamp",
                "maxTimeStampStr",
                "messageQueue",
                "minTimeStamp",
                "minTimeStampStr",
            ],
        )
        self.assertEqual(
            q0["messageQueue"], {"brokerName": "broker-a", "queueId": 0, "topic": "TopicJ"}
        )
        self.assertEqual((q0["minTimeStamp"], q0["maxTimeStamp"]), (CAPTURE_MS, CAPTURE_MS))
        self.assertEqual(q0["consumeTimeStamp"], CAPTURE_MS)
        self.assertEqual(q0["delayTime"], 0)  # all 3 consumed
        self.assertEqual(q1["delayTime"], 5000)  # 1 of 4 left, stored 5 s ago
        self.assertEqual(q0["minTimeStampStr"], java_time_text(CAPTURE_MS))
        self.assertRegex(q0["minTimeStampStr"], r"^\d{4}-\d\d-\d\d#\d\d:\d\d:\d\d:000$")

    def test_time_span_unknown_topic(self) -> None:
        """An unknown topic answers TOPIC_NOT_EXIST with Java's remark."""
        response = self.request(
            RequestCode.QUERY_CONSUME_TIME_SPAN, {"topic": "Nope", "group": "G"}
        )
        self.assertEqual((response.code, response.remark), (17, "topic[Nope] not exist"))


class OffsetOpsTests(OpsTestBase):
    def test_correction_offset(self) -> None:
        """QUERY_CORRECTION_OFFSET: the minimum offset of the other groups per queue, Long.MAX
        where the compare group is behind it; unquoted int keys like fastjson."""
        self.prepare()
        response = self.request(
            RequestCode.QUERY_CORRECTION_OFFSET, {"topic": "TopicJ", "compareGroup": "CG_JAVA"}
        )
        self.assertEqual(response.code, 0)
        self.assertEqual(response.body, b'{"correctionOffsets":{0:1,1:1,2:1,3:1}}')
        response = self.request(
            RequestCode.QUERY_CORRECTION_OFFSET,
            {"topic": "TopicJ", "compareGroup": "CG_B", "filterGroups": "CG_B"},
        )
        table = fastjson.loads(response.body)["correctionOffsets"]
        self.assertEqual(
            {int(k): v for k, v in table.items()}, {0: LONG_MAX, 1: LONG_MAX, 2: 1, 3: 1}
        )
        # Unlike Java, filtering does not delete the filtered group's offsets.
        self.assertEqual(self.broker.offsets.query_offset("CG_B", "TopicJ", 0), 1)

    def test_clone_group_offset(self) -> None:
        """CLONE_GROUP_OFFSET copies a topic's offsets (all the group's topics when blank)."""
        self.prepare()
        response = self.request(
            RequestCode.CLONE_GROUP_OFFSET,
            {"srcGroup": "CG_JAVA", "destGroup": "CG_NEW", "topic": "TopicJ", "offline": False},
        )
        self.assertEqual((response.code, response.remark), (0, None))
        self.assertEqual(
            self.broker.offsets.query_offsets("CG_NEW", "TopicJ"), {0: 3, 1: 3, 2: 1, 3: 1}
        )
        self.request(RequestCode.CLONE_GROUP_OFFSET, {"srcGroup": "CG_B", "destGroup": "CG_ALL"})
        self.assertEqual(
            self.broker.offsets.query_offsets("CG_ALL", "TopicJ"), {0: 1, 1: 1, 2: 1, 3: 1}
        )

    def test_clone_skips_unsubscribed_topic_of_online_group(self) -> None:
        """An online source group that does not subscribe to the topic is skipped unless
        ``offline``; an unknown topic is skipped."""
        self.prepare()
        self.replay("java-heartbeat-consumer.req.hex")  # CG_JAVA subscribes TopicJ + retry
        self.broker.topics.create_topic_if_absent("Other", 1)
        self.broker.offsets.commit_offset("CG_JAVA", "Other", 0, 7)
        fields: dict[str, object] = {"srcGroup": "CG_JAVA", "destGroup": "D", "topic": "Other"}
        self.request(RequestCode.CLONE_GROUP_OFFSET, fields)
        self.assertEqual(self.broker.offsets.query_offsets("D", "Other"), {})
        self.request(RequestCode.CLONE_GROUP_OFFSET, {**fields, "offline": True})
        self.assertEqual(self.broker.offsets.query_offsets("D", "Other"), {0: 7})
        self.request(RequestCode.CLONE_GROUP_OFFSET, {**fields, "topic": "Missing"})
        self.assertEqual(self.broker.offsets.query_offsets("D", "Missing"), {})


class BrokerConsumeStatsTests(OpsTestBase):
    def test_broker_consume_stats(self) -> None:
        """GET_BROKER_CONSUME_STATS: per subscription group a ConsumeStats per topic with
        offsets, the total diff and the broker address; isOrder keeps ordered topics only."""
        self.prepare()
        for group in ("CG_JAVA", "CG_B", "CG_IDLE"):
            self.broker.groups.find_or_create(group)
        response = self.request(RequestCode.GET_BROKER_CONSUME_STATS, {"isOrder": False})
        self.assertEqual(response.code, 0)
        body = fastjson.loads(response.body)
        self.assertEqual(body["brokerAddr"], self.broker.identity.broker_addr)
        by_group = {g: stats for entry in body["consumeStatsList"] for g, stats in entry.items()}
        self.assertEqual(by_group["CG_IDLE"], [])
        (java,) = by_group["CG_JAVA"]
        table = mq_table(fastjson.dumps(java))
        self.assertEqual(table[("TopicJ", "broker-a", 1)]["brokerOffset"], 4)
        self.assertEqual(table[("TopicJ", "broker-a", 1)]["consumerOffset"], 3)
        self.assertEqual(table[("TopicJ", "broker-a", 1)]["lastTimestamp"], CAPTURE_MS)
        self.assertEqual(java["consumeTps"], 0.0)
        # CG_JAVA lags 1 (queue 1), CG_B lags 2 + 3 + 0 + 0.
        self.assertEqual(body["totalDiff"], 6)
        ordered = self.request(RequestCode.GET_BROKER_CONSUME_STATS, {"isOrder": True})
        body = fastjson.loads(ordered.body)
        self.assertEqual(body["totalDiff"], 0)
        self.assertTrue(all(s == [] for e in body["consumeStatsList"] for s in e.values()))

    def test_consume_tps_from_stats_items(self) -> None:
        """consumeTps is the minute rate of the group's GROUP_GET_NUMS item on the topic."""
        self.prepare()
        self.broker.groups.find_or_create("CG_JAVA")
        self.pull()
        self.clock.advance(2)
        body = fastjson.loads(
            self.request(RequestCode.GET_BROKER_CONSUME_STATS, {"isOrder": False}).body
        )
        by_group = {g: s for e in body["consumeStatsList"] for g, s in e.items()}
        self.assertGreater(by_group["CG_JAVA"][0]["consumeTps"], 0.0)


class StatsDataTests(OpsTestBase):
    def test_missing_item(self) -> None:
        """An item without data answers SYSTEM_ERROR with Java's remark."""
        response = self.request(
            RequestCode.VIEW_BROKER_STATS_DATA, {"statsName": "TOPIC_PUT_NUMS", "statsKey": "T"}
        )
        self.assertEqual(
            (response.code, response.remark), (1, "The stats <TOPIC_PUT_NUMS> <T> not exist")
        )

    def test_topic_put_windows(self) -> None:
        """TOPIC_PUT_NUMS: minute, hour and day sums and rates from real puts."""
        self.send_java(0, 3)
        self.clock.advance(10)
        self.stats.maybe_sample()
        self.clock.advance(110)
        self.stats.maybe_sample()
        self.send_java(1, 2)
        self.clock.advance(10)
        response = self.request(
            RequestCode.VIEW_BROKER_STATS_DATA,
            {"statsName": "TOPIC_PUT_NUMS", "statsKey": "TopicJ"},
        )
        self.assertEqual(response.code, 0)
        data = fastjson.loads(response.body)
        self.assertEqual(sorted(data), ["statsDay", "statsHour", "statsMinute"])
        self.assertEqual(data["statsMinute"]["sum"], 2)  # the puts of the last minute
        self.assertAlmostEqual(data["statsMinute"]["tps"], 2 / 60)
        self.assertEqual(data["statsHour"]["sum"], 5)  # since boot
        self.assertEqual(data["statsDay"]["sum"], 5)
        self.assertAlmostEqual(data["statsDay"]["tps"], 5 / 130)
        self.assertEqual(data["statsDay"]["avgpt"], 1.0)
        self.assertTrue(response.body.startswith(b'{"statsDay":{"avgpt":1.0,"sum":5,"tps":'))

    def test_group_get_and_broker_items(self) -> None:
        """GROUP_GET_NUMS/SIZE are keyed topic@group; BROKER_PUT/GET_NUMS by cluster name."""
        self.send_java(0, 3)
        self.pull()
        self.clock.advance(1)
        items = {}
        for name, key in (
            ("GROUP_GET_NUMS", "TopicJ@CG_JAVA"),
            ("GROUP_GET_SIZE", "TopicJ@CG_JAVA"),
            ("BROKER_PUT_NUMS", "DefaultCluster"),
            ("BROKER_GET_NUMS", "DefaultCluster"),
        ):
            response = self.request(
                RequestCode.VIEW_BROKER_STATS_DATA, {"statsName": name, "statsKey": key}
            )
            self.assertEqual(response.code, 0, (name, response.remark))
            items[name] = fastjson.loads(response.body)["statsMinute"]
        self.assertEqual(items["GROUP_GET_NUMS"]["sum"], 3)
        self.assertEqual(items["GROUP_GET_NUMS"]["avgpt"], 3.0)  # 3 messages in one pull
        self.assertGreater(items["GROUP_GET_SIZE"]["sum"], 3 * 100)
        self.assertEqual(items["BROKER_PUT_NUMS"]["sum"], 3)
        self.assertEqual(items["BROKER_PUT_NUMS"]["avgpt"], 0.0)
        self.assertEqual(items["BROKER_GET_NUMS"]["sum"], 3)
        wrong = self.request(
            RequestCode.VIEW_BROKER_STATS_DATA,
            {"statsName": "BROKER_PUT_NUMS", "statsKey": "OtherCluster"},
        )
        self.assertEqual(wrong.code, 1)

    def test_snapshots_bounded(self) -> None:
        """Snapshots are spaced by their window's step and old ones are dropped."""
        self.send_java(0)
        for _ in range(3000):
            self.clock.advance(1)
            self.sampler.maybe_snapshot()
        series = self.sampler._series
        self.assertLessEqual(len(series["statsMinute"]), 8)
        self.assertLessEqual(len(series["statsHour"]), 8)
        self.assertEqual(len(series["statsDay"]), 1)


class ConsumerStatusTests(OpsTestBase):
    def test_not_online(self) -> None:
        """A group without live consumers answers Java's SYSTEM_ERROR remark."""
        response = self.request(
            RequestCode.INVOKE_BROKER_TO_GET_CONSUMER_STATUS, {"topic": "TopicJ", "group": "CG_X"}
        )
        self.assertEqual(
            (response.code, response.remark),
            (1, "No Any Consumer online in the consumer group: [CG_X]"),
        )

    def test_relays_to_consumers(self) -> None:
        """INVOKE_BROKER_TO_GET_CONSUMER_STATUS asks each live consumer (221) and answers the
        GetConsumerStatusBody keyed by client id; clientAddr picks one client."""
        one = StatusAnswering("127.0.0.1:1001", 5)
        self.replay("java-heartbeat-consumer.req.hex", one)
        two = StatusAnswering("127.0.0.1:1002", 9)
        heartbeat = frame("java-heartbeat-consumer.req.hex")
        heartbeat.body = heartbeat.body.replace(b"capC", b"capD")
        self.dispatch(heartbeat, two)
        fields: dict[str, object] = {"topic": "TopicJ", "group": "CG_JAVA"}
        response = self.request(RequestCode.INVOKE_BROKER_TO_GET_CONSUMER_STATUS, fields)
        self.assertEqual(response.code, 0)
        (asked,) = one.invoked
        self.assertEqual(asked.code, RequestCode.GET_CONSUMER_STATUS_FROM_CLIENT)
        self.assertEqual(asked.ext_fields, {"topic": "TopicJ", "group": "CG_JAVA"})
        body = fastjson.loads(response.body)
        self.assertEqual(body["messageQueueTable"], {})
        tables = body["consumerTable"]
        self.assertEqual(sorted(tables), ["192.0.2.2@capC", "192.0.2.2@capD"])
        offsets = {c: list(t.values()) for c, t in tables.items()}
        self.assertEqual(offsets, {"192.0.2.2@capC": [5], "192.0.2.2@capD": [9]})
        key = next(iter(tables["192.0.2.2@capC"]))
        self.assertEqual(key.as_dict(), {"brokerName": "broker-a", "queueId": 0, "topic": "TopicJ"})
        only = self.request(
            RequestCode.INVOKE_BROKER_TO_GET_CONSUMER_STATUS,
            {**fields, "clientAddr": "192.0.2.2@capD"},
        )
        self.assertEqual(list(fastjson.loads(only.body)["consumerTable"]), ["192.0.2.2@capD"])
        self.assertEqual(len(one.invoked), 1)

    def test_failing_consumer_is_skipped(self) -> None:
        """A consumer that answers an error (as rmq's own client does) is left out."""
        self.replay("java-heartbeat-consumer.req.hex")  # FakeConnection answers empty bodies
        response = self.request(
            RequestCode.INVOKE_BROKER_TO_GET_CONSUMER_STATUS,
            {"topic": "TopicJ", "group": "CG_JAVA"},
        )
        self.assertEqual((response.code, fastjson.loads(response.body)["consumerTable"]), (0, {}))


class ProducerInfoTests(OpsTestBase):
    def test_all_producer_info(self) -> None:
        """GET_ALL_PRODUCER_INFO: ProducerTableInfo with Java's ProducerInfo fields."""
        empty = self.request(RequestCode.GET_ALL_PRODUCER_INFO)
        self.assertEqual((empty.code, empty.body), (0, b'{"data":{}}'))
        self.replay("java-heartbeat-producer.req.hex")
        body = fastjson.loads(self.request(RequestCode.GET_ALL_PRODUCER_INFO).body)
        groups = body["data"]
        self.assertIn("CLIENT_INNER_PRODUCER", groups)
        (group,) = set(groups) - {"CLIENT_INNER_PRODUCER"}
        (info,) = groups[group]
        self.assertEqual(
            info,
            {
                "clientId": "192.0.2.2@capP",
                "language": "JAVA",
                "lastUpdateTimestamp": CAPTURE_MS,
                "remoteIP": "/127.0.0.1:56884",
                "version": 407,
            },
        )


class RecordingStore(MemoryMessageStore):
    """A memory store offering the optional maintenance methods, recording calls."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.calls: list[tuple[str, Any]] = []

    def delete_topics(self, topics: AbstractSet[str]) -> Deferred[int]:
        self.calls.append(("delete_topics", set(topics)))
        return super().delete_topics(topics)

    def clean_expired_consume_queues(self, live_topics: AbstractSet[str]) -> Deferred[int]:
        self.calls.append(("clean_expired_consume_queues", set(live_topics)))
        return super().clean_expired_consume_queues(live_topics)

    def delete_expired_files(self, now: float, force: bool = False) -> int:
        self.calls.append(("delete_expired_files", (now, force)))
        return 0


class StoreOpsTests(OpsTestBase):
    def setUp(self) -> None:
        super().setUp()
        self.recording = RecordingStore(self.clock)
        self.store = self.recording
        self.successResultOf(self.store.start())
        self.broker = self.build()

    def test_system_topic_list(self) -> None:
        """GET_SYSTEM_TOPIC_LIST_FROM_BROKER: TopicValidator's set plus the cluster, broker and
        reply topics the broker adds."""
        response = self.request(RequestCode.GET_SYSTEM_TOPIC_LIST_FROM_BROKER)
        topics = fastjson.loads(response.body)["topicList"]
        self.assertEqual(topics, system_topics(self.config))
        for name in (
            "TBW102",
            "SCHEDULE_TOPIC_XXXX",
            "RMQ_SYS_TRANS_HALF_TOPIC",
            "RMQ_SYS_TRACE_TOPIC",
            "DefaultCluster",
            "broker-a",
            "DefaultCluster_REPLY_TOPIC",
            "OFFSET_MOVED_EVENT",
        ):
            self.assertIn(name, topics)
        self.assertNotIn("TopicJ", topics)

    def test_clean_unused_topic(self) -> None:
        """CLEAN_UNUSED_TOPIC deletes the queues of topics without a topic config, never a
        system topic's, and answers 0."""
        self.send_java(0)
        self.send_java(0, topic="Gone")
        self.broker.topics.delete_topic_config("Gone")
        response = self.request(RequestCode.CLEAN_UNUSED_TOPIC)
        self.assertEqual((response.code, response.remark), (0, None))
        self.assertEqual(self.recording.calls, [("delete_topics", {"Gone"})])
        self.assertNotIn("Gone", self.store.topic_queues())
        self.assertIn("TopicJ", self.store.topic_queues())

    def test_clean_expired_cq_and_commitlog(self) -> None:
        """CLEAN_EXPIRED_CONSUMEQUEUE runs the store's cleaner with the topics that have a
        config (or are system topics) as live, dropping the others' queues; DELETE_EXPIRED_COMMITLOG
        runs the file cleaner (unforced, now); both answer 0, also on a store without
        ``delete_expired_files``."""
        self.send_java(0)
        self.send_java(0, topic="Gone")
        self.broker.topics.delete_topic_config("Gone")
        self.assertEqual(self.request(RequestCode.CLEAN_EXPIRED_CONSUMEQUEUE).code, 0)
        self.assertEqual(self.request(RequestCode.DELETE_EXPIRED_COMMITLOG).code, 0)
        self.assertEqual(
            self.recording.calls,
            [
                ("clean_expired_consume_queues", {"TopicJ"}),
                ("delete_expired_files", (CAPTURE_MS / 1000, False)),
            ],
        )
        self.assertEqual(list(self.store.topic_queues()), ["TopicJ"])
        self.store = MemoryMessageStore(self.clock)
        self.successResultOf(self.store.start())
        self.broker = self.build()
        for code in (
            RequestCode.CLEAN_EXPIRED_CONSUMEQUEUE,
            RequestCode.DELETE_EXPIRED_COMMITLOG,
            RequestCode.CLEAN_UNUSED_TOPIC,
        ):
            self.assertEqual(self.request(code).code, 0)

    def test_resume_check_half_message(self) -> None:
        """RESUME_CHECK_HALF_MESSAGE puts the message at the offset id back into the half topic
        with TRANSACTION_CHECK_TIMES=0."""
        send = frame("java-send-v2.req.hex")
        sent = self.dispatch(send)
        msg_id = sent.ext_fields["msgId"]
        response = self.request(RequestCode.RESUME_CHECK_HALF_MESSAGE, {"msgId": msg_id})
        self.assertEqual((response.code, response.remark), (0, None))
        got = self.successResultOf(self.store.get_messages(TRANS_HALF_TOPIC, 0, 0, 8))
        (half,) = decode_messages(got.body())
        self.assertEqual(half.properties[TRANSACTION_CHECK_TIMES], "0")
        self.assertEqual(
            half.body,
            decode_messages(self.successResultOf(self.store.look_message_by_offset(0)) or b"")[
                0
            ].body,
        )

    def test_resume_bad_id(self) -> None:
        """A malformed or dangling offset id answers Java's SYSTEM_ERROR remark."""
        for msg_id in ("nonsense", "7F0000010000A49D00000000FFFFFFFF"):
            response = self.request(RequestCode.RESUME_CHECK_HALF_MESSAGE, {"msgId": msg_id})
            self.assertEqual(
                (response.code, response.remark),
                (
                    1,
                    "Exception was thrown when putting message back to RMQ_SYS_TRANS_HALF_TOPIC.",
                ),
            )
        self.flushLoggedErrors()


class AclAndUnsupportedTests(OpsTestBase):
    def test_acl_codes_as_acl_disabled(self) -> None:
        """With ACL disabled 4.9.7 fails 50/51/53 with their *_FAILED codes and no remark and
        never answers 52/54."""
        cases: tuple[tuple[int, dict[str, object], int], ...] = (
            (RequestCode.UPDATE_AND_CREATE_ACL_CONFIG, {"accessKey": "ak"}, 209),
            (RequestCode.DELETE_ACL_CONFIG, {"accessKey": "ak"}, 210),
            (
                RequestCode.UPDATE_GLOBAL_WHITE_ADDRS_CONFIG,
                {"globalWhiteAddrs": "10.*", "aclFileFullPath": "/x"},
                211,
            ),
        )
        for code, fields, expected in cases:
            response = self.request(code, dict(fields))
            self.assertEqual((response.code, response.remark), (expected, None))
        for code in (
            RequestCode.GET_BROKER_CLUSTER_ACL_INFO,
            RequestCode.GET_BROKER_CLUSTER_ACL_CONFIG,
        ):
            self.assertIsNone(self.request(code))

    def test_codes_java_does_not_handle(self) -> None:
        """Codes a 4.9.7 broker does not handle still answer REQUEST_CODE_NOT_SUPPORTED."""
        for code in (13, 22, 23, 27, 214):
            response = self.dispatch(new_request(code))
            self.assertEqual(response.code, ResponseCode.REQUEST_CODE_NOT_SUPPORTED, code)

    def test_processors_registered(self) -> None:
        """Every new code is served by the admin_ops processors."""
        processor = self.broker.dispatcher.processor_for(RequestCode.QUERY_CONSUME_TIME_SPAN)
        self.assertIsInstance(processor, ConsumeAdminProcessor)
        for code in (
            303,
            305,
            306,
            308,
            314,
            315,
            316,
            317,
            223,
            323,
            328,
            329,
            50,
            51,
            52,
            53,
            54,
        ):
            self.assertIsNotNone(self.broker.dispatcher.processor_for(code), code)


class ResumeAfterDiscardTests(TransactionTestsBase):
    def test_resumed_half_is_checked_and_committed(self) -> None:
        """A half message discarded after 15 checks, resumed by the offset id of its
        TRANS_CHECK_MAX_TIME_TOPIC copy, is checked again 6 s later and can be committed."""
        self.half()
        for _ in range(16 * 60):
            self.clock.advance(1)
        self.assertEqual(len(self.checks()), 15)
        (given_up,) = self.b.messages(TRANS_CHECK_MAX_TIME_TOPIC, 0)
        response = self.b.request(
            new_request(RequestCode.RESUME_CHECK_HALF_MESSAGE, {"msgId": given_up.offset_msg_id})
        )
        self.assertEqual((response.code, response.remark), (0, None))
        self.clock.advance(5)
        self.assertEqual(len(self.checks()), 15)
        self.clock.advance(1)
        self.assertEqual(len(self.checks()), 16)
        self.answer(self.checks()[-1], MessageSysFlag.TRANSACTION_COMMIT_TYPE)
        self.assertEqual([m.body for m in self.b.all_messages("TopicTx")], [b"tx"])


class QueryConsumeQueueJavaShapeTests(OpsTestBase):
    def test_offline_group_and_missing_index(self) -> None:
        """QUERY_CONSUME_QUEUE for an offline group still lists the units, with Java's
        filterData note; an index past the end answers 0 with Java's remark and no body."""
        self.send_java(0, 2)
        fields: dict[str, object] = {
            "topic": "TopicJ",
            "queueId": 0,
            "index": 0,
            "count": 5,
            "consumerGroup": "CG_OFF",
        }
        response = self.request(RequestCode.QUERY_CONSUME_QUEUE, fields)
        self.assertEqual(response.code, 0)
        body = fastjson.loads(response.body)
        self.assertEqual(list(body), ["filterData", "maxQueueIndex", "minQueueIndex", "queueData"])
        self.assertEqual(body["filterData"], "CG_OFF@TopicJ is not online!")
        self.assertEqual(len(body["queueData"]), 2)
        response = self.request(RequestCode.QUERY_CONSUME_QUEUE, {**fields, "index": 7})
        self.assertEqual(
            (response.code, response.remark, response.body),
            (0, "Index 7 of 0@TopicJ is not exist!", b""),
        )
