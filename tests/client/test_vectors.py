"""The client's requests carry the same header fields as Apache RocketMQ's Java client 4.9.7.

Each test drives the client against the recording fake cluster and compares the recorded request
with the captured Java request of the same operation (``/work/shared/vectors``, protocol §13).
"""

from __future__ import annotations

import json
import time
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rmq.client import (
    RECONSUME_LATER,
    ConsumeFromWhere,
    MessageExt,
    Producer,
    PushConsumer,
    new_message,
)
from rmq.client.api import MQClientAPI, PullStatus, TopicRoute
from rmq.common.message import UNIQ_KEY, UniqueIdGenerator, string_to_properties
from rmq.remoting.codes import RequestCode
from rmq.remoting.command import RemotingCommand
from tests.client.fakes import NAMESRV, FakeCluster
from tests.support.vectors import load_command, require_vectors


class JavaHeaderTests(SynchronousTestCase):
    def setUp(self) -> None:
        require_vectors()
        self.clock = Clock()
        self.cluster = FakeCluster(self.clock)
        self.cluster.create_topic("T", 1)
        self.producer = Producer("PG", NAMESRV, self.clock, remoting_factory=self.cluster.connect)
        self.successResultOf(self.producer.start())

    def tearDown(self) -> None:
        self.successResultOf(self.producer.shutdown())
        self.cluster.expire_holds()

    def ours(self, code: int) -> RemotingCommand:
        return self.cluster.sent(code)[0][1]

    def assertSameHeader(self, ours: RemotingCommand, java_name: str) -> None:  # noqa: N802
        java = load_command(java_name)
        self.assertEqual(ours.code, java.code)
        self.assertEqual(ours.is_oneway, java.is_oneway)
        self.assertEqual(ours.version, java.version)
        self.assertEqual(ours.language, java.language)
        self.assertEqual(sorted(ours.ext_fields), sorted(java.ext_fields))

    def test_send_v2(self) -> None:
        """SEND_MESSAGE_V2 has Java's one-letter fields and property layout."""
        msg = new_message("T", b"hello", tags="TagA", keys=["k1", "k2"], properties={"p": "v"})
        self.successResultOf(self.producer.send(msg))
        ours = self.ours(RequestCode.SEND_MESSAGE_V2)
        self.assertSameHeader(ours, "java-send-v2.req.hex")
        java = load_command("java-send-v2.req.hex").ext_fields
        for k in ("c", "d", "f", "h", "j", "k", "m"):
            self.assertEqual(ours.ext_fields[k], java[k], k)

    def test_send_batch(self) -> None:
        """SEND_BATCH_MESSAGE carries WAIT=true as batch properties and m=true, like Java."""
        self.successResultOf(self.producer.send([new_message("T", b"b%d" % i) for i in range(3)]))
        ours = self.ours(RequestCode.SEND_BATCH_MESSAGE)
        self.assertSameHeader(ours, "java-send-batch.req.hex")
        java = load_command("java-send-batch.req.hex").ext_fields
        self.assertEqual(ours.ext_fields["i"], java["i"])
        self.assertEqual(ours.ext_fields["m"], "true")

    def test_consumer_requests(self) -> None:
        """Pull, offset query/update, send-back and heartbeat match Java's fields."""
        got: list[MessageExt] = []

        def listener(msgs: list[MessageExt]) -> object:
            got.extend(msgs)
            return RECONSUME_LATER

        c = PushConsumer(
            "CG",
            NAMESRV,
            self.clock,
            listener=listener,
            remoting_factory=self.cluster.connect,
            consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET,
        )
        c.subscribe("T", "TagA || TagB")
        self.successResultOf(c.start())
        self.successResultOf(self.producer.send(new_message("T", b"x", tags="TagA")))
        self.cluster.wake()
        self.clock.advance(5)
        self.successResultOf(c.shutdown())

        pull = self.ours(RequestCode.PULL_MESSAGE)
        java = load_command("java-pull.req.hex")
        # We always send the expression with the SUBSCRIPTION flag (like ali-ons and cpp).
        self.assertEqual(sorted(pull.ext_fields), sorted([*java.ext_fields, "subscription"]))
        self.assertSameHeader(
            self.ours(RequestCode.QUERY_CONSUMER_OFFSET), "java-query-consumer-offset.req.hex"
        )
        self.assertSameHeader(
            self.ours(RequestCode.UPDATE_CONSUMER_OFFSET), "java-update-consumer-offset.oneway.hex"
        )
        self.assertSameHeader(
            self.ours(RequestCode.CONSUMER_SEND_MSG_BACK), "java-consumer-send-msg-back.req.hex"
        )
        # The consumer's last heartbeat (the producer's instance sends its own).
        hb = [
            body
            for body in (json.loads(c.body) for _, c in self.cluster.sent(RequestCode.HEART_BEAT))
            if body["consumerDataSet"]
        ][-1]
        java_hb = json.loads(load_command("java-heartbeat-consumer.req.hex").body)
        self.assertEqual(sorted(hb), sorted(java_hb))
        ours_cd = [cd for cd in hb["consumerDataSet"] if cd["groupName"] == "CG"][0]
        java_cd = java_hb["consumerDataSet"][0]
        self.assertEqual(sorted(ours_cd), sorted(java_cd))
        self.assertEqual(
            sorted(ours_cd["subscriptionDataSet"][0]), sorted(java_cd["subscriptionDataSet"][0])
        )
        ours_t = [s for s in ours_cd["subscriptionDataSet"] if s["topic"] == "T"][0]
        java_t = [s for s in java_cd["subscriptionDataSet"] if s["topic"] == "TopicJ"][0]
        self.assertEqual(ours_t["codeSet"], java_t["codeSet"])
        self.assertEqual(ours_t["tagsSet"], java_t["tagsSet"])

    def test_unregister(self) -> None:
        """UNREGISTER_CLIENT names the client id and the producer group only."""
        self.successResultOf(self.producer.send(new_message("T", b"x")))
        self.successResultOf(self.producer.shutdown())
        self.assertSameHeader(
            self.ours(RequestCode.UNREGISTER_CLIENT), "java-unregister-client.req.hex"
        )
        self.producer = Producer("PG", NAMESRV, self.clock, remoting_factory=self.cluster.connect)
        self.successResultOf(self.producer.start())


class JavaResponseTests(SynchronousTestCase):
    def setUp(self) -> None:
        require_vectors()

    def test_route_both_styles(self) -> None:
        """Route bodies in standard JSON (4.9.7 client) and fastjson style (old client) parse
        to the same route."""
        std = TopicRoute.from_json(load_command("java-get-route-tbw102.resp.hex").body)
        old = TopicRoute.from_json(load_command("alions-get-route.resp.hex").body)
        self.assertEqual(std.broker_datas[0].addrs, {0: "127.0.0.1:40911"})
        self.assertEqual(old.broker_datas[0].addrs, {0: "127.0.0.1:40911"})
        self.assertTrue(std.publish_queues("X"))
        self.assertTrue(old.subscribe_queues("X"))

    def test_pull_found(self) -> None:
        """A captured FOUND pull answer becomes a PullResult with three decoded messages."""
        resp = load_command("java-pull-found-3msgs.resp.hex")

        class Remoting:
            def invoke(self, addr: str, cmd: RemotingCommand, timeout: float = 3.0) -> Any:
                return succeed(resp)

        api = MQClientAPI(Remoting(), Clock())  # type: ignore[arg-type]
        result = self.successResultOf(
            Deferred.fromCoroutine(api.pull("127.0.0.1:40911", {"queueOffset": 0}, 30))
        )
        self.assertEqual(result.status, PullStatus.FOUND)
        self.assertEqual(len(result.messages), 3)
        self.assertEqual(result.next_begin_offset, int(resp.ext_fields["nextBeginOffset"]))
        self.assertTrue(all(m.properties.get("UNIQ_KEY") for m in result.messages))

    def test_uniq_key_java_layout(self) -> None:
        """Given the Java client's ip, pid, class-loader hash and clock, the generator makes the
        very UNIQ_KEYs of the captured sends, counter included (Java's first id counts 0)."""
        keys = [
            string_to_properties(load_command(name).ext_fields["i"])[UNIQ_KEY]
            for name in (
                "java-send-v2.req.hex",
                "java-send-v2-delay.req.hex",
                "java-send-v2-compressed.req.hex",
            )
        ]
        # 16-byte IPv6 address fd00::2, pid 0x4A15, loader hash 0x30946E09, ms, counter.
        self.assertEqual(
            {k[:44] for k in keys}, {"FD000000000000000000000000000002" + "4A15" + "30946E09"}
        )
        # The capture ran in November 2026; each id's time is its month offset from our own
        # (local-time) start of that month, so the check does not depend on the time zone.
        month_start = time.mktime((2026, 11, 1, 0, 0, 0, 0, 0, -1))
        times = iter(month_start + int(k[44:52], 16) / 1000 + 0.0004 for k in keys)
        gen = UniqueIdGenerator(
            "fd00::2", pid=0x4A15, loader_hash=0x30946E09, now=lambda: next(times)
        )
        self.assertEqual([gen.next_id() for _ in keys], keys)
