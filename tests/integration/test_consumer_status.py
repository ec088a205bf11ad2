"""An rmq consumer answers GET_CONSUMER_STATUS_FROM_CLIENT (221), so the admin's
INVOKE_BROKER_TO_GET_CONSUMER_STATUS (rmq-admin getConsumerStatus) lists its queue offsets."""

from __future__ import annotations

from collections import Counter

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from rmq.admin.api import MQAdmin, QueueKey
from rmq.client import (
    CONSUME_SUCCESS,
    ConsumeFromWhere,
    ConsumeResult,
    MessageExt,
    Producer,
    PushConsumer,
    new_message,
)
from rmq.remoting.client import RemotingClient, tcp_endpoint_factory
from rmq.testing import start_local_cluster

TOPIC = "TopicStatus"
GROUP = "CG_STATUS"


class ConsumerStatusTests(TestCase):
    timeout = 60

    async def test_admin_lists_rmq_consumer_offsets(self) -> None:
        """Through the broker, MQAdmin.consumer_status gets each queue's offset from the rmq
        PushConsumer that consumed it (all of it, or only the asked client id)."""
        cluster = await start_local_cluster(reactor)
        self.addCleanup(cluster.stop)
        admin = MQAdmin(
            RemotingClient(reactor, tcp_endpoint_factory(reactor)), reactor, [cluster.namesrv_addr]
        )
        self.addCleanup(admin.close)
        await admin.create_topic(cluster.broker_addr, TOPIC, 2, 2, 6)
        await cluster.broker.registration.register_all()
        producer = Producer("PG_STATUS", cluster.namesrv_addr, reactor)
        await producer.start()
        self.addCleanup(producer.shutdown)
        per_queue: Counter[int] = Counter()
        for i in range(7):
            result = await producer.send(new_message(TOPIC, b"m%d" % i))
            assert result.message_queue is not None
            per_queue[result.message_queue.queue_id] += 1

        consumed: list[MessageExt] = []
        all_consumed: Deferred[None] = Deferred()

        def listener(msgs: list[MessageExt]) -> ConsumeResult:
            consumed.extend(msgs)
            if len(consumed) == 7:
                # After this call returns the consumer moves its offsets.
                reactor.callLater(0, all_consumed.callback, None)
            return CONSUME_SUCCESS

        consumer = PushConsumer(
            GROUP,
            cluster.namesrv_addr,
            reactor,
            listener=listener,
            consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET,
        )
        consumer.subscribe(TOPIC, "*")
        await consumer.start()
        self.addCleanup(consumer.shutdown)
        await all_consumed.addTimeout(30, reactor)

        client_id = consumer.instance.client_id
        expected = {QueueKey(TOPIC, "broker-a", q): n for q, n in per_queue.items()}
        self.assertEqual(
            await admin.consumer_status(cluster.broker_addr, TOPIC, GROUP),
            {client_id: expected},
        )
        self.assertEqual(
            await admin.consumer_status(cluster.broker_addr, TOPIC, GROUP, client_id),
            {client_id: expected},
        )
        self.assertEqual(
            await admin.consumer_status(cluster.broker_addr, "OtherTopic", GROUP),
            {client_id: {}},
        )
