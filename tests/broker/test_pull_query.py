"""Pull, offset and query processors: status mapping, checks, sysflags, queries by key/offset."""

from __future__ import annotations

from rmq.broker.config import BrokerConfig
from rmq.broker.consumer_manage import ConsumerOffsetProcessor
from rmq.broker.service import build_broker
from rmq.broker.subscription import SubscriptionGroupConfig
from rmq.common import fastjson
from rmq.common.message import decode_messages
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_request
from tests.broker.support import FakeConnection, FakeNameServerClient, MemoryBrokerTestCase
from tests.broker.support import pull_request as pull


class ProcessorTests(MemoryBrokerTestCase):
    def setUp(self) -> None:
        self.start_broker(BrokerConfig(store_path_root_dir=self.mktemp()), 1_800_000_000)

    def put(self, n: int, tags: str = "a", keys: str = "") -> None:
        props = f"TAGS\x01{tags}" + (f"\x02KEYS\x01{keys}" if keys else "")
        for i in range(n):
            req = new_request(
                RequestCode.SEND_MESSAGE_V2,
                {
                    "a": "P",
                    "b": "T",
                    "c": "TBW102",
                    "d": 4,
                    "e": 0,
                    "f": 0,
                    "g": 1,
                    "h": 0,
                    "i": props,
                },
                f"m{i}".encode(),
            )
            self.assertEqual(self.answer(req).code, 0)

    def test_pull_statuses(self) -> None:
        """FOUND; past the end 21 (to 0 while min is 0, like Java); empty queue 19 at 0, 21 past."""
        self.broker.topics.create_topic_in_send("T", "TBW102", 4)
        empty = self.answer(pull(0, sys_flag=4))
        self.assertEqual(empty.code, 19)
        self.assertIn(empty.remark, ("NO_MESSAGE_IN_QUEUE", "NO_MATCHED_LOGIC_QUEUE"))
        moved = self.answer(pull(5, sys_flag=4))
        self.assertEqual((moved.code, moved.ext_fields["nextBeginOffset"]), (21, "0"))
        self.put(3)
        found = self.answer(pull(1))
        self.assertEqual((found.code, found.ext_fields["nextBeginOffset"]), (0, "3"))
        self.assertEqual([m.body for m in decode_messages(found.body)], [b"m1", b"m2"])
        bad = self.answer(pull(9))
        self.assertEqual(
            (bad.code, bad.remark, bad.ext_fields["nextBeginOffset"]),
            (21, "OFFSET_OVERFLOW_BADLY", "0"),
        )

    def test_tag_filter(self) -> None:
        """Only matching tags come back; a window of only others is PULL_RETRY_IMMEDIATELY."""
        self.put(2, tags="x")
        self.put(1, tags="y")
        found = self.answer(pull(0, expr="y || z"))
        self.assertEqual([m.properties["TAGS"] for m in decode_messages(found.body)], ["y"])
        retry = self.answer(pull(0, expr="z"))
        self.assertEqual((retry.code, retry.ext_fields["nextBeginOffset"]), (20, "3"))

    def test_commit_offset_flag(self) -> None:
        """The commit-offset sysflag stores commitOffset; without it nothing is stored."""
        self.put(1)
        self.answer(pull(0, sys_flag=4, commitOffset=7))
        self.assertEqual(self.broker.offsets.query_offset("G", "T", 0), -1)
        self.answer(pull(0, sys_flag=5, commitOffset=7))
        self.assertEqual(self.broker.offsets.query_offset("G", "T", 0), 7)

    def test_checks(self) -> None:
        """Unknown topic 17, bad queue 1, disabled group 16, SQL92 refused 1, unknown group 26."""
        self.assertEqual(self.answer(pull(0)).code, ResponseCode.TOPIC_NOT_EXIST)
        self.put(1)
        self.assertEqual(self.answer(pull(0, queueId=4)).code, ResponseCode.SYSTEM_ERROR)
        sql = self.answer(pull(0, expressionType="SQL92", expr="a > 1"))
        self.assertEqual(sql.code, ResponseCode.SYSTEM_ERROR)
        self.broker.groups.update(SubscriptionGroupConfig("G", consume_enable=False))
        self.assertEqual(self.answer(pull(0)).code, ResponseCode.NO_PERMISSION)
        self.broker.groups.auto_create = False
        self.assertEqual(
            self.answer(pull(0, consumerGroup="H")).code, ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST
        )

    def test_held_pull_cancelled_when_connection_closes(self) -> None:
        """A held pull whose connection closes is dropped without an answer or a timer."""
        self.put(1)
        d = self.broker.dispatcher.dispatch(self.conn, pull(1, sys_flag=6))
        self.assertNoResult(d)
        self.broker.hold.connection_closed(self.conn)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_short_polling(self) -> None:
        """With longPollingEnable=false a pull is held only shortPollingTimeMills."""
        broker = build_broker(
            BrokerConfig(store_path_root_dir=self.mktemp(), long_polling_enable=False),
            self.clock,
            self.store,
            FakeNameServerClient(),
        )
        broker.topics.create_topic_in_send("T", "TBW102", 4)
        d = broker.dispatcher.dispatch(self.conn, pull(0, sys_flag=6))
        self.clock.advance(0.999)
        self.assertNoResult(d)
        self.clock.advance(0.001)
        self.assertEqual(self.successResultOf(d).code, 19)  # type: ignore[union-attr]

    def test_query_consumer_offset_not_found_for_old_log(self) -> None:
        """Without a stored offset and with a commit log too big for memory, the answer is 22."""
        self.put(1)
        proc = ConsumerOffsetProcessor(self.broker.offsets, self.store, memory_bytes=lambda: 10)
        req = new_request(
            RequestCode.QUERY_CONSUMER_OFFSET, {"consumerGroup": "G", "topic": "T", "queueId": 0}
        )
        resp = proc.process_request(self.conn, req)
        assert isinstance(resp, RemotingCommand)  # answered synchronously
        self.assertEqual(resp.code, ResponseCode.QUERY_NOT_FOUND)

    def test_query_message_by_key(self) -> None:
        """QUERY_MESSAGE finds messages by key with the index header; unknown keys are 22."""
        self.put(2, keys="order-1")
        self.put(1, keys="order-2")
        req = new_request(
            RequestCode.QUERY_MESSAGE,
            {
                "topic": "T",
                "key": "order-1",
                "maxNum": 32,
                "beginTimestamp": 0,
                "endTimestamp": 2**62,
            },
        )
        resp = self.answer(req)
        self.assertEqual(resp.code, 0)
        self.assertEqual(len(decode_messages(resp.body)), 2)
        self.assertIn("indexLastUpdateTimestamp", resp.ext_fields)
        req.ext_fields["key"] = "nope"
        self.assertEqual(self.answer(req).code, ResponseCode.QUERY_NOT_FOUND)

    def test_view_missing_message(self) -> None:
        """VIEW_MESSAGE_BY_ID at an offset with no record is SYSTEM_ERROR."""
        resp = self.answer(new_request(RequestCode.VIEW_MESSAGE_BY_ID, {"offset": 12345}))
        self.assertEqual(resp.code, ResponseCode.SYSTEM_ERROR)

    def test_consumer_list_empty(self) -> None:
        """GET_CONSUMER_LIST_BY_GROUP for a group nobody is in is SYSTEM_ERROR with Java's text."""
        resp = self.answer(
            new_request(RequestCode.GET_CONSUMER_LIST_BY_GROUP, {"consumerGroup": "None"})
        )
        self.assertEqual((resp.code, resp.remark), (1, "no consumer for this group, None"))

    def test_heartbeat_notifies_group(self) -> None:
        """A second consumer's heartbeat sends NOTIFY_CONSUMER_IDS_CHANGED to both members."""
        body = fastjson.dumps(
            {
                "clientID": "c1",
                "consumerDataSet": [
                    {
                        "groupName": "G",
                        "consumeType": 1,
                        "messageModel": 1,
                        "consumeFromWhere": 0,
                        "subscriptionDataSet": [{"topic": "T", "subString": "*", "subVersion": 1}],
                    }
                ],
            }
        )
        a, b = FakeConnection("1.1.1.1:1"), FakeConnection("1.1.1.2:1")
        self.successResultOf(
            self.broker.dispatcher.dispatch(a, new_request(RequestCode.HEART_BEAT, None, body))
        )
        self.successResultOf(
            self.broker.dispatcher.dispatch(
                b, new_request(RequestCode.HEART_BEAT, None, body.replace(b"c1", b"c2"))
            )
        )
        self.assertEqual(len(a.oneways), 2)
        self.assertEqual(len(b.oneways), 1)
        note = b.oneways[0]
        self.assertEqual(
            (note.code, note.ext_fields, note.is_oneway),
            (RequestCode.NOTIFY_CONSUMER_IDS_CHANGED, {"consumerGroup": "G"}, True),
        )
