"""The real C++ client (rocketmq-client-cpp 1.0.1) produces to and consumes from rmq's broker.

A real rmq NameServer + Broker run in the test's reactor (``rmq.testing``); C++ producers and
PushConsumers run as child processes (``tests.support.cpp``). Bodies are checked byte for byte
(small ones echoed back, large ones by SHA-256), with keys, tags and user properties.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from rmq.common.asyncutil import global_reactor
from rmq.testing import LocalCluster, start_local_cluster
from tests.support.cpp import CppHarness, CppProcess, CppTimeoutError, Event
from tests.support.cpp_scripts.cppcommon import body_fields, body_from_spec

#: A body that is not ASCII: accents, CJK, an emoji (4-byte UTF-8) and a right-to-left script.
UTF8_TEXT = "héllo wörld — 日本語のメッセージ — 🚀 — مرحبا"
MIB = 1024 * 1024


def message_specs(
    prefix: str, count: int, mode: str = "sync", special: bool = False
) -> list[dict[str, Any]]:
    """``count`` distinct messages: keys ``<prefix>-<i>``, alternating tags, two user properties.

    Bodies are pseudo-random (no NUL) of varying sizes; with ``special`` the first two carry a
    1 MiB body and a non-ASCII UTF-8 text.
    """
    specs = []
    for i in range(count):
        body: Any = {"pattern": [i * 7919 + len(prefix), 16 + (i * 37) % 900]}
        if special and i == 0:
            body = {"pattern": [4242, MIB]}
        elif special and i == 1:
            body = {"text": UTF8_TEXT}
        specs.append(
            {
                "body": body,
                "keys": f"{prefix}-{i}",
                "tags": "TagA" if i % 2 else "TagB",
                "props": {"idx": str(i), "origin": f"cpp-{mode}"},
                "mode": mode,
            }
        )
    return specs


def _has_keys(keys: str) -> Callable[[Event], bool]:
    """Predicate: an event about the message with ``keys``."""
    return lambda ev: ev.get("keys") == keys


def check_delivery(case: TestCase, spec: dict[str, Any], event: Event, topic: str) -> None:
    """The received event carries exactly what the spec sent."""
    expected = body_fields(body_from_spec(spec["body"]))
    case.assertEqual(event["topic"], topic)
    case.assertEqual(event["keys"], spec["keys"])
    case.assertEqual(event["tags"], spec["tags"])
    case.assertEqual(event["body_len"], expected["body_len"], spec["keys"])
    case.assertEqual(event["body_sha256"], expected["body_sha256"], spec["keys"])
    case.assertEqual(event.get("body_b64"), expected.get("body_b64"))
    for name, value in spec["props"].items():
        case.assertEqual(event["props"][name], value, (spec["keys"], name))
    case.assertEqual(event["props"]["KEYS"], spec["keys"])
    case.assertEqual(event["props"]["TAGS"], spec["tags"])
    case.assertIsNotNone(event["props"]["UNIQ_KEY"])
    case.assertEqual(event["reconsume_times"], 0)


class CppBrokerTests(TestCase):
    """C++ producer → rmq broker → C++ PushConsumer (clustering)."""

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

    def produce(self, topic: str, specs: list[dict[str, Any]], name: str) -> CppProcess:
        """A C++ producer sending ``specs`` in order to ``topic``."""
        return self.harness.spawn(
            "producer",
            {
                "namesrv": self.cluster.namesrv_addr,
                "group": f"PG_{name}",
                "topic": topic,
                "timeout_ms": 5000,
                "retry_no_route": 3,
                "max_message_size": 4 * MIB,
                "messages": specs,
            },
            name=name,
        )

    def consume(self, topic: str, group: str, name: str) -> CppProcess:
        """A C++ clustering PushConsumer of ``topic`` in ``group`` reading our user properties."""
        return self.harness.spawn(
            "push_consumer",
            {
                "namesrv": self.cluster.namesrv_addr,
                "group": group,
                "topic": topic,
                "read_props": ["idx", "origin"],
            },
            name=name,
        )

    async def produced(self, proc: CppProcess, sync_count: int) -> None:
        """Wait for the producer to finish and check every sync send was SEND_OK."""
        done = await proc.wait_event("done", timeout=60)
        self.assertEqual(done["failed"], 0, proc.describe())
        sent = proc.of_kind("sent")
        statuses = Counter(ev["status"] for ev in sent)
        self.assertEqual(statuses["OK"], sync_count, statuses)
        self.assertEqual(await proc.finished(timeout=30), 0)

    async def test_send_sync_and_oneway_then_consume_exactly_once(self) -> None:
        """1,000 sync sends (with 1 MiB and UTF-8 bodies) and 200 oneway arrive once, intact."""
        topic = "TopicCppRoundTrip"
        specs = message_specs("s", 1000, special=True) + message_specs("o", 200, mode="oneway")
        producer = self.produce(topic, specs, "producer")
        await self.produced(producer, 1000)

        consumer = self.consume(topic, "CG_CPP_ROUNDTRIP", "consumer")
        keys = {spec["keys"] for spec in specs}

        def all_received(events: list[Event]) -> bool | None:
            got = {ev["keys"] for ev in events if ev["event"] == "received"}
            return True if keys <= got else None

        await consumer.wait_until(all_received, timeout=60, what="every message")
        # A clean shutdown commits offsets; anything delivered twice shows up by then.
        self.assertEqual(await consumer.stop(grace=30), 0)
        received = consumer.of_kind("received")
        counts = Counter(ev["keys"] for ev in received)
        self.assertEqual([k for k, n in counts.items() if n > 1], [])
        self.assertEqual(len(received), len(specs))
        by_key = {ev["keys"]: ev for ev in received}
        for spec in specs:
            check_delivery(self, spec, by_key[spec["keys"]], topic)
        self.assertEqual({ev["queue_id"] for ev in received}, {0, 1, 2, 3})

    async def test_new_consumer_resumes_from_committed_offset(self) -> None:
        """After a consumer stops, a new one in its group gets only messages sent since."""
        topic = "TopicCppResume"
        group = "CG_CPP_RESUME"
        first = message_specs("a", 60, mode="sync")
        await self.produced(self.produce(topic, first, "producer-1"), 60)
        consumer = self.consume(topic, group, "consumer-1")
        await consumer.wait_for_count(lambda ev: ev["event"] == "received", 60, timeout=60)
        self.assertEqual(await consumer.stop(grace=30), 0)
        self.assertEqual(len(consumer.of_kind("received")), 60)

        second = message_specs("b", 40, mode="sync")
        await self.produced(self.produce(topic, second, "producer-2"), 40)
        restarted = self.consume(topic, group, "consumer-2")
        got = await restarted.wait_for_count(lambda ev: ev["event"] == "received", 40, timeout=60)
        self.assertEqual({ev["keys"] for ev in got}, {spec["keys"] for spec in second})
        self.assertEqual(await restarted.stop(grace=30), 0)
        self.assertEqual(
            sorted(ev["keys"] for ev in restarted.of_kind("received")),
            sorted(spec["keys"] for spec in second),
        )

    async def test_send_batch_is_stored_as_separate_messages(self) -> None:
        """A C++ send_batch (code 10 with batch "1") reaches the consumer as its messages."""
        topic = "TopicCppBatch"
        items = message_specs("batch", 10)
        for item in items:
            del item["mode"]
        batch = {"mode": "batch", "items": items}
        await self.produced(self.produce(topic, [batch], "producer"), 1)
        consumer = self.consume(topic, "CG_CPP_BATCH", "consumer")
        got = await consumer.wait_for_count(lambda ev: ev["event"] == "received", 10, timeout=60)
        by_key = {ev["keys"]: ev for ev in got}
        self.assertEqual(set(by_key), {item["keys"] for item in items})
        for item in items:
            check_delivery(self, item, by_key[item["keys"]], topic)
        # A batch goes to one queue, its messages at consecutive offsets in batch order.
        self.assertEqual(len({ev["queue_id"] for ev in got}), 1)
        offsets = [by_key[item["keys"]]["queue_offset"] for item in items]
        self.assertEqual(offsets, list(range(offsets[0], offsets[0] + 10)))

    async def test_tag_expression_filters(self) -> None:
        """A C++ consumer subscribed to "TagA" gets exactly the TagA messages."""
        topic = "TopicCppTags"
        specs = message_specs("t", 40)
        await self.produced(self.produce(topic, specs, "producer"), 40)
        consumer = self.harness.spawn(
            "push_consumer",
            {
                "namesrv": self.cluster.namesrv_addr,
                "group": "CG_CPP_TAGS",
                "topic": topic,
                "expression": "TagA",
                "read_props": ["idx", "origin"],
            },
        )
        wanted = {spec["keys"] for spec in specs if spec["tags"] == "TagA"}
        # The last message sent is TagA, so once it is in, every earlier one was offered too.
        await consumer.wait_for_count(lambda ev: ev["event"] == "received", len(wanted), timeout=60)
        await consumer.wait_for(lambda ev: ev.get("keys") == specs[-1]["keys"], timeout=30)
        self.assertEqual(await consumer.stop(grace=30), 0)
        got = consumer.of_kind("received")
        self.assertEqual(sorted(ev["keys"] for ev in got), sorted(wanted))

    async def test_broadcasting_consumers_each_get_every_message(self) -> None:
        """Two broadcasting C++ consumers of one group each receive every message."""
        topic = "TopicCppBroadcast"
        # Broadcasting consumers keep offsets locally and a new one starts at the queues' end,
        # so the topic must exist first and the consumers must be pulling before the sends.
        await self.produced(self.produce(topic, [{"body": "create", "keys": "create"}], "c"), 1)
        consumers = [
            self.harness.spawn(
                "push_consumer",
                {
                    "namesrv": self.cluster.namesrv_addr,
                    "group": "CG_CPP_BROADCAST",
                    "topic": topic,
                    "model": "BROADCASTING",
                    "instance_name": f"bc{n}",
                    "read_props": ["idx", "origin"],
                },
                name=f"broadcast-{n}",
            )
            for n in range(2)
        ]
        for attempt in range(20):
            ping = f"ping-{attempt}"
            await self.produced(self.produce(topic, [{"body": ping, "keys": ping}], ping), 1)
            try:
                for consumer in consumers:
                    await consumer.wait_for(_has_keys(ping), timeout=1.0)
                break
            except CppTimeoutError:
                continue
        else:
            self.fail("broadcasting consumers never started pulling")

        specs = message_specs("bc", 30)
        await self.produced(self.produce(topic, specs, "producer"), 30)
        for consumer in consumers:
            got = await consumer.wait_for_count(
                lambda ev: ev["event"] == "received" and ev["keys"].startswith("bc-"),
                len(specs),
                timeout=60,
            )
            by_key = {ev["keys"]: ev for ev in got}
            self.assertEqual(set(by_key), {spec["keys"] for spec in specs})
            for spec in specs:
                check_delivery(self, spec, by_key[spec["keys"]], topic)

    async def test_pull_consumer_reads_every_queue(self) -> None:
        """The C++ PullConsumer reads each queue from offset 0 to its end, messages intact."""
        topic = "TopicCppPull"
        specs = message_specs("p", 50)
        await self.produced(self.produce(topic, specs, "producer"), 50)
        puller = self.harness.spawn(
            "pull_consumer",
            {
                "namesrv": self.cluster.namesrv_addr,
                "group": "CG_CPP_PULL",
                "topic": topic,
                "read_props": ["idx", "origin"],
            },
        )
        done = await puller.wait_event("done", timeout=60)
        self.assertEqual(await puller.finished(timeout=30), 0)
        self.assertEqual(done["count"], 50)
        by_key = {ev["keys"]: ev for ev in puller.of_kind("received")}
        self.assertEqual(set(by_key), {spec["keys"] for spec in specs})
        for spec in specs:
            check_delivery(self, spec, by_key[spec["keys"]], topic)
        queues = puller.wait_event("queues", timeout=1)
        self.assertEqual(len((await queues)["queues"]), 4)
        last: dict[int, Event] = {}
        for ev in puller.of_kind("pulled"):
            last[ev["queue_id"]] = ev
        for ev in last.values():
            self.assertEqual(ev["status"], "NO_NEW_MSG")
            self.assertEqual(ev["next_offset"], ev["max_offset"])
        self.assertEqual(sum(ev["max_offset"] for ev in last.values()), 50)
