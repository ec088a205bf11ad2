"""Tests of rmq.remoting.client with a fake endpoint, StringTransport and task.Clock."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from rmq.common.errors import (
    RemotingConnectError,
    RemotingSendRequestError,
    RemotingTimeoutError,
)
from rmq.remoting.client import RemotingClient, split_address, tcp_endpoint_factory
from rmq.remoting.codec import encode
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_request, new_response
from rmq.remoting.dispatch import Dispatcher
from rmq.remoting.interfaces import IRemotingConnection
from rmq.remoting.protocol import RemotingFactory
from tests.remoting.helpers import FakeEndpoint, RecordingProcessor, written_commands

ADDR = "127.0.0.1:10911"


class RemotingClientTests(SynchronousTestCase):
    """Cached connections, shared connect attempts, failures and peer requests."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.endpoints: dict[str, FakeEndpoint] = {}
        self.notify = RecordingProcessor(None)
        self.running_info = RecordingProcessor(RemotingCommand(code=0, body=b"info"))
        dispatcher = Dispatcher(
            {
                RequestCode.NOTIFY_CONSUMER_IDS_CHANGED: self.notify,
                RequestCode.GET_CONSUMER_RUNNING_INFO: self.running_info,
            }
        )
        self.client = RemotingClient(self.clock, self.endpoint, dispatcher)

    def endpoint(self, addr: str) -> IStreamClientEndpoint:
        return self.endpoints.setdefault(addr, FakeEndpoint(addr))  # type: ignore[return-value]

    def test_concurrent_invokes_share_one_attempt(self) -> None:
        """Invokes made while connecting share one connection attempt and one connection."""
        a, b = new_request(105), new_request(106)
        da = self.client.invoke(ADDR, a)
        db = self.client.invoke(ADDR, b)
        ep = self.endpoints[ADDR]
        self.assertEqual(len(ep.attempts), 1)
        proto, transport = ep.succeed()
        sent = written_commands(transport)
        self.assertEqual([c.opaque for c in sent], [a.opaque, b.opaque])
        proto.dataReceived(encode(new_response(a)) + encode(new_response(b)))
        self.successResultOf(da)
        self.successResultOf(db)
        # A later invoke reuses the cached connection.
        dc = self.client.invoke(ADDR, new_request(107))
        self.assertEqual(len(ep.attempts), 1)
        [c] = written_commands(transport)
        proto.dataReceived(encode(new_response(c)))
        self.successResultOf(dc)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_connection_returns_same_connection(self) -> None:
        """connection(addr) fires with the one cached IRemotingConnection."""
        d1 = self.client.connection(ADDR)
        d2 = self.client.connection(ADDR)
        proto, _ = self.endpoints[ADDR].succeed()
        self.assertIs(self.successResultOf(d1), proto)
        self.assertIs(self.successResultOf(d2), proto)
        self.assertIs(self.successResultOf(self.client.connection(ADDR)), proto)

    def test_connect_failure_names_address(self) -> None:
        """A refused connection fails every waiter with RemotingConnectError naming the address."""
        d1 = self.client.invoke(ADDR, new_request(105))
        d2 = self.client.invoke_oneway(ADDR, new_request(105))
        self.endpoints[ADDR].fail_attempt(ConnectionRefusedError())
        for d in (d1, d2):
            failure = self.failureResultOf(d, RemotingConnectError)
            self.assertIn(ADDR, failure.value.remark)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        # The next call tries again.
        self.client.invoke(ADDR, new_request(105))
        self.assertEqual(len(self.endpoints[ADDR].attempts), 2)
        self.endpoints[ADDR].fail_attempt(ConnectionRefusedError())
        self.flushLoggedErrors()

    def test_connect_timeout(self) -> None:
        """A connect attempt that hangs fails with RemotingConnectError and leaves no timers."""
        d = self.client.invoke_oneway(ADDR, new_request(105))
        self.clock.advance(3.0)
        failure = self.failureResultOf(d, RemotingConnectError)
        self.assertIn(ADDR, failure.value.remark)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_invoke_timeout_while_connecting(self) -> None:
        """An invoke with a shorter timeout than the connect attempt fails on its own timeout."""
        d = self.client.invoke(ADDR, new_request(105), timeout=1.0)
        self.clock.advance(1.0)
        failure = self.failureResultOf(d, RemotingConnectError)
        self.assertIn(ADDR, failure.value.remark)
        self.clock.advance(2.0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_invoke_timeout(self) -> None:
        """A connected invoke without answer fails with RemotingTimeoutError, no timers left."""
        d = self.client.invoke(ADDR, new_request(105), timeout=2.0)
        self.clock.advance(0.5)
        self.endpoints[ADDR].succeed()
        self.clock.advance(1.4)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.failureResultOf(d, RemotingTimeoutError)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_connection_lost_fails_pending_and_evicts(self) -> None:
        """A lost connection fails pending requests naming the address; the next call reconnects."""
        d = self.client.invoke(ADDR, new_request(105))
        proto, _ = self.endpoints[ADDR].succeed()
        proto.connectionLost(Failure(ConnectionLost("reset by peer")))
        failure = self.failureResultOf(d, RemotingSendRequestError)
        self.assertIn(ADDR, failure.value.remark)
        self.client.invoke_oneway(ADDR, new_request(34))
        self.assertEqual(len(self.endpoints[ADDR].attempts), 2)
        self.endpoints[ADDR].succeed()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_peer_requests_dispatched(self) -> None:
        """Requests the server sends on the client's connection reach the client's dispatcher."""
        self.client.connection(ADDR)
        proto, transport = self.endpoints[ADDR].succeed()
        notify = new_request(
            RequestCode.NOTIFY_CONSUMER_IDS_CHANGED, {"consumerGroup": "G"}, oneway=True
        )
        ask = new_request(RequestCode.GET_CONSUMER_RUNNING_INFO)
        proto.dataReceived(encode(notify) + encode(ask))
        self.assertEqual([r.ext_fields for _, r in self.notify.calls], [{"consumerGroup": "G"}])
        [resp] = written_commands(transport)
        self.assertEqual((resp.opaque, resp.flag, resp.body), (ask.opaque, 1, b"info"))

    def test_unknown_peer_request(self) -> None:
        """A request code the client has no processor for is answered NOT_SUPPORTED."""
        self.client.connection(ADDR)
        proto, transport = self.endpoints[ADDR].succeed()
        proto.dataReceived(encode(new_request(RequestCode.CONSUME_MESSAGE_DIRECTLY)))
        [resp] = written_commands(transport)
        self.assertEqual(resp.code, ResponseCode.REQUEST_CODE_NOT_SUPPORTED)

    def test_invoke_oneway(self) -> None:
        """invoke_oneway fires once written, with the ONEWAY flag set."""
        d = self.client.invoke_oneway(ADDR, new_request(RequestCode.UPDATE_CONSUMER_OFFSET))
        _, transport = self.endpoints[ADDR].succeed()
        self.assertIsNone(self.successResultOf(d))
        [cmd] = written_commands(transport)
        self.assertEqual(cmd.flag, 2)

    def test_close(self) -> None:
        """close() closes connections, cancels attempts, and refuses later calls."""
        self.client.connection(ADDR)
        proto, transport = self.endpoints[ADDR].succeed()
        connecting = self.client.invoke(ADDR.replace("10911", "10912"), new_request(1))
        closed = self.client.close()
        self.assertTrue(transport.disconnecting)
        self.failureResultOf(connecting, RemotingConnectError)
        self.assertNoResult(closed)
        proto.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(closed)
        self.failureResultOf(self.client.invoke(ADDR, new_request(1)), RemotingConnectError)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_bad_address(self) -> None:
        """An address the endpoint factory rejects fails with RemotingConnectError."""
        client = RemotingClient(self.clock, tcp_endpoint_factory(MemoryReactorClock()))
        failure = self.failureResultOf(
            client.invoke("no-port", new_request(1)), RemotingConnectError
        )
        self.assertIn("no-port", failure.value.remark)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_connection_provides_interface(self) -> None:
        """The connection handed out provides IRemotingConnection."""
        d = self.client.connection(ADDR)
        self.endpoints[ADDR].succeed()
        self.assertTrue(IRemotingConnection.providedBy(self.successResultOf(d)))


class _SyncEndpoint:
    """An endpoint whose connect succeeds (or fails, or raises) synchronously."""

    def __init__(self, outcome: str) -> None:
        self.outcome = outcome
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 1))

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        if self.outcome == "raise":
            raise ValueError("endpoint exploded")
        if self.outcome == "fail":
            return fail(ConnectionRefusedError())
        proto = factory.buildProtocol(None)  # type: ignore[arg-type]
        assert proto is not None
        proto.makeConnection(self.transport)
        return succeed(proto)


class SynchronousEndpointTests(SynchronousTestCase):
    """Endpoints that complete inside connect() are handled like asynchronous ones."""

    def test_synchronous_success(self) -> None:
        """A connection made synchronously serves the very call that started it."""
        endpoint = _SyncEndpoint("ok")
        client = RemotingClient(Clock(), lambda addr: endpoint)  # type: ignore[arg-type,return-value]
        d = client.invoke_oneway(ADDR, new_request(34))
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(len(written_commands(endpoint.transport)), 1)

    def test_synchronous_failure_and_raise(self) -> None:
        """A connect that fails or raises synchronously gives RemotingConnectError."""
        for outcome in ("fail", "raise"):
            endpoint = _SyncEndpoint(outcome)
            clock = Clock()
            client = RemotingClient(clock, lambda addr, e=endpoint: e)  # type: ignore[misc]
            failure = self.failureResultOf(
                client.invoke(ADDR, new_request(1)), RemotingConnectError
            )
            self.assertIn(ADDR, failure.value.remark)
            self.assertEqual(clock.getDelayedCalls(), [])


class EndpointFactoryTests(SynchronousTestCase):
    """tcp_endpoint_factory and split_address parse RocketMQ addresses."""

    def test_split_address(self) -> None:
        """host:port, [v6]:port and bare v6 with port split correctly; junk is refused."""
        self.assertEqual(split_address("127.0.0.1:9876"), ("127.0.0.1", 9876))
        self.assertEqual(split_address("[::1]:9876"), ("::1", 9876))
        self.assertEqual(split_address("broker-a.local:10911"), ("broker-a.local", 10911))
        for bad in ("127.0.0.1", ":80", "h:0", "h:x", "h:70000"):
            self.assertRaises(ValueError, split_address, bad)

    def test_tcp_endpoint_connects_to_address(self) -> None:
        """The endpoint connects to the parsed host and port on the given reactor."""
        reactor = MemoryReactorClock()
        endpoint = tcp_endpoint_factory(reactor)("127.0.0.1:10911")
        endpoint.connect(RemotingFactory(None, Clock()))
        host, port, *_ = reactor.tcpClients[0]
        self.assertEqual((host, port), ("127.0.0.1", 10911))
