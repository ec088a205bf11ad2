"""Integration: request/reply between two rmq clients through a real rmq broker (rmq.testing).

The requester's ``Producer.request`` sends to a topic a PushConsumer serves; the responder
answers with ``create_reply_message`` sent by its own producer (SEND_REPLY_MESSAGE_V2); the
broker pushes the reply (PUSH_REPLY_MESSAGE_TO_CLIENT) to the requester's connection.
Real loopback sockets, no sleeps.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from rmq.client import (
    CONSUME_SUCCESS,
    ConsumeFromWhere,
    MessageExt,
    Producer,
    PushConsumer,
    RequestTimeoutError,
    SelectMessageQueueByHash,
    SendStatus,
    create_reply_message,
    new_message,
)
from rmq.common.asyncutil import global_reactor, log_failure
from rmq.common.message import CORRELATION_ID, MSG_TYPE, REPLY_TO_CLIENT, TTL
from rmq.testing import LocalCluster, start_local_cluster

REPLY_TOPIC = "DefaultCluster_REPLY_TOPIC"


async def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``cond`` on the reactor until true; fail after ``timeout`` seconds."""
    reactor = global_reactor()
    deadline = reactor.seconds() + timeout
    while not cond():
        if reactor.seconds() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await deferLater(reactor, 0.01, lambda: None)


class RequestReplyTests(TestCase):
    timeout = 60

    async def start(self) -> LocalCluster:
        cluster = await start_local_cluster(global_reactor())
        self.addCleanup(cluster.stop)
        return cluster

    async def producer(self, cluster: LocalCluster, group: str, instance: str) -> Producer:
        p = Producer(group, cluster.namesrv_addr, client_ip="127.0.0.1", instance_name=instance)
        await p.start()
        self.addCleanup(p.shutdown)
        return p

    async def responder(self, cluster: LocalCluster, topic: str) -> list[MessageExt]:
        """A PushConsumer on ``topic`` answering every request with ``re:<body>``."""
        replier = await self.producer(cluster, "RESPONDER_P", "responder")
        served: list[MessageExt] = []

        def listener(msgs: list[MessageExt]) -> object:
            for msg in msgs:
                if CORRELATION_ID not in msg.properties:
                    continue
                served.append(msg)
                reply = create_reply_message(msg, b"re:" + msg.body)
                replier.send(reply).addErrback(log_failure("reply"))
            return CONSUME_SUCCESS

        consumer = PushConsumer(
            "RESPONDERS",
            cluster.namesrv_addr,
            client_ip="127.0.0.1",
            instance_name="responder",
            listener=listener,
            offset_store_dir=self.mktemp(),
            consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET,
        )
        consumer.subscribe(topic, "*")
        await consumer.start()
        self.addCleanup(consumer.shutdown)
        return served

    async def test_request_gets_its_reply(self) -> None:
        """Two concurrent requests each get their own reply, with the request's correlation."""
        cluster = await self.start()
        requester = await self.producer(cluster, "REQUESTER", "requester")
        warm = await requester.send(new_message("RQ", b"warm-up"))  # creates the topic
        self.assertIs(warm.status, SendStatus.SEND_OK)
        served = await self.responder(cluster, "RQ")
        first = new_message("RQ", b"ping-1")
        second = new_message("RQ", b"ping-2")
        d1: Deferred[MessageExt] = requester.request(first, timeout=15.0)
        d2: Deferred[MessageExt] = requester.request(second, timeout=15.0)
        r1, r2 = await d1, await d2
        self.assertEqual((r1.body, r2.body), (b"re:ping-1", b"re:ping-2"))
        self.assertEqual(r1.topic, REPLY_TOPIC)
        self.assertEqual(r1.properties[CORRELATION_ID], first.properties[CORRELATION_ID])
        self.assertEqual(r1.properties[MSG_TYPE], "reply")
        self.assertEqual(r1.properties[REPLY_TO_CLIENT], requester.client_id)
        self.assertEqual(r1.properties[TTL], "15000")
        self.assertIn("ARRIVE_TIME", r1.properties)
        self.assertIn("PUSH_REPLY_TIME", r1.properties)
        self.assertEqual({m.body for m in served}, {b"ping-1", b"ping-2"})
        self.assertEqual(len(requester.instance.replies), 0)
        # A request to a chosen queue (Java's request(msg, selector, arg, timeout)).
        ordered = await requester.request(
            new_message("RQ", b"ping-3"), 15.0, SelectMessageQueueByHash(), "key"
        )
        self.assertEqual(ordered.body, b"re:ping-3")
        # The broker kept the replies in the reply topic (storeReplyMessageEnable).
        await wait_for(lambda: cluster.store.get_max_offset_in_queue(REPLY_TOPIC, 0) >= 3)

    async def test_request_times_out_without_responder(self) -> None:
        """Nobody answers: RequestTimeoutError after the timeout, and no waiter left behind."""
        cluster = await self.start()
        requester = await self.producer(cluster, "REQUESTER", "requester")
        await requester.send(new_message("NOBODY", b"warm-up"))
        with self.assertRaises(RequestTimeoutError):
            await requester.request(new_message("NOBODY", b"hello?"), timeout=1.0)
        self.assertEqual(len(requester.instance.replies), 0)
