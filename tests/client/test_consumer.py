"""PushConsumer and PullConsumer against the recording fake cluster, on a Clock."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from rmq.client import (
    CONSUME_SUCCESS,
    RECONSUME_LATER,
    ConsumeFromWhere,
    MessageExt,
    MessageModel,
    MessageQueue,
    Producer,
    PullConsumer,
    PushConsumer,
    new_message,
)
from rmq.client.interfaces import IOffsetStore
from rmq.client.offsets import LocalFileOffsetStore
from rmq.common import fastjson
from rmq.common.message import RETRY_TOPIC, BrokerMessage, Message
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import new_request
from tests.client.fakes import NAMESRV, FakeCluster, FakeRemoting


def tq(c: PushConsumer | PullConsumer) -> list[MessageQueue]:
    """Assigned queues of topic T (the retry topic's queue is assigned too)."""
    return [mq for mq in c.assigned_queues() if mq.topic == "T"]


Listener = Callable[[list[MessageExt]], Deferred[object]]


def deferred_listener() -> tuple[Listener, list[Deferred[object]]]:
    """A listener answering every call with a new Deferred, and the list those go to."""
    pending: list[Deferred[object]] = []

    def listener(msgs: list[MessageExt]) -> Deferred[object]:
        d: Deferred[object] = Deferred()
        pending.append(d)
        return d

    return listener, pending


class _Base(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.cluster = FakeCluster(self.clock, brokers=1, queues=4)
        self.cluster.create_topic("T")
        self.producer = Producer("PG", NAMESRV, self.clock, remoting_factory=self.cluster.connect)
        self.successResultOf(self.producer.start())
        self.consumers: list[PushConsumer | PullConsumer] = []
        self.got: dict[str, list[MessageExt]] = {}

    def tearDown(self) -> None:
        for c in self.consumers:
            self.successResultOf(c.shutdown())
        self.successResultOf(self.producer.shutdown())
        self.cluster.expire_holds()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def consumer(self, name: str, **kw: object) -> PushConsumer:
        got = self.got.setdefault(name, [])

        def listener(msgs: list[MessageExt]) -> object:
            got.extend(msgs)
            return CONSUME_SUCCESS

        expr = str(kw.pop("expr", "*"))
        kw.setdefault("listener", listener)
        kw.setdefault("consume_from_where", ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET)
        c = PushConsumer(
            str(kw.pop("group", "CG")),
            NAMESRV,
            self.clock,
            instance_name=name,
            client_ip="127.0.0.1",
            remoting_factory=self.cluster.connect,
            offset_store_dir=self.mktemp(),
            **kw,  # type: ignore[arg-type]
        )
        c.subscribe("T", expr)
        self.consumers.append(c)
        return c

    def committed_t(self) -> int:
        """The sum of the offsets committed to the broker for topic T's queues."""
        return sum(v for k, v in self.cluster.offsets.items() if k[2] == "T")

    def send(self, n: int, **kw: Any) -> None:
        for i in range(n):
            self.successResultOf(self.producer.send(new_message("T", b"m%d" % i, **kw)))
        self.cluster.wake()


class PushConsumerTests(_Base):
    def test_consumes_and_commits(self) -> None:
        """Messages sent are delivered once and offsets are committed to the broker every 5 s."""
        c = self.consumer("c1")
        self.successResultOf(c.start())
        self.assertEqual(len(tq(c)), 4)
        self.send(8)
        self.assertEqual(
            sorted(m.body for m in self.got["c1"]), sorted(b"m%d" % i for i in range(8))
        )
        self.clock.advance(5)
        offsets = {k[3]: v for k, v in self.cluster.offsets.items() if k[2] == "T"}
        self.assertEqual(offsets, {0: 2, 1: 2, 2: 2, 3: 2})
        pulls = self.cluster.sent(RequestCode.PULL_MESSAGE)
        ext = pulls[-1][1].ext_fields
        self.assertEqual(ext["suspendTimeoutMillis"], "15000")
        self.assertEqual(int(ext["sysFlag"]) & 0x2, 0x2)

    def test_retry_subscription_in_heartbeat(self) -> None:
        """A clustering consumer subscribes %RETRY%<group> and heartbeats its subscriptions."""
        c = self.consumer("c1", expr="TagA || TagB")
        self.successResultOf(c.start())
        hb = json.loads(self.cluster.sent(RequestCode.HEART_BEAT)[-1][1].body)
        [cd] = hb["consumerDataSet"]
        subs = {s["topic"]: s for s in cd["subscriptionDataSet"]}
        self.assertEqual(set(subs), {"T", "%RETRY%CG"})
        self.assertEqual(subs["T"]["codeSet"], sorted([2598919, 2598920]))
        self.assertEqual(cd["messageModel"], "CLUSTERING")

    def test_tag_filter(self) -> None:
        """Only messages whose tag matches the expression reach the listener."""
        c = self.consumer("c1")
        c.subscribe("T", "TagA")
        self.successResultOf(c.start())
        self.send(2, tags="TagA")
        self.send(3, tags="TagB")
        self.assertEqual(len(self.got["c1"]), 2)
        self.assertTrue(all(m.tags == "TagA" for m in self.got["c1"]))

    def test_two_consumers_split_then_take_over(self) -> None:
        """Two members split the queues; when one stops the other owns all at once (notify)."""
        a = self.consumer("a")
        b = self.consumer("b")
        self.successResultOf(a.start())
        self.successResultOf(b.start())
        self.clock.advance(0)
        self.assertEqual(len(tq(a)) + len(tq(b)), 4)
        self.assertEqual(len(tq(a)), 2)
        self.assertFalse(set(tq(a)) & set(tq(b)))
        self.send(8)
        self.successResultOf(b.shutdown())
        self.consumers.remove(b)
        self.clock.advance(0)
        self.assertEqual(len(tq(a)), 4)
        self.send(8)
        bodies = [m.body for m in self.got["a"] + self.got["b"]]
        self.assertEqual(len(bodies), 16)

    def test_reconsume_later_sends_back(self) -> None:
        """RECONSUME_LATER sends CONSUMER_SEND_MSG_BACK and the offset moves on."""
        c = self.consumer("c1", listener=lambda msgs: RECONSUME_LATER)
        self.successResultOf(c.start())
        self.send(1)
        [(_, cmd)] = self.cluster.sent(RequestCode.CONSUMER_SEND_MSG_BACK)
        self.assertEqual(cmd.ext_fields["group"], "CG")
        self.assertEqual(cmd.ext_fields["delayLevel"], "0")
        self.assertEqual(cmd.ext_fields["maxReconsumeTimes"], "16")
        self.clock.advance(5)
        self.assertEqual(self.committed_t(), 1)

    def test_listener_deferred_and_exception(self) -> None:
        """A listener may fire a Deferred later; one that raises counts as RECONSUME_LATER."""
        listener, pending = deferred_listener()
        c = self.consumer("c1", listener=listener)
        self.successResultOf(c.start())
        self.send(1)
        self.assertEqual(len(pending), 1)
        self.clock.advance(5)
        self.assertEqual(self.committed_t(), 0)
        pending[0].callback(CONSUME_SUCCESS)
        self.clock.advance(5)
        self.assertEqual(self.committed_t(), 1)

        def boom(msgs: list[MessageExt]) -> object:
            raise ValueError("boom")

        c.listener = boom
        self.send(1)
        self.flushLoggedErrors(ValueError)
        self.assertEqual(len(self.cluster.sent(RequestCode.CONSUMER_SEND_MSG_BACK)), 1)

    def test_consume_concurrency_bound(self) -> None:
        """At most consume_concurrency listener calls are pending; the rest wait their turn."""
        listener, pending = deferred_listener()
        self.cluster.topics["T"] = 1
        c = self.consumer("c1", listener=listener, consume_concurrency=2)
        self.successResultOf(c.start())
        self.send(5)
        self.assertEqual(len(pending), 2)
        pending[0].callback(CONSUME_SUCCESS)
        self.assertEqual(len(pending), 3)
        for d in pending[1:]:
            d.callback(CONSUME_SUCCESS)
        self.assertEqual(len(pending), 5)
        pending[3].callback(CONSUME_SUCCESS)
        pending[4].callback(CONSUME_SUCCESS)
        self.clock.advance(5)
        self.assertEqual(self.cluster.offsets[("broker-a", "CG", "T", 0)], 5)

    def test_shutdown_during_rebalance(self) -> None:
        """Shutdown waits for a rebalance that is waiting on the broker, and nothing fails."""
        c = self.consumer("c1")
        self.successResultOf(c.start())
        held: list[Deferred[object]] = []
        orig = self.cluster._b38

        def slow(remote, broker, cmd):  # type: ignore[no-untyped-def]
            d: Deferred[object] = Deferred()
            held.append(d)
            return d.addCallback(lambda _: orig(remote, broker, cmd))

        self.cluster._b38 = slow  # type: ignore[method-assign]
        self.clock.advance(20)
        self.assertEqual(len(held), 1)
        stopped = c.shutdown()
        self.assertNoResult(stopped)
        self.cluster._b38 = orig  # type: ignore[method-assign]
        fired = 0
        while fired < len(held):  # the retry topic's lookup may follow the first one
            held[fired].callback(None)
            fired += 1
        self.successResultOf(stopped)
        self.consumers.remove(c)

    def test_retry_topic_restored(self) -> None:
        """Messages from %RETRY%<group> reach the listener under their original topic."""
        c = self.consumer("c1")
        self.successResultOf(c.start())
        msg = BrokerMessage(
            "%RETRY%CG", 0, b"again", properties={RETRY_TOPIC: "T"}, store_host="127.0.0.1:10911"
        )
        self.cluster.store("broker-a", "%RETRY%CG", 0, msg)
        self.cluster.wake()
        [m] = self.got["c1"]
        self.assertEqual((m.topic, m.body), ("T", b"again"))

    def test_resume_from_committed_offset(self) -> None:
        """A restarted consumer continues from the committed offset, not from the start."""
        c = self.consumer("c1")
        self.successResultOf(c.start())
        self.send(4)
        self.successResultOf(c.shutdown())
        self.consumers.remove(c)
        self.send(4)
        c2 = self.consumer("c2")
        self.successResultOf(c2.start())
        self.assertEqual(len(self.got["c2"]), 4)

    def test_consume_from_last(self) -> None:
        """A new group with CONSUME_FROM_LAST_OFFSET skips what was already there."""
        self.send(4)
        c = self.consumer("c1", consume_from_where=ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET)
        self.successResultOf(c.start())
        self.assertEqual(self.got["c1"], [])
        self.send(2)
        self.assertEqual(len(self.got["c1"]), 2)

    def test_flow_control(self) -> None:
        """A queue holding more than the threshold stops pulling until messages are consumed."""
        listener, pending = deferred_listener()
        self.cluster.topics["T"] = 1
        c = self.consumer(
            "c1", listener=listener, pull_threshold_for_queue=3, consume_concurrency=100
        )
        self.successResultOf(c.start())
        self.send(10)
        pulls = len(self.cluster.sent(RequestCode.PULL_MESSAGE))
        self.clock.advance(1)
        self.assertEqual(len(self.cluster.sent(RequestCode.PULL_MESSAGE)), pulls)
        for d in pending:
            d.callback(CONSUME_SUCCESS)
        self.clock.advance(0.05)
        self.assertGreater(len(self.cluster.sent(RequestCode.PULL_MESSAGE)), pulls)

    def test_pull_error_retries_after_a_second(self) -> None:
        """A failed pull is retried after 1 s."""
        c = self.consumer("c1")
        self.successResultOf(c.start())
        self.cluster.down.add(self.cluster.brokers["broker-a"])
        self.cluster.expire_holds()
        n = len(self.cluster.sent(RequestCode.PULL_MESSAGE))
        self.clock.advance(1)
        self.assertEqual(len(self.cluster.sent(RequestCode.PULL_MESSAGE)), n + 5)
        self.cluster.down.clear()
        self.clock.advance(1)
        self.send(1)
        self.assertEqual(len(self.got["c1"]), 1)

    def test_broker_requests(self) -> None:
        """GET_CONSUMER_RUNNING_INFO and CONSUME_MESSAGE_DIRECTLY are answered."""
        c = self.consumer("c1")
        self.successResultOf(c.start())
        inst = c.instance
        req = new_request(
            RequestCode.GET_CONSUMER_RUNNING_INFO,
            {"consumerGroup": "CG", "clientId": inst.client_id},
        )
        resp = inst.process_request(None, req)
        self.assertEqual(resp.code, 0)
        self.assertIn(b"subscriptionSet", resp.body)
        self.send(1)
        raw = (
            self.cluster.queues[("broker-a", "T", 0)][0]
            if ("broker-a", "T", 0) in self.cluster.queues
            else next(iter(self.cluster.queues.values()))[0]
        )
        req = new_request(
            RequestCode.CONSUME_MESSAGE_DIRECTLY,
            {"consumerGroup": "CG", "clientId": inst.client_id},
            raw,
        )
        resp = self.successResultOf(inst.process_request(None, req))
        self.assertIn(b"CR_SUCCESS", resp.body)
        req = new_request(999)
        self.assertEqual(inst.process_request(None, req).code, 3)

    def test_reset_offset(self) -> None:
        """RESET_CONSUMER_CLIENT_OFFSET moves the group's queues to the given offsets."""
        self.cluster.topics["T"] = 1
        c = self.consumer("c1")
        self.successResultOf(c.start())
        self.send(3)
        self.assertEqual(len(self.got["c1"]), 3)
        body = b'{"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"T"}:1}}'
        req = new_request(
            RequestCode.RESET_CONSUMER_CLIENT_OFFSET,
            {"topic": "T", "group": "CG", "timestamp": 0},
            body,
            oneway=True,
        )
        self.assertIsNone(c.instance.process_request(None, req))
        self.assertEqual(len(self.got["c1"]), 5)
        self.assertEqual([m.queue_offset for m in self.got["c1"][3:]], [1, 2])

    def test_consumer_status_from_client(self) -> None:
        """GET_CONSUMER_STATUS_FROM_CLIENT (221) from a broker is answered with the group's
        in-memory offsets of the asked topic as Java's GetConsumerStatusBody (MessageQueue
        object keys); a group this client does not run gets an empty table."""
        c = self.consumer("c1")
        self.successResultOf(c.start())
        self.send(8)
        remoting = c.instance.remoting
        assert isinstance(remoting, FakeRemoting)
        ask = new_request(
            RequestCode.GET_CONSUMER_STATUS_FROM_CLIENT,
            {"topic": "T", "group": "CG", "clientAddr": c.instance.client_id},
        )
        before = len(remoting.replies)
        remoting.peer_request(ask)
        (resp,) = remoting.replies[before:]
        self.assertEqual((resp.code, resp.opaque, resp.is_response), (0, ask.opaque, True))
        self.assertTrue(
            resp.body.startswith(
                b'{"consumerTable":{},"messageQueueTable":'
                b'{{"brokerName":"broker-a","queueId":0,"topic":"T"}:2,'
            ),
            resp.body,
        )
        table = fastjson.loads(resp.body)["messageQueueTable"]
        got = {MessageQueue.from_json_obj(k.as_dict()): v for k, v in table.items()}
        self.assertEqual(got, {MessageQueue("T", "broker-a", q): 2 for q in range(4)})
        other = new_request(
            RequestCode.GET_CONSUMER_STATUS_FROM_CLIENT, {"topic": "T", "group": "X"}
        )
        remoting.peer_request(other)
        answer = remoting.replies[-1]
        self.assertEqual(answer.code, 0)
        self.assertEqual(fastjson.loads(answer.body)["messageQueueTable"], {})

    def test_rebalance_every_20s_and_new_queues(self) -> None:
        """Raising the queue count is picked up by the route refresh and the next rebalance."""
        c = self.consumer("c1")
        self.successResultOf(c.start())
        self.assertEqual(len(tq(c)), 4)
        self.cluster.topics["T"] = 8
        self.clock.advance(30)
        self.clock.advance(10)
        self.assertEqual(len(tq(c)), 8)

    def test_heartbeat_when_route_brings_first_broker(self) -> None:
        """A consumer started while its topic had no route (no broker known) heartbeats the
        broker as soon as a route refresh names it, before the 30 s heartbeat tick, and so
        joins the group and gets its queues; a known broker gets no extra heartbeat."""
        del self.cluster.topics["T"]
        c = self.consumer("c1", poll_name_server_interval=10.0)
        self.successResultOf(c.start())
        cid = c.client_id

        def heartbeats() -> list[str]:
            return [
                a
                for a, cmd in self.cluster.sent(RequestCode.HEART_BEAT)
                if cid.encode() in cmd.body
            ]

        self.assertEqual(heartbeats(), [])
        self.cluster.create_topic("T")
        self.clock.advance(10)
        self.assertEqual(heartbeats(), ["127.0.0.1:10911"])
        self.assertEqual(self.cluster.members["CG"].keys(), {cid})
        self.assertEqual(len(tq(c)), 4)
        self.clock.advance(10)
        self.assertEqual(len(heartbeats()), 1)
        self.clock.advance(10)  # the 30 s tick
        self.assertEqual(len(heartbeats()), 2)

    def test_orderly(self) -> None:
        """Orderly: queues are locked, consumed in order, a failure retries the same message."""
        self.cluster.topics["T"] = 1
        seen: list[bytes] = []
        fail_once = {b"m1"}

        def listener(msgs: list[MessageExt]) -> object:
            m = msgs[0]
            seen.append(m.body)
            if m.body in fail_once:
                fail_once.discard(m.body)
                return RECONSUME_LATER
            return CONSUME_SUCCESS

        c = self.consumer("c1", listener=listener, orderly=True)
        self.successResultOf(c.start())
        self.assertEqual(len(self.cluster.sent(RequestCode.LOCK_BATCH_MQ)), 1)
        self.send(3)
        self.assertEqual(seen, [b"m0", b"m1"])
        self.clock.advance(1)
        self.assertEqual(seen, [b"m0", b"m1", b"m1", b"m2"])
        self.clock.advance(20)
        self.assertEqual(len(self.cluster.sent(RequestCode.LOCK_BATCH_MQ)), 2)
        self.successResultOf(c.shutdown())
        self.consumers.remove(c)
        [(_, unlock)] = self.cluster.sent(RequestCode.UNLOCK_BATCH_MQ)
        self.assertFalse(unlock.is_oneway)
        self.assertEqual(self.cluster.locks, {})

    def test_orderly_lock_held_elsewhere(self) -> None:
        """An orderly consumer does not pull a queue another client holds locked."""
        self.cluster.topics["T"] = 1
        self.cluster.locks[("broker-a", "CG", "T", 0)] = "someone-else"
        c = self.consumer("c1", orderly=True)
        self.successResultOf(c.start())
        self.assertEqual(tq(c), [])


class RetryAndDLQTests(_Base):
    def orderly(
        self, fail: set[bytes], **kw: object
    ) -> tuple[PushConsumer, list[tuple[bytes, int]], list[MessageExt]]:
        """A started orderly consumer of the 1-queue topic T whose listener fails ``fail``;
        it records (body, reconsume_times) per call and the messages themselves."""
        self.cluster.topics["T"] = 1
        seen: list[tuple[bytes, int]] = []
        msgs_seen: list[MessageExt] = []

        def listener(msgs: list[MessageExt]) -> object:
            seen.extend((m.body, m.reconsume_times) for m in msgs)
            msgs_seen.extend(msgs)
            return RECONSUME_LATER if msgs[0].body in fail else CONSUME_SUCCESS

        c = self.consumer("c1", listener=listener, orderly=True, **kw)
        self.successResultOf(c.start())
        return c, seen, msgs_seen

    def test_orderly_poison_message_to_dlq_and_queue_moves_on(self) -> None:
        """An orderly message that always fails is retried locally 16 times, 1 s apart, then
        re-sent with RECONSUME_TIME 16 so it lands in %DLQ%<group>; the next ones follow."""
        c, seen, msgs = self.orderly({b"m1"})
        self.send(3)
        self.assertEqual(seen, [(b"m0", 0), (b"m1", 0)])
        for n in range(1, 17):
            self.clock.advance(0.999)
            self.assertEqual(len(seen), 1 + n)
            self.clock.advance(0.001)
            self.assertEqual(seen[1 + n], (b"m1", n))
        self.assertEqual(seen[-2:], [(b"m1", 16), (b"m2", 0)])
        self.assertEqual(len(seen), 19)
        self.assertEqual(self.cluster.sent(RequestCode.CONSUMER_SEND_MSG_BACK), [])
        [(_, resend)] = [
            (a, cmd)
            for a, cmd in self.cluster.sent(RequestCode.SEND_MESSAGE_V2)
            if cmd.ext_fields["b"] == "%RETRY%CG"
        ]
        self.assertEqual((resend.ext_fields["j"], resend.ext_fields["l"]), ("16", "16"))
        self.assertEqual(resend.ext_fields["a"], "CLIENT_INNER_PRODUCER")
        [dead] = self.cluster.stored("%DLQ%CG")
        original = msgs[1]
        self.assertEqual(dead.body, b"m1")
        self.assertEqual(dead.reconsume_times, 16)
        self.assertEqual(dead.properties[RETRY_TOPIC], "T")
        self.assertEqual(dead.properties["ORIGIN_MESSAGE_ID"], original.msg_id)
        self.assertEqual(dead.properties["UNIQ_KEY"], original.properties["UNIQ_KEY"])
        self.assertEqual(dead.properties["MAX_RECONSUME_TIMES"], "16")
        self.assertNotIn("DELAY", dead.properties)
        self.assertEqual(self.cluster.stored("%RETRY%CG"), [])
        self.clock.advance(5)
        self.assertEqual(self.cluster.offsets[("broker-a", "CG", "T", 0)], 3)
        self.send(1)
        self.assertEqual(seen[-1], (b"m0", 0))

    def test_orderly_bound_is_max_reconsume_times(self) -> None:
        """max_reconsume_times bounds the local retries; a failed re-send is retried locally."""
        c, seen, _ = self.orderly({b"m0"}, max_reconsume_times=2)
        self.send(2)
        self.clock.advance(1)
        self.assertEqual(seen, [(b"m0", 0), (b"m0", 1)])
        self.cluster.send_code["broker-a"] = 14  # SERVICE_NOT_AVAILABLE: the re-send fails
        self.clock.advance(1)
        self.assertEqual(seen[-1], (b"m0", 2))
        self.assertEqual(self.cluster.stored("%DLQ%CG"), [])
        self.cluster.send_code.clear()
        self.clock.advance(1)
        self.assertEqual(seen[2:], [(b"m0", 2), (b"m0", 3), (b"m1", 0)])
        [dead] = self.cluster.stored("%DLQ%CG")
        self.assertEqual((dead.body, dead.reconsume_times), (b"m0", 3))

    def test_send_back_failure_resends_to_retry_topic(self) -> None:
        """When CONSUMER_SEND_MSG_BACK fails the client sends a copy to %RETRY%<group> itself,
        with Java's properties, and the offset moves on."""
        calls: list[MessageExt] = []

        def listener(msgs: list[MessageExt]) -> object:
            calls.extend(msgs)
            return RECONSUME_LATER if len(calls) == 1 else CONSUME_SUCCESS

        self.cluster.send_back_code = ResponseCode.SYSTEM_ERROR
        c = self.consumer("c1", listener=listener)
        self.successResultOf(c.start())
        self.send(1)
        self.assertEqual(len(self.cluster.sent(RequestCode.CONSUMER_SEND_MSG_BACK)), 1)
        [retry] = self.cluster.stored("%RETRY%CG")
        first = calls[0]
        self.assertEqual(retry.body, b"m0")
        self.assertEqual(retry.reconsume_times, 1)
        props = retry.properties
        self.assertEqual(props[RETRY_TOPIC], "T")
        self.assertEqual(props["RECONSUME_TIME"], "1")
        self.assertEqual(props["MAX_RECONSUME_TIMES"], "16")
        self.assertEqual(props["DELAY"], "3")
        self.assertEqual(props["ORIGIN_MESSAGE_ID"], first.msg_id)
        self.assertEqual(props["UNIQ_KEY"], first.properties["UNIQ_KEY"])
        self.cluster.wake()
        self.assertEqual(len(calls), 2)
        self.assertEqual((calls[1].topic, calls[1].body, calls[1].reconsume_times), ("T", b"m0", 1))
        self.clock.advance(5)
        self.assertEqual(self.committed_t(), 1)
        hb = json.loads(self.cluster.sent(RequestCode.HEART_BEAT)[-1][1].body)
        groups = [p["groupName"] for p in hb["producerDataSet"]]
        self.assertEqual(groups.count("CLIENT_INNER_PRODUCER"), 1)

    def test_send_back_and_resend_fail_retry_locally(self) -> None:
        """When both the send-back and the re-send fail, the message is retried locally after
        5 s with reconsume_times + 1 and its offset is not committed before that."""
        calls: list[tuple[bytes, int]] = []

        def listener(msgs: list[MessageExt]) -> object:
            calls.extend((m.body, m.reconsume_times) for m in msgs)
            return RECONSUME_LATER if len(calls) == 1 else CONSUME_SUCCESS

        c = self.consumer("c1", listener=listener)
        self.successResultOf(c.start())
        self.successResultOf(self.producer.send(new_message("T", b"x")))
        self.cluster.send_back_code = ResponseCode.SYSTEM_ERROR
        self.cluster.send_code["broker-a"] = 14  # SERVICE_NOT_AVAILABLE
        self.cluster.wake()
        self.assertEqual(calls, [(b"x", 0)])
        self.clock.advance(4.9)
        self.assertEqual(len(calls), 1)
        self.assertEqual(self.cluster.stored("%RETRY%CG"), [])
        self.clock.advance(0.1)
        self.assertEqual(calls, [(b"x", 0), (b"x", 1)])
        self.clock.advance(5)
        self.assertEqual(self.committed_t(), 1)


class BroadcastingTests(_Base):
    def test_each_consumer_gets_everything_and_offsets_in_file(self) -> None:
        """Broadcasting: each consumer gets every message; offsets go to a local file."""
        a = self.consumer("a", message_model=MessageModel.BROADCASTING)
        b = self.consumer("b", message_model=MessageModel.BROADCASTING)
        self.successResultOf(a.start())
        self.successResultOf(b.start())
        self.send(6)
        self.assertEqual(len(self.got["a"]), 6)
        self.assertEqual(len(self.got["b"]), 6)
        self.assertEqual(self.cluster.sent(RequestCode.GET_CONSUMER_LIST_BY_GROUP), [])
        self.clock.advance(5)
        store = a.offset_store
        assert isinstance(store, LocalFileOffsetStore)
        verifyObject(IOffsetStore, store)
        self.assertTrue(os.path.exists(store.path))
        with open(store.path, "rb") as f:
            table = LocalFileOffsetStore.parse(f.read())
        self.assertEqual(sum(table.values()), 6)
        self.assertEqual(self.cluster.sent(RequestCode.UPDATE_CONSUMER_OFFSET), [])

    def test_local_store_reload(self) -> None:
        """A local offset file is read back, also from its .bak when the main file is torn."""
        d = self.mktemp()
        s = LocalFileOffsetStore(d, "cid", "G")
        mq = MessageQueue("T", "b", 1)
        s.update_offset(mq, 7, False)
        self.successResultOf(s.persist([mq]))
        s.update_offset(mq, 9, False)
        self.successResultOf(s.persist([mq]))
        with open(s.path, "wb") as f:
            f.write(b"{torn")
        s2 = LocalFileOffsetStore(d, "cid", "G")
        self.successResultOf(s2.load())
        self.assertEqual(self.successResultOf(s2.read_offset(mq, True)), 7)


class PullConsumerTests(_Base):
    def pull_consumer(self, **kw: object) -> PullConsumer:
        c = PullConsumer(
            "LG",
            NAMESRV,
            self.clock,
            remoting_factory=self.cluster.connect,
            consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET,
            **kw,  # type: ignore[arg-type]
        )
        self.consumers.append(c)
        return c

    def test_assign_poll_seek_commit(self) -> None:
        """assign + poll returns messages; seek rewinds; commit stores offsets."""
        self.send(4)
        c = self.pull_consumer(auto_commit=False)
        mq = MessageQueue("T", "broker-a", 0)
        c.assign([mq])
        self.successResultOf(c.start())
        self.assertIn(mq, self.successResultOf(c.fetch_queues("T")))
        got = self.successResultOf(c.poll(timeout=1))
        self.assertEqual([m.queue_offset for m in got], [0])
        d = c.poll(timeout=1)
        self.assertNoResult(d)
        self.clock.advance(1)
        self.assertEqual(self.successResultOf(d), [])
        c.seek(mq, 0)
        self.assertEqual(len(self.successResultOf(c.poll(timeout=1))), 1)
        self.successResultOf(c.commit())
        self.assertEqual(self.cluster.offsets[("broker-a", "LG", "T", 0)], 1)

    def test_subscribe_poll_waits(self) -> None:
        """A poll with nothing buffered fires as soon as a message arrives."""
        c = self.pull_consumer()
        c.subscribe("T", "*")
        self.successResultOf(c.start())
        self.assertEqual(len(tq(c)), 4)
        d = c.poll(timeout=5)
        self.assertNoResult(d)
        self.send(1)
        [m] = self.successResultOf(d)
        self.assertEqual(m.body, b"m0")
        self.assertEqual(self.successResultOf(c.poll(timeout=0)), [])
        self.clock.advance(5)
        self.assertEqual(sum(v for k, v in self.cluster.offsets.items() if k[1] == "LG"), 1)


class ExportsTests(SynchronousTestCase):
    def test_exports(self) -> None:
        """rmq.client exports exactly its public API, and every name resolves."""
        import rmq.client

        for name in rmq.client.__all__:
            self.assertTrue(hasattr(rmq.client, name), name)
        self.assertIn("Producer", rmq.client.__all__)
        self.assertIn("PushConsumer", rmq.client.__all__)
        self.assertIn("PullConsumer", rmq.client.__all__)
        self.assertIs(rmq.client.Message, Message)
