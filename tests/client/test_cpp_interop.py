"""Interop through rmq's broker: rmq Producer → C++ PushConsumer, C++ Producer → rmq PushConsumer.

The C++ client (rocketmq-client-cpp 1.0.1 via the ``rocketmq`` package) runs in child processes
(``tests.support.cpp``); rmq's NameServer + Broker and the rmq client run in the test reactor.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from rmq.client import CONSUME_SUCCESS, ConsumeFromWhere, MessageExt, Producer, PushConsumer
from rmq.common.asyncutil import global_reactor
from rmq.common.message import Message
from rmq.testing import LocalCluster, start_local_cluster
from tests.client.test_integration import wait_for
from tests.support.cpp import CppHarness, Event
from tests.support.cpp_scripts.cppcommon import body_fields, body_from_spec

UTF8_TEXT = "héllo wörld — 日本語 — 🚀"


def specs(prefix: str, count: int) -> list[dict[str, Any]]:
    """Distinct messages with keys, alternating tags, user properties, varied bodies."""
    out = []
    for i in range(count):
        body: Any = {"pattern": [i * 131 + 7, 16 + (i * 53) % 9000]}
        if i == 1:
            body = {"text": UTF8_TEXT}
        out.append(
            {
                "body": body,
                "keys": f"{prefix}-{i}",
                "tags": "TagA" if i % 2 else "TagB",
                "props": {"idx": str(i), "origin": prefix},
                "mode": "sync",
            }
        )
    return out


class CppInteropTests(TestCase):
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

    async def test_rmq_producer_to_cpp_consumer(self) -> None:
        """Messages sent by rmq's Producer reach the C++ PushConsumer with bodies, keys, tags and
        properties intact, exactly once."""
        topic = "TopicRmqToCpp"
        ms = specs("r", 120)
        producer = Producer("PG_RMQ", self.cluster.namesrv_addr, client_ip="127.0.0.1")
        await producer.start()
        self.addCleanup(producer.shutdown)
        for spec in ms:
            props = dict(spec["props"], TAGS=spec["tags"], KEYS=spec["keys"], WAIT="true")
            await producer.send(Message(topic, body_from_spec(spec["body"]), 0, props))
        consumer = self.harness.spawn(
            "push_consumer",
            {
                "namesrv": self.cluster.namesrv_addr,
                "group": "CG_CPP_FROM_RMQ",
                "topic": topic,
                "read_props": ["idx", "origin"],
            },
            name="cpp-consumer",
        )
        keys = {s["keys"] for s in ms}

        def all_received(events: list[Event]) -> bool | None:
            got = {ev["keys"] for ev in events if ev["event"] == "received"}
            return True if keys <= got else None

        await consumer.wait_until(all_received, timeout=60, what="every message")
        self.assertEqual(await consumer.stop(grace=30), 0)
        received = consumer.of_kind("received")
        counts = Counter(ev["keys"] for ev in received)
        self.assertEqual([k for k, n in counts.items() if n > 1], [])
        by_key = {ev["keys"]: ev for ev in received}
        for spec in ms:
            ev = by_key[spec["keys"]]
            expected = body_fields(body_from_spec(spec["body"]))
            self.assertEqual(ev["body_sha256"], expected["body_sha256"], spec["keys"])
            self.assertEqual(ev["tags"], spec["tags"])
            self.assertEqual(ev["props"]["idx"], spec["props"]["idx"])
            self.assertEqual(ev["props"]["origin"], "r")
            self.assertIsNotNone(ev["props"]["UNIQ_KEY"])

    async def test_cpp_producer_to_rmq_consumer(self) -> None:
        """Messages sent by the C++ producer reach rmq's PushConsumer intact, exactly once."""
        topic = "TopicCppToRmq"
        ms = specs("c", 120)
        proc = self.harness.spawn(
            "producer",
            {
                "namesrv": self.cluster.namesrv_addr,
                "group": "PG_CPP",
                "topic": topic,
                "timeout_ms": 5000,
                "messages": ms,
            },
            name="cpp-producer",
        )
        done = await proc.wait_event("done", timeout=60)
        self.assertEqual(done["failed"], 0)
        self.assertEqual(await proc.finished(timeout=30), 0)
        got: list[MessageExt] = []

        def listener(msgs: list[MessageExt]) -> object:
            got.extend(msgs)
            return CONSUME_SUCCESS

        consumer = PushConsumer(
            "CG_RMQ_FROM_CPP",
            self.cluster.namesrv_addr,
            client_ip="127.0.0.1",
            listener=listener,
            consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET,
        )
        consumer.subscribe(topic, "*")
        await consumer.start()
        self.addCleanup(consumer.shutdown)
        await wait_for(lambda: len(got) >= len(ms), timeout=30)
        self.assertEqual(len(got), len(ms))
        by_key = {m.properties.get("KEYS"): m for m in got}
        for spec in ms:
            m = by_key[spec["keys"]]
            self.assertEqual(m.body, body_from_spec(spec["body"]))
            self.assertEqual(m.tags, spec["tags"])
            self.assertEqual(m.properties["idx"], spec["props"]["idx"])
            self.assertEqual(m.topic, topic)
