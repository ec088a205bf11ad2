"""Tests of rmq.remoting.protocol on StringTransport and task.Clock."""

from __future__ import annotations

import struct

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from rmq.common.errors import (
    HeaderError,
    RemotingSendRequestError,
    RemotingTimeoutError,
    RMQError,
)
from rmq.remoting.codec import encode
from rmq.remoting.codes import RequestCode, ResponseCode, SerializeType
from rmq.remoting.command import RemotingCommand, new_request, new_response
from rmq.remoting.dispatch import Dispatcher, FunctionProcessor
from rmq.remoting.interfaces import IRemotingConnection
from rmq.remoting.protocol import RemotingProtocol, RemotingServerFactory
from tests.remoting.helpers import RecordingProcessor, written_commands

PEER = IPv4Address("TCP", "192.0.2.7", 40001)


def _raw_frame(header: bytes, serialize_type: int = 0) -> bytes:
    word = struct.pack(">I", (serialize_type << 24) | len(header))
    return struct.pack(">i", len(word) + len(header)) + word + header


class _ProtocolTestBase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.transport = StringTransport(peerAddress=PEER)
        self.heartbeat = RecordingProcessor(RemotingCommand(code=ResponseCode.SUCCESS))
        self.dispatcher = Dispatcher({RequestCode.HEART_BEAT: self.heartbeat})
        self.proto = RemotingProtocol(self.dispatcher, self.clock, max_frame_size=1024)
        self.proto.makeConnection(self.transport)

    def lose(self, reason: Exception | None = None) -> None:
        self.proto.connectionLost(Failure(reason or ConnectionDone()))


class FramingTests(_ProtocolTestBase):
    """Length-prefixed framing over arbitrary read boundaries."""

    def test_split_at_every_byte(self) -> None:
        """Two frames split at every possible point are each handled exactly once."""
        first = new_request(RequestCode.HEART_BEAT, body=b"one")
        second = new_request(RequestCode.HEART_BEAT, {"k": "v"}, body=b"two")
        data = encode(first) + encode(second)
        for cut in range(len(data) + 1):
            self.heartbeat.calls.clear()
            self.proto.dataReceived(data[:cut])
            self.proto.dataReceived(data[cut:])
            self.assertEqual([r for _, r in self.heartbeat.calls], [first, second], cut)
        self.assertEqual(len(written_commands(self.transport)), 2 * (len(data) + 1))

    def test_byte_by_byte(self) -> None:
        """A frame delivered one byte at a time is handled once, after its last byte."""
        data = encode(new_request(RequestCode.HEART_BEAT, body=b"xyz"))
        for i in range(len(data) - 1):
            self.proto.dataReceived(data[i : i + 1])
        self.assertEqual(self.heartbeat.calls, [])
        self.proto.dataReceived(data[-1:])
        self.assertEqual(len(self.heartbeat.calls), 1)

    def test_two_frames_in_one_read(self) -> None:
        """Two frames in one read are both handled, responses written in order."""
        a, b = new_request(RequestCode.HEART_BEAT), new_request(RequestCode.HEART_BEAT)
        self.proto.dataReceived(encode(a) + encode(b))
        self.assertEqual([c.opaque for c in written_commands(self.transport)], [a.opaque, b.opaque])

    def test_oversized_frame_closes_with_logged_reason(self) -> None:
        """A frame longer than the limit closes the connection and says why in the log."""
        with capturedLogs() as events:
            self.proto.dataReceived(struct.pack(">i", 1025) + b"\x00" * 8)
        self.assertTrue(self.transport.disconnecting)
        reasons = [e.get("reason", "") for e in events if e.get("peer") == "192.0.2.7:40001"]
        self.assertTrue(any("1025" in r and "1024" in r for r in reasons), reasons)
        # Later data on the closing connection is ignored.
        self.proto.dataReceived(encode(new_request(RequestCode.HEART_BEAT)))
        self.assertEqual(self.heartbeat.calls, [])

    def test_frame_at_limit_accepted(self) -> None:
        """A frame exactly at the limit is accepted."""
        req = new_request(RequestCode.HEART_BEAT)
        head = len(encode(req)) - 4
        req.body = b"b" * (1024 - head)
        self.proto.dataReceived(encode(req))
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(len(self.heartbeat.calls), 1)

    def test_short_length_closes(self) -> None:
        """A length word below 4 (no room for the header word) closes the connection."""
        self.proto.dataReceived(struct.pack(">i", 2) + b"ab")
        self.assertTrue(self.transport.disconnecting)

    def test_negative_length_closes(self) -> None:
        """A negative length word closes the connection."""
        self.proto.dataReceived(b"\xff\xff\xff\xff")
        self.assertTrue(self.transport.disconnecting)

    def test_inconsistent_header_length_closes(self) -> None:
        """A header length larger than the frame closes the connection."""
        self.proto.dataReceived(struct.pack(">iI", 6, 50) + b"{}")
        self.assertTrue(self.transport.disconnecting)

    def test_garbage_header_without_opaque_closes(self) -> None:
        """An undecodable header with no readable opaque closes the connection."""
        self.proto.dataReceived(_raw_frame(b"\x00garbage"))
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.transport.value(), b"")

    def test_unknown_serialize_type_closes(self) -> None:
        """A serialize type other than JSON or ROCKETMQ closes the connection."""
        self.proto.dataReceived(_raw_frame(b"{}", serialize_type=9))
        self.assertTrue(self.transport.disconnecting)

    def test_reentrant_data(self) -> None:
        """Data delivered from inside a frame handler is queued and handled after it, in order."""
        order: list[int] = []
        later = encode(new_request(2))

        def first(conn: IRemotingConnection, req: RemotingCommand) -> None:
            order.append(1)
            self.proto.dataReceived(later)
            order.append(11)

        self.dispatcher.register(1, FunctionProcessor(first))
        self.dispatcher.register(2, FunctionProcessor(lambda c, r: order.append(2)))
        self.proto.dataReceived(encode(new_request(1)))
        self.assertEqual(order, [1, 11, 2])

    def test_internal_error_closes(self) -> None:
        """An unexpected error while handling a frame is logged and closes the connection."""

        def broken_write(data: bytes) -> None:
            raise OSError("transport broken")

        self.transport.write = broken_write  # type: ignore[method-assign]
        self.proto.dataReceived(encode(new_request(RequestCode.HEART_BEAT)))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertTrue(self.transport.disconnecting)


class RequestHandlingTests(_ProtocolTestBase):
    """Incoming requests are dispatched; the connection survives bad requests."""

    def test_verify_interface(self) -> None:
        """RemotingProtocol provides IRemotingConnection with the peer's address."""
        self.assertTrue(verifyObject(IRemotingConnection, self.proto))
        self.assertEqual(self.proto.remote_address, "192.0.2.7:40001")

    def test_response_in_request_serialization(self) -> None:
        """A ROCKETMQ request is answered in ROCKETMQ, a JSON request in JSON."""
        for st in (SerializeType.ROCKETMQ, SerializeType.JSON):
            req = new_request(RequestCode.HEART_BEAT)
            req.serialize_type = st
            self.proto.dataReceived(encode(req))
            [resp] = written_commands(self.transport)
            self.assertEqual((resp.serialize_type, resp.opaque, resp.flag), (st, req.opaque, 1))

    def test_undecodable_header_with_opaque_gets_error_response(self) -> None:
        """A bad header whose opaque is readable gets SYSTEM_ERROR; the connection stays open."""
        self.proto.dataReceived(_raw_frame(b'{"code":[34],"opaque":17,"flag":0}'))
        [resp] = written_commands(self.transport)
        self.assertEqual((resp.code, resp.opaque, resp.flag), (ResponseCode.SYSTEM_ERROR, 17, 1))
        self.assertFalse(self.transport.disconnecting)
        self.proto.dataReceived(encode(new_request(RequestCode.HEART_BEAT)))
        self.assertEqual(len(written_commands(self.transport)), 1)

    def test_undecodable_oneway_header_not_answered(self) -> None:
        """A bad header of a oneway request is only logged."""
        self.proto.dataReceived(_raw_frame(b'{"code":"x","opaque":17,"flag":2}'))
        self.assertEqual(self.transport.value(), b"")
        self.assertFalse(self.transport.disconnecting)

    def test_unknown_code(self) -> None:
        """An unknown code is answered REQUEST_CODE_NOT_SUPPORTED with the code in the remark."""
        req = RemotingCommand(code=9999, opaque=5)
        self.proto.dataReceived(encode(req))
        [resp] = written_commands(self.transport)
        self.assertEqual(resp.code, ResponseCode.REQUEST_CODE_NOT_SUPPORTED)
        self.assertIn("request type 9999 not supported", resp.remark or "")

    def test_processor_exception(self) -> None:
        """A processor bug is logged, answered SYSTEM_ERROR, and the connection keeps serving."""
        self.dispatcher.register(1, RecordingProcessor(error=KeyError("x")))
        self.proto.dataReceived(encode(new_request(1)))
        [resp] = written_commands(self.transport)
        self.assertEqual(resp.code, ResponseCode.SYSTEM_ERROR)
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)
        self.proto.dataReceived(encode(new_request(RequestCode.HEART_BEAT)))
        [ok] = written_commands(self.transport)
        self.assertEqual(ok.code, ResponseCode.SUCCESS)
        self.assertFalse(self.transport.disconnecting)

    def test_rmq_error(self) -> None:
        """An RMQError from a processor is answered with its code and remark."""
        self.dispatcher.register(1, RecordingProcessor(error=RMQError("denied", 16)))
        self.proto.dataReceived(encode(new_request(1)))
        [resp] = written_commands(self.transport)
        self.assertEqual((resp.code, resp.remark), (16, "denied"))

    def test_oneway_gets_no_response(self) -> None:
        """A oneway request is processed but never answered."""
        self.proto.dataReceived(encode(new_request(RequestCode.HEART_BEAT, oneway=True)))
        self.assertEqual(len(self.heartbeat.calls), 1)
        self.assertEqual(self.transport.value(), b"")

    def test_late_response_after_close_dropped(self) -> None:
        """A response finished after the connection closed is dropped quietly."""
        later: Deferred[RemotingCommand | None] = Deferred()
        self.dispatcher.register(1, FunctionProcessor(lambda c, r: later))
        req = new_request(1)
        self.proto.dataReceived(encode(req))
        self.lose()
        later.callback(new_response(req))
        self.assertEqual(self.transport.value(), b"")

    def test_large_body_written(self) -> None:
        """A response with a large body is written completely (head and body)."""
        body = bytes(range(256)) * 400
        self.dispatcher.register(1, FunctionProcessor(lambda c, r: new_response(r, body=body)))
        self.proto.MAX_LENGTH = 1 << 20
        self.proto.dataReceived(encode(new_request(1)))
        [resp] = written_commands(self.transport)
        self.assertEqual(resp.body, body)

    def test_server_invokes_client(self) -> None:
        """A processor can invoke a request back toward the peer on the same connection."""
        answers: list[RemotingCommand] = []

        def notify(conn: IRemotingConnection, req: RemotingCommand) -> RemotingCommand:
            conn.invoke(new_request(RequestCode.GET_CONSUMER_RUNNING_INFO), 3.0).addCallback(
                answers.append
            )
            conn.send_oneway(new_request(RequestCode.NOTIFY_CONSUMER_IDS_CHANGED))
            return new_response(req)

        self.dispatcher.register(1, FunctionProcessor(notify))
        self.proto.dataReceived(encode(new_request(1)))
        outgoing, oneway, resp = written_commands(self.transport)
        self.assertEqual((outgoing.code, outgoing.flag), (307, 0))
        self.assertEqual((oneway.code, oneway.flag), (40, 2))
        self.assertEqual(resp.flag, 1)
        self.proto.dataReceived(encode(new_response(outgoing, body=b"info")))
        self.assertEqual([a.body for a in answers], [b"info"])


class InvokeTests(_ProtocolTestBase):
    """Outgoing requests: correlation by opaque, timeouts, lost connections."""

    def test_responses_matched_by_opaque(self) -> None:
        """Responses arriving out of order fire the right Deferreds."""
        a, b = new_request(105), new_request(106)
        da, db = self.proto.invoke(a, 3.0), self.proto.invoke(b, 3.0)
        self.assertEqual([c.opaque for c in written_commands(self.transport)], [a.opaque, b.opaque])
        self.proto.dataReceived(encode(new_response(b, remark="B")))
        self.assertNoResult(da)
        self.assertEqual(self.successResultOf(db).remark, "B")
        self.proto.dataReceived(encode(new_response(a, remark="A")))
        self.assertEqual(self.successResultOf(da).remark, "A")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timeout(self) -> None:
        """An unanswered request fails with RemotingTimeoutError and leaves no timer behind."""
        req = new_request(RequestCode.GET_ROUTEINFO_BY_TOPIC)
        d = self.proto.invoke(req, timeout=3.0)
        self.clock.advance(2.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        failure = self.failureResultOf(d, RemotingTimeoutError)
        self.assertIn("192.0.2.7:40001", failure.value.remark)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.proto.pending_count, 0)
        # The late answer is logged and dropped.
        self.proto.dataReceived(encode(new_response(req)))
        self.assertFalse(self.transport.disconnecting)

    def test_connection_lost_fails_pending(self) -> None:
        """Losing the connection fails every pending request, naming the address."""
        d1 = self.proto.invoke(new_request(105), 3.0)
        d2 = self.proto.invoke(new_request(106), 3.0)
        closed = self.proto.when_closed()
        self.lose(ConnectionLost("reset"))
        for d in (d1, d2):
            failure = self.failureResultOf(d, RemotingSendRequestError)
            self.assertIn("192.0.2.7:40001", failure.value.remark)
        self.assertIsNone(self.successResultOf(closed))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_invoke_after_close(self) -> None:
        """Invoking on a closed connection fails at once with RemotingSendRequestError."""
        self.proto.close()
        self.failureResultOf(self.proto.invoke(new_request(105), 3.0), RemotingSendRequestError)
        self.assertEqual(self.transport.value(), b"")

    def test_when_closed_fresh_deferreds(self) -> None:
        """Each when_closed call gets its own Deferred; after loss they fire at once."""
        a, b = self.proto.when_closed(), self.proto.when_closed()
        self.assertIsNot(a, b)
        self.assertNoResult(a)
        self.lose()
        self.successResultOf(a)
        self.successResultOf(b)
        self.successResultOf(self.proto.when_closed())

    def test_send_oneway(self) -> None:
        """send_oneway writes the request with flag 2; after close it is dropped."""
        self.proto.send_oneway(new_request(RequestCode.NOTIFY_CONSUMER_IDS_CHANGED))
        [cmd] = written_commands(self.transport)
        self.assertEqual(cmd.flag, 2)
        self.lose()
        self.proto.send_oneway(new_request(RequestCode.NOTIFY_CONSUMER_IDS_CHANGED))
        self.assertEqual(self.transport.value(), b"")

    def test_unencodable_request(self) -> None:
        """A request that cannot be encoded fails with HeaderError and leaves nothing pending."""
        req = new_request(70000)
        req.serialize_type = SerializeType.ROCKETMQ
        self.failureResultOf(self.proto.invoke(req, 3.0), HeaderError)
        self.assertEqual(self.proto.pending_count, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancel(self) -> None:
        """Cancelling an invoke removes it from the table and its timer."""
        d = self.proto.invoke(new_request(105), 3.0)
        d.cancel()
        self.failureResultOf(d)
        self.assertEqual(self.proto.pending_count, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_duplicate_opaque_reassigned(self) -> None:
        """A second request with a pending opaque gets a fresh one."""
        a = RemotingCommand(code=105, opaque=7)
        b = RemotingCommand(code=105, opaque=7)
        da, db = self.proto.invoke(a, 3.0), self.proto.invoke(b, 3.0)
        self.assertNotEqual(a.opaque, b.opaque)
        self.proto.dataReceived(encode(new_response(b, remark="b")))
        self.proto.dataReceived(encode(new_response(a, remark="a")))
        self.assertEqual(
            (self.successResultOf(da).remark, self.successResultOf(db).remark), ("a", "b")
        )


class FactoryTests(SynchronousTestCase):
    """RemotingServerFactory builds connected protocols and reports their lifecycle."""

    def test_callbacks_and_connection_set(self) -> None:
        """Callbacks get the connection; the factory tracks live connections."""
        made: list[IRemotingConnection] = []
        lost: list[IRemotingConnection] = []
        factory = RemotingServerFactory(
            Dispatcher(), Clock(), on_connection_made=made.append, on_connection_lost=lost.append
        )
        proto = factory.buildProtocol(PEER)
        proto.makeConnection(StringTransport(peerAddress=PEER))
        self.assertEqual(made, [proto])
        self.assertEqual(factory.connections, {proto})
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(lost, [proto])
        self.assertEqual(factory.connections, set())

    def test_callback_failure_logged(self) -> None:
        """A failing callback is logged and does not break the connection."""

        def boom(conn: IRemotingConnection) -> None:
            raise ValueError("callback bug")

        factory = RemotingServerFactory(Dispatcher(), Clock(), on_connection_made=boom)
        proto = factory.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        proto.makeConnection(transport)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        proto.dataReceived(encode(RemotingCommand(code=1, opaque=1)))
        self.assertEqual(len(written_commands(transport)), 1)


class IdleTimeoutTests(SynchronousTestCase):
    """``idle_timeout`` closes silent connections and keeps active ones."""

    def test_idle_connection_closed_active_kept(self) -> None:
        """Only the connection without traffic for idle_timeout seconds is closed."""
        clock = Clock()
        factory = RemotingServerFactory(Dispatcher(), clock, idle_timeout=120.0)
        factory.doStart()
        silent, busy = factory.buildProtocol(PEER), factory.buildProtocol(PEER)
        silent_t, busy_t = StringTransport(peerAddress=PEER), StringTransport(peerAddress=PEER)
        silent.makeConnection(silent_t)
        busy.makeConnection(busy_t)
        for _ in range(4):
            clock.advance(30.0)
            busy.dataReceived(encode(RemotingCommand(code=9999, opaque=1)))
        self.assertTrue(silent_t.disconnecting)
        self.assertFalse(busy_t.disconnecting)
        factory.doStop()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_no_timer_by_default(self) -> None:
        """Without idle_timeout the factory schedules nothing."""
        clock = Clock()
        factory = RemotingServerFactory(Dispatcher(), clock)
        factory.doStart()
        self.assertEqual(clock.getDelayedCalls(), [])
        factory.doStop()
