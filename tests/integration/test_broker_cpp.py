"""Smoke test of the broker with the real C++ client (rocketmq 0.4.4) through rmq.testing.

The full C++ acceptance suite belongs to the interop tests; this one proves, on every broker change,
that a C++ producer's sync and oneway sends reach a C++ push consumer exactly once and intact.
"""

from __future__ import annotations

import base64

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from rmq.testing import start_local_cluster
from tests.support.cpp import CppHarness


class CppSmokeTests(TestCase):
    timeout = 120

    async def test_cpp_send_and_consume(self) -> None:
        """Sync and oneway sends arrive exactly once, intact; offsets are committed at shutdown."""
        cluster = await start_local_cluster(reactor)
        self.addCleanup(cluster.stop)
        harness = CppHarness(self, reactor)
        messages = [
            {"body": f"smoke {i} ✓", "keys": f"k{i}", "tags": "TagA", "props": {"p": str(i)}}
            for i in range(20)
        ] + [{"body": f"oneway {i}", "keys": f"o{i}", "mode": "oneway"} for i in range(5)]
        producer = harness.spawn(
            "producer",
            {
                "namesrv": cluster.namesrv_addr,
                "group": "PG_SMOKE",
                "topic": "SmokeT",
                "messages": messages,
            },
        )
        done = await producer.wait_event("done", timeout=60)
        self.assertEqual((done["sent"], done["failed"]), (25, 0))
        await producer.finished(timeout=30)
        consumer = harness.spawn(
            "push_consumer",
            {
                "namesrv": cluster.namesrv_addr,
                "group": "CG_SMOKE",
                "topic": "SmokeT",
                "read_props": ["p"],
            },
        )
        received = await consumer.wait_for_count(
            lambda ev: ev["event"] == "received", 25, timeout=60
        )
        keys = sorted(ev["keys"] for ev in received)
        self.assertEqual(keys, sorted(m["keys"] for m in messages))
        by_key = {ev["keys"]: ev for ev in received}
        self.assertEqual(by_key["k7"]["props"]["p"], "7")
        self.assertEqual(by_key["k7"]["tags"], "TagA")
        self.assertEqual(base64.b64decode(by_key["k7"]["body_b64"]).decode(), "smoke 7 ✓")
        self.assertEqual(len(cluster.broker.consumers.client_ids("CG_SMOKE")), 1)
        await consumer.stop()
        committed = cluster.broker.offsets.query_offsets("CG_SMOKE", "SmokeT")
        self.assertEqual(sum(committed.values()), 25)
        self.assertEqual(cluster.broker.consumers.client_ids("CG_SMOKE"), [])
