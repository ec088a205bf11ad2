"""The broker service tree on a MemoryReactorClock: start order, timers, ordered clean stop."""

from __future__ import annotations

import os

from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from rmq.broker.config import BrokerConfig
from rmq.broker.service import BrokerService, build_broker_service
from rmq.remoting.codec import encode
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_request
from rmq.remoting.protocol import RemotingProtocol
from rmq.store.memory import MemoryMessageStore
from tests.broker.support import FakeConnection, FakeNameServerClient
from tests.namesrv.support import split_frames


def suspended_pull(suspend_ms: int) -> RemotingCommand:
    """A PULL_MESSAGE of queue T/0 at offset 0 with the SUSPEND flag (long polling)."""
    return new_request(
        RequestCode.PULL_MESSAGE,
        {
            "consumerGroup": "G",
            "topic": "T",
            "queueId": 0,
            "queueOffset": 0,
            "maxMsgNums": 32,
            "sysFlag": 6,
            "commitOffset": 0,
            "suspendTimeoutMillis": suspend_ms,
            "subscription": "*",
            "subVersion": 0,
        },
    )


class BrokerServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.reactor.advance(1_800_000_000)
        self.root = self.mktemp()
        self.config = BrokerConfig(
            namesrv_addr="127.0.0.1:9876", listen_port=10911, store_path_root_dir=self.root
        )
        self.client = FakeNameServerClient()
        self.store = MemoryMessageStore(self.reactor)

    def service(self) -> BrokerService:
        return build_broker_service(
            self.config,
            TCP4ServerEndpoint(self.reactor, 10911),
            self.reactor,
            store=self.store,
            namesrv_client=self.client,
        )

    def test_start_listens_and_registers(self) -> None:
        """Starting loads config, starts the store, listens, then registers; timers run."""
        svc = self.service()
        svc.startService()
        self.successResultOf(svc.when_started())
        self.assertTrue(self.store.running)
        self.assertEqual(self.reactor.tcpServers[0][0], 10911)
        self.assertEqual(self.client.codes(), [RequestCode.REGISTER_BROKER])
        self.assertEqual(len(self.reactor.getDelayedCalls()), 4)
        self.successResultOf(svc.stopService())

    def test_periodic_tasks(self) -> None:
        """Offsets flush every 5 s when changed; registration checks the data version every 30 s."""
        svc = self.service()
        svc.startService()
        self.successResultOf(svc.when_started())
        svc.broker.offsets.commit_offset("G", "T", 0, 3)
        path = os.path.join(self.root, "config", "consumerOffset.json")
        self.reactor.advance(5)
        with open(path, "rb") as f:
            self.assertIn(b'"T@G":{0:3', f.read())
        self.reactor.advance(25)
        self.assertIn(RequestCode.QUERY_DATA_VERSION, self.client.codes())
        self.successResultOf(svc.stopService())

    def test_expired_client_connection_closed(self) -> None:
        """The 10 s scan drops a consumer silent for 120 s and closes its connection."""
        from rmq.broker.clients import ConsumerData, build_subscription

        svc = self.service()
        svc.startService()
        self.successResultOf(svc.when_started())
        conn = FakeConnection()
        data = ConsumerData(
            "G",
            "CONSUME_PASSIVELY",
            "CLUSTERING",
            "CONSUME_FROM_LAST_OFFSET",
            (build_subscription("T", "*"),),
        )
        svc.broker.consumers.register_consumer(data, conn, "c1")
        self.reactor.advance(120)
        self.assertFalse(conn.closed)
        self.reactor.advance(10)
        self.assertTrue(conn.closed)
        self.assertEqual(svc.broker.consumers.client_ids("G"), [])
        self.successResultOf(svc.stopService())

    def test_ordered_stop(self) -> None:
        """Stop: stop listening, unregister (awaited), then write configs and stop the store."""
        svc = self.service()
        svc.startService()
        self.successResultOf(svc.when_started())
        svc.broker.offsets.commit_offset("G", "T", 1, 9)
        self.client.hold = True
        d = svc.stopService()
        self.assertNoResult(d)
        self.assertEqual(self.client.codes()[-1], RequestCode.UNREGISTER_BROKER)
        self.assertTrue(self.store.running)
        self.client.pending["127.0.0.1:9876"].callback(None)  # type: ignore[arg-type]
        self.successResultOf(d)
        self.assertFalse(self.store.running)
        with open(os.path.join(self.root, "config", "consumerOffset.json"), "rb") as f:
            self.assertIn(b"1:9", f.read())
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_restart_loads_configs(self) -> None:
        """Topics and offsets written at stop are loaded by the next start."""
        svc = self.service()
        svc.startService()
        self.successResultOf(svc.when_started())
        svc.broker.topics.create_topic_in_send("Kept", "TBW102", 2)
        svc.broker.offsets.commit_offset("G", "Kept", 1, 4)
        self.successResultOf(svc.stopService())
        self.store = MemoryMessageStore(self.reactor)
        again = self.service()
        again.startService()
        self.successResultOf(again.when_started())
        self.assertIn("Kept", again.broker.topics)
        self.assertEqual(again.broker.offsets.query_offset("G", "Kept", 1), 4)
        self.successResultOf(again.stopService())

    def test_held_pulls_answered_at_stop(self) -> None:
        """A pull held at stop time is answered (not left hanging)."""
        svc = self.service()
        svc.startService()
        self.successResultOf(svc.when_started())
        svc.broker.topics.create_topic_in_send("T", "TBW102", 4)
        pull = suspended_pull(15_000)
        d = svc.broker.dispatcher.dispatch(FakeConnection(), pull)
        self.assertNoResult(d)
        self.successResultOf(svc.stopService())
        response = self.successResultOf(d)
        assert response is not None
        self.assertEqual(response.code, 19)


class IdleConnectionTests(SynchronousTestCase):
    """serverChannelMaxIdleTimeSeconds on the broker's port, with long polling."""

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.reactor.advance(1_800_000_000)
        config = BrokerConfig(
            namesrv_addr="127.0.0.1:9876", listen_port=10911, store_path_root_dir=self.mktemp()
        )
        self.svc = build_broker_service(
            config,
            TCP4ServerEndpoint(self.reactor, 10911),
            self.reactor,
            store=MemoryMessageStore(self.reactor),
            namesrv_client=FakeNameServerClient(),
        )
        self.svc.startService()
        self.successResultOf(self.svc.when_started())
        self.svc.broker.topics.create_topic_in_send("T", "TBW102", 4)
        self.factory = self.svc.factory
        self.factory.doStart()  # what listening does; MemoryReactor does not

    def tearDown(self) -> None:
        d = self.svc.stopService()
        for conn in list(self.factory.connections):
            conn.connectionLost()
        self.successResultOf(d)
        self.factory.doStop()

    def connect(self) -> tuple[StringTransport, RemotingProtocol]:
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 50001))
        proto = self.factory.buildProtocol(None)
        proto.makeConnection(transport)
        return transport, proto

    def test_idle_timeout_is_javas(self) -> None:
        """The broker's factory closes connections idle for 120 s by default."""
        self.assertEqual(self.factory.idle_timeout, 120.0)
        transport, _ = self.connect()
        self.reactor.advance(119)
        self.assertFalse(transport.disconnecting)
        self.reactor.advance(30)
        self.assertTrue(transport.disconnecting)

    def test_held_pull_keeps_connection_open(self) -> None:
        """A pull held longer than the idle timeout keeps its connection; once answered, the
        idle clock starts again."""
        transport, proto = self.connect()
        pull = suspended_pull(300_000)
        proto.dataReceived(encode(pull))
        self.assertEqual(transport.value(), b"")
        self.reactor.advance(299)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(transport.value(), b"")
        self.reactor.advance(1)
        (response,) = split_frames(transport.value())
        self.assertEqual(response.code, ResponseCode.PULL_NOT_FOUND)
        self.reactor.advance(119)
        self.assertFalse(transport.disconnecting)
        self.reactor.advance(30)
        self.assertTrue(transport.disconnecting)


class StartFailureTests(SynchronousTestCase):
    def test_listen_failure_reported(self) -> None:
        """When listening fails, when_started fails and the failure hook is called."""
        from twisted.internet.error import CannotListenError
        from twisted.internet.testing import MemoryReactor

        class Refusing(MemoryReactor):
            def listenTCP(self, *args: object, **kw: object) -> object:  # noqa: N802
                raise CannotListenError("", 10911, OSError("in use"))

        reactor = MemoryReactorClock()
        reactor.listenTCP = Refusing().listenTCP  # type: ignore[method-assign]
        svc = build_broker_service(
            BrokerConfig(store_path_root_dir=self.mktemp()),
            TCP4ServerEndpoint(reactor, 10911),
            reactor,
            store=MemoryMessageStore(reactor),
            namesrv_client=FakeNameServerClient(),
        )
        hooked: list[object] = []
        svc.on_start_failure = hooked.append
        svc.startService()
        self.failureResultOf(svc.when_started(), CannotListenError)
        self.assertEqual(len(hooked), 1)
        self.assertEqual(len(self.flushLoggedErrors(CannotListenError)), 1)
        self.successResultOf(svc.stopService())

    def test_store_start_failure_stops_cleanly(self) -> None:
        """A store whose start fails: when_started fails with its error and the stop undoes only
        what started (no listener, no store stop, no config tables written over another's)."""
        reactor = MemoryReactorClock()
        root = self.mktemp()
        store = FailingStartStore(reactor)
        svc = build_broker_service(
            BrokerConfig(store_path_root_dir=root),
            TCP4ServerEndpoint(reactor, 10911),
            reactor,
            store=store,
            namesrv_client=FakeNameServerClient(),
        )
        hooked: list[object] = []
        svc.on_start_failure = hooked.append
        svc.startService()
        self.failureResultOf(svc.when_started(), StoreStartError)
        self.assertEqual(len(hooked), 1)
        self.assertEqual(len(self.flushLoggedErrors(StoreStartError)), 1)
        self.assertEqual(reactor.tcpServers, [])
        self.successResultOf(svc.stopService())
        self.assertEqual(store.stops, 0)
        self.assertFalse(os.path.exists(os.path.join(root, "config", "topics.json")))
        self.assertEqual(reactor.getDelayedCalls(), [])


class StoreStartError(Exception):
    """What FailingStartStore.start fails with."""


class FailingStartStore(MemoryMessageStore):
    """A memory store whose start fails (as a locked or unreadable store directory does)."""

    stops = 0

    def start(self) -> Deferred[None]:
        """Fail like a store that cannot open its directory."""
        return fail(StoreStartError("store directory unusable"))

    def stop(self) -> Deferred[None]:
        """Count the stops."""
        self.stops += 1
        return super().stop()


class PendingStart:
    """A component whose start never finishes by itself."""

    def __init__(self) -> None:
        self.starting: Deferred[None] = Deferred()
        self.stops = 0

    def start(self) -> Deferred[None]:
        """Start pending until the test fires ``starting``."""
        return self.starting

    def stop(self) -> Deferred[None]:
        """Count the stops."""
        self.stops += 1
        return succeed(None)


class StopDuringStartTests(SynchronousTestCase):
    def test_stop_during_start_is_not_a_start_failure(self) -> None:
        """A stop that cuts the start short (a component still starting) fails when_started
        with CancelledError but logs no failure and does not call the failure hook (twistd
        must not exit 1 for a Ctrl-C during start-up)."""
        reactor = MemoryReactorClock()
        store = MemoryMessageStore(reactor)
        svc = build_broker_service(
            BrokerConfig(store_path_root_dir=self.mktemp()),
            TCP4ServerEndpoint(reactor, 10911),
            reactor,
            store=store,
            namesrv_client=FakeNameServerClient(),
        )
        pending = PendingStart()
        svc.broker.components.append(pending)
        hooked: list[object] = []
        svc.on_start_failure = hooked.append
        svc.startService()
        started = svc.when_started()
        self.assertTrue(store.running)
        self.successResultOf(svc.stopService())
        self.failureResultOf(started, CancelledError)
        self.assertEqual(hooked, [])
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(pending.stops, 0)  # never started
        self.assertFalse(store.running)
        self.assertEqual(reactor.getDelayedCalls(), [])
