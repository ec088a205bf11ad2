"""rmq's own client against the broker through rmq.testing (the docs/testing.md example)."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from rmq.client import (
    CONSUME_SUCCESS,
    ConsumeFromWhere,
    ConsumeResult,
    MessageExt,
    Producer,
    PushConsumer,
)
from rmq.client.producer import new_message
from rmq.testing import start_local_cluster


class ClientRoundTripTests(TestCase):
    timeout = 60

    async def test_produce_and_consume(self) -> None:
        """Messages sent by rmq.client's Producer reach a PushConsumer of the same cluster."""
        cluster = await start_local_cluster(reactor)
        self.addCleanup(cluster.stop)
        producer = Producer("PG_DOC", cluster.namesrv_addr, reactor)
        await producer.start()
        self.addCleanup(producer.shutdown)
        for i in range(10):
            result = await producer.send(new_message("Orders", f"order {i}".encode(), keys=f"o{i}"))
            self.assertEqual(result.status.name, "SEND_OK")

        got: list[MessageExt] = []
        all_in: Deferred[None] = Deferred()

        def listener(msgs: list[MessageExt]) -> ConsumeResult:
            got.extend(msgs)
            if len(got) == 10 and not all_in.called:
                all_in.callback(None)
            return CONSUME_SUCCESS

        consumer = PushConsumer(
            "CG_DOC",
            cluster.namesrv_addr,
            reactor,
            listener=listener,
            consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET,
        )
        consumer.subscribe("Orders", "*")
        await consumer.start()
        self.addCleanup(consumer.shutdown)
        await all_in
        self.assertEqual(
            sorted(m.body for m in got), sorted(f"order {i}".encode() for i in range(10))
        )
        self.assertEqual(len(cluster.broker.consumers.client_ids("CG_DOC")), 1)
