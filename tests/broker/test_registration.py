"""BrokerRegistration: full registration, data-version checks, oneway on change, compression."""

from __future__ import annotations

import time
import zlib

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rmq.broker.config import BrokerConfig
from rmq.broker.identity import BrokerIdentity
from rmq.broker.registration import BrokerRegistration
from rmq.broker.topic import TopicConfig, TopicConfigManager, TopicDefaults
from rmq.common.route import RegisterBrokerBody, body_crc32
from rmq.remoting.codes import RequestCode
from tests.broker.support import FakeNameServerClient

ADDRS = ["127.0.0.1:9876", "127.0.0.1:9877"]


class RegistrationTests(SynchronousTestCase):
    def build(self, **config: object) -> BrokerRegistration:
        self.clock = Clock()
        cfg = BrokerConfig(namesrv_addr=";".join(ADDRS), listen_port=10911, **config)  # type: ignore[arg-type]
        self.topics = TopicConfigManager(self.clock, TopicDefaults())
        self.client = FakeNameServerClient()
        reg = BrokerRegistration(
            cfg, BrokerIdentity.from_config(cfg), self.topics, self.client, self.clock
        )
        self.topics.listeners.append(reg.topics_changed)
        return reg

    def test_register_all(self) -> None:
        """Start-up registration goes to every NameServer with Java's header and a JSON body."""
        reg = self.build()
        self.assertEqual(self.successResultOf(reg.register_all()), [True, True])
        self.assertEqual([a for a, _ in self.client.requests], ADDRS)
        _, req = self.client.requests[0]
        self.assertEqual(req.code, RequestCode.REGISTER_BROKER)
        self.assertEqual(
            {
                k: req.ext_fields[k]
                for k in (
                    "brokerName",
                    "brokerAddr",
                    "clusterName",
                    "brokerId",
                    "haServerAddr",
                    "compressed",
                )
            },
            {
                "brokerName": "broker-a",
                "brokerAddr": "127.0.0.1:10911",
                "clusterName": "DefaultCluster",
                "brokerId": "0",
                "haServerAddr": "127.0.0.1:10912",
                "compressed": "false",
            },
        )
        self.assertEqual(int(req.ext_fields["bodyCrc32"]), body_crc32(req.body))
        body = RegisterBrokerBody.decode(req.body, False)
        self.assertIn("TBW102", body.topic_config_table)
        self.assertEqual(body.data_version.counter, self.topics.data_version.counter)

    def test_failure_is_reported_not_raised(self) -> None:
        """A NameServer that cannot be reached makes that registration False, others go on."""
        reg = self.build()
        self.client.fail_addrs.add(ADDRS[0])
        self.assertEqual(self.successResultOf(reg.register_all()), [False, True])
        self.assertEqual(list(reg.registered), [ADDRS[1]])

    def test_periodic_only_when_changed(self) -> None:
        """The periodic task asks QUERY_DATA_VERSION and registers only where data is stale."""
        reg = self.build()
        self.client.changed = False
        self.successResultOf(reg.periodic())
        self.assertEqual(self.client.codes(), [RequestCode.QUERY_DATA_VERSION] * 2)
        self.client.changed = True
        del self.client.requests[:]
        self.successResultOf(reg.periodic())
        self.assertEqual(
            sorted(self.client.codes()),
            sorted([RequestCode.QUERY_DATA_VERSION] * 2 + [RequestCode.REGISTER_BROKER] * 2),
        )

    def test_periodic_forced(self) -> None:
        """With forceRegister the periodic task always sends the full registration."""
        reg = self.build(force_register=True)
        self.successResultOf(reg.periodic())
        self.assertEqual(self.client.codes(), [RequestCode.REGISTER_BROKER] * 2)

    def test_topic_change_registers_oneway_once(self) -> None:
        """Several topic changes in one turn cause one oneway registration per NameServer."""
        reg = self.build()
        reg.active = True
        self.topics.create_topic_in_send("A", "TBW102", 4)
        self.topics.create_topic_in_send("B", "TBW102", 4)
        self.assertEqual(self.client.oneways, [])
        self.clock.advance(0)
        self.assertEqual([a for a, _ in self.client.oneways], ADDRS)
        _, req = self.client.oneways[0]
        self.assertTrue(req.is_oneway)
        self.assertIn("B", RegisterBrokerBody.decode(req.body, False).topic_config_table)

    def test_no_oneway_while_inactive(self) -> None:
        """Topic changes before start or after unregistering send nothing."""
        self.build()
        self.topics.create_topic_in_send("A", "TBW102", 4)
        self.clock.advance(0)
        self.assertEqual(self.client.oneways, [])

    def test_unregister(self) -> None:
        """A clean stop sends UNREGISTER_BROKER to every NameServer."""
        reg = self.build()
        reg.active = True
        self.successResultOf(reg.unregister_all())
        self.assertEqual(self.client.codes(), [RequestCode.UNREGISTER_BROKER] * 2)
        self.assertFalse(reg.active)

    def test_broker_permission_overrides_topics(self) -> None:
        """A broker without write permission registers every topic with its own permission."""
        reg = self.build(broker_permission=4)
        body = RegisterBrokerBody.decode(reg.build_request().body, False)
        self.assertEqual({t["perm"] for t in body.topic_config_table.values()}, {4})

    def test_order_topics_from_kv_table(self) -> None:
        """The KVTable in a registration answer marks order topics."""
        reg = self.build()
        self.topics.create_topic_in_send("Ord", "TBW102", 4)
        from rmq.remoting.command import new_response

        original = self.client.invoke

        def invoke(addr: str, command: object, timeout: float = 3.0) -> object:
            d = original(addr, command, timeout)  # type: ignore[arg-type]
            return d.addCallback(
                lambda r: new_response(command, body=b'{"table":{"Ord":"broker-a:4"}}')  # type: ignore[arg-type]
            )

        self.client.invoke = invoke  # type: ignore[method-assign]
        self.successResultOf(reg.register_all())
        self.assertTrue(self.topics.is_order_topic("Ord"))

    def test_hundred_thousand_topics(self) -> None:
        """100,000 topics register in one frame: compressed, well under 16 MiB, decodable."""
        reg = self.build()
        for i in range(100_000):
            self.topics._put(TopicConfig(f"topic-{i:06d}", 8, 8))
        start = time.perf_counter()
        req = reg.build_request()
        elapsed = time.perf_counter() - start
        self.assertEqual(req.ext_fields["compressed"], "true")
        self.assertLess(len(req.body), 4 * 1024 * 1024)
        body = RegisterBrokerBody.decode(req.body, True)
        self.assertEqual(len(body.topic_config_table), len(self.topics))
        self.assertLess(elapsed, 10.0)
        self.assertGreater(len(zlib.decompress(req.body)), len(req.body))


class RegistrationWithNameServerTests(SynchronousTestCase):
    def test_liveness_kept_by_data_version_checks(self) -> None:
        """Against rmq's NameServer, QUERY_DATA_VERSION every 30 s keeps the broker alive for
        10 minutes with one full registration; a NameServer that forgot it gets a new one."""
        from twisted.internet.defer import Deferred, succeed
        from twisted.internet.endpoints import TCP4ServerEndpoint
        from twisted.internet.testing import MemoryReactorClock

        from rmq.namesrv.config import NamesrvConfig
        from rmq.namesrv.service import build_namesrv_service
        from rmq.remoting.command import RemotingCommand
        from tests.broker.support import FakeConnection

        clock = MemoryReactorClock()
        clock.advance(1_800_000_000)
        ns = build_namesrv_service(
            NamesrvConfig(kv_config_path=self.mktemp(), listen_port=0),
            TCP4ServerEndpoint(clock, 0),
            clock,
        )
        conn = FakeConnection("127.0.0.1:40000")

        class Wire:
            def invoke(
                self, addr: str, command: RemotingCommand, timeout: float = 3.0
            ) -> Deferred[RemotingCommand]:
                return ns.dispatcher.dispatch(conn, command)  # type: ignore[return-value]

            def invoke_oneway(self, addr: str, command: RemotingCommand) -> Deferred[None]:
                ns.dispatcher.dispatch(conn, command)
                return succeed(None)

        cfg = BrokerConfig(namesrv_addr="ns:1", listen_port=10911)
        topics = TopicConfigManager(clock, TopicDefaults())
        reg = BrokerRegistration(cfg, BrokerIdentity.from_config(cfg), topics, Wire(), clock)
        self.assertEqual(self.successResultOf(reg.register_all()), [True])
        for _ in range(20):
            clock.advance(30)
            self.successResultOf(reg.periodic())
            ns.scan_not_active_broker()
        self.assertIn("127.0.0.1:10911", ns.routes.broker_live_table)
        self.assertEqual(reg.registrations, 1)
        ns.routes.on_channel_destroy(conn.remote_address)
        self.assertNotIn("127.0.0.1:10911", ns.routes.broker_live_table)
        self.successResultOf(reg.periodic())
        self.assertIn("127.0.0.1:10911", ns.routes.broker_live_table)
        self.assertEqual(reg.registrations, 2)
