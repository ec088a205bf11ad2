"""SendMessageProcessor: checks, limits, status mapping, hooks, retry/DLQ routing."""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from rmq.broker.config import BrokerConfig
from rmq.broker.interfaces import ISendMessageHook
from rmq.broker.send import (
    V2_KEYS,
    SendContext,
    SendMessageProcessor,
    SendMessageRequestHeader,
)
from rmq.broker.service import Broker, build_broker
from rmq.common.errors import HeaderError
from rmq.common.message import BrokerMessage, Message, decode_messages, encode_batch
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_request
from rmq.remoting.interfaces import IRequestProcessor
from rmq.store.interfaces import PutMessageResult, PutMessageStatus
from rmq.store.memory import MemoryMessageStore
from tests.broker.support import FakeConnection, FakeNameServerClient


class ScriptedStore(MemoryMessageStore):
    """A memory store whose puts can be held or answered with a chosen status."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.status: PutMessageStatus | None = None
        self.held: list[Deferred[PutMessageResult]] = []
        self.results: list[Deferred[PutMessageResult]] = []
        self.hold = False

    def put_message(self, msg: BrokerMessage) -> Deferred[PutMessageResult]:
        """Store, then answer the scripted status or hold."""
        d = super().put_message(msg)
        return self._script(d)

    def put_messages(self, msgs: Sequence[BrokerMessage]) -> Deferred[PutMessageResult]:
        """Store, then answer the scripted status or hold."""
        return self._script(super().put_messages(msgs))

    def _script(self, d: Deferred[PutMessageResult]) -> Deferred[PutMessageResult]:
        if self.status is not None:
            status = self.status

            def change(r: PutMessageResult) -> PutMessageResult:
                r.status = status
                return r

            d.addCallback(change)
        if self.hold:
            held: Deferred[PutMessageResult] = Deferred()
            self.held.append(held)
            self.results.append(d)
            return held
        return d

    def release(self) -> None:
        """Answer every held put with its real result."""
        held, self.held = self.held, []
        results, self.results = self.results, []
        for h, r in zip(held, results, strict=True):
            r.addCallback(h.callback)


def send(
    topic: str = "T", body: bytes = b"hi", props: str = "TAGS\x01a", **extra: object
) -> RemotingCommand:
    fields: dict[str, object] = {
        "a": "PG",
        "b": topic,
        "c": "TBW102",
        "d": 4,
        "e": 0,
        "f": 0,
        "g": 7,
        "h": 0,
        "i": props,
    }
    fields.update(extra)
    return new_request(RequestCode.SEND_MESSAGE_V2, fields, body)


class SendProcessorTests(SynchronousTestCase):
    def build(self, **config: object) -> Broker:
        self.clock = Clock()
        self.store = ScriptedStore(self.clock)
        self.successResultOf(self.store.start())
        cfg = BrokerConfig(store_path_root_dir=self.mktemp(), **config)  # type: ignore[arg-type]
        self.broker = build_broker(cfg, self.clock, self.store, FakeNameServerClient())
        self.conn = FakeConnection("10.0.0.9:4321")
        return self.broker

    def answer(self, request: RemotingCommand) -> RemotingCommand:
        response = self.successResultOf(self.broker.dispatcher.dispatch(self.conn, request))
        assert response is not None
        return response

    def test_interface(self) -> None:
        """The processor provides IRequestProcessor."""
        broker = self.build()
        verifyObject(IRequestProcessor, broker.send)
        self.assertIsInstance(broker.send, SendMessageProcessor)

    def test_stores_born_and_store_hosts(self) -> None:
        """The record carries the peer as born host and brokerIP1:listenPort as store host."""
        self.build(listen_port=12345)
        self.assertEqual(self.answer(send()).code, ResponseCode.SUCCESS)
        (m,) = decode_messages(self.successResultOf(self.store.get_messages("T", 0, 0, 1)).body())
        self.assertEqual((m.born_host, m.store_host), ("10.0.0.9:4321", "127.0.0.1:12345"))
        self.assertEqual(m.born_timestamp, 7)

    def test_body_too_large(self) -> None:
        """A body over maxMessageSize is MESSAGE_ILLEGAL and the remark names the limit."""
        self.build(max_message_size=1000)
        resp = self.answer(send(body=b"x" * 1001))
        self.assertEqual(resp.code, ResponseCode.MESSAGE_ILLEGAL)
        self.assertIn("maxMessageSize=1000", resp.remark or "")
        self.assertEqual(resp.ext_fields["MSG_REGION"], "DefaultRegion")
        self.assertEqual(self.answer(send(body=b"x" * 1000)).code, ResponseCode.SUCCESS)

    def test_topic_checks(self) -> None:
        """Overlong or illegal topic names are MESSAGE_ILLEGAL naming the limit or the rule."""
        self.build()
        resp = self.answer(send(topic="x" * 128))
        self.assertEqual(resp.code, ResponseCode.MESSAGE_ILLEGAL)
        self.assertIn("127", resp.remark or "")
        resp = self.answer(send(topic="bad topic"))
        self.assertEqual(resp.code, ResponseCode.MESSAGE_ILLEGAL)
        self.assertIn("illegal", resp.remark or "")

    def test_topic_not_exist_without_auto_create(self) -> None:
        """With autoCreateTopicEnable=false an unknown topic is TOPIC_NOT_EXIST."""
        self.build(auto_create_topic_enable=False)
        self.assertEqual(self.answer(send()).code, ResponseCode.TOPIC_NOT_EXIST)

    def test_illegal_queue(self) -> None:
        """A queue id beyond the topic's queues is SYSTEM_ERROR; a negative one picks a queue."""
        self.build()
        self.assertEqual(self.answer(send(e=9)).code, ResponseCode.SYSTEM_ERROR)
        resp = self.answer(send(e=-1))
        self.assertEqual(resp.code, ResponseCode.SUCCESS)
        self.assertIn(int(resp.ext_fields["queueId"]), range(4))

    def test_required_field_missing(self) -> None:
        """A send without a topic field is SYSTEM_ERROR naming the field."""
        self.build()
        req = send()
        del req.ext_fields["b"]
        resp = self.answer(req)
        self.assertEqual(resp.code, ResponseCode.SYSTEM_ERROR)

    def test_status_mapping(self) -> None:
        """Store statuses map to Java's codes; stored-but-late ones still carry the header."""
        self.build()
        cases = {
            PutMessageStatus.FLUSH_DISK_TIMEOUT: ResponseCode.FLUSH_DISK_TIMEOUT,
            PutMessageStatus.FLUSH_SLAVE_TIMEOUT: ResponseCode.FLUSH_SLAVE_TIMEOUT,
            PutMessageStatus.SLAVE_NOT_AVAILABLE: ResponseCode.SLAVE_NOT_AVAILABLE,
            PutMessageStatus.SERVICE_NOT_AVAILABLE: ResponseCode.SERVICE_NOT_AVAILABLE,
            PutMessageStatus.DISK_FULL: ResponseCode.SERVICE_NOT_AVAILABLE,
            PutMessageStatus.PROPERTIES_SIZE_EXCEEDED: ResponseCode.MESSAGE_ILLEGAL,
            PutMessageStatus.UNKNOWN_ERROR: ResponseCode.SYSTEM_ERROR,
        }
        for status, code in cases.items():
            self.store.status = status
            resp = self.answer(send())
            self.assertEqual(resp.code, code, status)
            self.assertEqual("msgId" in resp.ext_fields, status.stored, status)

    def test_system_busy_when_store_lags(self) -> None:
        """Beyond sendThreadPoolQueueCapacity puts in flight, sends get SYSTEM_BUSY naming it."""
        self.build(send_thread_pool_queue_capacity=2)
        self.store.hold = True
        pending = [self.broker.dispatcher.dispatch(self.conn, send()) for _ in range(2)]
        busy = self.answer(send())
        self.assertEqual(busy.code, ResponseCode.SYSTEM_BUSY)
        self.assertIn("sendThreadPoolQueueCapacity=2", busy.remark or "")
        self.store.release()
        for d in pending:
            self.assertEqual(self.successResultOf(d).code, 0)  # type: ignore[union-attr]
        self.store.hold = False
        self.assertEqual(self.answer(send()).code, ResponseCode.SUCCESS)

    def test_wait_dropped_from_stored_properties(self) -> None:
        """WAIT is dropped from a single message's stored properties; CLUSTER is added."""
        self.build()
        self.answer(send(props="WAIT\x01true\x02TAGS\x01x\x02"))
        (m,) = decode_messages(self.successResultOf(self.store.get_messages("T", 0, 0, 1)).body())
        self.assertEqual(m.properties, {"TAGS": "x", "CLUSTER": "DefaultCluster"})

    def test_hooks_rewrite_message(self) -> None:
        """A send hook sees every single send and may move the message elsewhere."""
        broker = self.build()

        @implementer(ISendMessageHook)
        class Park:
            def __init__(self) -> None:
                self.seen: list[str] = []

            def before_put(self, context: SendContext) -> None:
                self.seen.append(context.message.topic)
                if "DELAY" in context.message.properties:
                    context.message.properties["REAL_TOPIC"] = context.message.topic
                    context.message.topic = "SCHEDULE_TOPIC_XXXX"
                    context.message.queue_id = 2
                    context.message.properties_str = ""

        hook = Park()
        verifyObject(ISendMessageHook, hook)
        broker.send_hooks.insert(0, hook)
        self.answer(send(props="DELAY\x013"))
        self.answer(send())
        self.assertEqual(hook.seen, ["T", "T"])
        self.assertEqual(self.store.get_max_offset_in_queue("SCHEDULE_TOPIC_XXXX", 2), 1)
        self.assertEqual(self.store.get_max_offset_in_queue("T", 0), 1)

    def test_hook_refuses(self) -> None:
        """A hook raising an RMQError refuses the send with that code."""
        broker = self.build()
        from rmq.common.errors import RMQError

        @implementer(ISendMessageHook)
        class Refuse:
            def before_put(self, context: SendContext) -> None:
                raise RMQError("no transactions here", ResponseCode.NO_PERMISSION)

        broker.send_hooks.append(Refuse())
        resp = self.answer(send())
        self.assertEqual((resp.code, resp.remark), (16, "no transactions here"))

    def test_retry_topic_to_dlq(self) -> None:
        """A %RETRY% send past the group's retryMaxTimes lands in %DLQ%<group> queue 0."""
        self.build()
        self.assertEqual(self.answer(send(topic="%RETRY%G", j=3)).code, 0)
        self.assertEqual(self.store.get_max_offset_in_queue("%RETRY%G", 0), 1)
        resp = self.answer(send(topic="%RETRY%G", j=16, props="DELAY\x013"))
        self.assertEqual(resp.code, 0)
        self.assertEqual(self.store.get_max_offset_in_queue("%DLQ%G", 0), 1)
        self.assertIn("%DLQ%G", self.broker.topics)

    def test_retry_topic_unknown_group(self) -> None:
        """Without group auto-creation a %RETRY% send for an unknown group is 26."""
        self.build(auto_create_subscription_group=False)
        self.broker.topics.create_topic_if_absent("%RETRY%G", 1)
        resp = self.answer(send(topic="%RETRY%G"))
        self.assertEqual(resp.code, ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST)

    def test_batch_limits(self) -> None:
        """A batch body is checked against maxMessageSize as a whole and must decode."""
        self.build(max_message_size=100)
        batch = encode_batch([Message("T", b"x" * 60), Message("T", b"y" * 60)])
        req = new_request(
            RequestCode.SEND_BATCH_MESSAGE,
            {"a": "PG", "b": "T", "c": "TBW102", "d": 4, "e": 0, "f": 0, "g": 1, "h": 0},
            batch,
        )
        self.assertEqual(self.answer(req).code, ResponseCode.MESSAGE_ILLEGAL)
        req.body = b"\x00\x00\x00\x05garbage"
        self.assertEqual(self.answer(req).code, ResponseCode.MESSAGE_ILLEGAL)

    def test_slave_refuses(self) -> None:
        """A slave broker refuses sends with NO_PERMISSION."""
        self.build(broker_role="SLAVE")
        self.assertEqual(self.answer(send()).code, ResponseCode.NO_PERMISSION)


class SendHeaderDecodeTests(SynchronousTestCase):
    """The header's fast path decodes exactly like the general typed-accessor path."""

    BASE = {
        "producerGroup": "PG",
        "topic": "T",
        "defaultTopic": "TBW102",
        "defaultTopicQueueNums": "4",
        "queueId": "1",
        "sysFlag": "0",
        "bornTimestamp": "1795295293412",
        "flag": "0",
        "properties": "TAGS\x01a",
        "reconsumeTimes": "0",
        "unitMode": "false",
        "batch": "1",
    }

    def decode_both(
        self, fields: dict[str, str], code: int = RequestCode.SEND_MESSAGE
    ) -> tuple[object, object]:
        request = RemotingCommand(code=code, opaque=7, ext_fields=fields)
        results: list[object] = []
        for decode in (
            SendMessageRequestHeader.from_request,
            lambda r: SendMessageRequestHeader._from_fields(
                r, {V2_KEYS.get(k, k): v for k, v in r.ext_fields.items()}
            ),
        ):
            try:
                results.append(decode(request))
            except HeaderError as e:
                results.append((e.code, e.remark))
        return results[0], results[1]

    def test_variants_agree(self) -> None:
        """Missing, empty, signed, non-ASCII and extra fields give equal headers or errors."""
        variants: list[dict[str, str | None]] = [
            {},
            {"queueId": "-1"},
            {"queueId": ""},
            {"flag": ""},
            {"sysFlag": "+1"},
            {"bornTimestamp": "١٢"},
            {"reconsumeTimes": "x"},
            {"maxReconsumeTimes": "16"},
            {"maxReconsumeTimes": ""},
            {"defaultTopicQueueNums": None, "sysFlag": None, "flag": None},
            {"topic": None},
            {"producerGroup": None},
            {"queueId": None},
            {"unitMode": "TRUE", "batch": None},
        ]
        for change in variants:
            fields = {k: v for k, v in {**self.BASE, **change}.items() if v is not None}
            fast, general = self.decode_both(fields)
            self.assertEqual(fast, general, change)

    def test_v2_keys(self) -> None:
        """One-letter SEND_MESSAGE_V2 keys decode like the long names."""
        short = {"a": "PG", "b": "T", "c": "TBW102", "d": "4", "e": "1", "f": "0", "g": "9"}
        fast, general = self.decode_both(short, RequestCode.SEND_MESSAGE_V2)
        self.assertEqual(fast, general)
        assert isinstance(fast, SendMessageRequestHeader)
        self.assertEqual((fast.topic, fast.queue_id, fast.born_timestamp), ("T", 1, 9))
