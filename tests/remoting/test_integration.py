"""Integration tests of the remoting layer on real loopback sockets (port 0).

These use the global reactor (``trial`` runs it) and real TCP connections: a server built from
``RemotingServerFactory`` and clients built from ``RemotingClient`` and raw protocols.
"""

from __future__ import annotations

import re
import socket
import struct
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, serverFromString
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from rmq.common.asyncutil import global_reactor
from rmq.common.errors import RemotingSendRequestError
from rmq.remoting.client import RemotingClient, tcp_endpoint_factory
from rmq.remoting.codec import encode
from rmq.remoting.codes import RequestCode, ResponseCode, SerializeType
from rmq.remoting.command import RemotingCommand, new_request, new_response
from rmq.remoting.dispatch import Dispatcher, FunctionProcessor
from rmq.remoting.interfaces import IRemotingConnection
from rmq.remoting.protocol import RemotingServerFactory


class _RawClient(Protocol):
    """Sends ``payload`` on connect and records what comes back and when it is disconnected."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.received = b""
        self.lost: Deferred[None] = Deferred()
        self._expect: list[tuple[bytes, Deferred[None]]] = []

    def expect(self, data: bytes) -> Deferred[None]:
        """Fires once ``data`` has appeared in what was received."""
        d: Deferred[None] = Deferred()
        self._expect.append((data, d))
        self._check()
        return d

    def _check(self) -> None:
        waiting = self._expect
        self._expect = []
        for data, d in waiting:
            if data in self.received:
                d.callback(None)
            else:
                self._expect.append((data, d))

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.payload)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        self._check()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(None)


class LoopbackTests(TestCase):
    """A real server keeps serving good clients while dropping bad ones."""

    async def _start(self) -> None:
        self.reactor: Any = global_reactor()
        self.server_conns: list[IRemotingConnection] = []
        self.server_lost: list[Deferred[None]] = []
        self.callbacks_from_server: list[RemotingCommand] = []

        def heartbeat(conn: IRemotingConnection, req: RemotingCommand) -> RemotingCommand:
            return new_response(req, ResponseCode.SUCCESS, body=req.body)

        async def ask_back(conn: IRemotingConnection, req: RemotingCommand) -> RemotingCommand:
            answer = await conn.invoke(new_request(RequestCode.GET_CONSUMER_RUNNING_INFO), 5.0)
            return new_response(req, body=b"client said " + answer.body)

        def made(conn: IRemotingConnection) -> None:
            self.server_conns.append(conn)
            self.server_lost.append(conn.when_closed())

        dispatcher = Dispatcher(
            {
                RequestCode.HEART_BEAT: FunctionProcessor(heartbeat),
                RequestCode.GET_CONSUMER_LIST_BY_GROUP: FunctionProcessor(
                    lambda c, r: Deferred.fromCoroutine(ask_back(c, r))
                ),
            }
        )
        self.factory = RemotingServerFactory(
            dispatcher, self.reactor, max_frame_size=64 * 1024, on_connection_made=made
        )
        endpoint = serverFromString(self.reactor, "tcp:0:interface=127.0.0.1")
        port = await endpoint.listen(self.factory)
        self.addCleanup(self._wait_server_conns_closed)
        self.addCleanup(port.stopListening)
        self.addr = f"127.0.0.1:{port.getHost().port}"

        def running_info(conn: IRemotingConnection, req: RemotingCommand) -> RemotingCommand:
            self.callbacks_from_server.append(req)
            return new_response(req, body=b"running")

        client_dispatcher = Dispatcher(
            {RequestCode.GET_CONSUMER_RUNNING_INFO: FunctionProcessor(running_info)}
        )
        self.client = RemotingClient(
            self.reactor, tcp_endpoint_factory(self.reactor), client_dispatcher
        )
        self.addCleanup(self.client.close)

    async def _wait_server_conns_closed(self) -> None:
        for conn in self.server_conns:
            conn.close()
        for d in self.server_lost:
            await d

    async def _raw(self, payload: bytes) -> _RawClient:
        host, port = self.addr.split(":")
        raw = _RawClient(payload)
        await connectProtocol(TCP4ClientEndpoint(self.reactor, host, int(port)), raw)
        return raw

    async def test_garbage_client_dropped_good_client_served(self) -> None:
        """A client sending garbage is disconnected; another client keeps being served."""
        first = await self.client.invoke(self.addr, new_request(RequestCode.HEART_BEAT, body=b"1"))
        self.assertEqual((first.code, first.body), (ResponseCode.SUCCESS, b"1"))
        raw = await self._raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await raw.lost
        self.assertEqual(raw.received, b"")
        second = await self.client.invoke(self.addr, new_request(RequestCode.HEART_BEAT, body=b"2"))
        self.assertEqual((second.code, second.body), (ResponseCode.SUCCESS, b"2"))
        self.assertEqual(len(self.server_conns), 2)

    async def test_oversized_frame_dropped(self) -> None:
        """A frame over the server's limit closes that connection only."""
        conn = await self.client.connection(self.addr)
        raw = await self._raw(struct.pack(">i", 64 * 1024 + 1) + b"\x00" * 100)
        await raw.lost
        resp = await conn.invoke(new_request(RequestCode.HEART_BEAT), 5.0)
        self.assertEqual(resp.code, ResponseCode.SUCCESS)

    async def test_bad_request_answered_connection_kept(self) -> None:
        """Unknown codes and undecodable headers get error responses on a live connection."""
        bad_header = b'{"code":"HEART","opaque":9,"flag":0}'
        word = struct.pack(">I", len(bad_header))
        frames = (
            encode(RemotingCommand(code=9999, opaque=8))
            + struct.pack(">i", 4 + len(bad_header))
            + word
            + bad_header
            + encode(RemotingCommand(code=RequestCode.HEART_BEAT, opaque=10))
        )
        raw = await self._raw(frames)
        await raw.expect(b'"opaque":10')  # the last answer: the others precede it
        self.assertFalse(raw.lost.called)
        self.assertIn(b"request type 9999 not supported", raw.received)
        self.assertIn(b'"opaque":9', raw.received)
        assert raw.transport is not None
        raw_address = f"127.0.0.1:{raw.transport.getHost().port}"  # type: ignore[attr-defined]
        [server_side] = [c for c in self.server_conns if c.remote_address == raw_address]
        server_side.close()
        await raw.lost

    async def test_server_calls_back_client(self) -> None:
        """A server processor can invoke the client on the client's own connection."""
        resp = await self.client.invoke(
            self.addr, new_request(RequestCode.GET_CONSUMER_LIST_BY_GROUP), 5.0
        )
        self.assertEqual(resp.body, b"client said running")
        self.assertEqual(len(self.callbacks_from_server), 1)

    async def test_rocketmq_serialization_round_trip(self) -> None:
        """A ROCKETMQ-serialized request is answered in ROCKETMQ over the wire."""
        req = new_request(RequestCode.HEART_BEAT, {"k": "v"}, body=b"bin")
        req.serialize_type = SerializeType.ROCKETMQ
        resp = await self.client.invoke(self.addr, req, 5.0)
        self.assertEqual((resp.serialize_type, resp.body), (SerializeType.ROCKETMQ, b"bin"))

    async def test_server_close_fails_pending(self) -> None:
        """Closing the server side fails the client's pending request, naming the address."""
        held: list[Deferred[RemotingCommand | None]] = []

        def hold(
            conn: IRemotingConnection, req: RemotingCommand
        ) -> Deferred[RemotingCommand | None]:
            held.append(Deferred())
            return held[-1]

        self.factory.dispatcher.register(
            RequestCode.GET_ROUTEINFO_BY_TOPIC, FunctionProcessor(hold)
        )
        conn = await self.client.connection(self.addr)
        pending = conn.invoke(new_request(RequestCode.GET_ROUTEINFO_BY_TOPIC), 30.0)
        self.server_conns[-1].close()
        with self.assertRaises(RemotingSendRequestError) as caught:
            await pending
        self.assertIn(self.addr, caught.exception.remark)
        await conn.when_closed()

    async def test_socket_options_like_java(self) -> None:
        """Both ends of a remoting connection have TCP_NODELAY on and SO_KEEPALIVE off."""
        client_side = await self.client.connection(self.addr)
        await self.client.invoke(self.addr, new_request(RequestCode.HEART_BEAT), 5.0)
        [server_side] = self.server_conns
        for conn in (client_side, server_side):
            sock = conn.transport.getHandle()  # type: ignore[attr-defined]
            self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 1)
            self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE), 0)

    async def test_pipelined_requests_answered_in_order(self) -> None:
        """Many requests arriving in one read are all answered, in order, over a real socket."""
        frames = b"".join(
            encode(RemotingCommand(code=RequestCode.HEART_BEAT, opaque=100 + i, body=b"%d" % i))
            for i in range(200)
        )
        raw = await self._raw(frames)
        await raw.expect(b'"opaque":299')
        opaques = [int(x) for x in re.findall(rb'"opaque":(\d+)', raw.received)]
        self.assertEqual(opaques, list(range(100, 300)))
        raw.transport.loseConnection()  # type: ignore[union-attr]
        await raw.lost

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        """Start a server on a free loopback port and a client (trial waits for the Deferred)."""
        return Deferred.fromCoroutine(self._start())
