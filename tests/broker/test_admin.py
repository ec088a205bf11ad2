"""Admin processors: replay of the ``admin-*``, ``probe-*`` and slave-sync vectors against a broker
prepared with similar state, compared in meaning with the recorded Java 4.9.7 answers, plus the
behaviour the vectors do not show (live consumers told of resets, config updates, relays)."""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rmq.broker.admin import DEFAULT_REMARK, LIVE_CONFIG_KEYS
from rmq.broker.config import BrokerConfig
from rmq.broker.service import Broker, build_broker
from rmq.broker.stats import BrokerStats
from rmq.common import fastjson
from rmq.common.atomicfile import write_atomic
from rmq.common.config import parse_properties
from rmq.common.message import decode_messages
from rmq.remoting.codec import decode
from rmq.remoting.codes import LanguageCode, RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_request, new_response
from rmq.store.memory import MemoryMessageStore
from tests.broker.support import FakeConnection, FakeNameServerClient
from tests.support.vectors import load_frame

CAPTURE_MS = 1795295100000


def frame(name: str) -> RemotingCommand:
    """A vector decoded (without its length word)."""
    return decode(load_frame(name)[4:])


def mq_table(body: bytes) -> dict[tuple[str, str, int], Any]:
    """A MessageQueue-keyed ``offsetTable`` as ``{(topic, brokerName, queueId): value}``."""
    table = fastjson.loads(body)["offsetTable"]
    out = {}
    for key, value in table.items():
        d = key.as_dict()
        out[(d["topic"], d["brokerName"], int(d["queueId"]))] = value
    return out


class AdminTestBase(SynchronousTestCase):
    """A broker on the memory store and a Clock at the capture time."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(CAPTURE_MS / 1000)
        self.root = self.mktemp()
        self.config = BrokerConfig(
            listen_port=40911,
            broker_ip1="127.0.0.1",
            store_path_root_dir=self.root,
            namesrv_addr="127.0.0.1:9876",
        )
        self.store = MemoryMessageStore(self.clock)
        self.successResultOf(self.store.start())
        self.namesrv = FakeNameServerClient()
        self.broker: Broker = self.build()
        self.conn = FakeConnection("127.0.0.1:56884")

    def build(self) -> Broker:
        broker = build_broker(self.config, self.clock, self.store, self.namesrv)
        self.store.add_arrival_listener(broker.hold.on_arrival)
        broker.stats.store_started(self.store.add_arrival_listener)
        return broker

    @property
    def stats(self) -> BrokerStats:
        stats = self.broker.stats
        assert isinstance(stats, BrokerStats)
        return stats

    def dispatch(self, request: RemotingCommand, conn: FakeConnection | None = None) -> Any:
        """Our response to ``request``."""
        return self.successResultOf(self.broker.dispatcher.dispatch(conn or self.conn, request))

    def replay(self, name: str, conn: FakeConnection | None = None) -> RemotingCommand:
        """Dispatch the request vector ``name`` and return our response."""
        ours = self.dispatch(frame(name), conn)
        assert ours is not None
        return ours  # type: ignore[no-any-return]

    def check(self, ours: RemotingCommand, recorded_name: str) -> RemotingCommand:
        """Same code, opaque, serialization and header keys; same remark for errors."""
        recorded = frame(recorded_name)
        self.assertEqual(ours.code, recorded.code, ours.remark)
        self.assertEqual(ours.opaque, recorded.opaque)
        self.assertTrue(ours.is_response)
        self.assertEqual(ours.serialize_type, recorded.serialize_type)
        self.assertEqual(set(ours.ext_fields), set(recorded.ext_fields))
        if recorded.code != 0:
            self.assertEqual(ours.remark, recorded.remark)
        return recorded

    def send_java(
        self, queue_id: int, n: int = 1, topic: str = "TopicJ", tag: str = "TagA"
    ) -> None:
        """Send ``n`` copies of the recorded Java message to ``topic``:``queue_id``."""
        for _ in range(n):
            request = frame("java-send-v2.req.hex")
            request.ext_fields["e"] = str(queue_id)
            request.ext_fields["b"] = topic
            request.ext_fields["i"] = request.ext_fields["i"].replace("TagA", tag)
            response = self.dispatch(request)
            self.assertEqual(response.code, 0, response.remark)

    def request(self, code: int, fields: dict[str, object] | None = None, body: bytes = b"") -> Any:
        return self.dispatch(new_request(code, fields, body))


class TopicVectorTests(AdminTestBase):
    def test_update_and_create_topic(self) -> None:
        """UPDATE_AND_CREATE_TOPIC creates TopicN as asked, answers 0 with Java's default remark
        and re-registers with the NameServers at once (oneway)."""
        self.broker.registration.active = True
        ours = self.replay("admin-update-and-create-topic.req.hex")
        recorded = self.check(ours, "admin-update-and-create-topic.resp.hex")
        self.assertEqual(ours.remark, recorded.remark)
        self.assertEqual(ours.remark, DEFAULT_REMARK)
        config = self.broker.topics.select("TopicN")
        assert config is not None
        self.assertEqual(
            (config.read_queue_nums, config.write_queue_nums, config.perm, config.order),
            (4, 4, 6, False),
        )
        self.clock.advance(0)
        self.assertEqual([c.code for _, c in self.namesrv.oneways], [RequestCode.REGISTER_BROKER])
        registered = fastjson.loads(self.namesrv.oneways[0][1].body)
        self.assertIn("TopicN", registered["topicConfigSerializeWrapper"]["topicConfigTable"])
        self.broker.registration.active = False

    def test_update_topic_refuses_system_topic(self) -> None:
        """A system topic or an illegal name cannot be created through the admin command."""
        for topic in ("SCHEDULE_TOPIC_XXXX", "DefaultCluster", "bad topic"):
            request = frame("admin-update-and-create-topic.req.hex")
            request.ext_fields["topic"] = topic
            response = self.dispatch(request)
            self.assertEqual(response.code, ResponseCode.SYSTEM_ERROR)
            self.assertIn(topic, response.remark)

    def test_delete_topic(self) -> None:
        """DELETE_TOPIC_IN_BROKER removes the topic config and keeps consumer offsets."""
        self.request(
            RequestCode.UPDATE_AND_CREATE_TOPIC,
            {"topic": "TopicDel", "readQueueNums": 2, "writeQueueNums": 2, "perm": 6},
        )
        self.broker.offsets.commit_offset("G", "TopicDel", 0, 1)
        self.assertIn("TopicDel", self.broker.topics)
        ours = self.replay("admin-delete-topic-in-broker.req.hex")
        self.check(ours, "admin-delete-topic-in-broker.resp.hex")
        self.assertNotIn("TopicDel", self.broker.topics)
        self.assertEqual(self.broker.offsets.query_offset("G", "TopicDel", 0), 1)

    def test_delete_topic_drops_consume_queues(self) -> None:
        """DELETE_TOPIC_IN_BROKER drops the topic's consume queues (the commit log keeps the
        records), and the next send to the topic starts at queue offset 0."""
        self.send_java(0, n=2)
        self.send_java(1)
        self.send_java(0, topic="Kept")
        self.assertEqual(self.store.get_max_offset_in_queue("TopicJ", 0), 2)
        phys = self.store.get_max_phy_offset()
        response = self.request(RequestCode.DELETE_TOPIC_IN_BROKER, {"topic": "TopicJ"})
        self.assertEqual(response.code, 0)
        self.assertNotIn("TopicJ", self.store.topic_queues())
        self.assertEqual(self.store.get_max_offset_in_queue("TopicJ", 0), 0)
        self.assertEqual(self.store.get_max_offset_in_queue("Kept", 0), 1)
        self.assertEqual(self.store.get_max_phy_offset(), phys)
        self.assertNotIn("TopicJ", self.stats.topic_puts)
        self.send_java(0)
        self.assertEqual(self.store.get_max_offset_in_queue("TopicJ", 0), 1)

    def test_get_all_topic_config(self) -> None:
        """GET_ALL_TOPIC_CONFIG lists the same system topics with the same configs as Java, and
        the topics created by traffic alike."""
        self.send_java(1)
        self.replay("cpp-send-message.req.hex")
        ours = self.replay("probe-get-all-topic-config.req.hex")
        recorded = self.check(ours, "probe-get-all-topic-config.resp.hex")
        mine = fastjson.loads(ours.body)
        theirs = fastjson.loads(recorded.body)
        self.assertEqual(set(mine), {"dataVersion", "topicConfigTable"})
        self.assertEqual(set(mine["dataVersion"]), {"counter", "timestamp"})
        common = set(mine["topicConfigTable"]) & set(theirs["topicConfigTable"])
        self.assertEqual(common, set(mine["topicConfigTable"]))
        self.assertIn("TopicJ", common)
        for topic in common:
            self.assertEqual(
                mine["topicConfigTable"][topic], theirs["topicConfigTable"][topic], topic
            )

    def test_topic_stats(self) -> None:
        """GET_TOPIC_STATS_INFO gives Java's min/max offsets per queue and the last store time."""
        for qid, n in ((0, 3), (1, 4), (2, 1), (3, 1)):
            self.send_java(qid, n)
        ours = self.replay("admin-get-topic-stats-info.req.hex")
        recorded = self.check(ours, "admin-get-topic-stats-info.resp.hex")
        mine, theirs = mq_table(ours.body), mq_table(recorded.body)
        self.assertEqual(set(mine), set(theirs))
        for key in theirs:
            self.assertEqual(mine[key]["maxOffset"], theirs[key]["maxOffset"])
            self.assertEqual(mine[key]["minOffset"], theirs[key]["minOffset"])
            self.assertEqual(mine[key]["lastUpdateTimestamp"], CAPTURE_MS)

    def test_topic_stats_unknown_topic(self) -> None:
        """An unknown topic answers TOPIC_NOT_EXIST."""
        response = self.request(RequestCode.GET_TOPIC_STATS_INFO, {"topic": "Nope"})
        self.assertEqual(response.code, ResponseCode.TOPIC_NOT_EXIST)

    def test_query_consume_queue(self) -> None:
        """QUERY_CONSUME_QUEUE returns the raw units (offset, size, tags code) of the queue."""
        self.send_java(0, 3, tag="TagB")
        ours = self.replay("admin-query-consume-queue.req.hex")
        recorded = self.check(ours, "admin-query-consume-queue.resp.hex")
        self.assertEqual(ours.remark, recorded.remark)
        mine, theirs = fastjson.loads(ours.body), fastjson.loads(recorded.body)
        self.assertEqual(mine["maxQueueIndex"], theirs["maxQueueIndex"])
        self.assertEqual(mine["minQueueIndex"], theirs["minQueueIndex"])
        self.assertEqual(len(mine["queueData"]), len(theirs["queueData"]))
        for unit, their_unit in zip(mine["queueData"], theirs["queueData"], strict=True):
            self.assertEqual(set(unit), set(their_unit))
            self.assertEqual((unit["tagsCode"], unit["eval"]), (2598920, False))
            record = self.successResultOf(self.store.look_message_by_offset(unit["physicOffset"]))
            assert record is not None
            self.assertEqual(len(record), unit["physicSize"])

    def test_query_consume_queue_evaluates_group_filter(self) -> None:
        """With a consumer group the units are evaluated against its subscription."""
        self.send_java(0, 1, tag="TagA")
        self.send_java(0, 1, tag="TagZ")
        self.replay("java-heartbeat-consumer.req.hex")
        response = self.request(
            RequestCode.QUERY_CONSUME_QUEUE,
            {"topic": "TopicJ", "queueId": 0, "index": 0, "count": 5, "consumerGroup": "CG_JAVA"},
        )
        body = fastjson.loads(response.body)
        self.assertEqual([u["eval"] for u in body["queueData"]], [True, False])
        self.assertEqual(body["subscriptionData"]["subString"], "TagA || TagB")

    def test_query_consume_queue_missing(self) -> None:
        """A queue that does not exist answers SYSTEM_ERROR naming it."""
        response = self.request(
            RequestCode.QUERY_CONSUME_QUEUE, {"topic": "Nope", "queueId": 1, "index": 0, "count": 1}
        )
        self.assertEqual((response.code, response.remark), (1, "1@Nope is not exist!"))


class GroupVectorTests(AdminTestBase):
    def prepare_offsets(self) -> None:
        """TopicJ with 3/4/1/1 messages, CG_JAVA at 3/3/1/1, one message in its retry topic."""
        for qid, n in ((0, 3), (1, 4), (2, 1), (3, 1)):
            self.send_java(qid, n)
        for qid, offset in enumerate((3, 3, 1, 1)):
            self.broker.offsets.commit_offset("CG_JAVA", "TopicJ", qid, offset)
            self.broker.offsets.commit_offset("CG_ORDER", "TopicJ", qid, offset)
        self.broker.topics.create_topic_if_absent("%RETRY%CG_JAVA", 1)
        self.send_java(0, 1, topic="%RETRY%CG_JAVA")
        self.broker.offsets.commit_offset("CG_JAVA", "%RETRY%CG_JAVA", 0, 0)

    def test_consume_stats(self) -> None:
        """GET_CONSUME_STATS: broker and consumer offsets per queue of every topic of the group."""
        self.prepare_offsets()
        ours = self.replay("admin-get-consume-stats.req.hex")
        recorded = self.check(ours, "admin-get-consume-stats.resp.hex")
        mine, theirs = mq_table(ours.body), mq_table(recorded.body)
        self.assertEqual(set(mine), set(theirs))
        for key, value in theirs.items():
            self.assertEqual(mine[key]["brokerOffset"], value["brokerOffset"], key)
            self.assertEqual(mine[key]["consumerOffset"], value["consumerOffset"], key)
            self.assertEqual(mine[key]["lastTimestamp"] > 0, value["lastTimestamp"] > 0, key)
        self.assertEqual(fastjson.loads(ours.body)["consumeTps"], 0.0)

    def test_consume_tps_counts_pulls(self) -> None:
        """consumeTps is the group's recent pull rate."""
        self.prepare_offsets()
        self.replay("java-heartbeat-consumer.req.hex")
        self.clock.advance(10)
        pull = frame("java-pull.req.hex")
        pull.ext_fields["queueOffset"] = "0"
        pull.ext_fields["subVersion"] = "1795295147659"
        self.assertEqual(self.dispatch(pull).code, 0)
        self.clock.advance(10)
        stats = fastjson.loads(
            self.request(RequestCode.GET_CONSUME_STATS, {"consumerGroup": "CG_JAVA"}).body
        )
        self.assertGreater(stats["consumeTps"], 0.0)

    def test_query_topic_consume_by_who(self) -> None:
        """QUERY_TOPIC_CONSUME_BY_WHO names the groups with offsets (and live subscriptions)."""
        self.prepare_offsets()
        ours = self.replay("admin-query-topic-consume-by-who.req.hex")
        recorded = self.check(ours, "admin-query-topic-consume-by-who.resp.hex")
        self.assertEqual(
            set(fastjson.loads(ours.body)["groupList"]),
            set(fastjson.loads(recorded.body)["groupList"]),
        )

    def test_consumer_connection_not_online(self) -> None:
        """GET_CONSUMER_CONNECTION_LIST of an offline group answers 206 with Java's remark."""
        ours = self.replay("admin-get-consumer-connection-list.req.hex")
        self.check(ours, "admin-get-consumer-connection-list.resp.hex")

    def test_consumer_connection_online(self) -> None:
        """An online group lists its connections and subscriptions (ConsumerConnection)."""
        self.replay("java-heartbeat-consumer.req.hex")
        response = self.request(
            RequestCode.GET_CONSUMER_CONNECTION_LIST, {"consumerGroup": "CG_JAVA"}
        )
        body = fastjson.loads(response.body)
        self.assertEqual(
            body["connectionSet"],
            [
                {
                    "clientAddr": "127.0.0.1:56884",
                    "clientId": "192.0.2.2@capC",
                    "language": "JAVA",
                    "version": 407,
                }
            ],
        )
        self.assertEqual(body["messageModel"], "CLUSTERING")
        self.assertEqual(body["subscriptionTable"]["TopicJ"]["subString"], "TagA || TagB")

    def test_producer_connection(self) -> None:
        """GET_PRODUCER_CONNECTION_LIST: Java's error for an unknown group, the list otherwise."""
        ours = self.replay("probe-get-producer-connection-list.req.hex")
        self.check(ours, "probe-get-producer-connection-list.resp.hex")
        self.replay("java-heartbeat-producer.req.hex")
        ours = self.replay("probe-get-producer-connection-list.req.hex")
        self.assertEqual(ours.code, 0)
        self.assertEqual(
            [c["clientId"] for c in fastjson.loads(ours.body)["connectionSet"]], ["192.0.2.2@capP"]
        )

    def test_update_and_get_subscription_groups(self) -> None:
        """UPDATE_AND_CREATE_SUBSCRIPTIONGROUP stores the body; the slave sync lists every group
        alike Java's."""
        self.check(
            self.replay("admin-update-subscription-group.req.hex"),
            "admin-update-subscription-group.resp.hex",
        )
        for name in ("java-heartbeat-consumer", "cpp-heartbeat", "alions-heartbeat"):
            self.replay(f"{name}.req.hex")
        self.broker.groups.find_or_create("CG_ORDER")
        ours = self.replay("broker-slave-get-all-subscriptiongroup-config.req.hex")
        recorded = self.check(ours, "broker-slave-get-all-subscriptiongroup-config.resp.hex")
        mine = fastjson.loads(ours.body)["subscriptionGroupTable"]
        theirs = fastjson.loads(recorded.body)["subscriptionGroupTable"]
        # Java also holds a "" group made by cpp's unregister; rmq ignores that group name.
        self.assertEqual(set(mine), set(theirs) - {""})
        for name, config in mine.items():
            self.assertEqual(config, theirs[name], name)

    def test_delete_subscription_group(self) -> None:
        """DELETE_SUBSCRIPTIONGROUP drops the group, and its offsets when asked."""
        self.replay("admin-update-subscription-group.req.hex")
        self.broker.offsets.commit_offset("CG_NEW", "T", 0, 5)
        response = self.request(
            RequestCode.DELETE_SUBSCRIPTIONGROUP, {"groupName": "CG_NEW", "removeOffset": True}
        )
        self.assertEqual(response.code, 0)
        self.assertIsNone(self.broker.groups.find("CG_NEW"))
        self.assertEqual(self.broker.offsets.query_offset("CG_NEW", "T", 0), -1)

    def test_all_consumer_offsets(self) -> None:
        """GET_ALL_CONSUMER_OFFSET encodes the table exactly as Java (unquoted queue ids)."""
        recorded = frame("broker-slave-get-all-consumer-offset.resp.hex")
        for key, queues in fastjson.loads(recorded.body)["offsetTable"].items():
            topic, _, group = key.rpartition("@")
            for qid, offset in queues.items():
                self.broker.offsets.commit_offset(group, topic, int(qid), offset)
        ours = self.replay("broker-slave-get-all-consumer-offset.req.hex")
        self.check(ours, "broker-slave-get-all-consumer-offset.resp.hex")
        self.assertEqual(fastjson.loads(ours.body), fastjson.loads(recorded.body))
        self.assertIn(b'"TopicJ@CG_JAVA":{0:3,', ours.body)

    def test_all_delay_offsets(self) -> None:
        """GET_ALL_DELAY_OFFSET serves the schedule service's table like Java (same bytes)."""
        os.makedirs(self.config.config_dir)
        path = os.path.join(self.config.config_dir, "delayOffset.json")
        write_atomic(path, b'{\n\t"offsetTable":{2:1,3:4\n\t}\n}')
        for table in self.broker.tables:
            self.broker.persister.load(table)
        ours = self.replay("broker-slave-get-all-delay-offset.req.hex")
        recorded = self.check(ours, "broker-slave-get-all-delay-offset.resp.hex")
        self.assertEqual(ours.body, recorded.body)

    def test_delay_offsets_without_schedule_service(self) -> None:
        """Without a schedule service, delayOffset.json is served; without it, SYSTEM_ERROR."""
        self.broker.tables[:] = [t for t in self.broker.tables if t.file_name != "delayOffset.json"]
        response = self.request(RequestCode.GET_ALL_DELAY_OFFSET)
        self.assertEqual((response.code, response.remark), (1, "No delay offset in this broker"))
        os.makedirs(self.config.config_dir)
        path = os.path.join(self.config.config_dir, "delayOffset.json")
        write_atomic(path, b'{"offsetTable":{1:7}}')
        response = self.request(RequestCode.GET_ALL_DELAY_OFFSET)
        self.assertEqual(response.body, b'{"offsetTable":{1:7}}')

    def test_reset_offset_not_online(self) -> None:
        """INVOKE_BROKER_TO_RESET_OFFSET for an offline group answers 206 with Java's remark."""
        self.prepare_offsets()
        ours = self.replay("admin-invoke-broker-to-reset-offset.req.hex")
        self.check(ours, "admin-invoke-broker-to-reset-offset.resp.hex")

    def test_reset_offset_tells_consumers(self) -> None:
        """A live group is told the new offsets oneway (MessageQueue keys for Java, a list for
        cpp) and the answer carries the reset table."""
        self.prepare_offsets()
        java = FakeConnection("127.0.0.1:1001")
        self.replay("java-heartbeat-consumer.req.hex", java)
        cpp = FakeConnection("127.0.0.1:1002")
        heartbeat = frame("java-heartbeat-consumer.req.hex")
        heartbeat.language = LanguageCode.CPP
        heartbeat.body = heartbeat.body.replace(b"capC", b"cppC")
        self.dispatch(heartbeat, cpp)
        request = frame("admin-invoke-broker-to-reset-offset.req.hex")
        request.ext_fields["timestamp"] = str(CAPTURE_MS - 1)
        response = self.dispatch(request)
        self.assertEqual(response.code, 0, response.remark)
        expected = {("TopicJ", "broker-a", q): 0 for q in range(4)}
        self.assertEqual(mq_table(response.body), expected)
        (told,) = [c for c in java.oneways if c.code == RequestCode.RESET_CONSUMER_CLIENT_OFFSET]
        self.assertTrue(told.is_oneway)
        self.assertEqual(told.ext_fields["group"], "CG_JAVA")
        self.assertEqual(mq_table(told.body), expected)
        (told_cpp,) = [c for c in cpp.oneways if c.code == RequestCode.RESET_CONSUMER_CLIENT_OFFSET]
        entries = fastjson.loads(told_cpp.body)["offsetTable"]
        self.assertEqual(sorted(e["queueId"] for e in entries), [0, 1, 2, 3])
        self.assertEqual(self.broker.offsets.query_offset("CG_JAVA", "TopicJ", 1), 0)

    def test_reset_offset_not_forced_only_moves_back(self) -> None:
        """Without isForce, a reset to the max offset keeps the current (smaller) offsets."""
        self.prepare_offsets()
        self.replay("java-heartbeat-consumer.req.hex")
        request = frame("admin-invoke-broker-to-reset-offset.req.hex")
        request.ext_fields["isForce"] = "false"
        response = self.dispatch(request)
        table = mq_table(response.body)
        self.assertEqual(table[("TopicJ", "broker-a", 1)], 3)

    def test_reset_offset_unknown_group(self) -> None:
        """A group without offsets is refused with Java's remark."""
        self.send_java(0)
        self.replay("java-heartbeat-consumer.req.hex")
        request = frame("admin-invoke-broker-to-reset-offset.req.hex")
        response = self.dispatch(request)
        self.assertEqual(
            (response.code, response.remark), (1, "THe consumer group <CG_JAVA> not exist")
        )

    def test_consumer_running_info_relay(self) -> None:
        """GET_CONSUMER_RUNNING_INFO is forwarded to the client's connection and its answer
        relayed; an unknown client id is an error."""

        class Answering(FakeConnection):
            def invoke(self, command: RemotingCommand, timeout: float) -> Deferred[RemotingCommand]:
                self.invoked.append(command)
                return succeed(new_response(command, body=b'{"properties":{}}'))

        client = Answering("127.0.0.1:1003")
        self.replay("java-heartbeat-consumer.req.hex", client)
        fields = {"consumerGroup": "CG_JAVA", "clientId": "192.0.2.2@capC", "jstackEnable": False}
        response = self.request(RequestCode.GET_CONSUMER_RUNNING_INFO, fields)
        self.assertEqual((response.code, response.body), (0, b'{"properties":{}}'))
        self.assertEqual(client.invoked[0].ext_fields["clientId"], "192.0.2.2@capC")
        fields["clientId"] = "nobody"
        response = self.request(RequestCode.GET_CONSUMER_RUNNING_INFO, fields)
        self.assertEqual((response.code, response.remark), (1, "The Consumer <nobody> not online"))

    def test_update_consumer_offset_via_admin(self) -> None:
        """mqadmin's non-oneway UPDATE_CONSUMER_OFFSET is answered like Java and stored."""
        self.send_java(2)
        self.check(
            self.replay("admin-update-consumer-offset.req.hex"),
            "admin-update-consumer-offset.resp.hex",
        )
        self.assertEqual(self.broker.offsets.query_offset("CG_JAVA", "TopicJ", 2), 1)


class BrokerInfoVectorTests(AdminTestBase):
    def test_runtime_info(self) -> None:
        """GET_BROKER_RUNTIME_INFO answers a KVTable with Java's figures from real counters."""
        self.send_java(0, 5)
        self.replay("java-heartbeat-consumer.req.hex")
        pull = frame("java-pull.req.hex")
        pull.ext_fields.update(queueId="0", queueOffset="0", subVersion="1795295147659")
        self.assertEqual(self.dispatch(pull).code, 0)
        self.clock.advance(103)
        ours = self.replay("admin-get-broker-runtime-info.req.hex")
        recorded = self.check(ours, "admin-get-broker-runtime-info.resp.hex")
        mine = fastjson.loads(ours.body)["table"]
        theirs = fastjson.loads(recorded.body)["table"]
        for key in (
            "msgPutTotalTodayNow",
            "msgGetTotalTodayNow",
            "msgPutTotalTodayMorning",
            "msgGetTotalYesterdayMorning",
            "bootTimestamp",
            "runtime",
            "putTps",
            "getTransferedTps",
            "getFoundTps",
            "getMissTps",
            "getTotalTps",
            "commitLogMinOffset",
            "commitLogMaxOffset",
            "earliestMessageTimeStamp",
            "brokerVersion",
            "brokerVersionDesc",
            "putMessageTimesTotal",
            "putMessageSizeTotal",
            "putMessageAverageSize",
            "sendThreadPoolQueueCapacity",
            "sendThreadPoolQueueSize",
        ):
            self.assertIn(key, theirs, key)
            self.assertIsInstance(mine[key], str, key)
        self.assertEqual(mine["msgPutTotalTodayNow"], "5")
        self.assertEqual(mine["msgGetTotalTodayNow"], "5")
        self.assertEqual(mine["topicPutNums_TopicJ"], "5")
        self.assertEqual(mine["commitLogMaxOffset"], str(self.store.get_max_phy_offset()))
        self.assertEqual(mine["putMessageSizeTotal"], str(self.store.get_max_phy_offset()))
        self.assertEqual(mine["bootTimestamp"], str(CAPTURE_MS))
        self.assertEqual(mine["earliestMessageTimeStamp"], str(CAPTURE_MS))
        self.assertEqual(mine["runtime"], "[ 0 days, 0 hours, 1 minutes, 43 seconds ]")
        self.assertEqual(mine["brokerVersionDesc"], theirs["brokerVersionDesc"])
        self.assertEqual(mine["brokerVersion"], theirs["brokerVersion"])
        self.assertEqual(len(mine["putTps"].split()), 3)
        # 5 puts over the 103 s since boot (no sample is older than 10 s except the boot one)
        self.assertAlmostEqual(float(mine["putTps"].split()[0]), 5 / 103)

    def test_runtime_info_schedule_progress(self) -> None:
        """scheduleMessageOffset_<level> pairs the delivered offset with the queue's max."""
        self.broker.guarantees.schedule.table.offsets[3] = 2
        table = fastjson.loads(self.request(RequestCode.GET_BROKER_RUNTIME_INFO).body)["table"]
        self.assertEqual(table["scheduleMessageOffset_3"], "2,0")

    def test_get_broker_config(self) -> None:
        """GET_BROKER_CONFIG answers Properties text with Java's key names and a version."""
        ours = self.replay("admin-get-broker-config.req.hex")
        recorded = self.check(ours, "admin-get-broker-config.resp.hex")
        mine = parse_properties(ours.body.decode())
        theirs = parse_properties(recorded.body.decode())
        for key in (
            "brokerName",
            "defaultTopicQueueNums",
            "autoCreateTopicEnable",
            "maxMessageSize",
            "flushDiskType",
            "fileReservedTime",
            "brokerClusterName",
            "messageDelayLevel",
        ):
            self.assertIn(key, theirs, key)
            self.assertEqual(mine[key], theirs.get(key, mine[key]), key)
        self.assertEqual(set(fastjson.loads(ours.ext_fields["version"])), {"counter", "timestamp"})

    def test_update_broker_config_live(self) -> None:
        """UPDATE_BROKER_CONFIG changes a live key everywhere, bumps the version, persists it and
        a rebuilt broker applies it again."""
        response = self.request(
            RequestCode.UPDATE_BROKER_CONFIG,
            body=b"maxMessageSize=1024\nautoCreateTopicEnable=false\n",
        )
        self.assertEqual(response.code, 0, response.remark)
        self.assertEqual(self.broker.config.max_message_size, 1024)
        self.assertEqual(self.broker.send.config.max_message_size, 1024)
        self.assertIs(self.broker.guarantees.transaction_hook.config, self.broker.config)
        self.assertFalse(self.broker.topics.defaults.auto_create_topic_enable)
        big = frame("java-send-v2.req.hex")
        big.body = b"x" * 2000
        self.assertEqual(self.dispatch(big).code, ResponseCode.MESSAGE_ILLEGAL)
        config = self.request(RequestCode.GET_BROKER_CONFIG)
        self.assertIn(b"maxMessageSize=1024\n", config.body)
        self.assertEqual(fastjson.loads(config.ext_fields["version"])["counter"], 1)
        with open(os.path.join(self.config.config_dir, "broker.properties"), "rb") as f:
            self.assertIn(b"maxMessageSize=1024", f.read())
        again = build_broker(self.config, self.clock, self.store, self.namesrv)
        self.assertEqual(again.config.max_message_size, 1024)
        self.assertEqual(again.send.config.max_message_size, 1024)

    def test_update_broker_config_refusals(self) -> None:
        """Restart-only, unknown and malformed keys are refused with a remark naming them."""
        for body, word in (
            (b"listenPort=1\n", "listenPort"),
            (b"noSuchKey=1\n", "noSuchKey"),
            (b"maxMessageSize=big\n", "maxMessageSize"),
            (b"", "no key=value"),
        ):
            response = self.request(RequestCode.UPDATE_BROKER_CONFIG, body=body)
            self.assertEqual(response.code, ResponseCode.SYSTEM_ERROR)
            self.assertIn(word, response.remark)
        self.assertEqual(self.broker.config, self.config)

    def test_update_broker_permission_reregisters(self) -> None:
        """Changing brokerPermission re-registers at once with the new permission."""
        self.assertIn("brokerPermission", LIVE_CONFIG_KEYS)
        self.broker.registration.active = True
        self.request(RequestCode.UPDATE_BROKER_CONFIG, body=b"brokerPermission=4\n")
        self.clock.advance(0)
        (_, oneway) = self.namesrv.oneways[-1]
        body = fastjson.loads(oneway.body)
        table = body["topicConfigSerializeWrapper"]["topicConfigTable"]
        self.assertEqual({c["perm"] for c in table.values()}, {4})
        self.broker.registration.active = False


class StatsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.phy = 100
        self.stats = BrokerStats(self.clock, lambda: self.phy)
        self.listeners: list[Any] = []
        self.stats.store_started(self.listeners.append)

    def test_puts_counted_per_topic(self) -> None:
        """The arrival listener counts puts in total and per topic; bytes are log growth."""
        (listener,) = self.listeners
        for topic in ("A", "A", "B"):
            listener(topic, 0, 0, 0)
        self.phy = 400
        self.assertEqual((self.stats.put_total, self.stats.topic_puts), (3, {"A": 2, "B": 1}))
        self.assertEqual(self.stats.put_bytes, 300)
        self.stats.store_started(self.listeners.append)
        self.assertEqual(len(self.listeners), 1)

    def test_pull_answers_counted(self) -> None:
        """A FOUND answer adds its record count and bytes; other answers count as misses."""
        record = (20).to_bytes(4, "big") + b"\0" * 16
        found = RemotingCommand(code=0, body=record * 3)
        self.assertIs(self.stats.pull_answered(found, "G"), found)
        self.stats.pull_answered(RemotingCommand(code=19), "G")
        self.stats.pull_answered(None)
        self.assertEqual(
            (
                self.stats.get_total,
                self.stats.get_bytes,
                self.stats.get_found,
                self.stats.get_missed,
            ),
            (3, 60, 1, 1),
        )
        self.assertEqual(self.stats.group_gets, {"G": 3})

    def test_rates_use_samples(self) -> None:
        """Rates compare with the newest sample older than the window."""
        (listener,) = self.listeners
        for _ in range(100):
            listener("A", 0, 0, 0)
        self.clock.advance(10)
        self.stats.maybe_sample()
        for _ in range(50):
            listener("A", 0, 0, 0)
        self.clock.advance(10)
        self.assertEqual(self.stats.rates(10)["put"], 5.0)
        self.assertEqual(self.stats.rates(60)["put"], 7.5)
        self.assertEqual(self.stats.tps_text("put"), "5.0 7.5 7.5")

    def test_day_rollover(self) -> None:
        """At the first sample of a new local day the morning counters move on."""
        (listener,) = self.listeners
        listener("A", 0, 0, 0)
        self.clock.advance(86400)
        self.stats.maybe_sample()
        self.assertEqual(self.stats.put_today_morning, 1)
        listener("A", 0, 0, 0)
        self.clock.advance(86400)
        self.stats.maybe_sample()
        self.assertEqual((self.stats.put_yesterday_morning, self.stats.put_today_morning), (1, 2))

    def test_old_samples_pruned(self) -> None:
        """Samples older than the largest window (but one) are dropped."""
        for _ in range(2000):
            self.clock.advance(1)
            self.stats.maybe_sample()
        self.assertLessEqual(len(self.stats._samples), 662)


class PrometheusTests(SynchronousTestCase):
    def test_text_and_resource(self) -> None:
        """The counters render in Prometheus text format, also through the twisted.web page."""
        from twisted.web.test.requesthelper import DummyRequest

        from rmq.broker.stats import metrics_resource, prometheus_text

        clock = Clock()
        clock.advance(1000)
        stats = BrokerStats(clock, lambda: 0)
        listeners: list[Any] = []
        stats.store_started(listeners.append)
        listeners[0]('To"pic', 0, 0, 0)
        text = prometheus_text(stats, {"broker": "broker-a"}).decode()
        self.assertIn('rmq_broker_put_messages_total{broker="broker-a"} 1\n', text)
        self.assertIn(
            'rmq_broker_topic_put_messages_total{broker="broker-a",topic="To\\"pic"} 1\n', text
        )
        self.assertIn("# TYPE rmq_broker_put_tps gauge\n", text)
        root = metrics_resource(stats, {})
        request = DummyRequest([b"metrics"])
        page = root.getChildWithDefault(b"metrics", request)
        body = page.render_GET(request)
        self.assertIn(b"rmq_broker_put_messages_total 1\n", body)
        self.assertEqual(
            request.responseHeaders.getRawHeaders(b"content-type"),
            [b"text/plain; version=0.0.4; charset=utf-8"],
        )


class DataPathAdminVectorTests(AdminTestBase):
    def test_get_max_offset(self) -> None:
        """mqadmin's GET_MAX_OFFSET (with ``bname``) answers the queue's max offset like Java."""
        self.send_java(2)
        ours = self.replay("admin-get-max-offset.req.hex")
        recorded = self.check(ours, "admin-get-max-offset.resp.hex")
        self.assertEqual(ours.ext_fields["offset"], recorded.ext_fields["offset"])

    def test_query_message_by_key(self) -> None:
        """mqadmin's QUERY_MESSAGE by key returns the stored message with Java's properties."""
        self.send_java(1)
        ours = self.replay("admin-query-message.req.hex")
        recorded = self.check(ours, "admin-query-message.resp.hex")
        (mine,) = decode_messages(ours.body)
        (theirs,) = decode_messages(recorded.body)
        self.assertEqual((mine.body, mine.properties), (theirs.body, theirs.properties))
