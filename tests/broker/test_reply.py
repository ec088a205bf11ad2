"""Request/reply: the broker's ReplyMessageProcessor and the client's reply helpers."""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from rmq.broker.config import BrokerConfig
from rmq.broker.service import build_broker
from rmq.client.reply import (
    RequestFutureTable,
    RequestTimeoutError,
    create_reply_message,
    reply_from_push,
)
from rmq.common import fastjson
from rmq.common.errors import MQClientError, RemotingTimeoutError
from rmq.common.message import (
    CLUSTER,
    CORRELATION_ID,
    MSG_TYPE,
    PUSH_REPLY_TIME,
    REPLY_TO_CLIENT,
    TTL,
    Message,
    MessageExt,
    properties_to_string,
    string_to_properties,
)
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_request, new_response
from rmq.remoting.interfaces import IRequestProcessor
from rmq.store.memory import MemoryMessageStore
from tests.broker.support import FakeConnection, FakeNameServerClient

REPLY_TOPIC = "DefaultCluster_REPLY_TOPIC"


class RefusingConnection(FakeConnection):
    """A requester connection that answers pushes with ``code`` (or fails them)."""

    def __init__(self, code: int | None) -> None:
        super().__init__("127.0.0.1:50001")
        self.code = code

    def invoke(self, command: RemotingCommand, timeout: float) -> Deferred[RemotingCommand]:
        """Record; answer ``code`` or time out."""
        self.invoked.append(command)
        if self.code is None:
            return fail(RemotingTimeoutError("no answer"))
        return succeed(new_response(command, self.code, "nope"))


def reply_request(
    props: dict[str, str], code: int = RequestCode.SEND_REPLY_MESSAGE_V2
) -> RemotingCommand:
    """A reply as a responder sends it (V2 one-letter header, or V1 names)."""
    fields: dict[str, object] = {
        "producerGroup": "RESPONDER",
        "topic": REPLY_TOPIC,
        "defaultTopic": "TBW102",
        "defaultTopicQueueNums": 4,
        "queueId": 0,
        "sysFlag": 0,
        "bornTimestamp": 123,
        "flag": 0,
        "properties": properties_to_string(props),
        "reconsumeTimes": 0,
        "unitMode": False,
    }
    if code == RequestCode.SEND_REPLY_MESSAGE_V2:
        short = dict(zip("abcdefghijk", fields.values(), strict=True))
        return new_request(code, short, b"answer")
    return new_request(code, fields, b"answer")


class ReplyProcessorTests(SynchronousTestCase):
    def build(self, **config: object) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.store = MemoryMessageStore(self.clock)
        self.successResultOf(self.store.start())
        self.broker = build_broker(
            BrokerConfig(store_path_root_dir=self.mktemp(), **config),  # type: ignore[arg-type]
            self.clock,
            self.store,
            FakeNameServerClient(),
        )

    def register_requester(self, conn: FakeConnection, client_id: str = "10.0.0.9@req") -> None:
        body = fastjson.dumps(
            {"clientID": client_id, "consumerDataSet": [], "producerDataSet": [{"groupName": "P"}]}
        )
        hb = self.successResultOf(
            self.broker.dispatcher.dispatch(conn, new_request(RequestCode.HEART_BEAT, None, body))
        )
        assert hb is not None
        self.assertEqual(hb.code, 0)

    def send(self, request: RemotingCommand) -> RemotingCommand:
        response = self.successResultOf(
            self.broker.dispatcher.dispatch(FakeConnection("127.0.0.1:50002"), request)
        )
        assert response is not None
        return response

    def props(self, client_id: str = "10.0.0.9@req") -> dict[str, str]:
        return {
            MSG_TYPE: "reply",
            CORRELATION_ID: "cid-1",
            REPLY_TO_CLIENT: client_id,
            TTL: "3000",
        }

    def test_reply_pushed_to_requester_and_stored(self) -> None:
        """The reply goes to the requester with code 326 and Java's header, and is stored."""
        self.build()
        requester = FakeConnection("127.0.0.1:50001")
        self.register_requester(requester)
        for code in (RequestCode.SEND_REPLY_MESSAGE_V2, RequestCode.SEND_REPLY_MESSAGE):
            resp = self.send(reply_request(self.props(), code))
            self.assertEqual(resp.code, ResponseCode.SUCCESS)
            self.assertEqual(resp.ext_fields["msgId"], "0")
            self.assertEqual(resp.ext_fields["queueOffset"], "0")
        self.assertEqual(len(requester.invoked), 2)
        push = requester.invoked[0]
        self.assertEqual(push.code, RequestCode.PUSH_REPLY_MESSAGE_TO_CLIENT)
        self.assertEqual(push.body, b"answer")
        ext = push.ext_fields
        self.assertEqual(ext["topic"], REPLY_TOPIC)
        self.assertEqual(ext["producerGroup"], "RESPONDER")
        self.assertEqual(ext["bornHost"], "127.0.0.1:50002")
        self.assertEqual(ext["storeTimestamp"], "1800000000000")
        pushed = string_to_properties(ext["properties"])
        self.assertEqual(pushed[CORRELATION_ID], "cid-1")
        self.assertEqual(pushed[PUSH_REPLY_TIME], "1800000000000")
        self.assertEqual(self.store.get_max_offset_in_queue(REPLY_TOPIC, 0), 2)

    def test_unknown_requester(self) -> None:
        """No producer connection with that client id: SYSTEM_ERROR, the reply still stored."""
        self.build()
        resp = self.send(reply_request(self.props("nobody")))
        self.assertEqual(resp.code, ResponseCode.SYSTEM_ERROR)
        self.assertEqual(resp.remark, "push reply message fail, channel of <nobody> not found.")
        self.assertEqual(self.store.get_max_offset_in_queue(REPLY_TOPIC, 0), 1)

    def test_missing_reply_to(self) -> None:
        """A reply without REPLY_TO_CLIENT is refused with Java's remark."""
        self.build()
        props = self.props()
        del props[REPLY_TO_CLIENT]
        resp = self.send(reply_request(props))
        self.assertEqual(resp.code, ResponseCode.SYSTEM_ERROR)
        self.assertEqual(resp.remark, "reply message properties[REPLY_TO_CLIENT] is null")

    def test_push_refused_or_lost(self) -> None:
        """A requester that refuses or does not answer the push makes the reply fail."""
        for code in (ResponseCode.SYSTEM_ERROR, None):
            self.build()
            self.register_requester(RefusingConnection(code))
            resp = self.send(reply_request(self.props()))
            self.assertEqual(resp.code, ResponseCode.SYSTEM_ERROR)
            self.assertEqual(resp.remark, "push reply message to 10.0.0.9@reqfail.")

    def test_store_disabled(self) -> None:
        """storeReplyMessageEnable=false pushes only."""
        self.build(store_reply_message_enable=False)
        self.register_requester(FakeConnection("127.0.0.1:50001"))
        self.assertEqual(self.send(reply_request(self.props())).code, ResponseCode.SUCCESS)
        self.assertEqual(self.store.get_max_offset_in_queue(REPLY_TOPIC, 0), 0)

    def test_processor_provides_the_interface(self) -> None:
        """The reply processor is an IRequestProcessor registered for 324 and 325."""
        self.build()
        for code in (RequestCode.SEND_REPLY_MESSAGE, RequestCode.SEND_REPLY_MESSAGE_V2):
            processor = self.broker.dispatcher.processor_for(code)
            self.assertIs(processor, self.broker.reply)
        self.assertTrue(verifyObject(IRequestProcessor, self.broker.reply))

    def test_reply_topic_exists_at_start(self) -> None:
        """``<cluster>_REPLY_TOPIC`` is created with the broker, like Java."""
        self.build()
        self.assertIsNotNone(self.broker.topics.select(REPLY_TOPIC))


class ClientReplyTests(SynchronousTestCase):
    def test_create_reply_message(self) -> None:
        """The reply copies the correlation data and targets the cluster's reply topic."""
        request = MessageExt(
            "T",
            b"q",
            properties={
                CLUSTER: "C1",
                CORRELATION_ID: "id",
                REPLY_TO_CLIENT: "me",
                TTL: "3000",
                "other": "x",
            },
        )
        reply = create_reply_message(request, b"r")
        self.assertEqual(reply.topic, "C1_REPLY_TOPIC")
        self.assertEqual(reply.body, b"r")
        self.assertEqual(
            reply.properties,
            {MSG_TYPE: "reply", CORRELATION_ID: "id", REPLY_TO_CLIENT: "me", TTL: "3000"},
        )
        with self.assertRaises(MQClientError):
            create_reply_message(Message("T", b"q"), b"r")

    def test_table_fires_by_correlation_id(self) -> None:
        """A reply fires its own waiter only and cancels its timer."""
        clock = Clock()
        table = RequestFutureTable(clock)
        d1 = table.add("a", 3.0, "Questions")
        d2 = table.add("b", 3.0)
        self.assertTrue(table.on_reply(MessageExt("R", b"x", properties={CORRELATION_ID: "b"})))
        self.assertEqual(self.successResultOf(d2).body, b"x")
        self.assertNoResult(d1)
        self.assertFalse(table.on_reply(MessageExt("R", b"x", properties={CORRELATION_ID: "b"})))
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(3.0)
        failure = self.failureResultOf(d1, RequestTimeoutError)
        self.assertIn(
            "send request message to <Questions> OK, but wait reply message timeout, 3000 ms",
            str(failure.value),
        )
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(len(table), 0)

    def test_table_fail_and_cancel(self) -> None:
        """fail() and cancel() remove the waiter and its timer; fail_all fails the rest."""
        clock = Clock()
        table = RequestFutureTable(clock)
        d1 = table.add("a", 3.0)
        table.fail("a", MQClientError("send failed"))
        self.failureResultOf(d1, MQClientError)
        d2 = table.add("b", 3.0)
        d2.cancel()
        self.failureResultOf(d2)
        d3 = table.add("c", 3.0)
        table.fail_all("bye")
        self.failureResultOf(d3, MQClientError)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_reply_from_push(self) -> None:
        """A PUSH_REPLY_MESSAGE_TO_CLIENT becomes a MessageExt with ARRIVE_TIME."""
        clock = Clock()
        clock.advance(5)
        push = new_request(
            RequestCode.PUSH_REPLY_MESSAGE_TO_CLIENT,
            {
                "topic": REPLY_TOPIC,
                "queueId": 1,
                "sysFlag": 0,
                "flag": 2,
                "bornTimestamp": 7,
                "storeTimestamp": 8,
                "bornHost": "1.2.3.4:5",
                "storeHost": "6.7.8.9:10",
                "reconsumeTimes": 0,
                "properties": properties_to_string({CORRELATION_ID: "x"}),
            },
            b"body",
        )
        msg = reply_from_push(push, clock)
        self.assertEqual(
            (msg.topic, msg.queue_id, msg.flag, msg.body), (REPLY_TOPIC, 1, 2, b"body")
        )
        self.assertEqual(msg.properties["ARRIVE_TIME"], "5000")
        self.assertEqual((msg.born_host, msg.store_host), ("1.2.3.4:5", "6.7.8.9:10"))
