"""Fakes shared by the remoting tests: recording processors, frame parsing, a fake endpoint."""

from __future__ import annotations

import struct
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocol, IProtocolFactory
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from rmq.remoting.codec import decode
from rmq.remoting.command import RemotingCommand
from rmq.remoting.interfaces import IRemotingConnection, IRequestProcessor
from rmq.remoting.protocol import RemotingProtocol


def written_commands(transport: StringTransport) -> list[RemotingCommand]:
    """Decode every frame written to ``transport`` so far and clear it."""
    data = transport.value()
    transport.clear()
    commands = []
    pos = 0
    while pos < len(data):
        (length,) = struct.unpack_from(">i", data, pos)
        commands.append(decode(data[pos + 4 : pos + 4 + length]))
        pos += 4 + length
    assert pos == len(data), "partial frame written"
    return commands


@implementer(IRequestProcessor)
class RecordingProcessor:
    """Answers with ``result`` (or raises ``error``) and records every call."""

    def __init__(self, result: Any = None, error: Exception | None = None) -> None:
        self.calls: list[tuple[IRemotingConnection, RemotingCommand]] = []
        self.result = result
        self.error = error

    def process_request(self, connection: IRemotingConnection, request: RemotingCommand) -> Any:
        """Record the call, then raise or return as configured."""
        self.calls.append((connection, request))
        if self.error is not None:
            raise self.error
        return self.result


class FakeEndpoint:
    """An IStreamClientEndpoint whose connection attempts the test completes by hand."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.attempts: list[tuple[IProtocolFactory, Deferred[IProtocol]]] = []

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        """Record the attempt; the test calls ``succeed``/``fail_attempt``."""
        d: Deferred[IProtocol] = Deferred(lambda d: d.errback(Failure(ConnectionAbortedError())))
        self.attempts.append((factory, d))
        return d

    def succeed(self, index: int = -1) -> tuple[RemotingProtocol, StringTransport]:
        """Complete attempt ``index`` on a StringTransport; returns the protocol and transport."""
        factory, d = self.attempts[index]
        proto = factory.buildProtocol(None)  # type: ignore[arg-type]
        assert isinstance(proto, RemotingProtocol)
        host, port = self.address.rsplit(":", 1)
        from twisted.internet.address import IPv4Address

        transport = StringTransport(peerAddress=IPv4Address("TCP", host, int(port)))
        proto.makeConnection(transport)
        d.callback(proto)
        return proto, transport

    def fail_attempt(self, error: Exception, index: int = -1) -> None:
        """Fail attempt ``index`` with ``error``."""
        self.attempts[index][1].errback(Failure(error))
