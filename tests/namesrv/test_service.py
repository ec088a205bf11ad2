"""The NameServer service tree on a MemoryReactorClock: listening, scan timer, liveness, stop."""

from __future__ import annotations

import os

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from rmq.common.route import DataVersion, RegisterBrokerBody, body_crc32
from rmq.namesrv.config import NamesrvConfig, load_namesrv_config
from rmq.namesrv.service import add_namesrv_service, build_namesrv_service
from rmq.namesrv.tap import Options, makeService
from rmq.remoting.codec import encode
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import new_request
from tests.namesrv.support import split_frames


def _register_frame() -> bytes:
    body = RegisterBrokerBody(
        DataVersion(1, 1),
        {"T": {"topicName": "T", "readQueueNums": 4, "writeQueueNums": 4, "perm": 6}},
    ).encode()
    ext = {
        "brokerName": "broker-a",
        "brokerAddr": "127.0.0.1:10911",
        "clusterName": "C",
        "haServerAddr": "127.0.0.1:10912",
        "brokerId": 0,
        "bodyCrc32": body_crc32(body),
    }
    return encode(new_request(RequestCode.REGISTER_BROKER, ext, body))


class NamesrvServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.tmp = self.mktemp()
        self.config = NamesrvConfig(
            kv_config_path=os.path.join(self.tmp, "kvConfig.json"),
            rocketmq_home=self.tmp,
            listen_port=19876,
        )
        self.service = build_namesrv_service(
            self.config, TCP4ServerEndpoint(self.reactor, 19876), self.reactor
        )

    def connect(self, port: int) -> tuple[StringTransport, object]:
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
        proto = self.service.factory.buildProtocol(None)
        proto.makeConnection(transport)
        return transport, proto

    def test_start_listens_and_schedules_scan(self) -> None:
        """Starting listens on the endpoint and schedules the 10 s scan; stopping removes both."""
        self.service.startService()
        self.assertEqual([p[0] for p in self.reactor.tcpServers], [19876])
        port = self.successResultOf(self.service.when_listening())
        self.assertEqual(port.getHost().port, 19876)  # type: ignore[attr-defined]
        calls = self.reactor.getDelayedCalls()
        self.assertEqual([c.getTime() - self.reactor.seconds() for c in calls], [10.0])
        self.successResultOf(self.service.stopService())
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_scan_drops_silent_broker_and_closes_its_connection(self) -> None:
        """After 120 s of silence the scan drops the broker and closes its connection."""
        self.service.startService()
        transport, proto = self.connect(50001)
        proto.dataReceived(_register_frame())  # type: ignore[attr-defined]
        (response,) = split_frames(transport.value())
        self.assertEqual(response.code, ResponseCode.SUCCESS)
        self.reactor.advance(120)
        self.assertIn("127.0.0.1:10911", self.service.routes.broker_live_table)
        self.assertFalse(transport.disconnecting)
        self.reactor.advance(10)
        self.assertEqual(self.service.routes.broker_live_table, {})
        self.assertIsNone(self.service.routes.pickup_topic_route_data("T"))
        self.assertTrue(transport.disconnecting)
        proto.connectionLost()  # type: ignore[attr-defined]
        self.successResultOf(self.service.stopService())

    def test_idle_connection_closed_after_120_s(self) -> None:
        """A connection silent for serverChannelMaxIdleTimeSeconds (120 s) is closed; a talking
        one stays open."""
        factory = self.service.factory
        self.assertEqual(factory.idle_timeout, 120.0)
        factory.doStart()  # what listening does; MemoryReactor does not
        self.addCleanup(factory.doStop)
        quiet, _ = self.connect(50010)
        talking, proto = self.connect(50011)
        ask = encode(new_request(RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER))
        self.reactor.advance(90)
        proto.dataReceived(ask)  # type: ignore[attr-defined]
        self.reactor.advance(29)
        self.assertFalse(quiet.disconnecting)
        self.reactor.advance(1)
        self.assertTrue(quiet.disconnecting)
        self.reactor.advance(60)
        self.assertFalse(talking.disconnecting)
        self.reactor.advance(30)
        self.assertTrue(talking.disconnecting)

    def test_connection_loss_drops_broker(self) -> None:
        """Losing the broker's connection drops it at once."""
        self.service.startService()
        transport, proto = self.connect(50002)
        proto.dataReceived(_register_frame())  # type: ignore[attr-defined]
        self.assertIsNotNone(self.service.routes.pickup_topic_route_data("T"))
        proto.connectionLost()  # type: ignore[attr-defined]
        self.assertIsNone(self.service.routes.pickup_topic_route_data("T"))
        self.successResultOf(self.service.stopService())

    def test_stop_closes_connections(self) -> None:
        """Stopping closes open connections and fires once they are gone."""
        self.service.startService()
        transport, proto = self.connect(50003)
        d = self.service.stopService()
        self.assertTrue(transport.disconnecting)
        self.assertNoResult(d)
        proto.connectionLost()  # type: ignore[attr-defined]
        self.successResultOf(d)

    def test_kv_loaded_at_build(self) -> None:
        """The KV store file is loaded when the service is built; a corrupt one is refused."""
        os.makedirs(self.tmp, exist_ok=True)
        with open(self.config.kv_config_path, "wb") as f:
            f.write(b'{"configTable":{"N":{"k":"v"}}}')
        service = build_namesrv_service(
            self.config, TCP4ServerEndpoint(self.reactor, 1), self.reactor
        )
        self.assertEqual(service.kv.get("N", "k"), "v")
        with open(self.config.kv_config_path, "wb") as f:
            f.write(b"[]")
        self.assertRaises(
            ValueError,
            build_namesrv_service,
            self.config,
            TCP4ServerEndpoint(self.reactor, 1),
            self.reactor,
        )

    def test_add_to_parent(self) -> None:
        """add_namesrv_service puts the NameServer under an existing MultiService."""
        from twisted.application.service import MultiService

        parent = MultiService()
        child = add_namesrv_service(
            parent, self.config, TCP4ServerEndpoint(self.reactor, 1), self.reactor
        )
        self.assertIs(child.parent, parent)


class ConfigAndTapTests(SynchronousTestCase):
    def write(self, text: str) -> str:
        path: str = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def test_defaults(self) -> None:
        """Defaults are RocketMQ's: port 9876, 10 s scan, 120 s expiry, listen on all interfaces."""
        config = NamesrvConfig()
        self.assertEqual(config.listen, "tcp:9876:interface=0.0.0.0")
        self.assertEqual(
            (config.scan_not_active_broker_interval_ms, config.broker_channel_expired_time_ms),
            (10_000, 120_000),
        )
        self.assertTrue(config.kv_config_path.endswith(os.path.join("namesrv", "kvConfig.json")))

    def test_shipped_config_loads(self) -> None:
        """etc/namesrv.conf loads without unknown keys."""
        here = os.path.dirname(os.path.abspath(__file__))
        path = os.path.join(here, "..", "..", "etc", "namesrv.conf")
        config = load_namesrv_config(path)
        self.assertEqual(config.listen_port, 9876)

    def test_bad_value_names_key(self) -> None:
        """A bad listenPort is a UsageError naming the key, raised while parsing options."""
        options = Options()
        e = self.assertRaises(
            UsageError, options.parseOptions, ["-c", self.write("listenPort=99999\n")]
        )
        self.assertIn("listenPort", str(e))
        e = self.assertRaises(
            UsageError, options.parseOptions, ["-c", self.write("brokerChannelExpiredTime=0\n")]
        )
        self.assertIn("brokerChannelExpiredTime", str(e))

    def test_port_override(self) -> None:
        """-p overrides listenPort from the file."""
        options = Options()
        options.parseOptions(["-c", self.write("listenPort=1234\n"), "-p", "4321"])
        self.assertEqual(options.namesrv_config.listen_port, 4321)

    def test_make_service(self) -> None:
        """makeService builds the NameServer tree for the configured port without starting it."""
        options = Options()
        kv = os.path.join(self.mktemp(), "kv.json")
        options.parseOptions(["-c", self.write(f"listenPort=0\nkvConfigPath={kv}\n")])
        service = makeService(options)
        self.assertFalse(service.running)
        self.assertEqual(service.kv.path, kv)  # type: ignore[attr-defined]


class _RefusingEndpoint:
    """A server endpoint whose listen fails at once (the port is taken)."""

    def listen(self, factory: object) -> Deferred[object]:
        return fail(CannotListenError("127.0.0.1", 9876, OSError("in use")))


class ListenerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        tmp = self.mktemp()
        self.config = NamesrvConfig(kv_config_path=os.path.join(tmp, "kv.json"), rocketmq_home=tmp)

    def test_waiters_before_start(self) -> None:
        """when_listening called before start fires once privileged start has listened."""
        service = build_namesrv_service(
            self.config, TCP4ServerEndpoint(self.reactor, 0), self.reactor
        )
        d = service.when_listening()
        self.assertNoResult(d)
        service.privilegedStartService()
        self.successResultOf(d)
        service.startService()
        self.assertEqual(len(self.reactor.tcpServers), 1)  # listened once only
        self.successResultOf(service.stopService())

    def test_listen_failure_raises(self) -> None:
        """A listen failure is raised at start (twistd then exits) and fails waiting callers."""
        service = build_namesrv_service(self.config, _RefusingEndpoint(), self.reactor)  # type: ignore[arg-type]
        d = service.when_listening()
        self.assertRaises(CannotListenError, service.privilegedStartService)
        self.failureResultOf(d, CannotListenError)
        self.assertEqual(len(self.flushLoggedErrors(CannotListenError)), 1)
