"""rmq's own client and the real C++ client exchange messages through rmq's broker.

rmq Producer → C++ PushConsumer, and C++ Producer → rmq PushConsumer: bodies (including a
compressed one each way), keys, tags and user properties arrive intact.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from rmq.client import CONSUME_SUCCESS, MessageExt, Producer, PushConsumer, new_message
from rmq.common.asyncutil import global_reactor
from rmq.testing import LocalCluster, start_local_cluster
from tests.interop.test_cpp_broker import MIB, check_delivery, message_specs
from tests.support.cpp import CppHarness
from tests.support.cpp_scripts.cppcommon import body_from_spec


class RmqClientInteropTests(TestCase):
    """rmq.client on one side, the C++ client on the other, rmq's broker in between."""

    timeout = 120

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        return Deferred.fromCoroutine(self._set_up())

    async def _set_up(self) -> None:
        self.reactor = global_reactor()
        self.cluster: LocalCluster = await start_local_cluster(
            self.reactor, broker_properties={"defaultTopicQueueNums": "4"}
        )
        self.addCleanup(self.cluster.stop)
        self.harness = CppHarness(self, self.reactor)

    async def test_rmq_producer_to_cpp_push_consumer(self) -> None:
        """Messages sent by rmq's Producer reach a C++ PushConsumer with everything intact."""
        topic = "TopicRmqToCpp"
        specs = message_specs("r", 100)
        # Over the 4 KiB threshold: rmq's producer zlib-compresses it; the C++ client inflates.
        specs[0]["body"] = {"pattern": [77, 200_000]}
        specs[1]["body"] = {"text": "rmq → C++: ünïcödé ✓ 漢字"}
        producer = Producer("PG_RMQ_TO_CPP", self.cluster.namesrv_addr, self.reactor)
        await producer.start()
        self.addCleanup(producer.shutdown)
        for spec in specs:
            msg = new_message(
                topic,
                body_from_spec(spec["body"]),
                tags=spec["tags"],
                keys=spec["keys"],
                properties=spec["props"],
            )
            result = await producer.send(msg)
            self.assertEqual(result.status.name, "SEND_OK")

        consumer = self.harness.spawn(
            "push_consumer",
            {
                "namesrv": self.cluster.namesrv_addr,
                "group": "CG_RMQ_TO_CPP",
                "topic": topic,
                "read_props": ["idx", "origin"],
            },
        )
        received = await consumer.wait_for_count(
            lambda ev: ev["event"] == "received", len(specs), timeout=60
        )
        by_key = {ev["keys"]: ev for ev in received}
        self.assertEqual(set(by_key), {spec["keys"] for spec in specs})
        for spec in specs:
            check_delivery(self, spec, by_key[spec["keys"]], topic)
        # Exactly once: nothing arrives again before the consumer has stopped.
        self.assertEqual(await consumer.stop(grace=30), 0)
        counts = Counter(ev["keys"] for ev in consumer.of_kind("received"))
        self.assertEqual([key for key, n in counts.items() if n > 1], [])

    async def test_cpp_producer_to_rmq_push_consumer(self) -> None:
        """Messages sent by the C++ producer reach rmq's PushConsumer with everything intact."""
        topic = "TopicCppToRmq"
        specs = message_specs("c", 100)
        # The C++ client compresses bodies over 4 KiB (sysFlag 0x1); rmq's consumer inflates.
        specs[0]["body"] = {"pattern": [78, 300_000]}
        specs[1]["body"] = {"text": "C++ → rmq: ünïcödé ✓ 漢字"}
        producer = self.harness.spawn(
            "producer",
            {
                "namesrv": self.cluster.namesrv_addr,
                "group": "PG_CPP_TO_RMQ",
                "topic": topic,
                "timeout_ms": 5000,
                "retry_no_route": 3,
                "max_message_size": 4 * MIB,
                "messages": specs,
            },
        )
        done = await producer.wait_event("done", timeout=60)
        self.assertEqual(done["failed"], 0, producer.describe())
        sent_ids = {specs[ev["i"]]["keys"]: ev["msg_id"] for ev in producer.of_kind("sent")}

        received: dict[str, MessageExt] = {}
        all_in: Deferred[None] = Deferred()

        def listener(msgs: list[MessageExt]) -> Any:
            for msg in msgs:
                received[" ".join(msg.keys)] = msg
            if len(received) == len(specs) and not all_in.called:
                all_in.callback(None)
            return CONSUME_SUCCESS

        consumer = PushConsumer(
            "CG_CPP_TO_RMQ", self.cluster.namesrv_addr, self.reactor, listener=listener
        )
        consumer.subscribe(topic, "*")
        await consumer.start()
        self.addCleanup(consumer.shutdown)
        all_in.addTimeout(60, self.reactor)
        await all_in

        for spec in specs:
            msg = received[spec["keys"]]
            self.assertEqual(msg.topic, topic)
            self.assertEqual(msg.body, body_from_spec(spec["body"]), spec["keys"])
            self.assertEqual(msg.tags, spec["tags"])
            for name, value in spec["props"].items():
                self.assertEqual(msg.properties.get(name), value)
            # The C++ client's message id is its UNIQ_KEY, which rmq's consumer reports as msg_id.
            self.assertEqual(msg.msg_id, sent_ids[spec["keys"]])
            self.assertEqual(msg.reconsume_times, 0)
